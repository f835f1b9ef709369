"""The training-loop driver shared by every engine.

``fit`` puts the training and validation arrays on the device once, then for each epoch asks the engine
to train over the epoch's permutation (one call, metrics read back once) and to evaluate the validation
split. The permutation of epoch ``e`` (counted from 0 over the model's whole life, so that ``fit(2)`` then
``fit(3)`` equals ``fit(5)``) is ``numpy.random.default_rng([seed, e]).permutation(n_train)``.

``seconds`` in the history is the wall time of the epoch's training call, with any compilation the
engine reports in ``compile_seconds`` during that call taken out; validation is not included.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .history import COLUMNS, concat_history, make_history
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
) -> "pd.DataFrame":
    """Train ``model`` for ``epochs`` (default ``train.epochs``) on ``dataset`` (default: the spec's).

    Returns this call's history rows (columns ``epoch, loss, accuracy, val_loss, val_accuracy,
    seconds``; epochs numbered on from earlier calls); ``model.history`` holds every epoch so far and is
    updated after each epoch. ``on_epoch(row)`` is called after each epoch (with ``model.history``
    already holding it); returning True ends training there. ``progress``: see
    :func:`nnspec.runtime.progress.make_progress`.

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
    reporter.start(first + 1)
    rows: list[dict[str, float]] = []
    try:
        for e in range(first, first + epochs):
            order = epoch_order(graph.train.seed, e, n_train)
            compile_before = model.compile_seconds
            step_before = model.step
            start = time.perf_counter()
            loss, accuracy = model.run_epoch(x, y, order, batch_size)
            seconds = time.perf_counter() - start - max(model.compile_seconds - compile_before, 0.0)
            _raise_if_diverged(model, e + 1, step_before)
            val_loss, val_accuracy = (math.nan, math.nan)
            if x_val is not None:
                val_loss, val_accuracy = model.evaluate_arrays(x_val, y_val)
            row = dict(zip(COLUMNS, (e + 1, float(loss), float(accuracy), float(val_loss), float(val_accuracy), max(seconds, 0.0))))
            rows.append(row)
            model.history = concat_history(getattr(model, "history", None), make_history([row]))  # type: ignore[attr-defined]
            reporter.epoch(row)
            if on_epoch is not None and on_epoch(row):
                break
    finally:
        reporter.close()
    return make_history(rows)


def _raise_if_diverged(model: "CompiledModel", epoch: int, step_before: int) -> None:
    """Raise :class:`TrainingDiverged` when the epoch just run stopped at a non-finite loss."""
    bad = getattr(model, "diverged_step", None)
    if bad is None:
        return
    from ..errors import TrainingDiverged

    raise TrainingDiverged(epoch, int(bad) - step_before + 1, int(bad), float(getattr(model, "diverged_loss", math.nan)))
