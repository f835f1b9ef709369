"""Parity and timing reports across engines (``nnspec compare``).

Typical use::

    from nnspec.compare import compare, render
    result = compare(nnspec.load("specs/mnist_cnn.yaml"), ["jax", "tensorflow"], dtype="float64", steps=10)
    print(render(result))           # result.forward / .gradients / .trajectory / .timing / .summary are DataFrames
    assert result.ok

Importing this package imports no engine.
"""

from __future__ import annotations

from .batches import ComparisonData, batches, load_data, random_data
from .core import EXIT_DISAGREE, CompareResult, compare
from .report import render, write_report
from .tolerances import DEFAULT_TOLERANCES, Tolerances, errors, tolerances_for, weights_distance

__all__ = [
    "DEFAULT_TOLERANCES",
    "EXIT_DISAGREE",
    "CompareResult",
    "ComparisonData",
    "Tolerances",
    "batches",
    "compare",
    "errors",
    "load_data",
    "random_data",
    "render",
    "tolerances_for",
    "weights_distance",
    "write_report",
]
