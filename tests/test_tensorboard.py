"""TensorBoard event files of ``nnspec run``, read back with TensorBoard's own reader (EventAccumulator)."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import nnspec
from nnspec.cli import main
from nnspec.compiler.ir import Graph, OptimizerConfig, ScheduleConfig, TrainConfig
from nnspec.compiler.summary import format_summary
from nnspec.runtime.tensorboard import FOLDER, SUMMARY_TAG, RunLog, learning_rate_at
from nnspec.semantics.history import COLUMNS

SPEC = """\
nnspec: 1
name: tb_digits
input: {shape: [8, 8, 1]}
layers:
  - flatten
  - dense: {units: 16, activation: relu}
  - dense: {units: 10}
  - softmax
train:
  optimizer: {sgd: {learning_rate: 0.1}}
  schedule: {exponential: {decay_steps: 10}}
  batch_size: 64
  epochs: 3
  seed: 3
data:
  dataset: digits
  validation_split: 0.1
"""
#: digits: 1,437 training examples less 10 % for validation, in batches of 64
STEPS_PER_EPOCH = 20


def read_events(folder: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[tuple[int, str]]]]:
    """Every scalar and text series in ``folder``, as TensorBoard's reader loads them (nothing sampled away)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    scalars: dict[str, list[tuple[int, float]]] = {}
    texts: dict[str, list[tuple[int, str]]] = {}
    for tag in acc.Tags()["tensors"]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        for event in acc.Tensors(tag):
            value = make_ndarray(event.tensor_proto)
            if plugin == "scalars":
                scalars.setdefault(tag, []).append((event.step, float(value)))
            else:
                assert plugin == "text", plugin
                texts.setdefault(tag, []).append((event.step, value.item().decode()))
    return scalars, texts


def assert_matches_metrics(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every metrics.csv value is a TensorBoard scalar at step = epoch (float32 in the event file)."""
    scalars, _ = read_events(run / FOLDER)
    metrics = pd.read_csv(run / "metrics.csv")
    assert set(scalars) == {*COLUMNS[1:], "learning_rate"}
    for column in COLUMNS[1:]:
        assert [step for step, _ in scalars[column]] == metrics["epoch"].tolist(), column
        assert [value for _, value in scalars[column]] == pytest.approx(metrics[column].tolist(), rel=1e-6), column
    return scalars


def _load(tmp_path: Path, text: str = SPEC) -> Graph:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return nnspec.load(str(path))


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tb.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def finished_run(spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-epoch run that kept all its checkpoints."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert (
        main(
            [
                "run",
                str(spec_file),
                "--backend",
                "jax",
                "--device",
                "cpu",
                "--out",
                str(out),
                "--quiet",
                "--set",
                "train.checkpoint.keep=3",
            ]
        )
        == 0
    )
    return out


def test_run_logs_every_metric_the_learning_rate_and_the_summary(finished_run: Path) -> None:
    out = finished_run
    assert len(list((out / FOLDER).glob("events.out.tfevents.*"))) == 1
    scalars = assert_matches_metrics(out)
    assert [step for step, _ in scalars["loss"]] == [1, 2, 3]
    # exponential decay, 0.96 every 10 steps: the rate the next step takes, after 20, 40, 60 steps
    assert [value for _, value in scalars["learning_rate"]] == pytest.approx(
        [0.1 * 0.96 ** (2 * e) for e in (1, 2, 3)], rel=1e-6
    )
    _, texts = read_events(out / FOLDER)
    ((step, text),) = texts[SUMMARY_TAG]
    graph = nnspec.load(str(out / "spec.yaml"))
    assert step == 0 and text == f"```\n{format_summary(graph)}\n```"
    assert "dense_1" in text and "total" in text


def test_no_tensorboard_writes_no_event_files(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", str(spec_file), "--epochs", "1", "--out", str(out), "--quiet", "--no-tensorboard"]) == 0
    assert (out / "metrics.csv").is_file() and not (out / FOLDER).exists()


def test_resumed_run_keeps_the_earlier_epochs_and_replaces_those_it_trains_again(
    finished_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out, ignore=shutil.ignore_patterns(".lock"))
    # as if the process had died after logging epoch 3 but before its checkpoint: the resumed run trains
    # epoch 3 again from the checkpoint of epoch 2, then epoch 4
    shutil.rmtree(out / "checkpoints" / "epoch-000003")
    first = assert_matches_metrics(out)
    (earlier,) = (out / FOLDER).glob("events.out.tfevents.*")
    assert main(["run", "--resume", str(out), "--epochs", "4", "--quiet"]) == 0
    (now,) = (out / FOLDER).glob("events.out.tfevents.*")  # epochs 1-2 copied over, the earlier file gone
    assert now != earlier
    scalars = assert_matches_metrics(out)
    assert [step for step, _ in scalars["loss"]] == [1, 2, 3, 4]  # epoch 3 once: the older record dropped
    assert scalars["loss"][:2] == first["loss"][:2] and scalars["learning_rate"][:2] == first["learning_rate"][:2]
    _, texts = read_events(out / FOLDER)
    assert [step for step, _ in texts[SUMMARY_TAG]] == [0]  # written by the first run only


def test_run_without_validation_logs_no_validation_scalars(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "run", _load(tmp_path, SPEC.replace("validation_split: 0.1", "validation_split: 0.0")), 0)
    log.epoch(
        {"epoch": 1, "loss": 2.0, "accuracy": 0.25, "val_loss": math.nan, "val_accuracy": math.nan, "seconds": 0.5},
        optimizer_step=22,
    )
    log.close()
    scalars, texts = read_events(tmp_path / "run" / FOLDER)
    assert scalars == {
        "loss": [(1, 2.0)],
        "accuracy": [(1, 0.25)],
        "seconds": [(1, 0.5)],
        "learning_rate": [(1, pytest.approx(0.1 * 0.96**2.2))],
    }
    assert list(texts) == [SUMMARY_TAG]


def test_an_unwritable_log_is_reported_and_training_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / FOLDER).write_text("a file where the folder should be")
    log = RunLog(run, _load(tmp_path), 0)
    log.epoch(
        {"epoch": 1, "loss": 2.0, "accuracy": 0.25, "val_loss": 2.1, "val_accuracy": 0.2, "seconds": 0.5},
        optimizer_step=20,
    )
    log.close()
    err = capsys.readouterr().err
    assert f"{run / FOLDER}: cannot write the TensorBoard log" in err and "training goes on without it" in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "params", "step", "expected"),
    [
        ("constant", {}, 500, 0.1),
        ("step", {"every": 100, "factor": 0.5}, 250, 0.1 * 0.5**2),
        ("exponential", {"decay_steps": 10, "decay_rate": 0.5}, 15, 0.1 * 0.5**1.5),
        ("exponential", {"decay_steps": 10, "decay_rate": 0.5, "staircase": True}, 15, 0.1 * 0.5),
        ("cosine", {"decay_steps": 100, "alpha": 0.1}, 50, 0.1 * (0.9 * 0.5 + 0.1)),
        ("cosine", {"decay_steps": 100}, 400, 0.0),
    ],
)
def test_learning_rate_is_the_schedules_on_the_host(name: str, params: dict, step: int, expected: float) -> None:
    train = TrainConfig(optimizer=OptimizerConfig("sgd", {"learning_rate": 0.1}), schedule=ScheduleConfig(name, params))
    assert learning_rate_at(train, step) == pytest.approx(expected, abs=1e-12)


def test_the_writer_imports_no_engine(tmp_path: Path) -> None:
    _load(tmp_path)
    script = f"""
import sys
import nnspec
from nnspec.runtime.tensorboard import RunLog
graph = nnspec.load({str(tmp_path / "spec.yaml")!r})
log = RunLog({str(tmp_path / "run")!r}, graph, 0)
log.epoch({{"epoch": 1, "loss": 2.0, "accuracy": 0.25, "val_loss": 2.1, "val_accuracy": 0.2, "seconds": 0.5}}, 20)
log.close()
print(sorted(m for m in ("tensorflow", "jax", "theano", "pytensor", "keras", "torch") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    assert len(list((tmp_path / "run" / FOLDER).glob("events.out.tfevents.*"))) == 1
