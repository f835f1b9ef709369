"""Progress inside an epoch: rich's live bar on a terminal, plain lines otherwise, and the chunked epochs
behind the bar, which must train exactly what one call per epoch trains (real engines, digits: JAX's
fused scan and TensorFlow's fused XLA epoch, the engines where a chunk is a program of its own)."""

from __future__ import annotations

import io
import re
import time
from typing import Any

import numpy as np
import pytest
from rich.console import Console

import nnspec
from nnspec.backends.base import CompiledModel
from nnspec.compiler.ir import Graph
from nnspec.data import load_dataset
from nnspec.errors import TrainingDiverged
from nnspec.runtime.loop import ChunkSizer, chunk_length, fit
from nnspec.runtime.progress import REFRESH_PER_SECOND, Progress

SPEC = """\
nnspec: 1
name: chunky
input: {{shape: [8, 8, 1]}}
layers:
  - flatten
  - dense: {{units: 24, activation: relu}}
  - dropout: {{rate: 0.2}}
  - dense: {{units: 10}}
  - softmax
train:
  epochs: 2
  batch_size: 32
  seed: 5
  optimizer: {{sgd: {{learning_rate: {lr}, momentum: 0.5}}}}
  schedule: {{exponential: {{decay_steps: 7}}}}
data: {{dataset: digits, validation_split: 0.1}}
"""


#: A linear network that SGD at learning rate 1 blows up a few steps into its first epoch (20 steps).
BLOWUP = """\
nnspec: 1
name: blowup
input: {shape: [8, 8, 1]}
layers: [flatten, {dense: {units: 16}}, {dense: {units: 16}}, {dense: {units: 10}}, softmax]
train: {epochs: 2, batch_size: 64, seed: 3, optimizer: {sgd: {learning_rate: 1.0, momentum: 0.5}}}
data: {dataset: digits}
"""


def _graph(tmp_path: Any, text: str = SPEC.format(lr=0.05)) -> Graph:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return nnspec.load(str(path))


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=130, color_system=None), out


def _count_run_epoch(model: CompiledModel, pause: float = 0.0) -> list[int]:
    """Wrap the engine's ``run_epoch`` to record the steps of each call (the real call still runs).

    ``pause`` seconds are slept after each call, so a redraw thread surely sees the state between chunks.
    """
    calls: list[int] = []
    real = model.run_epoch

    def counting(x: Any, y: Any, order: np.ndarray, batch_size: int) -> tuple[float, float]:
        calls.append(len(order) // batch_size)
        result = real(x, y, order, batch_size)
        time.sleep(pause)
        return result

    model.run_epoch = counting  # type: ignore[method-assign]
    return calls


def test_chunk_lengths_come_from_a_small_set() -> None:
    assert chunk_length(468, 60) == 52  # a divisor within a factor 2: every chunk the same length
    assert chunk_length(421, 60) == 64  # 421 is prime: a power of two, and a shorter last chunk
    assert chunk_length(40, 1000) == 40  # the whole epoch is one chunk
    assert chunk_length(40, 0.2) == 1
    sizer = ChunkSizer(4, 468)
    sizer.observe(4, 0.01)  # a length's first call may include compiling: not used
    assert sizer.size == 4
    sizer.observe(4, 0.01)  # 4 steps in 10 ms: about 160 steps make 0.4 s
    assert sizer.size == 156 and 468 % 156 == 0
    sizer.observe(156, 0.3)
    sizer.observe(156, 0.6)  # within a factor 4 of the target: no new length (no new program)
    assert sizer.size == 156
    sizer.observe(156, 3.2)
    assert sizer.size == 18  # 156 * 0.4 / 3.2 = 19.5 -> the divisor 18
    assert [ChunkSizer(3, 10, target=None).next(left) for left in (10, 4, 1)] == [3, 3, 1]


def test_bar_shows_steps_speed_and_time_left_and_redraws_while_a_chunk_runs() -> None:
    console, out = _terminal()
    bar = Progress(1, "bar", console=console)
    bar.start(1)
    bar.begin_epoch(1, 10, 32)
    for done in (2, 4):
        time.sleep(0.15)
        bar.advance(done)
    before = out.getvalue().count("epoch 1/1 ")
    time.sleep(1.3)  # a long chunk: nothing advances, rich redraws from its own thread
    redraws = out.getvalue().count("epoch 1/1 ") - before
    assert redraws >= 2, redraws  # at least once a second
    assert redraws <= 1.3 * REFRESH_PER_SECOND + 2
    frame = out.getvalue().rsplit("\r", 1)[-1]
    assert re.search(r"4/10 steps", frame), frame
    speed = re.search(r"([\d,]+) ex/s", frame)
    assert speed and 50 < int(speed.group(1).replace(",", "")) < 2000, frame  # about 2 steps of 32 per 0.15 s
    assert re.search(r"0:00:0\d left", frame), frame  # 6 steps left at about 13 steps a second
    bar.epoch(
        {
            "epoch": 1,
            "loss": 0.5,
            "accuracy": 0.75,
            "val_loss": float("nan"),
            "val_accuracy": float("nan"),
            "seconds": 1.0,
        }
    )
    bar.close()
    text = out.getvalue()
    assert "epoch 1/1  loss 0.5000  accuracy 0.7500  1 s\n" in text
    assert text.endswith("\x1b[?25h")  # the cursor is given back


def test_fit_draws_a_bar_per_epoch_and_keeps_the_epoch_lines(tmp_path: Any) -> None:
    g = _graph(tmp_path)
    model = nnspec.compile(g, backend="jax", device="cpu")
    calls = _count_run_epoch(model, pause=0.15)  # chunks of 0.15 s at least, redraws every 0.05 s
    console, out = _terminal()
    bar = Progress(2, "bar", console=console, refresh_per_second=20)
    history = fit(model, progress=bar, chunks=ChunkSizer(8, 40, target=None))
    assert calls == [8] * 5 * 2  # 40 steps an epoch in chunks of 8
    text = out.getvalue()
    for epoch in (1, 2):
        assert re.search(rf"epoch {epoch}/2 .*\d+/40 steps", text)
        row = history.iloc[epoch - 1]
        assert f"epoch {epoch}/2  loss {row['loss']:.4f}  accuracy {row['accuracy']:.4f}  val_loss " in text
    inside = set(re.findall(r"\b(8|16|24|32)/40 steps", text))
    assert len(inside) >= 2, inside  # the bar moved inside the epoch, chunk by chunk


def test_not_a_terminal_keeps_one_plain_line_per_epoch(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    model = nnspec.compile(_graph(tmp_path), backend="jax", device="cpu")
    calls = _count_run_epoch(model)
    fit(model, progress=None)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2  loss ") and lines[1].startswith("epoch 2/2  loss ")
    assert "\r" not in err and "\x1b" not in err
    assert calls == [40, 40]  # one call per epoch: no chunks without a bar


@pytest.mark.parametrize(("backend", "size", "lengths"), [("jax", 16, [16, 16, 8]), ("tensorflow", 8, [8] * 5)])
def test_chunked_epochs_train_exactly_what_whole_epochs_train(
    backend: str, size: int, lengths: list[int], tmp_path: Any
) -> None:
    g = _graph(tmp_path)
    dataset = load_dataset(g)
    model = nnspec.compile(g, backend=backend, device="cpu")  # one model, trained twice from the same state
    start = model.get_training_state()
    expected = fit(model, dataset, progress=False)
    want = {group: model.read_arrays(group) for group in ("params", "state", "slots")}
    assert model.step == 80
    model.set_training_state(start)
    assert model.step == 0 and model.history is None
    calls = _count_run_epoch(model)
    history = fit(
        model, dataset, progress=Progress(2, "bar", console=_terminal()[0]), chunks=ChunkSizer(size, 40, target=None)
    )
    assert calls == lengths * 2 and model.step == 80
    for group, arrays in want.items():
        got = model.read_arrays(group)
        assert got.keys() == arrays.keys()
        for key in arrays:
            np.testing.assert_array_equal(got[key], arrays[key], err_msg=f"{backend} {group} {key}")
    assert history["epoch"].tolist() == expected["epoch"].tolist()
    for column in ("accuracy", "val_loss", "val_accuracy"):
        assert history[column].tolist() == expected[column].tolist(), column
    # the engine adds one epoch's batch losses up on the device in float32; chunks add up in pieces
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-6)


def test_a_chunk_that_diverges_stops_the_epoch_as_one_call_does(tmp_path: Any) -> None:
    g = _graph(tmp_path, BLOWUP)
    dataset = load_dataset(g)
    caught = []
    models = []
    for progress, chunks in (
        (False, None),
        (Progress(2, "bar", console=_terminal()[0]), ChunkSizer(4, 20, target=None)),
    ):
        model = nnspec.compile(g, backend="jax", device="cpu")
        calls = _count_run_epoch(model)
        with pytest.raises(TrainingDiverged) as info:
            fit(model, dataset, progress=progress, chunks=chunks)
        caught.append((info.value.epoch, info.value.step, info.value.global_step))
        models.append((model, calls))
    assert caught[0] == caught[1]
    (whole, _), (chunked, calls) = models
    bad_step = caught[0][2]
    assert (
        caught[0][0] == 1 and calls == [4] * (bad_step // 4 + 1) and sum(calls) < 20
    )  # no chunk after the one that diverged
    assert chunked.step == whole.step == bad_step
    for key, value in whole.get_weights().items():
        np.testing.assert_array_equal(chunked.get_weights()[key], value)
