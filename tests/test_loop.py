"""The loop driver, history, progress output, run-directory writer and plots, on the real JAX engine
(its hooks wrapped to record what the driver asks of them)."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import nnspec
from nnspec.backends.base import CompiledModel
from nnspec.compiler.ir import DataConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.data import Dataset
from nnspec.errors import DataError
from nnspec.runtime.history import read_metrics, write_metrics
from nnspec.runtime.loop import epoch_order, fit
from nnspec.runtime.plots import plot_runs
from nnspec.runtime.progress import Progress
from nnspec.runtime.run_status import RUN_FILES
from nnspec.runtime.rundir import default_run_dir, read_run, write_run
from nnspec.semantics.history import COLUMNS
from nnspec.semantics.weights import load_weights


class Recorder:
    """Wraps a real compiled model's engine hooks and records what the loop driver asks of them."""

    def __init__(self, model: CompiledModel):
        self.model = model
        self.puts: list[np.ndarray] = []
        self.epochs: list[tuple[np.ndarray, int, tuple[float, float]]] = []
        self.evaluations: list[tuple[float, float]] = []
        put, run_epoch, evaluate = model.put, model.run_epoch, model.evaluate_arrays

        def recording_put(array: np.ndarray) -> Any:
            self.puts.append(np.array(array))
            return put(array)

        def recording_run_epoch(x: Any, y: Any, order: np.ndarray, batch_size: int) -> tuple[float, float]:
            result = run_epoch(x, y, order, batch_size)
            self.epochs.append((np.array(order), batch_size, result))
            return result

        def recording_evaluate(x: Any, y: Any) -> tuple[float, float]:
            result = evaluate(x, y)
            self.evaluations.append(result)
            return result

        model.put = recording_put  # type: ignore[method-assign]
        model.run_epoch = recording_run_epoch  # type: ignore[method-assign]
        model.evaluate_arrays = recording_evaluate  # type: ignore[method-assign]


def recorded(g: Any) -> Recorder:
    """A real JAX model of ``g`` whose engine calls are recorded."""
    return Recorder(nnspec.compile(g, backend="jax"))


def graph(epochs: int = 3, batch_size: int = 4, seed: int = 7):
    return make_graph(
        (5,),
        [("dense", {"units": 3}), "softmax"],
        name="toy",
        train=TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed),
        data=DataConfig("npz"),
    )


def dataset(n_train: int = 10, n_val: int = 3) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_train + n_val + 4, 5)).astype(np.float32)
    y = rng.integers(0, 3, len(x)).astype(np.int32)
    return Dataset(
        "toy", x[:n_train], y[:n_train], x[n_train : n_train + n_val], y[n_train : n_train + n_val], x[-4:], y[-4:], 3
    )


def test_epoch_order_contract() -> None:
    order = epoch_order(3, 2, 50)
    assert order.dtype == np.int32
    np.testing.assert_array_equal(order, np.random.default_rng([3, 2]).permutation(50))


def test_fit_history_and_orders() -> None:
    rec = recorded(graph())
    history = fit(rec.model, dataset(), progress=False)
    assert list(history.columns) == list(COLUMNS)
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["loss"].tolist() == [pytest.approx(r[0]) for _, _, r in rec.epochs]
    assert history["accuracy"].tolist() == [pytest.approx(r[1]) for _, _, r in rec.epochs]
    assert history["val_loss"].tolist() == [pytest.approx(r[0]) for r in rec.evaluations]
    assert history["val_accuracy"].tolist() == [pytest.approx(r[1]) for r in rec.evaluations]
    assert np.isfinite(history["loss"]).all() and (history["loss"] > 0).all()
    assert (history["seconds"] >= 0).all()
    assert len(rec.puts) == 4  # train x, y, validation x, y: once
    assert rec.puts[0].dtype == np.float32 and rec.puts[1].dtype == np.int32
    for e, (order, batch, _) in enumerate(rec.epochs):
        np.testing.assert_array_equal(order, epoch_order(7, e, 10))
        assert batch == 4
    assert rec.model.step == 3 * (10 // 4)


def test_fit_continues_epoch_numbering() -> None:
    rec, ds = recorded(graph()), dataset()
    first = fit(rec.model, ds, epochs=2, progress=False)
    second = fit(rec.model, ds, epochs=2, progress=False)
    assert first["epoch"].tolist() == [1, 2] and second["epoch"].tolist() == [3, 4]
    assert rec.model.history["epoch"].tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(rec.epochs[3][0], epoch_order(7, 3, 10))
    assert len(rec.puts) == 4  # the same data set is not copied to the device again


def test_fit_twice_equals_fit_once() -> None:
    ds = dataset()
    split, whole = recorded(graph()), recorded(graph())
    fit(split.model, ds, epochs=1, progress=False)
    fit(split.model, ds, epochs=2, progress=False)
    fit(whole.model, ds, epochs=3, progress=False)
    for key, value in whole.model.get_weights().items():
        np.testing.assert_array_equal(split.model.get_weights()[key], value)


def test_fit_without_validation_and_large_batch() -> None:
    rec = recorded(graph(epochs=1, batch_size=64))
    history = fit(rec.model, dataset(n_val=0), progress=False)
    assert math.isnan(history["val_loss"][0]) and math.isnan(history["val_accuracy"][0])
    assert rec.evaluations == [] and len(rec.puts) == 2
    assert rec.epochs[0][1] == 10  # batch size clipped to the training set


def test_fit_via_compiled_model_method() -> None:
    rec = recorded(graph(epochs=1))
    history = rec.model.fit(dataset(), progress=False)
    assert list(history.columns) == list(COLUMNS)
    assert len(rec.epochs) == 1


def test_fit_refuses_empty_training_split() -> None:
    with pytest.raises(DataError, match="no training examples"):
        fit(recorded(graph()).model, dataset(n_train=0), progress=False)


def test_progress_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    fit(recorded(graph(epochs=2)).model, dataset(), progress=None)
    err = capsys.readouterr().err.splitlines()
    assert (
        len(err) == 2
        and err[0].startswith("epoch 1/2  loss ")
        and "val_loss" in err[0]
        and err[1].startswith("epoch 2/2")
    )
    fit(recorded(graph(epochs=2)).model, dataset(), progress=False)
    assert capsys.readouterr().err == ""


def test_progress_bar() -> None:
    stream = io.StringIO()
    fit(recorded(graph(epochs=2)).model, dataset(), progress=Progress(2, "bar", stream))
    text = stream.getvalue()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # without the terminal's colour and cursor codes
    assert "\r" in text and "/2 steps" in plain and "epoch 2/2  loss " in plain and text.endswith("\x1b[?25h")


def test_metrics_csv_round_trip(tmp_path: Path) -> None:
    history = fit(recorded(graph()).model, dataset(), progress=False)
    write_metrics(history, tmp_path / "metrics.csv")
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    back = read_metrics(tmp_path / "metrics.csv")
    pd.testing.assert_frame_equal(back, history, check_exact=False, rtol=1e-7)
    (tmp_path / "bad.csv").write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(DataError, match="lacks column"):
        read_metrics(tmp_path / "bad.csv")


def test_write_and_read_run_directory(tmp_path: Path) -> None:
    model = recorded(graph()).model
    history = fit(model, dataset(), progress=False)
    out = write_run(tmp_path / "run", model, history, {"loss": 0.5, "accuracy": 0.8}, {"backend": "jax", "seed": 7})
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    assert json.loads((out / "test.json").read_text()) == {"loss": 0.5, "accuracy": 0.8}
    assert (out / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(load_weights(out / "weights.safetensors", model.graph)) == {"dense_1.kernel", "dense_1.bias"}
    assert "name: toy" in (out / "spec.yaml").read_text()
    record = read_run(out)
    assert record.label == "toy (jax)" and len(record.history) == 3 and record.test == {"loss": 0.5, "accuracy": 0.8}
    plot_runs([(record.label, record.history), ("other", record.history)], tmp_path / "cmp.png", "a vs b")
    assert (tmp_path / "cmp.png").stat().st_size > 1000


def test_default_run_dir_is_unique(tmp_path: Path) -> None:
    import datetime

    now = datetime.datetime(2024, 5, 6, 7, 8, 9)
    first = default_run_dir(graph(), "jax", tmp_path, now)
    assert first == tmp_path / "toy" / "jax-20240506-070809"
    first.mkdir(parents=True)
    assert default_run_dir(graph(), "jax", tmp_path, now).name == "jax-20240506-070809-2"


def test_read_run_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such run directory"):
        read_run(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="metrics.csv: no such metrics file"):
        read_run(tmp_path / "empty")
