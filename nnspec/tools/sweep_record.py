"""A sweep's arguments and their record, ``sweep.json`` in the sweep's folder.

The record lets a restarted sweep check that it continues the same sweep: the same spec (compared by
the resolved spec's fingerprint, so an edited spec or ``extends`` base is noticed), grid, sample,
backends, epochs, fixed ``--set`` values and device. Only ``--jobs`` may change between starts.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NnspecError
from .sweep_plan import GridAxis, PlannedRun, plan_runs

RECORD_FILE = "sweep.json"
#: Record fields that may differ between two starts of one sweep.
_FREE_FIELDS = ("nnspec", "command", "jobs", "created", "runs")


@dataclass(frozen=True)
class Sweep:
    """The arguments of one sweep (paths absolute)."""

    spec: Path
    out: Path
    axes: tuple[GridAxis, ...]
    backends: tuple[str, ...]
    sample: int | None = None
    seed: int = 0
    epochs: int | None = None
    overrides: tuple[str, ...] = ()
    device: str = "auto"
    jobs: int = 1

    def runs(self) -> list[PlannedRun]:
        """The planned runs, in grid order, each on every backend."""
        return plan_runs(self.axes, self.backends, self.sample, self.seed)

    def fixed_overrides(self) -> list[str]:
        """The ``--set`` values every run gets (``--epochs`` included), before its grid settings."""
        return [*self.overrides, *([f"train.epochs={self.epochs}"] if self.epochs is not None else [])]

    def command(self) -> str:
        """The ``nnspec sweep`` command line that starts (or continues) this sweep."""
        words = ["nnspec", "sweep", str(self.spec)]
        for a in self.axes:
            words += ["--grid", f"{a.key}={','.join(a.values)}"]
        if self.sample is not None:
            words += ["--random", str(self.sample), "--seed", str(self.seed)]
        words += ["--backends", ",".join(self.backends)]
        for o in self.overrides:
            words += ["--set", o]
        if self.epochs is not None:
            words += ["--epochs", str(self.epochs)]
        if self.device != "auto":
            words += ["--device", self.device]
        words += ["--jobs", str(self.jobs), "--out", str(self.out)]
        return shlex.join(words)

    def record(self, fingerprint: str) -> dict[str, Any]:
        """The ``sweep.json`` record (``fingerprint``: of the resolved spec, see :func:`spec_fingerprint`)."""
        from .. import __version__

        return {
            "nnspec": __version__,
            "command": self.command(),
            "spec": str(self.spec),
            "spec_fingerprint": fingerprint,
            "grid": {a.key: list(a.values) for a in self.axes},
            "random": self.sample,
            "seed": self.seed if self.sample is not None else None,
            "backends": list(self.backends),
            "epochs": self.epochs,
            "set": list(self.overrides),
            "device": self.device,
            "jobs": self.jobs,
            "runs": [r.name for r in self.runs()],
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
        }


def spec_fingerprint(graph: Any) -> str:
    """SHA-256 of a resolved spec (every default filled in; the sweep's first valid run), short: an edit
    of the spec, or of a base it extends, changes it."""
    from ..runtime.specfile import graph_to_spec

    spec = graph_to_spec(graph.replace(source=None))
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_record(folder: Path) -> dict[str, Any] | None:
    """The ``sweep.json`` in ``folder``, None when there is none; an unreadable one is an error naming it."""
    path = folder / RECORD_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NnspecError(
            f"{path}: cannot read this sweep record ({exc}); remove it to start the sweep afresh"
        ) from None
    if not isinstance(data, dict):
        raise NnspecError(f"{path}: not a sweep record; remove it to start the sweep afresh")
    return data


def check_same_sweep(old: Mapping[str, Any], new: Mapping[str, Any], folder: Path) -> None:
    """Raise unless ``old`` and ``new`` records describe one sweep (they may differ only in ``--jobs``)."""
    differ = [k for k in new if k not in _FREE_FIELDS and old.get(k) != new.get(k)]
    if not differ:
        return
    what = "; ".join(f"{k}: {json.dumps(old.get(k))} then, {json.dumps(new.get(k))} now" for k in differ)
    hint = (
        "the spec changed since then, so its finished runs would not match it"
        if differ == ["spec_fingerprint"]
        else "the arguments differ"
    )
    raise NnspecError(
        f"{folder} holds a sweep started with other settings ({what}): {hint}. Continue it with its own command "
        f"({folder / RECORD_FILE} records it), or choose another --out"
    )
