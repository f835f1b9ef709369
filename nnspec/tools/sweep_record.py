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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import NnspecError
from .sweep_plan import GridAxis, PlannedRun, plan_runs

RECORD_FILE = "sweep.json"
#: Largest ``sweep.json`` read (a record of the most runs a sweep plans is about 1 MiB).
MAX_RECORD_BYTES = 64 * 1024 * 1024
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

    def run_overrides(self, run: PlannedRun) -> list[str]:
        """Every ``--set`` value of one run, fixed ones first, with ``extends`` made absolute
        (:func:`resolve_extends`): what its spec is checked with and what its worker gets."""
        fixed = [resolve_extends(o, "--set") for o in self.fixed_overrides()]
        return [*fixed, *(resolve_extends(o, "--grid") for o in run.overrides)]

    def check_extends(self) -> None:
        """Refuse, before anything is planned, an ``extends`` value (``--set`` or ``--grid``) that names no base
        spec file (see :func:`resolve_extends`): the whole sweep stops, exit 2, as a spec error would."""
        for setting in self.overrides:
            resolve_extends(setting, "--set")
        for axis in self.axes:
            for value in axis.values:
                resolve_extends(f"{axis.key}={value}", "--grid")

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


def resolve_extends(setting: str, flag: str = "--set") -> str:
    """``setting`` (``KEY=VALUE``) as given, unless KEY is ``extends``: then ``extends="<absolute path>"`` of the base
    spec, found as ``nnspec run --set extends=`` finds it (from the current directory:
    :func:`nnspec.runtime.specfile.absolute_extends`), so that every worker reads the same file wherever it starts.

    A base that does not exist, or a value that is not a path, is a :class:`~nnspec.errors.SpecError` (``E0110``)
    labelled with ``flag`` (``--grid`` or ``--set``) and the setting."""
    from ..errors import SpecError
    from ..runtime.specfile import absolute_extends

    try:
        return absolute_extends([setting])[0]
    except SpecError as exc:
        if flag == "--set":
            raise
        raise SpecError([_relabel(d, flag) for d in exc.diagnostics]) from None


def _relabel(diagnostic: Any, flag: str) -> Any:
    """A diagnostic labelled ``--set KEY=VALUE`` relabelled ``FLAG KEY=VALUE``."""
    label = diagnostic.file or ""
    return replace(diagnostic, file=flag + label[len("--set") :]) if label.startswith("--set") else diagnostic


def spec_fingerprint(graph: Any) -> str:
    """SHA-256 of a resolved spec (every default filled in; the sweep's first valid run), short: an edit
    of the spec, or of a base it extends, changes it."""
    from ..runtime.specfile import graph_to_spec

    spec = graph_to_spec(graph.replace(source=None))
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_record(folder: Path) -> dict[str, Any] | None:
    """The ``sweep.json`` in ``folder``, None when there is none; an unreadable one is an error naming it."""
    path = folder / RECORD_FILE
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_file():  # a link, or a FIFO that reading would wait on: not nnspec's
        raise NnspecError(
            f"{path}: not a regular file, so not a sweep record nnspec wrote; remove it, or choose another --out"
        )
    if path.stat().st_size > MAX_RECORD_BYTES:
        raise NnspecError(f"{path}: larger than a sweep record can be ({MAX_RECORD_BYTES:,} bytes); remove it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
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
