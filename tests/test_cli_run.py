"""End to end on JAX: ``nnspec run`` writes every contract file; evaluate, predict, plot and backends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nnspec
from nnspec.cli import main
from nnspec.runtime.run_status import RUN_FILES
from nnspec.semantics.history import COLUMNS
from nnspec.semantics.weights import load_weights

SPEC = """\
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
  epochs: 5
  seed: 3
data:
  dataset: digits
  validation_split: 0.1
"""


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def run_dir(spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "one"
    assert (
        main(
            [
                "run",
                str(spec_file),
                "--backend",
                "jax",
                "--device",
                "cpu",
                "--epochs",
                "2",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    return out


def test_run_writes_the_contract_files(run_dir: Path, spec_file: Path) -> None:
    names = {p.name for p in run_dir.iterdir()}
    assert set(RUN_FILES) <= names
    assert names - set(RUN_FILES) == {
        "run.json",
        ".lock",
        "checkpoints",
        "tensorboard",
    }  # status, lock, checkpoints, event files
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch-000001", "epoch-000002"]
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics.columns) == list(COLUMNS)
    assert metrics["epoch"].tolist() == [1, 2]
    assert metrics[["loss", "accuracy", "val_loss", "val_accuracy", "seconds"]].notna().all().all()
    assert metrics["loss"].iloc[1] < metrics["loss"].iloc[0]
    test = json.loads((run_dir / "test.json").read_text())
    assert set(test) == {"loss", "accuracy"} and 0.5 < test["accuracy"] <= 1.0
    env = json.loads((run_dir / "env.json").read_text())
    for key in ("nnspec", "engine_version", "python", "device", "backend", "seed", "compile_seconds"):
        assert key in env, key
    assert (
        env["backend"] == "jax" and env["device"] == "cpu" and env["seed"] == 3 and env["nnspec"] == nnspec.__version__
    )
    assert (run_dir / "history.png").read_bytes()[:4] == b"\x89PNG"
    # spec.yaml is the resolved spec: it loads back to the graph that ran (epochs overridden to 2)
    ran = nnspec.load(str(spec_file), overrides=["train.epochs=2"])
    again = nnspec.load(str(run_dir / "spec.yaml"))
    assert again.replace(source=None, positions={}) == ran.replace(source=None, positions={})
    assert "kernel_init: glorot_uniform" in (run_dir / "spec.yaml").read_text()
    weights = load_weights(run_dir / "weights.safetensors", ran)
    assert weights["dense_1.kernel"].shape == (64, 16)


def test_run_prints_directory_and_score(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(spec_file), "--epochs", "1", "--set", "train.batch_size=128"]) == 0
    captured = capsys.readouterr()
    (made,) = (tmp_path / "runs" / "tiny_digits").iterdir()
    assert made.name.startswith("jax-")
    assert f"run directory: {Path('runs') / 'tiny_digits' / made.name}" in captured.out
    assert "test: loss" in captured.out and "accuracy" in captured.out
    assert "epoch 1/1" in captured.err  # plain progress lines: stderr is not a terminal here
    assert "batch_size: 128" in (made / "spec.yaml").read_text()


def test_evaluate_reproduces_test_score(run_dir: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(spec_file), "--weights", str(run_dir / "weights.safetensors"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    test = json.loads((run_dir / "test.json").read_text())
    assert result["accuracy"] == pytest.approx(test["accuracy"], abs=1e-6)
    assert result["loss"] == pytest.approx(test["loss"], rel=1e-4)


def test_evaluate_with_wrong_weights_file(spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "w.safetensors").write_bytes(b"garbage")
    assert main(["evaluate", str(spec_file), "--weights", str(tmp_path / "w.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "w.safetensors" in err and "Traceback" not in err


def test_predict(run_dir: Path, spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nnspec.data import load_dataset

    ds = load_dataset(nnspec.load(str(spec_file)))
    np.save(tmp_path / "x.npy", ds.x_test[:7])
    out = tmp_path / "p.npy"
    assert (
        main(
            [
                "predict",
                str(spec_file),
                "-w",
                str(run_dir / "weights.safetensors"),
                "--input",
                str(tmp_path / "x.npy"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    probs = np.load(out)
    assert probs.shape == (7, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    printed = capsys.readouterr().out
    assert f"0: class {int(probs[0].argmax())}" in printed
    # one example without the batch axis, and without the channel axis
    np.save(tmp_path / "one.npy", ds.x_test[0, :, :, 0])
    assert (
        main(["predict", str(spec_file), "-w", str(run_dir / "weights.safetensors"), "-i", str(tmp_path / "one.npy")])
        == 0
    )
    assert f"0: class {int(probs[0].argmax())}" in capsys.readouterr().out


def test_predict_bad_inputs(run_dir: Path, spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = str(run_dir / "weights.safetensors")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 7, 8, 1), np.float32))
    assert main(["predict", str(spec_file), "-w", weights, "-i", str(tmp_path / "wrong.npy")]) == 1
    err = capsys.readouterr().err
    assert "wrong.npy" in err and "[7, 8, 1]" in err and "[8, 8, 1]" in err and "Traceback" not in err
    (tmp_path / "text.npy").write_text("not numpy")
    assert main(["predict", str(spec_file), "-w", weights, "-i", str(tmp_path / "text.npy")]) == 1
    assert "text.npy" in capsys.readouterr().err
    assert main(["predict", str(spec_file), "-w", weights, "-i", str(tmp_path / "absent.npy")]) == 1
    assert "absent.npy: no such input file" in capsys.readouterr().err


def test_plot_overlays_runs(run_dir: Path, spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    second = tmp_path / "two"
    assert main(["run", str(spec_file), "--epochs", "3", "--set", "train.seed=4", "--out", str(second), "-q"]) == 0
    image = tmp_path / "cmp.png"
    assert main(["plot", str(run_dir), str(second), "-o", str(image)]) == 0
    assert image.read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "tiny_digits (jax) one: 2 epochs" in out and "tiny_digits (jax) two: 3 epochs" in out
    assert main(["plot", str(tmp_path / "nothing"), "-o", str(image)]) == 1


def test_shape_mismatch_is_a_diagnostic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the shape of npz data is known only once the file is read: the data loader reports it, positioned
    np.savez(tmp_path / "d.npz", x=np.zeros((50, 8, 8, 1), np.float32), y=np.arange(50) % 10)
    spec = tmp_path / "bad.yaml"
    text = SPEC.replace("shape: [8, 8, 1]", "shape: [64]").replace("  - flatten\n", "")
    spec.write_text(text.replace("dataset: digits", "dataset: npz\n  path: d.npz"))
    assert main(["run", str(spec), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:3:16: error[E0505]" in err and "[64]" in err and "[8, 8, 1]" in err
    assert not (tmp_path / "r").exists()


def test_missing_data_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NNSPEC_OFFLINE", "1")
    spec = tmp_path / "m.yaml"
    spec.write_text(
        SPEC.replace("[8, 8, 1]", "[28, 28, 1]").replace(
            "dataset: digits", f"dataset: mnist\n  path: {tmp_path / 'no-data'}"
        )
    )
    assert main(["run", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "no-data" in err and "Traceback" not in err


def test_unknown_backend(spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(spec_file), "--backend", "jaxx"]) == 1
    assert "did you mean 'jax'" in capsys.readouterr().err


def test_backends_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(nnspec.backends.BUILTIN) <= set(rows)
    assert rows["jax"]["available"] and "cpu" in rows["jax"]["devices"] and rows["jax"]["version"]
    assert main(["backends"]) == 0
    assert "jax" in capsys.readouterr().out


GRAPH_SPEC = """\
nnspec: 1.1
name: tiny_residual
input: {shape: [8, 8, 1]}
layers:
  - conv2d: {filters: 4, kernel: 3, padding: same, use_bias: false, name: stem}
  - batch_norm: {name: bn}
  - activation: {activation: relu, name: relu}
  - conv2d: {filters: 4, kernel: 3, padding: same, name: branch}
  - add: {inputs: [branch, relu], name: join}
  - global_avg_pool2d
  - dense: {units: 10}
  - softmax
train: {batch_size: 64, epochs: 2, seed: 1}
data: {dataset: digits}
"""


def test_run_of_a_graph_spec_saves_running_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "residual.yaml"
    spec.write_text(GRAPH_SPEC)
    out = tmp_path / "run"
    assert main(["run", str(spec), "--backend", "jax", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    graph = nnspec.load(str(spec))
    weights = load_weights(out / "weights.safetensors", graph)
    assert set(weights) == set(graph.weight_keys())
    assert {"bn.gamma", "bn.beta", "bn.moving_mean", "bn.moving_variance"} <= set(weights)
    assert not np.allclose(weights["bn.moving_mean"], 0.0), "training moved the running mean"
    # the resolved spec keeps the wiring, and evaluating the saved weights (running statistics included)
    # reproduces the run's test score
    again = nnspec.load(str(out / "spec.yaml"))
    assert again.node("join").inputs == ("branch", "relu")
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(out / "spec.yaml"),
                "--weights",
                str(out / "weights.safetensors"),
                "--backend",
                "tensorflow",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    test = json.loads((out / "test.json").read_text())
    assert f"{test['accuracy']:.4f}" in printed
