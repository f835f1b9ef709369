"""The batches every engine sees in a comparison: the spec's training data in the seeded epoch order.

Batch ``k`` of a run is batch ``k % steps`` of epoch ``k // steps``, where an epoch visits
``steps = n // batch`` full batches in the order of ``numpy.random.default_rng([seed, epoch]).permutation(n)``
(the contract of :mod:`nnspec.backends.base`). When the spec's data set is not installed, a comparison may
run on seeded random inputs of the spec's input shape and random labels instead; :class:`ComparisonData`
says which it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..compiler.ir import Graph
from ..errors import DataError


@dataclass(frozen=True)
class ComparisonData:
    """Training examples for a comparison, and a note saying where they came from."""

    x: np.ndarray
    y: np.ndarray
    source: str
    #: why the spec's own data were not used, when they were not (empty otherwise)
    detail: str = ""

    @property
    def size(self) -> int:
        """Number of examples."""
        return int(self.x.shape[0])


def random_data(graph: Graph, n: int, seed: int | None = None) -> ComparisonData:
    """``n`` seeded standard-normal inputs of the spec's input shape, with uniform random labels."""
    seed = graph.train.seed if seed is None else seed
    rng = np.random.default_rng([seed, 2**31 - 1])
    x = rng.standard_normal((n,) + tuple(graph.input_shape)).astype(np.float32)
    y = rng.integers(0, graph.output_shape[-1], n).astype(np.int32)
    return ComparisonData(x, y, f"random ({n} seeded normal inputs)")


def load_data(graph: Graph, *, fallback_examples: int | None = 512, random: bool = False) -> ComparisonData:
    """The spec's training split; with ``random`` (or when the data set is missing and ``fallback_examples``
    is set) seeded random data instead. A missing data set without a fallback raises :class:`DataError`."""
    if random:
        return random_data(graph, fallback_examples or 512)
    try:
        from ..data import load_dataset

        ds = load_dataset(graph)
    except (DataError, ImportError) as exc:
        if fallback_examples is None:
            raise
        data = random_data(graph, fallback_examples)
        return ComparisonData(data.x, data.y, f"{data.source}; data set '{graph.data.dataset}' not available", str(exc))
    return ComparisonData(np.asarray(ds.x_train), np.asarray(ds.y_train), f"{ds.name} training split")


def batch_indices(n: int, batch: int, seed: int) -> Iterator[np.ndarray]:
    """Example indices of batch 0, 1, 2, ... of a run, following the epoch permutations (endless)."""
    batch = min(batch, n)
    steps = n // batch
    epoch = 0
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(n)
        for k in range(steps):
            yield order[k * batch : (k + 1) * batch]
        epoch += 1


def batches(data: ComparisonData, batch: int, count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``count`` batches ``(x, y)`` of a run over ``data``."""
    out = []
    for k, idx in enumerate(batch_indices(data.size, batch, seed)):
        if k >= count:
            break
        out.append((data.x[idx], data.y[idx]))
    return out
