"""Runs that survive: output folders, locks, failed writes, divergence, early stopping, signals, kill -9.

Real runs on real data (scikit-learn's digits) through the real CLI, in this process or as ``nnspec``
subprocesses that receive real signals.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

import nnspec
from nnspec.backends import get_backend
from nnspec.cli import main
from nnspec.compiler.ir import EarlyStoppingConfig
from nnspec.data import load_dataset
from nnspec.errors import OutputError
from nnspec.runtime.checkpoints import list_checkpoints, read_checkpoint
from nnspec.runtime.early_stopping import EarlyStopping
from nnspec.runtime.run_status import RUN_FILES, claim, read_status
from nnspec.runtime.training_run import train_in_directory

TINY = """\
nnspec: 1
name: tiny
input: {shape: [8, 8, 1]}
layers: [flatten, {dense: {units: 32, activation: relu}}, {dropout: 0.2}, {dense: {units: 10}}, softmax]
train: {epochs: 2, batch_size: 32, seed: 1}
data: {dataset: digits}
"""

#: Slow enough per epoch (batch size 1) that a signal lands in the middle of the run.
SLOW = """\
nnspec: 1
name: slow
input: {shape: [8, 8, 1]}
layers:
  - flatten
  - dense: {units: 512, activation: relu}
  - dropout: 0.2
  - dense: {units: 512, activation: relu}
  - dense: {units: 10}
  - softmax
train: {epochs: 30, batch_size: 4, seed: 2, optimizer: {sgd: {learning_rate: 0.01}}}
data: {dataset: digits}
"""


def _strict_json(path: Path) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"{path} holds the non-JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


# ---- output folders ----------------------------------------------------------------------------------


def test_existing_run_is_refused_without_overwrite(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["run", str(tiny), "--out", str(out), "--quiet"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["run", str(tiny), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--overwrite" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert main(["run", str(tiny), "--out", str(out), "--overwrite", "--quiet", "--set", "train.epochs=1"]) == 0
    assert len((out / "metrics.csv").read_text().splitlines()) == 2
    assert [c.epoch for c in list_checkpoints(out)] == [1]


def test_folder_of_other_files_is_never_cleared(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    assert main(["run", str(tiny), "--out", str(folder), "--overwrite", "--quiet"]) == 1
    assert "not an nnspec run" in capsys.readouterr().err
    assert (folder / "thesis.tex").read_text() == "precious"


def test_out_naming_a_file_fails_before_training(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert main(["run", str(tiny), "--out", str(target)]) == 1
    err = capsys.readouterr().err
    assert "is not a directory" in err and "epoch 1" not in err
    assert target.read_text() == "x"


def test_two_runs_cannot_share_a_folder(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shared"
    with claim(out) as held:
        held.set_status("running")
        assert main(["run", str(tiny), "--out", str(out), "--overwrite", "--quiet"]) == 1
        err = capsys.readouterr().err
        assert "another nnspec run is writing" in err and f"process {os.getpid()}" in err
        assert read_status(out) == "running"
    assert read_status(out) == "interrupted"  # marked running, and nobody holds it any more


def test_failed_write_after_training_rescues_the_weights(tiny: Path, tmp_path: Path) -> None:
    graph = nnspec.load(tiny)
    dataset = load_dataset(graph)
    model = get_backend("jax").compile(graph, device="cpu")
    out = tmp_path / "run"

    def replace_folder_by_a_file(history: Any, test: Any) -> dict[str, Any]:
        shutil.rmtree(out)  # the folder vanishes under the run (a full disk or a cleaner would fail similarly)
        out.write_text("not a folder any more")
        return {}

    with claim(out) as run:
        with pytest.raises(OutputError) as caught:
            train_in_directory(model, dataset, run, progress=False, finish=replace_folder_by_a_file)
    rescue = caught.value.rescue
    assert rescue is not None and rescue in str(caught.value)
    saved = load_file(rescue)
    for key, value in model.get_weights().items():
        assert np.array_equal(saved[key], value), key
    os.unlink(rescue)


# ---- divergence ------------------------------------------------------------------------------------


def test_divergence_stops_with_exit_3_and_names_the_last_good_checkpoint(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    # epoch 1 (40 steps) trains at a tame rate; the step schedule then multiplies it by 1e20, and the product
    # of two such weight matrices overflows the logits within a few steps of epoch 2
    sets = [
        "--set",
        "train.optimizer={sgd: {learning_rate: 0.05}}",
        "--set",
        "train.schedule={step: {every: 40, factor: 1.0e+20}}",
        "--set",
        "train.epochs=4",
    ]
    assert main(["run", str(tiny), "--out", str(out), "--quiet", *sets]) == 3
    err = capsys.readouterr().err
    assert "training diverged" in err and "at epoch 2, step" in err and "Traceback" not in err
    status = _strict_json(out / "run.json")
    assert status["status"] == "diverged" and read_status(out) == "diverged"
    good = list_checkpoints(out)
    assert [c.epoch for c in good] == [1] and str(good[-1].path) in err
    state, _ = read_checkpoint(good[-1].path)
    assert all(np.isfinite(v).all() for v in state.weights.values())
    assert not (out / "test.json").exists() and not (out / "weights.safetensors").exists()


def test_on_divergence_continue_trains_on_and_writes_valid_json(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = ["--set", "train.optimizer={sgd: {learning_rate: 1.0e+30}}", "--set", "train.on_divergence=continue"]
    assert main(["run", str(tiny), "--out", str(out), "--quiet", *sets]) == 0
    test = _strict_json(out / "test.json")
    assert test["loss"] is None  # NaN is written as null, never as a bare NaN token
    for name in ("env.json", "run.json"):
        _strict_json(out / name)
    for checkpoint in list_checkpoints(out):
        _strict_json(checkpoint.path / "checkpoint.json")


# ---- early stopping --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("patience,min_delta", [(0, 0.0), (1, 0.0), (2, 0.05), (3, 0.0)])
def test_early_stopping_stops_where_keras_does(mode: str, patience: int, min_delta: float) -> None:
    import keras

    rng = np.random.default_rng(patience * 10 + len(mode))
    for trial in range(20):
        values = rng.normal(1.0, 0.3, size=15).round(2)
        keras_cb = keras.callbacks.EarlyStopping(monitor="val_loss", mode=mode, patience=patience, min_delta=min_delta)

        class Holder:
            stop_training = False

        keras_cb.set_model(Holder())  # type: ignore[arg-type]
        keras_cb.on_train_begin()
        keras_stop = None
        for epoch, value in enumerate(values):
            keras_cb.on_epoch_end(epoch, {"val_loss": float(value)})
            if keras_cb.model.stop_training:
                keras_stop = epoch + 1
                break
        ours = EarlyStopping(EarlyStoppingConfig(monitor="val_loss", mode=mode, patience=patience, min_delta=min_delta))
        our_stop = None
        for epoch, value in enumerate(values, start=1):
            if ours.update({"epoch": epoch, "val_loss": float(value)})[1]:
                our_stop = epoch
                break
        assert our_stop == keras_stop, (trial, values.tolist())
        assert ours.best_epoch == keras_cb.best_epoch + 1


def test_early_stopping_restores_the_best_epoch(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    # the training loss falls every epoch, so with mode max the first epoch stays the best
    sets = [
        "--set",
        "train.epochs=6",
        "--set",
        "train.early_stopping={monitor: loss, mode: max, patience: 1, restore_best: true}",
        "--set",
        "train.checkpoint.keep=1",
    ]
    assert main(["run", str(tiny), "--out", str(out), *sets]) == 0
    err = capsys.readouterr().err
    assert "early stopping after epoch 2" in err
    assert len((out / "metrics.csv").read_text().splitlines()) == 3
    env = _strict_json(out / "env.json")
    assert (
        env["early_stopping"]["best_epoch"] == 1
        and env["early_stopping"]["stopped_epoch"] == 2
        and env["early_stopping"]["restored_best"]
    )
    epochs = [c.epoch for c in list_checkpoints(out)]
    assert epochs == [1, 2]  # keep 1, and the best is never pruned
    best, _ = read_checkpoint(out / "checkpoints" / "epoch-000001")
    final = load_file(str(out / "weights.safetensors"))
    for key, value in best.weights.items():
        assert np.array_equal(final[key], value), key


# ---- signals and kill -9 ---------------------------------------------------------------------------


def _nnspec(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "nnspec.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _wait_for_epochs(out: Path, n: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = out / "metrics.csv"
        if metrics.is_file() and len(metrics.read_text().splitlines()) > n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"no {n} epochs within {timeout} s")


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slow") / "slow.yaml"
    path.write_text(SLOW)
    return path


@pytest.fixture(scope="module")
def straight_run(slow: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("straight") / "run"
    start = time.monotonic()
    proc = _nnspec("run", str(slow), "--out", str(out), "--quiet", "--set", "train.epochs=8")
    assert proc.wait(timeout=300) == 0, proc.communicate()
    return out, time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_and_exits_then_resume_matches(
    signum: int, code: int, slow: Path, straight_run: tuple[Path, float], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = _nnspec("run", str(slow), "--out", str(out), "--set", "train.epochs=8")
    _wait_for_epochs(out, 2, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"resume with: nnspec run --resume {out}" in err and "Traceback" not in err
    status = _strict_json(out / "run.json")
    assert status["status"] == "interrupted" and status["signal"] == signal.Signals(signum).name
    done = status["epochs_done"]
    assert 2 <= done < 8 and list_checkpoints(out)[-1].epoch == done
    resumed = _nnspec("run", "--resume", str(out), "--quiet")
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    want, got = load_file(str(straight_run[0] / "weights.safetensors")), load_file(str(out / "weights.safetensors"))
    for key in want:
        assert np.array_equal(got[key], want[key]), key


@pytest.mark.slow
def test_second_signal_exits_at_once(slow: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # Keras steps from Python, so a handler runs between two steps, in the middle of an epoch
    proc = _nnspec("run", str(slow), "--out", str(out), "--backend", "keras")
    _wait_for_epochs(out, 1, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # wait until the first signal is acknowledged, then send the second
        seen.append(line)
        if "SIGINT received" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    err = "".join(seen) + err
    assert proc.returncode == 130 and "exiting now, without saving" in err, err
    assert "resume with" not in err
    assert read_status(out) == "interrupted"


def _check_killed_run(out: Path) -> str:
    """The invariants a run directory keeps whenever it is killed: returns its status."""
    status = read_status(out) if out.exists() else "absent"
    for checkpoint in list_checkpoints(out) if out.exists() else []:
        read_checkpoint(checkpoint.path)  # every checkpoint that looks complete is complete
    if status == "complete":
        for name in RUN_FILES:
            assert (out / name).is_file(), name
        _strict_json(out / "test.json")
        nnspec.load(out / "spec.yaml")
        load_file(str(out / "weights.safetensors"))
    elif out.exists() and (out / "run.json").exists():
        assert _strict_json(out / "run.json")["status"] == "running"
        assert status == "interrupted"
    return status


@pytest.mark.slow
def test_kill_9_at_random_moments_never_leaves_a_corrupt_run(
    slow: Path, straight_run: tuple[Path, float], tmp_path: Path
) -> None:
    rng = random.Random(11)
    span = straight_run[1]
    seen = set()
    for i, fraction in enumerate([0.1, 0.5, 0.95, 1.2] + [rng.uniform(0.2, 1.0) for _ in range(2)]):
        out = tmp_path / f"run{i}"
        proc = _nnspec("run", str(slow), "--out", str(out), "--quiet", "--set", "train.epochs=8")
        time.sleep(span * fraction)
        proc.kill()
        proc.wait()
        status = _check_killed_run(out)
        seen.add(status)
        if status == "interrupted" and list_checkpoints(out) and "resumed" not in seen:
            resumed = _nnspec("run", "--resume", str(out), "--quiet")
            assert resumed.wait(timeout=300) == 0, resumed.communicate()
            want, got = (
                load_file(str(straight_run[0] / "weights.safetensors")),
                load_file(str(out / "weights.safetensors")),
            )
            assert all(np.array_equal(got[k], want[k]) for k in want)
            seen.add("resumed")
    assert "interrupted" in seen and "resumed" in seen


# ---- the last line of defence ------------------------------------------------------------------------


def test_unexpected_exception_is_one_line_unless_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nnspec.commands import backends_cmd

    def broken(args: Any) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(backends_cmd, "run", broken)
    assert main(["backends"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" in err and "--debug" in err and "Traceback" not in err
    assert main(["--debug", "backends"]) == 1
    assert "Traceback" in capsys.readouterr().err
