"""Loss and gradients of one batch against float64 central finite differences of the NumPy reference loss.

Dropout is on (training mode) with the masks of a fixed step, so gradients flow through the shared masks.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conformance_support import compile_model, graph, random_batch, random_weights

from nnspec import reference
from nnspec.compiler.ir import Graph

EPS = 1e-6

#: id -> (input shape, layers, loss). Small, so that finite differences over every weight stay cheap.
MODELS: dict[str, tuple[tuple[int, ...], list, str]] = {
    "mlp-dropout": (
        (6,),
        [
            ("dense", {"units": 5, "activation": "tanh"}),
            ("dropout", {"rate": 0.4}),
            ("dense", {"units": 3, "activation": "gelu"}),
            ("dense", {"units": 3}),
            "softmax",
        ],
        "cross_entropy",
    ),
    "conv-maxpool-dropout": (
        (6, 5, 2),
        [
            ("conv2d", {"filters": 3, "kernel": 3, "padding": "same", "activation": "softplus"}),
            ("max_pool2d", {"size": 2, "padding": "same"}),
            "flatten",
            ("dropout", {"rate": 0.3}),
            ("dense", {"units": 3}),
            "softmax",
        ],
        "cross_entropy",
    ),
    "conv-strided-avgpool": (
        (7, 6, 1),
        [
            ("conv2d", {"filters": 2, "kernel": [3, 2], "strides": 2, "padding": "same", "activation": "elu"}),
            ("avg_pool2d", {"size": 3, "strides": 1, "padding": "same"}),
            ("conv2d", {"filters": 2, "kernel": 2, "activation": "sigmoid"}),
            "flatten",
            ("dense", {"units": 3}),
        ],
        "cross_entropy",
    ),
    "reshape-mse-softmax": (
        (12,),
        [
            ("reshape", {"shape": [2, 3, 2]}),
            ("conv2d", {"filters": 2, "kernel": 2, "padding": "same", "activation": "relu"}),
            "flatten",
            ("dense", {"units": 3}),
            "softmax",
        ],
        "mse",
    ),
    "conv1d-causal-pools": (
        (8, 2),
        [
            ("conv1d", {"filters": 2, "kernel": 3, "padding": "causal", "dilation": 2, "activation": "tanh"}),
            ("max_pool1d", {"size": 2, "padding": "same"}),
            ("conv1d", {"filters": 2, "kernel": 2, "strides": 2, "padding": "same", "activation": "elu"}),
            ("avg_pool1d", {"size": 2, "strides": 1, "padding": "same"}),
            "flatten",
            ("dense", {"units": 3}),
        ],
        "cross_entropy",
    ),
    "dense-rank2-global-pools": (
        (4, 3),
        [
            ("dense", {"name": "h", "units": 3, "activation": "softplus"}),
            ("global_max_pool1d", {"name": "m"}),
            ("global_avg_pool1d", {"name": "a", "inputs": ["h"]}),
            ("concat", {"inputs": ["m", "a"]}),
            ("dense", {"units": 3}),
            "softmax",
        ],
        "cross_entropy",
    ),
}


def _finite_differences(g, weights, x, y, step):
    grads = {}
    for key, value in weights.items():
        grad = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            saved = value[i]
            value[i] = saved + EPS
            up = reference.loss(g, weights, x, y, step=step)
            value[i] = saved - EPS
            down = reference.loss(g, weights, x, y, step=step)
            value[i] = saved
            grad[i] = (up - down) / (2 * EPS)
        grads[key] = grad
    return grads


STEP = 3


@functools.lru_cache(maxsize=None)
def _reference(name: str) -> tuple[Graph, dict, np.ndarray, np.ndarray, float, dict]:
    """(graph, weights, x, y, reference loss, finite-difference gradients) of model ``name``: computed once
    and shared by every backend (read-only, so that no test can change what the next one compares with)."""
    shape, layers, loss = MODELS[name]
    g = graph(shape, layers, loss=loss, seed=5)
    weights = random_weights(g, seed=2)
    x, y = random_batch(g, 4, seed=3)
    expected = _finite_differences(g, weights, x, y, STEP)
    for array in (x, y, *weights.values(), *expected.values()):
        array.flags.writeable = False
    return g, weights, x, y, reference.loss(g, weights, x, y, step=STEP), expected


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_match_finite_differences(backend_name: str, name: str) -> None:
    g, weights, x, y, ref_loss, expected = _reference(name)
    model = compile_model(backend_name, g, weights)
    value, grads = model.loss_and_gradients(x, y, step=STEP)
    assert value == pytest.approx(ref_loss, rel=1e-10)
    assert set(grads) == set(expected)
    for key in expected:
        assert grads[key].shape == expected[key].shape, key
        np.testing.assert_allclose(grads[key], expected[key], rtol=1e-5, atol=1e-7, err_msg=f"{name}: d loss / d {key}")
