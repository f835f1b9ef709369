"""Early stopping, as Keras's ``EarlyStopping`` callback does it, with a state that checkpoints carry.

After each epoch the monitored column of the history row is compared with the best so far: it improves
when it is lower by more than ``min_delta`` (``mode: min``; ``auto`` for losses) or higher by more than
``min_delta`` (``max``; ``auto`` for accuracies). Every epoch without improvement adds one to ``wait``;
training stops once ``wait`` reaches ``patience`` (never after the first epoch). A NaN value never improves.

A monitored metric that the run does not compute (``val_loss`` or ``val_accuracy`` without validation examples,
a column the history row lacks) is, as in Keras's callback, warned about once on stderr and otherwise ignored:
the epoch counts neither as an improvement nor as a wait, and training goes on. A metric is not computed in a
row when it is absent, or when it and its partner (``loss``/``accuracy``, ``val_loss``/``val_accuracy``) are
both NaN: a diverged model's loss is NaN but its accuracy is a number, so a NaN loss still counts as a wait.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from ..compiler.ir import EarlyStoppingConfig


@dataclass
class EarlyStopping:
    """The early-stopping state of one run (see the module docstring)."""

    config: EarlyStoppingConfig
    best: float | None = None
    best_epoch: int = 0
    wait: int = 0
    stopped_epoch: int = 0
    warned: bool = False

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        delta = abs(self.config.min_delta)
        return value + delta < self.best if self.config.minimize else value - delta > self.best

    def update(self, row: Mapping[str, Any]) -> tuple[bool, bool]:
        """Take one epoch's history row; returns ``(improved, stop)`` (``(False, False)`` when the monitored metric
        is not computed, after a warning the first time)."""
        epoch = int(row["epoch"])
        value = monitored_value(row, self.config.monitor)
        if value is None:
            self._warn_missing(row)
            return False, False
        self.wait += 1
        if self.improves(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True, False
        if self.wait >= self.config.patience and epoch > 1:
            self.stopped_epoch = epoch
            return False, True
        return False, False

    def _warn_missing(self, row: Mapping[str, Any]) -> None:
        """Say once, as Keras's callback does, that the monitored metric is not computed and training goes on."""
        if self.warned:
            return
        self.warned = True
        print(missing_metric_message(self.config.monitor, row), file=sys.stderr)

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-able dict (for checkpoint records)."""
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
        }

    @classmethod
    def from_json(cls, config: EarlyStoppingConfig, data: Mapping[str, Any] | None) -> "EarlyStopping":
        """Rebuild the state written by :meth:`to_json` (a fresh state when ``data`` is None)."""
        if not data:
            return cls(config)
        best = data.get("best")
        return cls(
            config,
            None if best is None else float(best),
            int(data.get("best_epoch", 0)),
            int(data.get("wait", 0)),
            int(data.get("stopped_epoch", 0)),
        )


#: Metrics computed together: when both are NaN the pair was not computed (no validation examples, no step).
_PARTNERS: dict[str, str] = {
    "loss": "accuracy",
    "accuracy": "loss",
    "val_loss": "val_accuracy",
    "val_accuracy": "val_loss",
}


def _number(value: Any) -> float | None:
    """``value`` as a float, or None when it is absent or not a number."""
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def monitored_value(row: Mapping[str, Any], monitor: str) -> float | None:
    """The value of ``monitor`` in history ``row``; None when the run does not compute it (see the module
    docstring): absent, not a number, or NaN together with its partner metric."""
    value = _number(row.get(monitor))
    if value is None:
        return None
    partner = _PARTNERS.get(monitor)
    if math.isnan(value) and partner is not None:
        other = _number(row.get(partner))
        if other is None or math.isnan(other):
            return None
    return value


def available_metrics(row: Mapping[str, Any]) -> list[str]:
    """The metric columns of ``row`` that hold a computed value (see :func:`monitored_value`)."""
    skip = ("epoch", "seconds")
    return [k for k in row if k not in skip and monitored_value(row, k) is not None]


def missing_metric_message(monitor: str, row: Mapping[str, Any]) -> str:
    """The warning printed when early stopping monitors ``monitor`` but the run does not compute it."""
    why = (
        " (this run has no validation examples: data.validation_split is 0 or the data set has no validation part)"
        if monitor.startswith("val_")
        else ""
    )
    available = ", ".join(available_metrics(row)) or "none"
    return (
        f"nnspec: warning: early stopping monitors {monitor}, which is not computed{why}; early stopping is skipped "
        f"and training goes on for every epoch. Available metrics: {available}"
    )
