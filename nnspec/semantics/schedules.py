"""Learning-rate schedules (Keras semantics), written once against :class:`nnspec.semantics.ops.Ops`.

``step`` is the number of optimiser steps taken before the current one (0 for the first update).

* ``constant``: ``lr``
* ``step``: ``lr * factor ** floor(step / every)``                         (``factor`` 0.1, ``every`` required)
* ``exponential``: ``lr * decay_rate ** (step / decay_steps)``, or with ``floor`` when ``staircase``
* ``cosine``: ``lr * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha)``
"""

from __future__ import annotations

import math
from typing import Any

from ..compiler.ir import ScheduleConfig
from ..compiler.training_defaults import SCHEDULE_DEFAULTS
from .ops import Ops


def learning_rate(ops: Ops, schedule: ScheduleConfig, base_lr: float, step: Any) -> Any:
    """The learning rate at optimiser step ``step`` (a Python int or an engine integer scalar)."""
    lr = ops.constant(base_lr)
    p = {**SCHEDULE_DEFAULTS.get(schedule.name, {}), **dict(schedule.params)}
    if schedule.name == "constant":
        return lr
    t = ops.to_float(step)
    if schedule.name == "step":
        return lr * ops.power(ops.constant(p["factor"]), ops.floor(t / ops.constant(p["every"])))
    if schedule.name == "exponential":
        exponent = t / ops.constant(p["decay_steps"])
        if p.get("staircase"):
            exponent = ops.floor(exponent)
        return lr * ops.power(ops.constant(p["decay_rate"]), exponent)
    if schedule.name == "cosine":
        decay_steps = ops.constant(p["decay_steps"])
        progress = ops.minimum(t, decay_steps) / decay_steps
        alpha = ops.constant(p["alpha"])
        cosine = ops.constant(0.5) * (ops.constant(1.0) + ops.cos(ops.constant(math.pi) * progress))
        return lr * ((ops.constant(1.0) - alpha) * cosine + alpha)
    raise ValueError(f"unknown schedule {schedule.name!r}")
