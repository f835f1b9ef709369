"""End to end: the example specs reach their test accuracy on every engine within their default epochs."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnspec.backends import get_backend
from nnspec.compiler.frontend import load_spec
from nnspec.data import load_dataset

SPECS = Path(__file__).resolve().parents[2] / "specs"

#: spec file -> the test accuracy it must reach
TARGETS = {"digits_mlp.yaml": 0.95, "digits_cnn.yaml": 0.97, "digits_resnet.yaml": 0.97}


@pytest.mark.slow
@pytest.mark.parametrize("spec", sorted(TARGETS))
def test_example_spec_reaches_its_accuracy(backend_name: str, spec: str) -> None:
    graph = load_spec(SPECS / spec)
    dataset = load_dataset(graph)
    model = get_backend(backend_name).compile(graph, device="cpu")
    history = model.fit(dataset, progress=False)
    assert len(history) == graph.train.epochs
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    result = model.evaluate(dataset.x_test, dataset.y_test)
    assert result["accuracy"] >= TARGETS[spec], f"{spec} on {backend_name}: test accuracy {result['accuracy']:.4f}"
