"""The Theano (PyTensor) backend on graph models, against the JAX backend, in float64.

Both engines compute through the shared recipe and the shared lowerings, so on a residual block with
batch norm and dropout, and on a concatenation with layer norm and a global max pool, they must agree
to rounding: every layer's output (inference and training mode), the loss and its gradients, and the
weights, moving statistics and optimiser slots after three steps. A training state handed to a fresh
model continues bit for bit, and ``fit`` moves the batch-norm statistics as JAX's ``fit`` does.
Shapes are small: PyTensor compiles every function with a C compiler.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from nnspec.backends import get_backend
from nnspec.compiler.init import initial_weights
from nnspec.compiler.ir import Graph, OptimizerConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.data.dataset import Dataset

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("pytensor") is None, reason="PyTensor is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed"),
]

RTOL = 1e-10
ATOL = 1e-15
STEP = 3
ADAM = OptimizerConfig("adam", {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7})


def _conv(name: str, filters: int, inputs: str, kernel: int = 3, activation: str = "linear") -> tuple[str, dict]:
    return (
        "conv2d",
        {
            "name": name,
            "filters": filters,
            "kernel": kernel,
            "padding": "same",
            "activation": activation,
            "inputs": [inputs],
        },
    )


GRAPHS: dict[str, tuple[tuple[int, ...], list[Any]]] = {
    "residual": (
        (5, 5, 2),
        [
            _conv("conv1", 2, "input"),
            ("batch_norm", {"name": "bn1", "momentum": 0.8}),
            ("activation", {"name": "relu1", "activation": "relu"}),
            _conv("conv2", 2, "relu1"),
            ("batch_norm", {"name": "bn2"}),
            ("add", {"name": "sum", "inputs": ["bn2", "input"]}),
            ("activation", {"name": "relu2", "activation": "relu"}),
            ("global_avg_pool2d", {"name": "gap"}),
            ("dropout", {"name": "drop", "rate": 0.3}),
            ("dense", {"name": "logits", "units": 3}),
            ("softmax", {"name": "probs"}),
        ],
    ),
    "concat": (
        (5, 5, 2),
        [
            _conv("a", 2, "input", activation="tanh"),
            _conv("b", 3, "input", kernel=2, activation="sigmoid"),
            ("concat", {"name": "cat", "inputs": ["a", "b"]}),
            ("layer_norm", {"name": "ln"}),
            ("global_max_pool2d", {"name": "gmp"}),
            ("dense", {"name": "logits", "units": 3}),
            ("softmax", {"name": "probs"}),
        ],
    ),
}


def _graph(name: str, batch_size: int = 6) -> Graph:
    shape, layers = GRAPHS[name]
    return make_graph(shape, layers, train=TrainConfig(optimizer=ADAM, batch_size=batch_size, seed=5), dtype="float64")


def _weights(graph: Graph) -> dict[str, np.ndarray]:
    """Initial weights with noise (biases and betas away from 0, gamma from 1), moving statistics away from their start."""
    rng = np.random.default_rng(1)
    w = {k: v + rng.normal(0.0, 0.2, v.shape) for k, v in initial_weights(graph, dtype="float64").items()}
    for key, _, _ in graph.state_specs():
        if key.endswith("moving_variance"):
            w[key] = rng.uniform(0.5, 2.0, w[key].shape)
    return w


def _batches(graph: Graph, count: int, n: int = 6) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(2)
    return [(rng.normal(size=(n, *graph.input_shape)), rng.integers(0, 3, n).astype(np.int32)) for _ in range(count)]


def _models(graph: Graph) -> tuple[Any, Any]:
    weights = _weights(graph)
    return (
        get_backend("jax").compile(graph, weights, device="cpu", dtype="float64"),
        get_backend("theano").compile(graph, weights, device="cpu", dtype="float64"),
    )


def _assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """``got`` equals ``want`` to ``RTOL`` relative to ``want``'s largest value.

    The absolute floor ``ATOL`` is for arrays that are zero but for rounding: the gradient of a bias
    before a batch norm in training (about 1e-18 here), and its Adam slots.
    """
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    scale = float(np.abs(want).max(initial=0.0))
    error = float(np.abs(got - want).max(initial=0.0))
    assert error <= RTOL * scale + ATOL, f"{what}: error {error:.3g}, largest value {scale:.3g}"


def _assert_dicts_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str) -> None:
    assert set(got) == set(want), what
    for key in want:
        _assert_close(got[key], want[key], f"{what} {key}")


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_layer_outputs_loss_and_gradients_equal_jax(name: str) -> None:
    graph = _graph(name)
    jax_model, model = _models(graph)
    ((x, y),) = _batches(graph, 1)
    for training in (False, True):
        got, want = (
            model.layer_outputs(x, training=training, step=STEP),
            jax_model.layer_outputs(x, training=training, step=STEP),
        )
        assert len(got) == len(graph.nodes)
        for node, g, w in zip(graph.nodes, got, want):
            _assert_close(g, w, f"{node.name} (training={training})")
    loss, grads = model.loss_and_gradients(x, y, step=STEP)
    want_loss, want_grads = jax_model.loss_and_gradients(x, y, step=STEP)
    assert loss == pytest.approx(want_loss, rel=RTOL)
    assert list(grads) == [k for k, _, _ in graph.param_specs()]
    _assert_dicts_close(grads, want_grads, "gradient")


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_three_steps_equal_jax_and_a_restored_state_continues_bit_for_bit(name: str) -> None:
    graph = _graph(name)
    jax_model, model = _models(graph)
    batches = _batches(graph, 5)
    before = model.get_weights()
    for x, y in batches[:3]:
        assert model.train_step(x, y) == pytest.approx(jax_model.train_step(x, y), rel=RTOL)
    assert model.step == jax_model.step == 3
    _assert_dicts_close(model.get_weights(), jax_model.get_weights(), "weights and state")
    _assert_dicts_close(model.optimizer_state(), jax_model.optimizer_state(), "optimiser slots")
    for key, _, _ in graph.state_specs():
        assert not np.array_equal(model.get_weights()[key], before[key]), f"{key} did not move"

    restored = get_backend("theano").compile(
        graph, initial_weights(graph, dtype="float64"), device="cpu", dtype="float64"
    )
    restored.set_training_state(model.get_training_state())
    assert restored.step == 3
    for x, y in batches[3:]:
        assert restored.train_step(x, y) == model.train_step(x, y)
    for have, want in (
        (restored.get_weights(), model.get_weights()),
        (restored.optimizer_state(), model.optimizer_state()),
    ):
        assert set(have) == set(want)
        for key in want:
            np.testing.assert_array_equal(have[key], want[key], err_msg=key)


def test_fit_updates_the_batch_norm_state_as_jax_does() -> None:
    graph = _graph("residual", batch_size=8)
    jax_model, model = _models(graph)
    rng = np.random.default_rng(3)
    xs, ys = rng.normal(size=(36, *graph.input_shape)), rng.integers(0, 3, 36).astype(np.int32)
    data = Dataset("random", xs[:28], ys[:28], xs[28:], ys[28:], xs[28:], ys[28:], 3)
    before = model.get_weights()
    history = model.fit(data, epochs=1, progress=False)
    want = jax_model.fit(data, epochs=1, progress=False)
    assert model.step == 28 // 8
    for key in ("bn1.moving_mean", "bn1.moving_variance", "bn2.moving_mean", "bn2.moving_variance"):
        assert not np.allclose(model.get_weights()[key], before[key]), f"{key} did not move"
    _assert_dicts_close(model.get_weights(), jax_model.get_weights(), "weights and state after fit")
    for column in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert float(history[column].iloc[0]) == pytest.approx(float(want[column].iloc[0]), rel=RTOL), column
