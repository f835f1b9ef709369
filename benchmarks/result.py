"""One implementation's measurements, and how they are summarised.

Epoch times are wall-clock seconds of whole training epochs, each ending with the epoch's metrics read
back to the host (so the device work is finished). Compilation is reported apart: where an
implementation compiles before its first epoch, that time is measured directly; otherwise (Keras
``fit``, JAX's and TensorFlow's trace-on-first-call) it is estimated as first epoch minus median epoch.
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
    compile_warm_seconds: float | None = None  # a second compile of the same graph (PyTensor's cache)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

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
            "epochs": len(self.epoch_seconds),
            "compile_s": round(self.compile_estimate, 4),
            "compile_warm_s": None if self.compile_warm_seconds is None else round(self.compile_warm_seconds, 4),
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


def failed(model: str, engine: str, implementation: str, error: BaseException | str) -> dict[str, Any]:
    """A table row for an implementation that could not run, with the reason in ``notes``."""
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    first_line = reason.strip().splitlines()[0] if reason.strip() else "failed"
    return {
        "model": model,
        "engine": engine,
        "implementation": implementation,
        "epochs": 0,
        "compile_s": None,
        "compile_warm_s": None,
        "first_epoch_s": None,
        "median_epoch_s": None,
        "examples_per_s": None,
        "final_train_loss": None,
        "test_accuracy": None,
        "notes": f"FAILED: {first_line[:300]}",
    }
