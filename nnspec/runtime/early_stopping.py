"""Early stopping, as Keras's ``EarlyStopping`` callback does it, with a state that checkpoints carry.

After each epoch the monitored column of the history row is compared with the best so far: it improves
when it is lower by more than ``min_delta`` (``mode: min``; ``auto`` for losses) or higher by more than
``min_delta`` (``max``; ``auto`` for accuracies). Every epoch without improvement adds one to ``wait``;
training stops once ``wait`` reaches ``patience`` (never after the first epoch). A NaN value never improves.
"""

from __future__ import annotations

import math
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

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        delta = abs(self.config.min_delta)
        return value + delta < self.best if self.config.minimize else value - delta > self.best

    def update(self, row: Mapping[str, Any]) -> tuple[bool, bool]:
        """Take one epoch's history row; returns ``(improved, stop)``."""
        epoch = int(row["epoch"])
        value = float(row[self.config.monitor])
        self.wait += 1
        if self.improves(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True, False
        if self.wait >= self.config.patience and epoch > 1:
            self.stopped_epoch = epoch
            return False, True
        return False, False

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
