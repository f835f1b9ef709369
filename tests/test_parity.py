"""Parity suite: every spec in specs/ on every installed backend against the NumPy float64 reference.

* float64: forward per layer (inference, and training with the dropout masks of step 0) within 1e-10
  relative, loss and gradients within 1e-9;
* float32: forward within 1e-5, and ten training steps (dropout on) whose losses and weights stay within
  1e-4 relative of the reference trajectory.

Batches are 8 examples of the spec's training data in the seeded epoch order, or seeded random inputs of
the spec's input shape when its data set is not installed (nothing is downloaded). A backend that
declares it cannot run a spec (a documented gap) is skipped with its reason, never silently. One comparison
per (spec, dtype) runs every backend of the test run, so the reference is computed once, not once per backend.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.backends import available_backends
from nnspec.compare import ComparisonData, compare, load_data, render
from nnspec.compare.core import AGREE, UNSUPPORTED, CompareResult
from nnspec.compare.parity import compare_gradients, compute_reference
from nnspec.compare.tolerances import tolerances_for
from nnspec.compiler.init import initial_weights
from nnspec.compiler.ir import Graph, TrainConfig
from nnspec.compiler.shapes import make_graph

#: ``cpu`` unless ``NNSPEC_TEST_DEVICE=gpu`` (the GPU check script runs this suite on the GPU)
DEVICE = os.environ.get("NNSPEC_TEST_DEVICE", "cpu")
SPEC_DIR = Path(__file__).resolve().parent.parent / "specs"
SPECS = sorted(SPEC_DIR.glob("*.yaml"))
BATCH = 8
STEPS = 10


@functools.lru_cache(maxsize=None)
def _graph(spec: Path) -> Graph:
    return nnspec.load(str(spec))


@functools.lru_cache(maxsize=None)
def _data(spec: Path) -> ComparisonData:
    """The spec's training split when installed (never downloaded here), else seeded random inputs."""
    old = os.environ.get("NNSPEC_OFFLINE")
    os.environ["NNSPEC_OFFLINE"] = "1"
    try:
        return load_data(_graph(spec), fallback_examples=256)
    finally:
        if old is None:
            del os.environ["NNSPEC_OFFLINE"]
        else:
            os.environ["NNSPEC_OFFLINE"] = old


@pytest.fixture(scope="module")
def selected_backends(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The backends this run's tests of this module ask for (every available one unless ``-k`` selects)."""
    asked = set()
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "module", None) is request.module and "backend_name" in params:
            asked.add(params["backend_name"])
    return tuple(name for name in available_backends() if name in asked)


@functools.lru_cache(maxsize=None)
def _comparison(spec: Path, dtype: str, backends: tuple[str, ...]) -> CompareResult:
    """One comparison of ``spec`` in ``dtype`` on every backend of the run: the reference (forward, loss,
    gradients, trajectory) is computed once and each backend's test reads its own status."""
    parts = ("forward", "gradients") if dtype == "float64" else ("forward", "trajectory")
    return compare(
        _graph(spec),
        list(backends),
        dtype=dtype,
        steps=STEPS,
        batch=BATCH,
        data=_data(spec),
        timing=False,
        parts=parts,
        device=DEVICE,
    )


def _check(result: CompareResult, backend: str) -> None:
    status = result.status(backend)
    if status == UNSUPPORTED:
        row = result.summary[result.summary["backend"] == backend].iloc[0]
        pytest.skip(f"declared gap: {row['message']}")
    assert status == AGREE, "\n" + render(result)


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_float64_forward_and_gradients(spec: Path, backend_name: str, selected_backends: tuple[str, ...]) -> None:
    result = _comparison(spec, "float64", selected_backends)
    assert result.tolerances.forward == 1e-10
    _check(result, backend_name)
    forward = result.forward[result.forward["backend"] == backend_name]
    assert set(forward["layer"]) == {n.name for n in _graph(spec).nodes}


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_float32_forward_and_training_trajectory(
    spec: Path, backend_name: str, selected_backends: tuple[str, ...]
) -> None:
    result = _comparison(spec, "float32", selected_backends)
    assert (result.tolerances.forward, result.tolerances.trajectory) == (1e-5, 1e-4)
    _check(result, backend_name)
    assert len(result.trajectory[result.trajectory["backend"] == backend_name]) == STEPS


def test_max_pool_ties_route_the_gradient_to_one_element(backend_name: str) -> None:
    """ReLU outputs equal to a positive bias over blank image regions tie in every pooling window; the
    gradient must go to one element of the window (the reference: the first), not to each of them."""
    graph = make_graph(
        (6, 6, 1),
        [
            ("conv2d", {"filters": 2, "kernel": 3, "padding": "same", "activation": "relu"}),
            ("max_pool2d", {"size": 2}),
            "flatten",
            ("dense", {"units": 3}),
        ],
        train=TrainConfig(batch_size=4),
    )
    x = np.zeros((64, 6, 6, 1), dtype=np.float32)
    x[:, :2, :2, 0] = np.random.default_rng(0).random((64, 2, 2))  # blank except one corner
    data = ComparisonData(x, np.arange(64, dtype=np.int32) % 3, "blank images")
    weights = initial_weights(graph, dtype="float32")
    weights["conv2d_1.bias"] = np.array([0.1, 0.2], dtype=np.float32)  # exact ties in float32 too
    model = nnspec.compile(graph, backend_name, weights, dtype="float32", device="cpu")
    ref = compute_reference(graph, weights, [(data.x[:4], data.y[:4])], trajectory=False)
    grads = compare_gradients(graph, model, ref, tolerances_for("float32"))
    assert grads["ok"].all(), "\n" + grads.to_string()
