"""What a run ran on: nnspec, engine and Python versions, device, backend, seed (``env.json``)."""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..backends.base import CompiledModel


def _safe(call: Any) -> Any:
    try:
        return call()
    except Exception as exc:  # an engine that cannot answer must not lose the run
        return f"unknown ({type(exc).__name__}: {exc})"


def environment(model: "CompiledModel", compile_seconds: float | None = None) -> dict[str, Any]:
    """A JSON-ready description of where and how ``model`` runs."""
    import numpy as np

    from ..version import __version__

    backend = model.backend
    return {
        "nnspec": __version__,
        "backend": backend.name,
        "engine": getattr(backend, "engine", backend.name),
        "engine_version": _safe(backend.engine_version),
        "device": model.device,
        "devices_available": _safe(backend.devices),
        "accelerators": _safe(backend.device_details),
        "execution": _safe(model.execution_notes),
        "dtype": model.dtype,
        "seed": model.graph.train.seed,
        "compile_seconds": float(compile_seconds if compile_seconds is not None else model.compile_seconds),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "argv": list(sys.argv),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
