"""One implementation's measurements, and how they are summarised.

Epoch times are wall-clock seconds of whole training epochs, each ending with the epoch's metrics read
back to the host (so the device work is finished). Compilation is reported apart: where an
implementation compiles before its first epoch, that time is measured directly; otherwise (Keras
``fit``, JAX's and TensorFlow's trace-on-first-call) it is estimated as first epoch minus median epoch.

``compile_cold_s`` and ``compile_warm_s`` (nnspec rows; see :func:`benchmarks.nnspec_impl.compile_times`)
are the time to the first finished training step, compilation included, in a fresh child process (cold:
the engine imported there, JAX's persistent cache off, PyTensor's compile folder empty) and for a second
compile of the same graph in that process (warm). Hand-written PyTensor reports its own warm figure.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Measurement:
    """What one (model, engine, implementation) run produced."""

    model: str
    engine: str
    implementation: str
    epoch_seconds: list[float]
    examples_per_epoch: int
    final_train_loss: float
    test_accuracy: float
    compile_seconds: float | None = None  # measured before the first epoch, when the implementation can
    compile_warm_seconds: float | None = None  # a second compile of the same graph in one process (PyTensor: its cache)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    precision: str = "float32"  # ``train.precision`` (nnspec) or the policy the baseline ran under
    compile_cold_seconds: float | None = None  # first finished step in a fresh process, compilation included

    @property
    def median_epoch(self) -> float:
        """Median epoch time over epochs 2..n (the first epoch alone when there is only one)."""
        later = self.epoch_seconds[1:] or self.epoch_seconds
        return statistics.median(later)

    @property
    def compile_estimate(self) -> float:
        """Compile time: measured when available, plus first epoch minus median epoch (trace on first call)."""
        first_extra = max(self.epoch_seconds[0] - self.median_epoch, 0.0) if len(self.epoch_seconds) > 1 else 0.0
        return (self.compile_seconds or 0.0) + first_extra

    def row(self) -> dict[str, Any]:
        """The flat table row of this measurement."""
        median = self.median_epoch
        return {
            "model": self.model,
            "engine": self.engine,
            "implementation": self.implementation,
            "precision": self.precision,
            "epochs": len(self.epoch_seconds),
            "compile_s": round(self.compile_estimate, 4),
            "compile_cold_s": _rounded(self.compile_cold_seconds),
            "compile_warm_s": _rounded(self.compile_warm_seconds),
            "first_epoch_s": round(self.epoch_seconds[0], 4),
            "median_epoch_s": round(median, 4),
            "examples_per_s": round(self.examples_per_epoch / median, 1) if median > 0 else float("nan"),
            "final_train_loss": round(self.final_train_loss, 5),
            "test_accuracy": round(self.test_accuracy, 4),
            "notes": self.notes,
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the Keras ``fit`` subprocesses send their results this way)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Measurement":
        """The inverse of :meth:`to_json`."""
        return cls(**data)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class Refused(Exception):
    """An implementation declines a setting (a precision, a device) it cannot run; the row says why."""


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` is a refusal (nnspec's ``BackendError``/``SpecError`` at compile time, or :class:`Refused`)."""
    if isinstance(error, Refused):
        return True
    try:
        from nnspec.errors import BackendError, SpecError
    except ImportError:
        return False
    return isinstance(error, (BackendError, SpecError))


def failed(
    model: str, engine: str, implementation: str, error: BaseException | str, precision: str = "float32"
) -> dict[str, Any]:
    """A table row for an implementation that could not run, with the reason in ``notes``.

    Refusals (:func:`is_refusal`: the engine declines the precision or device) read ``REFUSED: <reason>``
    with every line of the reason; other errors ``FAILED: <first line>``.
    """
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()] or ["failed"]
    if not isinstance(error, str) and is_refusal(error):
        note = "REFUSED: " + " / ".join(lines)[:500]
    else:
        note = f"FAILED: {lines[0][:300]}"
    return {
        "model": model,
        "engine": engine,
        "implementation": implementation,
        "precision": precision,
        "epochs": 0,
        "compile_s": None,
        "compile_cold_s": None,
        "compile_warm_s": None,
        "first_epoch_s": None,
        "median_epoch_s": None,
        "examples_per_s": None,
        "final_train_loss": None,
        "test_accuracy": None,
        "notes": note,
    }
