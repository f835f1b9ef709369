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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..strict_json import finite_json
from .history import make_history

if TYPE_CHECKING:
    import pandas as pd

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


def from_tensors(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> TrainingState:
    """The inverse of :func:`to_tensors`."""
    groups: dict[str, dict[str, np.ndarray]] = {"weights": {}, "state": {}, "slots": {}}
    for name, value in arrays.items():
        group, _, key = name.partition("/")
        groups[group][key] = np.asarray(value)
    history = None
    if meta.get("history"):
        history = make_history(
            [{k: (float("nan") if v is None else v) for k, v in row.items()} for row in meta["history"]]
        )
    return TrainingState(
        groups["weights"],
        groups["state"],
        groups["slots"],
        int(meta.get("step", 0)),
        int(meta.get("epochs_done", 0)),
        history,
    )
