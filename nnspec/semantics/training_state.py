"""The whole training state of a model, the same object on every engine.

A :class:`TrainingState` holds, as host NumPy arrays in the contract layouts:

* ``weights``: trainable parameters, ``<layer>.<param>`` (``dense_1.kernel``, ``bn1.gamma``);
* ``state``: non-trainable arrays, ``<layer>.<name>`` (``bn1.moving_mean``, ``bn1.moving_variance``);
* ``slots``: optimiser slots, ``<layer>.<param>.<slot>`` (``dense_1.kernel.m`` for Adam's first moment);
* ``step``: optimiser steps taken (drives dropout masks and schedules); ``epochs_done``;
* ``history``: the per-epoch metrics so far (a DataFrame, or None before the first epoch).

``CompiledModel.get_training_state()`` gives one and ``CompiledModel.set_training_state()`` takes one, on
every engine, so a state saved by one engine restores exactly on another. :func:`to_tensors` /
:func:`from_tensors` flatten it to one dict of arrays plus a small JSON-able dict (for safetensors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..strict_json import finite_json
from .history import COLUMNS, make_history

if TYPE_CHECKING:
    import pandas as pd

#: Largest optimiser step or epoch count a saved state may hold (the engines count steps in 32-bit integers).
MAX_COUNT = 2**31 - 1
#: History columns that hold a fraction (0 to 1) and one that holds seconds (0 or more); the rest any number.
_FRACTIONS = ("accuracy", "val_accuracy")
_SECONDS = "seconds"

#: Optimiser slot keys inside the runtime are ``<weight>/<slot>``; the contract writes ``<weight>.<slot>``.
_RUNTIME_SEP = "/"


def slot_key_to_contract(key: str) -> str:
    """``dense_1.kernel/m`` -> ``dense_1.kernel.m``."""
    weight, _, slot = key.rpartition(_RUNTIME_SEP)
    return f"{weight}.{slot}"


def slot_key_to_runtime(key: str) -> str:
    """``dense_1.kernel.m`` -> ``dense_1.kernel/m``."""
    weight, _, slot = key.rpartition(".")
    return f"{weight}{_RUNTIME_SEP}{slot}"


@dataclass
class TrainingState:
    """Everything needed to continue training exactly where it stopped (see the module docstring)."""

    weights: dict[str, np.ndarray]
    state: dict[str, np.ndarray] = field(default_factory=dict)
    slots: dict[str, np.ndarray] = field(default_factory=dict)
    step: int = 0
    epochs_done: int = 0
    history: "pd.DataFrame | None" = None

    def all_weights(self) -> dict[str, np.ndarray]:
        """Trainable and non-trainable arrays in one dict, as a weights file holds them."""
        return {**self.weights, **self.state}


def to_tensors(ts: TrainingState) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Flatten ``ts`` to ``(arrays, meta)``: arrays prefixed ``weights/``, ``state/``, ``slots/``; meta JSON-able."""
    arrays: dict[str, np.ndarray] = {}
    for group in ("weights", "state", "slots"):
        for key, value in getattr(ts, group).items():
            arrays[f"{group}/{key}"] = np.ascontiguousarray(value)
    history = None if ts.history is None else finite_json(ts.history.to_dict("records"))
    return arrays, {"step": int(ts.step), "epochs_done": int(ts.epochs_done), "history": history}


class FieldError(ValueError):
    """A missing or malformed field of a saved record; ``field`` names it (``step``, ``history[2].loss``)."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"field '{field}': {problem}")


def shown(value: Any) -> str:
    """A short, printable form of a JSON value for a message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_count(meta: Mapping[str, Any], key: str, *, high: int = MAX_COUNT, name: str | None = None) -> int:
    """``meta[key]``, a whole number from 0 to ``high``; else :class:`FieldError` naming ``name`` (default ``key``)."""
    name = name or key
    if key not in meta:
        raise FieldError(name, "missing")
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(name, f"must be a whole number; got {shown(value)}")
    if not 0 <= value <= high:
        raise FieldError(name, f"must be from 0 to {high}; got {value}")
    return value


def read_number(value: Any, name: str, *, low: float = -math.inf, high: float = math.inf) -> float | None:
    """``value``: a finite number from ``low`` to ``high``, or None (JSON ``null`` stands for NaN)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FieldError(name, f"must be a finite number or null; got {shown(value)}")
    if not low <= value <= high:
        raise FieldError(name, f"must be from {low:g} to {high:g}; got {value!r}")
    return float(value)


def check_history(history: Any, epochs_done: int) -> None:
    """Check a saved history: null before the first epoch, else one row per epoch, epochs numbered from 1."""
    if history is None:
        if epochs_done:
            raise FieldError("history", f"missing (null) for a state after {epochs_done} epochs")
        return
    if not isinstance(history, list):
        raise FieldError("history", f"must be a list of per-epoch rows; got {type(history).__name__}")
    if len(history) != epochs_done:
        raise FieldError("history", f"holds {len(history)} rows for a state after {epochs_done} epochs")
    for i, row in enumerate(history):
        where = f"history[{i}]"
        if not isinstance(row, dict):
            raise FieldError(where, f"must be an object with {', '.join(COLUMNS)}; got {shown(row)}")
        missing, extra = [c for c in COLUMNS if c not in row], sorted(set(row) - set(COLUMNS))
        if missing or extra:
            problem = f"lacks {', '.join(missing)}" if missing else f"has unknown column(s) {', '.join(extra)}"
            raise FieldError(where, problem)
        if read_count(row, "epoch", name=f"{where}.epoch") != i + 1:
            raise FieldError(f"{where}.epoch", f"must be {i + 1} (epochs are numbered from 1); got {row['epoch']}")
        for column in COLUMNS[1:]:
            low, high = (
                (0.0, 1.0) if column in _FRACTIONS else (0.0, math.inf) if column == _SECONDS else (-math.inf, math.inf)
            )
            read_number(row[column], f"{where}.{column}", low=low, high=high)


def check_meta(meta: Mapping[str, Any]) -> None:
    """Check the JSON part of a saved state (``step``, ``epochs_done``, ``history``): :class:`FieldError` if bad."""
    read_count(meta, "step")
    epochs = read_count(meta, "epochs_done")
    if "history" not in meta:
        raise FieldError("history", "missing")
    check_history(meta["history"], epochs)


def from_tensors(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> TrainingState:
    """The inverse of :func:`to_tensors`; a malformed ``meta`` raises :class:`FieldError` naming the field."""
    check_meta(meta)
    groups: dict[str, dict[str, np.ndarray]] = {"weights": {}, "state": {}, "slots": {}}
    for name, value in arrays.items():
        group, _, key = name.partition("/")
        if group not in groups or not key:
            raise FieldError(name, "not a training-state array (weights/..., state/... or slots/...)")
        groups[group][key] = np.asarray(value)
    history = None
    if meta["history"]:
        history = make_history(
            [{k: (float("nan") if v is None else v) for k, v in row.items()} for row in meta["history"]]
        )
    return TrainingState(
        groups["weights"],
        groups["state"],
        groups["slots"],
        int(meta["step"]),
        int(meta["epochs_done"]),
        history,
    )
