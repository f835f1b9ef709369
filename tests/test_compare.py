"""``nnspec compare``: the error measures, the batches, the Python API, the report files, the CLI's exit
codes, the localisation of a perturbed weight, and the capability matrix of docs/backends.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import nnspec
from nnspec.backends import available_backends
from nnspec.cli import main
from nnspec.compare import (
    EXIT_DISAGREE,
    ComparisonData,
    batches,
    compare,
    errors,
    random_data,
    render,
    weights_distance,
    write_report,
)
from nnspec.compare.batches import batch_indices
from nnspec.compare.core import AGREE, DISAGREE, ERROR
from nnspec.compare.matrix import capability_matrix, current_block, matrix_markdown
from nnspec.compiler.init import initial_weights
from nnspec.compiler.ir import Graph, TrainConfig
from nnspec.compiler.shapes import make_graph

ROOT = Path(__file__).resolve().parent.parent
FIRST = available_backends()[0]

SMALL_SPEC = """\
nnspec: 1
name: tiny_cnn
input: {shape: [8, 8, 1]}
layers:
  - conv2d: {filters: 2, kernel: 3, activation: relu}
  - max_pool2d: {size: 2}
  - flatten
  - dropout: {rate: 0.5}
  - dense: {units: 10}
  - softmax
train:
  optimizer: {adam: {learning_rate: 0.01}}
  batch_size: 4
  seed: 3
data:
  dataset: digits
"""


def _tiny() -> Graph:
    return make_graph(
        (6, 6, 1),
        [
            ("conv2d", {"filters": 2, "kernel": 3, "activation": "relu"}),
            ("conv2d", {"filters": 3, "kernel": 2, "padding": "same", "activation": "tanh", "name": "conv2"}),
            ("max_pool2d", {"size": 2}),
            "flatten",
            ("dropout", {"rate": 0.5}),
            ("dense", {"units": 3}),
            "softmax",
        ],
        name="tiny",
        train=TrainConfig(batch_size=4),
    )


def test_errors_are_relative_to_the_largest_reference_value() -> None:
    assert errors(np.array([1.0, 2.0]), np.array([1.0, 4.0])) == (2.0, 0.5)
    assert errors(np.zeros(3), np.zeros(3)) == (0.0, 0.0)
    assert errors(np.zeros(2), np.zeros(3)) == (float("inf"), float("inf"))
    assert errors(np.array([np.nan]), np.array([1.0]))[1] == float("inf")
    max_abs, rel = weights_distance({"a": np.array([3.0, 0.0])}, {"a": np.array([3.0, 4.0])})
    assert (max_abs, rel) == (4.0, 0.8)


def test_batches_follow_the_epoch_permutations() -> None:
    first = list(zip(range(5), batch_indices(10, 4, seed=7)))
    epoch0 = np.random.default_rng([7, 0]).permutation(10)
    epoch1 = np.random.default_rng([7, 1]).permutation(10)
    expected = [epoch0[:4], epoch0[4:8], epoch1[:4], epoch1[4:8], np.random.default_rng([7, 2]).permutation(10)[:4]]
    for (_, got), want in zip(first, expected):
        np.testing.assert_array_equal(got, want)
    data = ComparisonData(np.arange(10.0)[:, None], np.arange(10), "test")
    (x0, y0), _ = batches(data, 4, 2, seed=7)
    np.testing.assert_array_equal(y0, epoch0[:4])


def test_compare_api_and_report_files(tmp_path: Path) -> None:
    graph = _tiny()
    result = compare(
        graph, [FIRST], dtype="float64", steps=3, batch=4, data=random_data(graph, 32), repeats=1, epoch_examples=16
    )
    assert result.ok and result.exit_code == 0, render(result)
    assert result.status(FIRST) == AGREE
    assert list(result.forward[result.forward["mode"] == "inference"]["layer"]) == [n.name for n in graph.nodes]
    assert set(result.forward["mode"]) == {"inference", "training"}  # the graph has dropout
    assert list(result.gradients["item"]) == ["loss"] + [k for k, _, _ in graph.param_specs()]
    assert list(result.trajectory["step"]) == [0, 1, 2]
    assert {"compile_s", "step_s", "epoch_s", "examples_per_s"} <= set(result.timing.columns)
    assert result.forward["argmax_agreement"].dropna().tolist() == [1.0, 1.0]

    paths = write_report(result, tmp_path / "out")
    frame = pd.read_csv(paths["compare.csv"])
    assert set(frame["section"]) == {"forward", "gradients", "trajectory", "timing"}
    text = paths["compare.md"].read_text()
    assert "| conv2 |" in text and "Training trajectory" in text and "Summary" in text
    assert paths["trajectory.png"].stat().st_size > 1000
    report = render(result)
    assert "conv2d_1.kernel" in report and "all engines agree" in report


def test_perturbed_weight_is_found_in_its_layer(backend_name: str) -> None:
    graph = _tiny()
    weights = initial_weights(graph, dtype="float64")
    model = nnspec.compile(graph, backend_name, dtype="float32", device="cpu")
    perturbed = {k: v.astype("float32") for k, v in weights.items()}
    perturbed["conv2.kernel"][1, 0, 1, 2] += 1e-2
    model.set_weights(perturbed)
    result = compare(
        graph,
        models={backend_name: model},
        dtype="float32",
        steps=0,
        data=random_data(graph, 16),
        batch=4,
        timing=False,
    )
    assert result.status(backend_name) == DISAGREE
    assert result.first_divergence(backend_name)["first_forward"] == "conv2"
    forward = result.forward[result.forward["mode"] == "inference"].set_index("layer")
    assert forward.loc["conv2d_1", "ok"] and not forward.loc["conv2", "ok"]
    assert result.exit_code == EXIT_DISAGREE


class _Broken:
    """A compiled model whose forward hook fails (stands for an engine that crashes)."""

    def __init__(self, model: Any):
        self._model = model
        self.dtype, self.device = model.dtype, model.device

    def layer_outputs(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("engine exploded")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def test_an_engine_that_fails_is_reported_not_fatal() -> None:
    graph = _tiny()
    model = _Broken(nnspec.compile(graph, FIRST, dtype="float32", device="cpu"))
    result = compare(graph, models={FIRST: model}, steps=1, data=random_data(graph, 16), batch=4, timing=False)
    assert result.status(FIRST) == ERROR
    assert "engine exploded" in result.summary.iloc[0]["message"]
    assert result.exit_code == EXIT_DISAGREE


def test_cli_exit_codes_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SMALL_SPEC)
    args = [
        "compare",
        str(spec),
        "--backends",
        FIRST,
        "--steps",
        "2",
        "--batch",
        "4",
        "--repeats",
        "1",
        "--epoch-examples",
        "16",
    ]
    assert main(args + ["--out", str(tmp_path / "ok")]) == 0
    out = capsys.readouterr().out
    assert "Forward per layer" in out and "Timing" in out and "Result: all engines agree" in out
    assert {p.name for p in (tmp_path / "ok").iterdir()} >= {
        "compare.csv",
        "compare.md",
        "summary.csv",
        "trajectory.png",
    }

    code = main(args + ["--no-timing", "--tolerance", "1e-300", "--out", str(tmp_path / "strict")])
    assert code == EXIT_DISAGREE == 3
    assert "DISAGREE" in capsys.readouterr().out

    assert main(["compare", str(spec), "--backends", "nosuch", "--out", str(tmp_path / "x")]) == 1


def test_capability_matrix_is_current_in_docs() -> None:
    """docs/backends.md holds the matrix generated from the backends' capabilities();
    regenerate it with `python -m nnspec.compare.matrix`."""
    frame, _ = capability_matrix()
    assert {"layer", "activation", "optimizer", "dtype", "precision", "device", "training"} == set(frame["kind"])
    doc = (ROOT / "docs" / "backends.md").read_text()
    assert current_block(doc) == matrix_markdown(), (
        "docs/backends.md is out of date: run `python -m nnspec.compare.matrix`"
    )
