"""Timing of one engine on one spec: compile time, step time, epoch time and throughput.

* ``compile_s``: wall time of ``Backend.compile`` (measured by the caller), plus ``first_step_s``, the first
  ``train_step`` call, which includes tracing and compilation on engines that compile lazily.
* ``step_s``: median wall time of ``train_step`` on one host batch over ``repeats`` calls after a warm-up.
  ``train_step`` returns the loss as a Python float, so each call waits for the device.
* ``epoch_s``: median wall time of ``run_epoch`` over a resident subset of the training data (put on the
  device once), ``repeats`` times after one warm-up epoch; ``examples_per_s`` is the examples it trained
  on divided by ``epoch_s``.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..backends.base import CompiledModel
    from .batches import ComparisonData


def _timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def time_model(
    model: "CompiledModel", data: "ComparisonData", *, batch: int, repeats: int = 3, epoch_examples: int = 1024
) -> dict[str, float]:
    """Step and epoch timings of ``model`` on ``data`` (see the module docstring). Trains the model."""
    repeats = max(1, int(repeats))
    n = min(data.size, max(int(epoch_examples), batch))
    batch = min(batch, n)
    x = np.asarray(data.x[:n], dtype=model.dtype)
    y = np.asarray(data.y[:n])
    xb, yb = x[:batch], y[:batch]

    first_step = _timed(model.train_step, xb, yb)
    steps = [_timed(model.train_step, xb, yb) for _ in range(repeats)]

    x_dev, y_dev = model.put(x), model.put(y)
    order = np.random.default_rng([0, 1]).permutation(n)
    first_epoch = _timed(model.run_epoch, x_dev, y_dev, order, batch)
    epochs = [_timed(model.run_epoch, x_dev, y_dev, order, batch) for _ in range(repeats)]
    epoch_s = statistics.median(epochs)
    trained = (n // batch) * batch
    return {
        "batch": batch,
        "first_step_s": first_step,
        "step_s": statistics.median(steps),
        "first_epoch_s": first_epoch,
        "epoch_examples": trained,
        "epoch_s": epoch_s,
        "examples_per_s": trained / epoch_s if epoch_s > 0 else float("inf"),
    }
