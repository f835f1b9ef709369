"""Checkpoints and resuming: a run stopped and resumed ends exactly where the uninterrupted run does.

Every engine, float32 and float64, on a graph with dropout (masks keyed by the optimiser step) and batch
norm (running statistics as state): two epochs, a checkpoint written to disk and read back into a freshly
compiled model, two more epochs -- against four epochs in one go. Bit-identical weights, running
statistics, optimiser slots and history (all but the wall-clock column). A checkpoint written by JAX
resumes on TensorFlow from the command line and agrees with the JAX run within the float64 tolerance of
``nnspec compare``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import nnspec
from nnspec.backends import get_backend
from nnspec.cli import main
from nnspec.data import load_dataset
from nnspec.runtime.checkpoints import latest_checkpoint, list_checkpoints, write_checkpoint

SPEC = """\
nnspec: 1.1
name: robust
input: {shape: [8, 8, 1]}
layers:
  - conv2d: {filters: 4, kernel: 3, activation: relu}
  - batch_norm: {name: bn}
  - flatten
  - dropout: 0.25
  - dense: {units: 10}
  - softmax
train:
  epochs: 4
  batch_size: 64
  seed: 5
  optimizer: {adam: {learning_rate: 0.01}}
data: {dataset: digits}
"""

ENGINES = ("jax", "tensorflow", "theano", "keras")


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "robust.yaml"
    path.write_text(SPEC)
    return path


def _same_history(a, b) -> None:
    columns = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert a[columns].to_numpy().tolist() == b[columns].to_numpy().tolist()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("engine", ENGINES)
def test_resumed_run_is_bit_identical(engine: str, dtype: str, spec_path: Path, tmp_path: Path) -> None:
    graph = nnspec.load(spec_path).replace(dtype=dtype)
    dataset = load_dataset(graph)
    backend = get_backend(engine)

    straight = backend.compile(graph, device="cpu", dtype=dtype)
    straight.fit(dataset, epochs=4, progress=False)

    first = backend.compile(graph, device="cpu", dtype=dtype)
    first.fit(dataset, epochs=2, progress=False)
    write_checkpoint(tmp_path, first.get_training_state(), {"backend": engine})
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint is not None and checkpoint.epoch == 2
    state, record = checkpoint.read()
    assert record["backend"] == engine and state.step == first.step and state.epochs_done == 2

    resumed = backend.compile(graph, device="cpu", dtype=dtype)
    resumed.set_training_state(state)
    resumed.fit(dataset, epochs=2, progress=False)

    assert resumed.step == straight.step
    want, got = straight.get_weights(), resumed.get_weights()
    assert sorted(got) == sorted(want) and "bn.moving_mean" in got
    for key in want:
        assert np.array_equal(got[key], want[key]), key
    want_slots, got_slots = straight.optimizer_state(), resumed.optimizer_state()
    for key in want_slots:
        assert np.array_equal(got_slots[key], want_slots[key]), key
    _same_history(resumed.history, straight.history)


def _weights(run: Path) -> dict[str, np.ndarray]:
    return load_file(str(run / "weights.safetensors"))


def test_checkpoint_from_jax_resumes_on_tensorflow(spec_path: Path, tmp_path: Path) -> None:
    common = ["--device", "cpu", "--dtype", "float64", "--quiet"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["run", str(spec_path), "--backend", "jax", "--out", str(straight), *common]) == 0
    assert main(["run", str(spec_path), "--backend", "jax", "--epochs", "2", "--out", str(split), *common]) == 0
    assert main(["run", "--resume", str(split), "--backend", "tensorflow", "--epochs", "4", *common]) == 0

    status = json.loads((split / "run.json").read_text())
    assert status["status"] == "complete" and status["backend"] == "tensorflow" and status["resumed_from"] == 2
    assert [c.epoch for c in list_checkpoints(split)] == [3, 4]
    want, got = _weights(straight), _weights(split)
    assert sorted(got) == sorted(want)
    for key in want:
        scale = max(float(np.max(np.abs(want[key]))), 1e-12)
        assert float(np.max(np.abs(got[key] - want[key]))) / scale < 1e-8, key
    assert not np.array_equal(
        got["dense_1.kernel"],
        load_file(str(split / "checkpoints" / "epoch-000003" / "state.safetensors"))["weights/dense_1.kernel"],
    )


def test_resume_refuses_a_complete_run_and_continues_it_with_more_epochs(
    spec_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["run", str(spec_path), "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--quiet"]) == 1  # the run's spec says 1 epoch: it is complete
    err = capsys.readouterr().err
    assert "complete (1 epochs)" in err and "--epochs N" in err
    assert main(["run", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    metrics = (out / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 3 and json.loads((out / "run.json").read_text())["status"] == "complete"


def test_resume_needs_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--resume", str(tmp_path / "absent")]) == 1
    assert "not a run directory" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path), "specs/digits_mlp.yaml"]) == 1
    assert "leave SPEC out" in capsys.readouterr().err
