"""``nnspec diff``: two specs (layers added, removed, changed; shapes, parameters, settings) in text,
Markdown and CSV, two real run directories (metrics per epoch, test scores), and its errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import nnspec
from nnspec.cli import main
from nnspec.tools.spec_diff import diff_specs, match_layers

BASE = """\
nnspec: 1
name: tiny_digits
input: {shape: [8, 8, 1]}
layers:
  - flatten
  - dense: {units: 16, activation: relu}
  - dropout: {rate: 0.1}
  - dense: {units: 10}
  - softmax
train:
  optimizer: {adam: {learning_rate: 0.01}}
  batch_size: 64
  epochs: 2
  seed: 3
data:
  dataset: digits
"""

# dense_1 wider, the dropout removed, a dense of 8 units inserted, batch size and learning rate changed
OTHER = """\
nnspec: 1
name: tiny_digits
input: {shape: [8, 8, 1]}
layers:
  - flatten
  - dense: {units: 32, activation: relu}
  - dense: {units: 8, activation: tanh}
  - dense: {units: 10}
  - softmax
train:
  optimizer: {adam: {learning_rate: 0.05}}
  batch_size: 32
  epochs: 2
  seed: 3
data:
  dataset: digits
"""


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("specs")
    (folder / "a.yaml").write_text(BASE)
    (folder / "b.yaml").write_text(OTHER)
    return folder / "a.yaml", folder / "b.yaml"


def _diff(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["diff", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_layers_are_matched_by_content_then_by_op(specs: tuple[Path, Path]) -> None:
    a, b = (nnspec.load(str(p)) for p in specs)
    pairs = [(x.name if x else None, y.name if y else None) for x, y in match_layers(a.nodes, b.nodes)]
    # the inserted dense takes the default name dense_2, so A's dense_2 (units 10) is B's dense_3
    assert pairs == [
        ("flatten_1", "flatten_1"),
        ("dense_1", "dense_1"),
        ("dropout_1", None),
        (None, "dense_2"),
        ("dense_2", "dense_3"),
        ("softmax_1", "softmax_1"),
    ]
    diff = diff_specs(a, b)
    assert [c.status for c in diff.layers] == ["same", "changed", "removed", "added", "changed", "same"]
    widened = diff.layers[1]
    assert widened.fields == (("units", 16, 32),)
    assert (widened.a.output_shape, widened.b.output_shape) == ((16,), (32,))
    assert (widened.a.num_params, widened.b.num_params) == (64 * 16 + 16, 64 * 32 + 32)
    # the last dense is unchanged in itself; its input width (and so its parameters) changed
    assert diff.layers[4].fields == () and (diff.layers[4].a.num_params, diff.layers[4].b.num_params) == (170, 90)
    assert {s.key: (s.a, s.b) for s in diff.settings} == {
        "train.optimizer.adam.learning_rate": (0.01, 0.05),
        "train.batch_size": (64, 32),
    }


def test_renamed_layer_with_its_own_name_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BASE.replace("- dense: {units: 10}", "- dense: {units: 10, name: head}"))
    (tmp_path / "b.yaml").write_text(BASE.replace("- dense: {units: 10}", "- dense: {units: 10, name: logits}"))
    diff = diff_specs(nnspec.load(str(tmp_path / "a.yaml")), nnspec.load(str(tmp_path / "b.yaml")))
    changed = [c for c in diff.layers if c.status != "same"]
    assert (
        len(changed) == 1
        and changed[0].fields == (("name", "head", "logits"),)
        and changed[0].label == "head -> logits"
    )


def test_text_report(specs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _diff(capsys, str(specs[0]), str(specs[1]))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert "layers: 1 added, 1 removed, 2 changed, 2 the same" in lines
    row = next(line for line in lines if "dense_1 " in line and line.startswith("~"))
    assert "units: 16 -> 32" in row and "(16,) -> (32,)" in row and "1,040 -> 2,080 (+1,040)" in row
    assert any(line.startswith("-") and "dropout_1" in line and "rate=0.1" in line for line in lines)
    assert any(
        line.startswith("+") and "dense_2" in line and "units=8" in line and "activation=tanh" in line for line in lines
    )
    assert any(line.startswith("~") and "dense_2 -> dense_3" in line and "170 -> 90 (-80)" in line for line in lines)
    totals = next(line for line in lines if line.startswith("parameters"))
    assert totals.split() == ["parameters", "1,210", "2,434", "+1,224"]
    setting = next(line for line in lines if line.startswith("train.optimizer.adam.learning_rate"))
    assert setting.split() == ["train.optimizer.adam.learning_rate", "0.01", "0.05", "+0.04"]
    assert lines[-1] == "differences found"
    assert all(line == line.rstrip() for line in lines)  # plain text when not a terminal: no padding, no colour codes
    assert "\x1b[" not in out


def test_markdown_report(specs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _diff(capsys, str(specs[0]), str(specs[1]), "--format", "md")
    assert code == 0
    assert "### layers: 1 added, 1 removed, 2 changed, 2 the same" in out
    assert "| ~ | dense_1 | dense | units: 16 -> 32 | (16,) -> (32,) | 1,040 -> 2,080 (+1,040) |" in out
    assert "| train.batch_size | 64 | 32 | -32 |" in out
    header = "|  | layer | op | changes | output shape | params |"
    assert (
        header in out
        and out.splitlines()[out.splitlines().index(header) + 1] == "| --- | --- | --- | --- | --- | ---: |"
    )


def test_csv_report(specs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _diff(capsys, str(specs[0]), str(specs[1]), "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["section", "item", "key", "a", "b", "delta", "change"]
    index = {(r["section"], r["item"], r["key"]): r for r in rows}
    assert index[("layers", "dense_1", "units")] == {
        "section": "layers",
        "item": "dense_1",
        "key": "units",
        "a": "16",
        "b": "32",
        "delta": "+16",
        "change": "changed",
    }
    assert index[("layers", "dense_1", "params")]["delta"] == "+1040"
    assert (
        index[("layers", "dropout_1", "rate")]["a"] == "0.1"
        and index[("layers", "dropout_1", "rate")]["change"] == "removed"
    )
    assert (
        index[("layers", "dense_2", "units")]["b"] == "8" and index[("layers", "dense_2", "units")]["change"] == "added"
    )
    assert index[("layers", "dense_2 -> dense_3", "params")]["a"] == "170"
    assert index[("settings", "spec", "train.optimizer.adam.learning_rate")]["delta"] == "+0.04"
    assert index[("totals", "model", "output_shape")]["change"] == "same"
    assert not any(
        r["section"] == "layers" and r["item"] in ("flatten_1", "softmax_1") for r in rows
    )  # unchanged layers are left out


def test_same_spec_and_exit_code(specs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _diff(capsys, str(specs[0]), str(specs[0]), "--exit-code")
    assert code == 0
    assert "layers: all 5 the same" in out and "settings: the same" in out and out.splitlines()[-1] == "no differences"
    assert _diff(capsys, str(specs[0]), str(specs[1]), "--exit-code")[0] == 1


@pytest.fixture(scope="module")
def runs(specs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    common = ["run", str(specs[0]), "--backend", "jax", "--device", "cpu", "--quiet"]
    assert main([*common, "--epochs", "1", "--out", str(root / "slow")]) == 0
    assert (
        main(
            [*common, "--epochs", "2", "--set", "train.optimizer.adam.learning_rate=0.05", "--out", str(root / "fast")]
        )
        == 0
    )
    return root / "slow", root / "fast"


def test_run_directories(runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    slow, fast = runs
    code, out, err = _diff(capsys, str(slow), str(fast), "--format", "csv")
    assert code == 0 and err == ""
    rows = list(csv.DictReader(io.StringIO(out)))
    settings = {r["key"]: (r["a"], r["b"]) for r in rows if r["section"] == "settings"}
    assert settings == {"train.optimizer.adam.learning_rate": ("0.01", "0.05"), "train.epochs": ("1", "2")}
    metrics = {(r["item"], r["key"]): r for r in rows if r["section"] == "metrics"}
    assert sorted({e for e, _ in metrics}) == ["1", "2"] and len(metrics) == 8
    first = json.loads((slow / "test.json").read_text())
    second = json.loads((fast / "test.json").read_text())
    import pandas as pd

    a_hist, b_hist = pd.read_csv(slow / "metrics.csv"), pd.read_csv(fast / "metrics.csv")
    loss = metrics[("1", "loss")]
    assert float(loss["a"]) == pytest.approx(a_hist["loss"][0], rel=1e-6) and float(loss["b"]) == pytest.approx(
        b_hist["loss"][0], rel=1e-6
    )
    assert float(loss["delta"]) == pytest.approx(b_hist["loss"][0] - a_hist["loss"][0], rel=1e-5, abs=1e-7)
    assert (
        metrics[("2", "val_accuracy")]["a"] == "" and metrics[("2", "val_accuracy")]["change"] == "added"
    )  # the first run has one epoch
    test = {r["key"]: r for r in rows if r["section"] == "test"}
    assert float(test["accuracy"]["delta"]) == pytest.approx(second["accuracy"] - first["accuracy"], abs=1e-9)
    assert not any(r["section"] == "environment" for r in rows)  # both jax, float32, cpu

    code, out, _ = _diff(capsys, str(slow), str(fast))
    assert code == 0
    assert "environment: the same (jax, float32, cpu)" in out
    assert "training per epoch" in out and "validation per epoch" in out
    test_row = next(line for line in out.splitlines() if line.startswith("accuracy "))
    assert test_row.split() == [
        "accuracy",
        f"{first['accuracy']:.4f}",
        f"{second['accuracy']:.4f}",
        f"{second['accuracy'] - first['accuracy']:+.4f}",
    ]


def test_run_directory_against_itself_and_a_spec(
    runs: tuple[Path, Path], specs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    slow, _ = runs
    code, out, _ = _diff(capsys, str(slow), str(slow), "--exit-code")
    assert code == 0 and out.splitlines()[-1] == "no differences"
    code, out, err = _diff(capsys, str(specs[0]), str(slow))
    assert code == 0 and "only the specs are compared" in err
    # the run's resolved spec differs from its source only in the epochs it was given
    assert [line.split()[0] for line in out.splitlines() if line.startswith("train.")] == ["train.epochs"]


def test_incomplete_run_is_compared_with_a_note(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs[0], copy)
    record = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    (copy / "test.json").unlink()
    code, out, err = _diff(capsys, str(runs[0]), str(copy))
    assert code == 0
    assert f"note: {copy} is interrupted (1 epochs so far)" in err
    assert next(line for line in out.splitlines() if line.startswith("accuracy ")).split()[:2] == [
        "accuracy",
        f"{json.loads((runs[0] / 'test.json').read_text())['accuracy']:.4f}",
    ]


def test_errors_are_clear(specs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _diff(capsys, str(tmp_path / "nope.yaml"), str(specs[0]))
    assert code == 1 and err.strip() == f"nnspec diff: error: {tmp_path / 'nope.yaml'}: no such file or directory"
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "spec.yaml").write_text(BASE)
    code, _, err = _diff(capsys, str(specs[0]), str(tmp_path / "half"))
    assert code == 1 and "not a run directory (it lacks metrics.csv)" in err and "Traceback" not in err
    (tmp_path / "table.csv").write_text("epoch,loss\n1,0.5\n")
    code, _, err = _diff(capsys, str(tmp_path / "table.csv"), str(specs[0]))
    assert code == 2 and "table.csv" in err and "error[" in err
