"""What a run ran on (``env.json``: nnspec, engine and Python versions, device, backend, seed), and the settings
nnspec reads from environment variables, checked (:func:`check_environment`)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import sys
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..compiler.env_settings import (
    FALSE_WORDS,
    TRUE_WORDS,
    EnvironmentSettingError,
    env_flag,
    env_size,
    flag_problem,
    shown_value,
    size_problem,
)

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


# ---- settings read from the environment ---------------------------------------------------------------
#
# Every environment variable nnspec reads as a setting is listed in :data:`SETTINGS` with what it takes;
# :func:`check_environment` (run by the command line before any command) refuses a malformed value,
# naming the variable, instead of ignoring it. The readers below use the same checks, so a program that
# calls nnspec directly gets the same message. The readers and their error live in the compiler's layer
# (:mod:`nnspec.compiler.env_settings`), so that data and interop modules read settings without importing upwards.

__all__ = [
    "FALSE_WORDS",
    "SETTINGS",
    "TRUE_WORDS",
    "EnvironmentSettingError",
    "check_environment",
    "env_flag",
    "env_size",
    "environment",
    "setting_problem",
    "shown_value",
]

#: Thread counts of the numerical libraries nnspec's engines load (a positive whole number each).
THREAD_VARIABLES: tuple[str, ...] = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
#: Most threads a thread-count variable may ask for (more is a typo, not a machine).
MAX_THREADS = 1 << 16
_DIGITS = re.compile("[0-9]+")


def _whole(text: str, digits: int) -> int | None:
    """``text`` as a whole number of at most ``digits`` ASCII digits, else None."""
    text = text.strip()
    return int(text) if _DIGITS.fullmatch(text) and len(text) <= digits else None


def _threads_problem(value: str) -> str | None:
    for part in value.split(","):  # OMP_NUM_THREADS may list one count per nesting level
        count = _whole(part, 6)
        if count is None or not 0 < count <= MAX_THREADS:
            return f"not a thread count; give a positive whole number (at most {MAX_THREADS})"
    return None


def _count_problem(value: str) -> str | None:
    return None if _whole(value, 9) is not None else "not a whole number; give 0 or more"


def _seconds_problem(value: str) -> str | None:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if 0 < seconds <= 86400:
        return None
    return "not a timeout; give seconds above 0 and at most 86400"


def _theano_mode_problem(value: str) -> str | None:
    if value.strip().lower() in ("", "auto", "c", "numba", "jax"):
        return None
    return "not a PyTensor linker nnspec knows; give auto, c, numba or jax"


def _blas_problem(value: str) -> str | None:
    from ..backends.theano.config import blas_flags_problem

    problem = blas_flags_problem(value)
    return None if problem is None else f"not BLAS linker flags: {problem}"


def _folder_problem(value: str) -> str | None:
    if "\0" in value:
        return "not a path: it holds a NUL byte"
    path = os.path.expanduser(value)
    if os.path.exists(path) and not os.path.isdir(path):
        return "not a folder: it names something else that exists"
    return None


#: Each setting nnspec reads from the environment -> the check of a non-empty value (None: fine).
SETTINGS: dict[str, Callable[[str], str | None]] = {
    "NNSPEC_DEBUG": flag_problem,
    "NNSPEC_OFFLINE": flag_problem,
    "NNSPEC_MEMORY_LIMIT": size_problem,
    "NNSPEC_MAX_DATA_BYTES": size_problem,
    "NNSPEC_MAX_KERAS_CONFIG_BYTES": size_problem,
    "NNSPEC_MAX_KERAS_WEIGHTS_BYTES": size_problem,
    "NNSPEC_THEANO_MODE": _theano_mode_problem,
    "NNSPEC_BLAS_LDFLAGS": _blas_problem,
    "NNSPEC_PYTENSOR_CACHE": _folder_problem,
    "NNSPEC_DATA": _folder_problem,
    "NNSPEC_NUM_PROCESSES": _count_problem,
    "NNSPEC_PROCESS_ID": _count_problem,
    "NNSPEC_START_TIMEOUT": _seconds_problem,
    **{name: _threads_problem for name in THREAD_VARIABLES},
}
#: Settings whose empty value means something (NNSPEC_BLAS_LDFLAGS= turns BLAS off); others treat empty as unset.
_EMPTY_MEANS: frozenset[str] = frozenset({"NNSPEC_BLAS_LDFLAGS"})


def setting_problem(name: str, value: str) -> str | None:
    """Why ``value`` cannot be the value of environment setting ``name`` (None when it can, or ``name`` is not
    one nnspec reads)."""
    check = SETTINGS.get(name)
    if check is None or (not value.strip() and name not in _EMPTY_MEANS):
        return None
    return check(value)


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse a malformed value of any environment setting nnspec reads (:data:`SETTINGS`).

    Raises :class:`EnvironmentSettingError` naming every bad variable, its value and what it takes.
    """
    env = os.environ if environ is None else environ
    problems = []
    for name in SETTINGS:
        value = env.get(name)
        if value is None:
            continue
        problem = setting_problem(name, value)
        if problem:
            problems.append(f"environment variable {name}={shown_value(value)} is {problem}")
    if problems:
        raise EnvironmentSettingError("; ".join(problems))
