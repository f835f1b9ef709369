"""Helpers shared by the conformance tests: small graphs, random weights and data, tolerances.

Nothing here knows any engine: every test reaches its backend through ``get_backend(backend_name)`` and
the :class:`~nnspec.backends.base.CompiledModel` contract only.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import pytest

from nnspec.backends import get_backend
from nnspec.backends.base import CompiledModel
from nnspec.compiler.ir import Graph, OptimizerConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.errors import BackendError

#: Where the suite compiles its models: ``cpu`` unless ``NNSPEC_TEST_DEVICE=gpu`` (the GPU check script).
DEVICE = os.environ.get("NNSPEC_TEST_DEVICE", "cpu")

#: (rtol, atol relative to the reference's largest magnitude) per dtype, for forward values.
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


def graph(input_shape: Sequence[int], layers: Sequence[Any], **train: Any) -> Graph:
    """A graph from Python layer descriptions; ``train`` fields override :class:`TrainConfig`'s defaults."""
    return make_graph(tuple(input_shape), list(layers), train=TrainConfig(**train))


def random_weights(g: Graph, seed: int = 0, scale: float = 0.5) -> dict[str, np.ndarray]:
    """Normal float64 weights (biases included, so that they matter) for every parameter of ``g``."""
    rng = np.random.default_rng(seed)
    return {key: rng.normal(scale=scale, size=spec.shape) for key, _, spec in g.param_specs()}


def random_batch(g: Graph, n: int, seed: int = 1, classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A float64 batch of ``n`` examples in ``g``'s input shape and integer labels."""
    rng = np.random.default_rng(seed)
    classes = classes or g.output_shape[-1]
    return rng.normal(size=(n, *g.input_shape)), rng.integers(0, classes, size=n).astype(np.int32)


def declared_gaps(backend_name: str, g: Graph, dtype: str) -> list[str]:
    """What ``g`` needs that the backend declares it lacks, each with the reason it gives (empty: nothing)."""
    caps = get_backend(backend_name).capabilities()
    needs = [("layer", n.op, n.op in caps.layers) for n in g.nodes]
    needs += [
        ("activation", a, a in caps.activations)
        for a in sorted({n.attrs["activation"].name for n in g.nodes if "activation" in n.attrs})
    ]
    needs.append(("optimizer", g.train.optimizer.name, g.train.optimizer.name in caps.optimizers))
    needs.append(("dtype", dtype, dtype in caps.dtypes))
    return [f"{kind} {name}: {caps.gaps.get(name, 'not supported')}" for kind, name, ok in needs if not ok]


def compile_model(
    backend_name: str, g: Graph, weights: Mapping[str, np.ndarray] | None = None, dtype: str = "float64"
) -> CompiledModel:
    """Compile ``g`` on :data:`DEVICE` of backend ``backend_name``.

    When the backend declares (in its ``Capabilities``) that it lacks something ``g`` needs, this checks
    that compiling is refused with a :class:`BackendError`, then skips the test with the declared reason:
    every exclusion shows in the report with its reason, never silently.
    """
    backend = get_backend(backend_name)
    gaps = declared_gaps(backend_name, g, dtype)
    if gaps:
        with pytest.raises(BackendError):
            backend.compile(g, weights, device=DEVICE, dtype=dtype)
        pytest.skip(f"declared gap of backend '{backend.name}': " + "; ".join(gaps))
    if DEVICE != "cpu":
        try:
            return backend.compile(g, weights, device=DEVICE, dtype=dtype)
        except BackendError as exc:  # a refusal on the accelerator is listed in the report with its reason
            pytest.skip(f"refused on {DEVICE} by backend '{backend.name}': {exc}")
    return backend.compile(g, weights, device=DEVICE, dtype=dtype)


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: str, what: str = "") -> None:
    """Equal shapes, and values within :data:`TOLERANCE` of ``dtype`` (relative, plus an absolute floor)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    tol = TOLERANCE[dtype]
    floor = tol * max(float(np.max(np.abs(expected), initial=0.0)), 1e-3)
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=tol, atol=floor, err_msg=what)


def adam(**params: float) -> OptimizerConfig:
    """An Adam configuration with Keras's defaults and ``params`` over them."""
    return OptimizerConfig("adam", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, **params})
