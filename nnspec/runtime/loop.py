"""The training-loop driver shared by every engine.

``fit`` puts the training and validation arrays on the device once, then for each epoch asks the engine
to train over the epoch's permutation (one call, metrics read back once) and to evaluate the validation
split. The permutation of epoch ``e`` (counted from 0 over the model's whole life, so that ``fit(2)`` then
``fit(3)`` equals ``fit(5)``) is ``numpy.random.default_rng([seed, e]).permutation(n_train)``.

``seconds`` in the history is the wall time of the epoch's training call(s), with any compilation the
engine reports in ``compile_seconds`` during them taken out; validation is not included.

When the progress display shows the steps inside an epoch (a live bar on a terminal), the epoch is
trained in chunks: consecutive slices of its permutation, each a whole number of batches, one
``run_epoch`` call each, so the bar moves a few times a second even on an engine that fuses a call into
one program. The optimiser step, the data order and therefore the weights are exactly those of one call
per epoch; the epoch's mean loss and accuracy are the chunks' means weighted by their steps (the loss can
differ from one call's in the last bits of the engine's float type: the engine adds the batch losses up
on the device in that type). :class:`ChunkSizer` chooses the chunk lengths.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..semantics.history import COLUMNS, concat_history, make_history
from .progress import make_progress

if TYPE_CHECKING:
    import pandas as pd

    from ..backends.base import CompiledModel
    from ..data.dataset import Dataset


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The example order of epoch ``epoch`` (from 0): the same on every engine."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)


def _device_data(model: "CompiledModel", dataset: "Dataset") -> tuple[Any, Any, Any, Any]:
    """Device copies of the train and validation splits, made once per (model, dataset)."""
    cached = getattr(model, "_nnspec_device_data", None)
    if cached is not None and cached[0] is dataset:
        return cached[1]
    dtype = model.dtype
    arrays = (
        model.put(np.ascontiguousarray(dataset.x_train, dtype=dtype)),
        model.put(np.ascontiguousarray(dataset.y_train, dtype=np.int32)),
        model.put(np.ascontiguousarray(dataset.x_val, dtype=dtype)) if len(dataset.x_val) else None,
        model.put(np.ascontiguousarray(dataset.y_val, dtype=np.int32)) if len(dataset.y_val) else None,
    )
    model._nnspec_device_data = (dataset, arrays)  # type: ignore[attr-defined]
    return arrays


#: Wall time aimed at for one call of a chunked epoch (the live bar then moves two or three times a second).
CHUNK_SECONDS = 0.4
#: Training FLOPs per second assumed before anything is measured, to size the first chunks.
ASSUMED_FLOPS_PER_SECOND = {"cpu": 3e10, "gpu": 1e12}
#: The least time assumed for one step (launch and bookkeeping), whatever its FLOPs.
MIN_STEP_SECONDS = 1e-4


def chunk_length(epoch_steps: int, ideal: float) -> int:
    """Steps per chunk for an epoch of ``epoch_steps`` steps when ``ideal`` steps would take the target time.

    A divisor of ``epoch_steps`` within a factor of 2 of ``ideal`` when there is one (every chunk then has
    the same length: a fused engine compiles one program); else the power of two closest to ``ideal``
    (plus a shorter last chunk: two programs). Never more than ``epoch_steps``: a whole epoch is one chunk.
    """
    ideal = min(max(float(ideal), 1.0), float(epoch_steps))
    divisors = {d for i in range(1, math.isqrt(epoch_steps) + 1) if epoch_steps % i == 0 for d in (i, epoch_steps // i)}
    best = min(divisors, key=lambda d: abs(math.log2(d / ideal)))
    if abs(math.log2(best / ideal)) <= 1.0:
        return best
    return min(2 ** round(math.log2(ideal)), epoch_steps)


class ChunkSizer:
    """How many steps each call of a chunked epoch trains (see :func:`chunk_length` for the lengths).

    The first length comes from a guess of the step time (:meth:`for_model`); the length then changes
    only when a chunk of it, run before (a length's first call may include compiling that the engine does
    not report), took under a quarter or over four times ``target`` seconds, so a mistaken guess costs one
    more compiled program and a right one none. ``target=None`` keeps ``size`` for good.
    """

    def __init__(self, size: int, epoch_steps: int, target: float | None = CHUNK_SECONDS):
        self.epoch_steps = max(1, int(epoch_steps))
        self.size = min(max(1, int(size)), self.epoch_steps)
        self.target = target
        self._ran: set[int] = set()

    @classmethod
    def for_model(
        cls, model: "CompiledModel", epoch_steps: int, batch_size: int, target: float = CHUNK_SECONDS
    ) -> "ChunkSizer":
        """A sizer whose first length assumes :data:`ASSUMED_FLOPS_PER_SECOND` on the model's device."""
        flops = 3.0 * model.graph.flops * batch_size  # forward and backward, per step
        guess = max(
            flops / ASSUMED_FLOPS_PER_SECOND.get(model.device, ASSUMED_FLOPS_PER_SECOND["cpu"]), MIN_STEP_SECONDS
        )
        return cls(chunk_length(epoch_steps, target / guess), epoch_steps, target)

    def next(self, steps_left: int) -> int:
        """Steps of the next chunk, when ``steps_left`` steps of the epoch remain."""
        return min(self.size, steps_left)

    def observe(self, steps: int, seconds: float) -> None:
        """Record that a chunk of ``steps`` steps took ``seconds`` (compilation excluded where known)."""
        first_time = steps not in self._ran
        self._ran.add(steps)
        if self.target is None or first_time or steps != self.size or seconds <= 0:
            return
        if self.target / 4 <= seconds <= self.target * 4:
            return
        self.size = chunk_length(self.epoch_steps, self.target * steps / seconds)


def epochs_done(model: "CompiledModel") -> int:
    """Number of epochs ``fit`` has run on ``model`` so far."""
    history = getattr(model, "history", None)
    return 0 if history is None else len(history)


def fit(
    model: "CompiledModel",
    dataset: "Dataset | None" = None,
    *,
    epochs: int | None = None,
    progress: Any = None,
    on_epoch: Callable[[dict[str, float]], bool] | None = None,
    chunks: ChunkSizer | None = None,
) -> "pd.DataFrame":
    """Train ``model`` for ``epochs`` (default ``train.epochs``) on ``dataset`` (default: the spec's).

    Returns this call's history rows (columns ``epoch, loss, accuracy, val_loss, val_accuracy,
    seconds``; epochs numbered on from earlier calls); ``model.history`` holds every epoch so far and is
    updated after each epoch. ``on_epoch(row)`` is called after each epoch (with ``model.history``
    already holding it); returning True ends training there. ``progress``: see
    :func:`nnspec.runtime.progress.make_progress`; when it shows the steps inside an epoch, epochs are
    trained in chunks that ``chunks`` sizes (default: :meth:`ChunkSizer.for_model`).

    A non-finite loss under ``train.on_divergence: stop`` raises :class:`~nnspec.errors.TrainingDiverged`
    naming the epoch and step; the model then holds the weights from before that step.
    """
    graph = model.graph
    if dataset is None:
        from ..data import load_dataset

        dataset = load_dataset(graph)
    epochs = graph.train.epochs if epochs is None else int(epochs)
    n_train = len(dataset.x_train)
    if n_train == 0:
        from ..errors import DataError

        raise DataError(f"data set '{dataset.name}' has no training examples")
    batch_size = min(graph.train.batch_size, n_train)
    x, y, x_val, y_val = _device_data(model, dataset)
    first = epochs_done(model)
    reporter = make_progress(progress, epochs)
    steps = n_train // batch_size
    sizer = (chunks or ChunkSizer.for_model(model, steps, batch_size)) if reporter.live else None
    reporter.start(first + 1)
    rows: list[dict[str, float]] = []
    try:
        for e in range(first, first + epochs):
            order = epoch_order(graph.train.seed, e, n_train)
            compile_before = model.compile_seconds
            step_before = model.step
            reporter.begin_epoch(e + 1, steps, batch_size)
            start = time.perf_counter()
            if sizer is None:
                loss, accuracy = model.run_epoch(x, y, order, batch_size)
            else:
                loss, accuracy = _run_epoch_in_chunks(model, x, y, order, batch_size, sizer, reporter.advance)
            seconds = time.perf_counter() - start - max(model.compile_seconds - compile_before, 0.0)
            _raise_if_diverged(model, e + 1, step_before)
            val_loss, val_accuracy = (math.nan, math.nan)
            if x_val is not None:
                val_loss, val_accuracy = model.evaluate_arrays(x_val, y_val)
            row = dict(
                zip(
                    COLUMNS,
                    (e + 1, float(loss), float(accuracy), float(val_loss), float(val_accuracy), max(seconds, 0.0)),
                )
            )
            rows.append(row)
            model.history = concat_history(model.history, make_history([row]))
            reporter.epoch(row)
            if on_epoch is not None and on_epoch(row):
                break
    finally:
        reporter.close()
    return make_history(rows)


def _run_epoch_in_chunks(
    model: "CompiledModel",
    x: Any,
    y: Any,
    order: np.ndarray,
    batch_size: int,
    sizer: ChunkSizer,
    done: Callable[[int], None],
) -> tuple[float, float]:
    """One epoch as consecutive ``run_epoch`` calls over whole batches of ``order``; see the module docstring.

    ``done(steps)`` is called after each chunk. A chunk that stops at a non-finite loss (the divergence
    guard) ends the epoch there, leaving ``model.diverged_step`` set as one call would.
    """
    steps = len(order) // batch_size
    trained = kept_steps = 0
    loss_sum = correct = 0.0
    while trained < steps:
        size = sizer.next(steps - trained)
        compile_before, step_before = model.compile_seconds, model.step
        start = time.perf_counter()
        loss, accuracy = model.run_epoch(x, y, order[trained * batch_size : (trained + size) * batch_size], batch_size)
        seconds = time.perf_counter() - start - max(model.compile_seconds - compile_before, 0.0)
        kept = model.step - step_before
        if kept:
            loss_sum += loss * kept
            correct += round(accuracy * kept * batch_size) if math.isfinite(accuracy) else math.nan
            kept_steps += kept
        trained += size
        done(trained)
        if getattr(model, "diverged_step", None) is not None:
            break
        sizer.observe(size, seconds)
    if kept_steps == 0:
        return math.nan, math.nan
    return loss_sum / kept_steps, correct / (kept_steps * batch_size)


def _raise_if_diverged(model: "CompiledModel", epoch: int, step_before: int) -> None:
    """Raise :class:`TrainingDiverged` when the epoch just run stopped at a non-finite loss."""
    bad = getattr(model, "diverged_step", None)
    if bad is None:
        return
    from ..errors import TrainingDiverged

    raise TrainingDiverged(
        epoch, int(bad) - step_before + 1, int(bad), float(getattr(model, "diverged_loss", math.nan))
    )
