"""The two things ``nnspec diff`` compares: spec files or run directories, and what two runs differ in
beyond their specs (metrics per epoch, test scores, the environment that matters)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NnspecError

if TYPE_CHECKING:
    import pandas as pd

    from ..compiler.ir import Graph
    from ..runtime.rundir import RunRecord

#: metrics.csv columns compared per epoch.
METRICS: tuple[str, ...] = ("loss", "accuracy", "val_loss", "val_accuracy")
#: test.json keys compared.
TEST_METRICS: tuple[str, ...] = ("loss", "accuracy")
#: Largest env.json read (nnspec writes a few KiB); a bigger one is treated as absent.
_MAX_ENV_BYTES = 1024 * 1024
#: env.json keys whose differences can change results.
ENV_KEYS: tuple[str, ...] = ("backend", "engine", "engine_version", "device", "dtype", "nnspec")


@dataclass(frozen=True)
class Side:
    """One side of a diff: the path given, its graph, and for a run directory its record and ``env.json``."""

    path: Path
    graph: Graph
    run: RunRecord | None = None
    env: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_run(self) -> bool:
        """Whether this side is a run directory."""
        return self.run is not None


def open_side(path: str | os.PathLike) -> Side:
    """A spec file (loaded and checked) or a run directory (a folder with ``spec.yaml`` and ``metrics.csv``).

    Raises :class:`~nnspec.errors.NnspecError` for a path that is neither, and
    :class:`~nnspec.errors.SpecError` for a spec that does not check.
    """
    from .. import load

    p = Path(path)
    if p.is_dir():
        missing = [name for name in ("spec.yaml", "metrics.csv") if not (p / name).is_file()]
        if missing:
            raise NnspecError(
                f"{p}: not a run directory (it lacks {' and '.join(missing)}); diff takes two spec files or two run "
                "directories written by nnspec run"
            )
        record = read_run_checked(p)
        return Side(p, load(os.fspath(p / "spec.yaml")), record, _read_env(p))
    if not p.exists():
        raise NnspecError(f"{p}: no such file or directory")
    return Side(p, load(os.fspath(p)))


def read_run_checked(directory: str | os.PathLike) -> RunRecord:
    """:func:`nnspec.runtime.rundir.read_run`, with a JSON file of the run nested too deeply to read (Python's
    decoder recurses) a :class:`~nnspec.errors.DataError` naming the run instead of an internal error."""
    from ..errors import DataError
    from ..runtime.rundir import read_run

    try:
        return read_run(directory)
    except RecursionError:
        raise DataError(
            f"{directory}: a JSON file of this run (test.json, env.json, run.json) is nested too deeply to read"
        ) from None


def _read_env(folder: Path) -> dict[str, Any]:
    import json

    path = folder / "env.json"
    if not path.is_file() or path.stat().st_size > _MAX_ENV_BYTES:  # absent, a FIFO reading would wait on, or huge
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def number(value: Any) -> float | None:
    """``value`` as a finite-or-not float, None when it is not a number (or is NaN: no value)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def metric_deltas(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per epoch (the union of both runs' epochs): each metric in A, in B and B minus A (``<m>_a``, ``<m>_b``,
    ``<m>_delta``)."""
    import pandas as pd

    left = a.set_index("epoch")[list(METRICS)]
    right = b.set_index("epoch")[list(METRICS)]
    joined = left.add_suffix("_a").join(right.add_suffix("_b"), how="outer").sort_index()
    out = pd.DataFrame(index=joined.index)
    for m in METRICS:
        out[f"{m}_a"] = joined[f"{m}_a"]
        out[f"{m}_b"] = joined[f"{m}_b"]
        out[f"{m}_delta"] = joined[f"{m}_b"] - joined[f"{m}_a"]
    return out.reset_index()


def score_deltas(
    a: Mapping[str, Any] | None, b: Mapping[str, Any] | None
) -> list[tuple[str, float | None, float | None, float | None]]:
    """``(metric, A, B, B - A)`` for the test loss and accuracy; None where a run has no score."""
    rows = []
    for m in TEST_METRICS:
        va, vb = number((a or {}).get(m)), number((b or {}).get(m))
        rows.append((m, va, vb, vb - va if va is not None and vb is not None else None))
    return rows


def env_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, A, B)`` for the :data:`ENV_KEYS` whose values differ."""
    return [(k, a.get(k), b.get(k)) for k in ENV_KEYS if a.get(k) != b.get(k)]
