"""Initialiser statistics and determinism (weights are made in NumPy from the spec's seed)."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest

from nnspec.compiler.frontend import check_text
from nnspec.compiler.init import initial_weights

TRUNCATED_STD = 0.87962566103423978


def graph_with(kernel_init: str, units: int = 400, inputs: int = 600, seed: int = 0):
    text = textwrap.dedent(
        f"""\
        nnspec: 1
        input: {{shape: [{inputs}]}}
        layers:
          - dense: {{units: {units}, kernel_init: {kernel_init}}}
          - dense: {{units: 10, use_bias: false}}
        train: {{seed: {seed}}}
        """
    )
    return check_text(text)


def kernel(init: str, **kw) -> np.ndarray:
    return initial_weights(graph_with(init, **kw), dtype="float64")["dense_1.kernel"]


def test_glorot_uniform_bounds_and_variance() -> None:
    w = kernel("glorot_uniform")
    limit = math.sqrt(6.0 / (600 + 400))
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit
    assert w.var() == pytest.approx(limit**2 / 3, rel=0.02)
    assert abs(w.mean()) < 0.01 * limit


@pytest.mark.parametrize(
    "name, std",
    [
        ("he_normal", math.sqrt(2.0 / 600)),
        ("lecun_normal", math.sqrt(1.0 / 600)),
        ("glorot_normal", math.sqrt(2.0 / 1000)),
    ],
)
def test_truncated_normals(name: str, std: float) -> None:
    w = kernel(name)
    assert w.std() == pytest.approx(std, rel=0.02)
    assert np.abs(w).max() <= 2.0 * std / TRUNCATED_STD + 1e-12


@pytest.mark.parametrize("name, limit", [("he_uniform", math.sqrt(6.0 / 600)), ("lecun_uniform", math.sqrt(3.0 / 600))])
def test_scaled_uniforms(name: str, limit: float) -> None:
    w = kernel(name)
    assert np.abs(w).max() <= limit
    assert w.var() == pytest.approx(limit**2 / 3, rel=0.02)


def test_normal_and_uniform_take_arguments() -> None:
    w = kernel("{normal: {mean: 0.5, stddev: 0.1}}")
    assert w.mean() == pytest.approx(0.5, abs=0.002) and w.std() == pytest.approx(0.1, rel=0.02)
    u = kernel("{uniform: {minval: 0.0, maxval: 2.0}}")
    assert u.min() >= 0.0 and u.max() < 2.0 and u.mean() == pytest.approx(1.0, abs=0.01)
    default = kernel("normal")
    assert default.std() == pytest.approx(0.05, rel=0.02)


def test_constant_initialisers_and_biases() -> None:
    weights = initial_weights(graph_with("ones"))
    assert (weights["dense_1.kernel"] == 1).all() and (weights["dense_1.bias"] == 0).all()
    assert set(weights) == {"dense_1.kernel", "dense_1.bias", "dense_2.kernel"}
    assert weights["dense_1.kernel"].shape == (600, 400) and weights["dense_2.kernel"].shape == (400, 10)
    assert weights["dense_1.kernel"].dtype == np.float32


def test_seeded_and_independent_per_layer() -> None:
    a = initial_weights(graph_with("glorot_uniform", seed=1))
    b = initial_weights(graph_with("glorot_uniform", seed=1))
    c = initial_weights(graph_with("glorot_uniform", seed=2))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["dense_1.kernel"], c["dense_1.kernel"])
    other_first_layer = initial_weights(graph_with("he_normal", seed=1))
    assert np.array_equal(a["dense_2.kernel"], other_first_layer["dense_2.kernel"])


def test_float32_and_float64_start_from_the_same_numbers() -> None:
    g = graph_with("he_normal")
    w32, w64 = initial_weights(g, dtype="float32"), initial_weights(g, dtype="float64")
    assert w64["dense_1.kernel"].dtype == np.float64
    assert np.array_equal(w32["dense_1.kernel"], w64["dense_1.kernel"].astype(np.float32))
