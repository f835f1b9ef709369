"""Run directories (contract): what ``nnspec run`` writes, and reading runs back for ``nnspec plot``.

A run directory holds ``spec.yaml`` (resolved), ``metrics.csv``, ``test.json``, ``history.png``,
``weights.safetensors`` and ``env.json``; the default place is ``runs/<name>/<backend>-<timestamp>/``.
Beside them, ``run.json`` records the run's status and manifest (:mod:`nnspec.runtime.run_status`,
:mod:`nnspec.runtime.run_manifest`) and ``checkpoints/`` its checkpoints (:mod:`nnspec.runtime.checkpoints`).
Every file is written atomically, its temporary in ``.nnspec-tmp/`` rather than in the run root
(:func:`~nnspec.runtime.run_manifest.write_in_run`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import DataError
from ..semantics.weights import save_weights
from ..strict_json import json_text
from .atomic import atomic_write_with
from .history import read_metrics, write_metrics
from .plots import plot_history
from .run_manifest import write_in_run
from .run_status import read_status
from .specfile import dump_spec

if TYPE_CHECKING:
    import pandas as pd

    from ..backends.base import CompiledModel
    from ..compiler.ir import Graph


def default_run_dir(
    graph: "Graph", backend: str, root: str | os.PathLike = "runs", now: _dt.datetime | None = None
) -> Path:
    """``<root>/<name>/<backend>-<YYYYmmdd-HHMMSS>``, with ``-2``, ``-3``, ... added when that exists."""
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / graph.name / f"{backend}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _absolute_data_path(graph: "Graph") -> "Graph":
    """The graph with a relative ``data.path`` made absolute, so the run's spec.yaml loads from anywhere."""
    from dataclasses import replace

    from ..data.load import resolve_path

    path = graph.data.path
    if not path or os.path.isabs(path):
        return graph
    return graph.replace(data=replace(graph.data, path=os.path.abspath(resolve_path(path, graph, None) or path)))


def _write_json(directory: Path, name: str, data: Mapping[str, Any]) -> None:
    text = json_text(data).encode("utf-8")
    write_in_run(directory, name, lambda tmp: Path(tmp).write_bytes(text))


def write_spec(directory: str | os.PathLike, graph: "Graph") -> Path:
    """Write the resolved ``spec.yaml`` of a run (data paths made absolute), atomically."""
    from ..version import __version__

    graph = _absolute_data_path(graph)
    header = f"resolved by nnspec {__version__}" + (f" from {graph.source}" if graph.source else "")
    text = dump_spec(graph, header).encode("utf-8")
    return write_in_run(directory, "spec.yaml", lambda tmp: Path(tmp).write_bytes(text))


def write_weights(path: str | os.PathLike, weights: Mapping[str, Any], graph: "Graph") -> Path:
    """Write a weights file atomically."""
    return atomic_write_with(path, lambda tmp: save_weights(tmp, weights, graph))


def write_run(
    directory: str | os.PathLike,
    model: "CompiledModel",
    history: "pd.DataFrame",
    test: Mapping[str, float],
    env: Mapping[str, Any],
) -> Path:
    """Write every contract file of a finished run into ``directory`` (created if needed), each atomically.

    The weights go first: they are what a failure afterwards must not lose.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    graph = model.graph
    weights = model.get_weights()
    write_in_run(out, "weights.safetensors", lambda tmp: save_weights(tmp, weights, graph))
    write_spec(out, graph)
    write_in_run(out, "metrics.csv", lambda tmp: write_metrics(history, tmp))
    _write_json(out, "test.json", {"loss": float(test["loss"]), "accuracy": float(test["accuracy"])})
    title = f"{graph.name} ({model.backend.name})"
    write_in_run(out, "history.png", lambda tmp: plot_history(history, tmp, title))
    _write_json(out, "env.json", env)
    return out


@dataclass(frozen=True)
class RunRecord:
    """A run directory read back: its label parts and metrics."""

    directory: Path
    name: str
    backend: str
    history: "pd.DataFrame"
    test: Mapping[str, float] | None
    status: str = "complete"

    @property
    def complete(self) -> bool:
        """Whether the run finished (see :func:`nnspec.runtime.run_status.read_status`)."""
        return self.status == "complete"

    @property
    def label(self) -> str:
        """``<spec name> (<backend>)``, with the status added for a run that did not complete."""
        return f"{self.name} ({self.backend})" + ("" if self.complete else f" [{self.status}]")


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    return data if isinstance(data, dict) else None


def read_run(directory: str | os.PathLike) -> RunRecord:
    """Read a run directory's metrics, spec name and backend; a missing ``metrics.csv`` is a :class:`DataError`."""
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"{d}: no such run directory")
    history = read_metrics(d / "metrics.csv")
    name = d.parent.name or d.name
    spec = d / "spec.yaml"
    if spec.is_file():
        import yaml

        try:
            loaded = yaml.safe_load(spec.read_text())
            if isinstance(loaded, dict) and isinstance(loaded.get("name"), str):
                name = loaded["name"]
        except yaml.YAMLError:
            pass
    env = _read_json(d / "env.json") or {}
    backend = str(env.get("backend") or d.name.split("-")[0])
    return RunRecord(d, name, backend, history, _read_json(d / "test.json"), read_status(d))
