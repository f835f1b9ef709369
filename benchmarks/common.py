"""Helpers shared by the implementations: the epoch-timing loop and small numeric bits."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .settings import BenchConfig

#: Test-set evaluation runs in chunks of this many examples (keeps convnet activations small).
EVAL_CHUNK = 1000


def time_epochs(config: BenchConfig, n: int, run_epoch: Callable[[np.ndarray], float]) -> tuple[list[float], float]:
    """Call ``run_epoch(order)`` for each epoch with nnspec's permutation; returns (seconds per epoch, last loss).

    ``run_epoch`` must return the epoch's mean training loss as a Python float, which forces the
    epoch's device work to finish inside the timed region.
    """
    seconds: list[float] = []
    loss = float("nan")
    for epoch in range(config.epochs):
        order = config.order(n, epoch)
        start = time.perf_counter()
        loss = float(run_epoch(order))
        seconds.append(time.perf_counter() - start)
    return seconds, loss


def chunks(n: int, size: int = EVAL_CHUNK) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)`` in pieces of at most ``size``."""
    return [(i, min(i + size, n)) for i in range(0, n, size)]
