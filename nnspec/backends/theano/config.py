"""PyTensor set-up done by nnspec before PyTensor is imported: linker, BLAS, compile cache, floatX.

Linker (``NNSPEC_THEANO_MODE=auto|c|numba|jax``, default ``auto``):

* ``c``: PyTensor's C linker (``cvm``) with a real BLAS linked for its matrix products. A pip install of
  PyTensor finds no BLAS flags by itself, so nnspec looks for a system BLAS library (OpenBLAS first, then
  MKL's ``mkl_rt``, then BLIS and the reference ``blas``) in the usual library folders and through
  ``ctypes.util.find_library``, links it by file name (``-l:libopenblas.so.0`` works without the ``-dev``
  package) and checks once, by compiling a small program, that the flags link and run. The result is
  remembered in the compile cache.
* ``numba``: PyTensor's Numba linker (its own default); needs no C compiler and no system BLAS.
* ``jax``: PyTensor's JAX linker; the GPU path.

``auto`` picks ``jax`` when a GPU is asked for, else ``c`` when a BLAS was found, else ``numba``: the
measured order on CPU (see docs/backends.md). Without a BLAS the C linker's matrix products are several
times slower than Numba's, so nnspec deliberately falls back to Numba and says so in ``nnspec backends``.

Flags the user gives in ``PYTENSOR_FLAGS`` win over nnspec's. ``NNSPEC_BLAS_LDFLAGS`` sets the BLAS flags
explicitly (an empty value turns BLAS off). The compile cache lives in ``$NNSPEC_PYTENSOR_CACHE``, default
``$XDG_CACHE_HOME/nnspec/pytensor`` (``~/.cache/nnspec/pytensor``).

PyTensor's JAX dispatch module switches JAX's global ``jax_enable_x64`` on import (on when floatX is
float64, off otherwise); :func:`import_jax_linker` imports it with the user's setting saved and restored,
so that a JAX backend in the same process keeps its float32 results.
"""

from __future__ import annotations

import ctypes.util
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODES: tuple[str, ...] = ("c", "numba", "jax")
MODE_ENV = "NNSPEC_THEANO_MODE"
CACHE_ENV = "NNSPEC_PYTENSOR_CACHE"
BLAS_ENV = "NNSPEC_BLAS_LDFLAGS"

_LIB_DIRS: tuple[str, ...] = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/opt/homebrew/opt/openblas/lib",
    "/usr/local/opt/openblas/lib",
)
# library base names, in order of preference (all export the Fortran BLAS symbols PyTensor calls)
_BLAS_NAMES: tuple[str, ...] = ("openblas", "mkl_rt", "blis", "blas")


@dataclass(frozen=True)
class Setup:
    """What :func:`setup` decided: the BLAS flags (empty when none), where they came from, the cache."""

    blas_ldflags: str
    blas_source: str
    compiledir: str


_setup: Setup | None = None


def cache_dir() -> Path:
    """The compile cache folder (``$NNSPEC_PYTENSOR_CACHE`` or ``~/.cache/nnspec/pytensor``)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nnspec" / "pytensor"


def _user_flags() -> dict[str, str]:
    flags: dict[str, str] = {}
    for item in os.environ.get("PYTENSOR_FLAGS", "").split(","):
        key, sep, value = item.partition("=")
        if sep:
            flags[key.strip()] = value.strip()
    return flags


def _library_files(name: str) -> list[Path]:
    """Shared-library files called ``lib<name>.so*`` / ``.dylib`` in the usual folders."""
    dirs = list(_LIB_DIRS) + [os.path.join(sys.prefix, "lib")]
    dirs += [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    found: list[Path] = []
    for d in dict.fromkeys(dirs):
        folder = Path(d)
        if not folder.is_dir():
            continue
        for pattern in (f"lib{name}.so", f"lib{name}.so.*", f"lib{name}.dylib"):
            found += sorted(p for p in folder.glob(pattern) if p.is_file())
    located = ctypes.util.find_library(name)
    if located and os.path.isabs(located) and Path(located).is_file():
        found.append(Path(located))
    return found


def _flags_for(lib: Path) -> str:
    """Linker flags for one library file: by name when it is a plain ``lib<x>.so``, else by file name."""
    folder = lib.parent
    stem = lib.name
    rpath = "" if str(folder) in _LIB_DIRS[:4] else f" -Wl,-rpath,{folder}"
    if stem.endswith(".so") or stem.endswith(".dylib"):
        name = stem[3:].rsplit(".", 1)[0]
        return f"-L{folder} -l{name}{rpath}"
    return f"-L{folder} -l:{stem}{rpath}"


def blas_candidates() -> list[str]:
    """Candidate ``blas__ldflags`` values, best first (not yet checked by linking)."""
    seen: dict[str, None] = {}
    for name in _BLAS_NAMES:
        for lib in _library_files(name):
            seen.setdefault(_flags_for(lib), None)
    return list(seen)


def _check_flags(flags: str, cache: Path) -> bool:
    """True when ``flags`` link and run a BLAS call; remembered in ``cache`` per flags and library files."""
    marker = cache / "nnspec-blas-check.json"
    key = hashlib.sha256(flags.encode()).hexdigest()[:16]
    try:
        known = json.loads(marker.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return bool(known[key])
    from pytensor.link.c.cmodule import try_blas_flag

    ok = bool(try_blas_flag(flags.split()))
    known[key] = ok
    try:
        cache.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(known))
    except OSError:
        pass
    return ok


def setup() -> Setup:
    """Configure and import PyTensor once (idempotent); returns the BLAS decision."""
    global _setup
    if _setup is not None:
        return _setup
    cache = cache_dir()
    user = _user_flags()
    if "pytensor" not in sys.modules:
        ours = {"floatX": "float32", "base_compiledir": str(cache), "warn_float64": "ignore"}
        if "blas__ldflags" not in user and BLAS_ENV in os.environ:
            ours["blas__ldflags"] = os.environ[BLAS_ENV]
        elif "blas__ldflags" not in user:
            ours["blas__ldflags"] = ""  # decided below; keeps PyTensor from its own slow, failing search
        merged = {**ours, **user}
        os.environ["PYTENSOR_FLAGS"] = ",".join(f"{k}={v}" for k, v in merged.items())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pytensor

    compiledir = str(pytensor.config.compiledir)
    if "blas__ldflags" in user:
        _setup = Setup(user["blas__ldflags"], "PYTENSOR_FLAGS", compiledir)
    elif BLAS_ENV in os.environ:
        _setup = Setup(os.environ[BLAS_ENV], BLAS_ENV, compiledir)
    else:
        chosen = ""
        for flags in blas_candidates():
            if _check_flags(flags, cache):
                chosen = flags
                break
        pytensor.config.blas__ldflags = chosen
        _setup = Setup(chosen, "detected" if chosen else "none found", compiledir)
    return _setup


def default_mode(device: str) -> str:
    """The linker used for ``device`` (``cpu``/``gpu``): ``$NNSPEC_THEANO_MODE`` or the measured best."""
    setup()
    requested = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if requested != "auto":
        if requested not in MODES:
            from ...errors import BackendError

            raise BackendError(f"{MODE_ENV}={requested!r} is not a PyTensor linker nnspec knows; expected auto, c, numba or jax")
        return requested
    if device == "gpu":
        return "jax"
    return "c" if setup().blas_ldflags else "numba"


def import_jax_linker() -> None:
    """Import PyTensor's JAX linker without letting it change JAX's global ``jax_enable_x64``."""
    if "pytensor.link.jax.dispatch" in sys.modules:
        return
    import jax

    before = bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]
    try:
        import pytensor.link.jax.dispatch  # noqa: F401  (registers the JAX lowerings)
    finally:
        jax.config.update("jax_enable_x64", before)


def get_mode(mode: str, *, keep_buffers: bool = False) -> Any:
    """PyTensor's compile mode object for linker ``mode`` (``c``, ``numba`` or ``jax``).

    With ``keep_buffers`` the C linker keeps each intermediate array's memory between calls (``cvm_nogc``)
    instead of freeing it after its last use and allocating it again on the next call: for a function
    called once per step this saves the allocator's work (multi-megabyte convnet patches, fresh pages each
    step) at the price of holding the intermediates' memory while the function lives.

    The C mode leaves out PyTensor's ``symbolic_op_recognition`` rewrites, which would turn nnspec's
    elementwise softmax (``exp(x) / sum(exp(x))``) back into PyTensor's ``Softmax``, an op without C code
    that the C linker runs through a Python ``perform`` (see :mod:`.ops`).
    """
    setup()
    from pytensor.compile.mode import Mode
    from pytensor.compile.mode import get_mode as pt_get_mode

    if mode == "c":
        linker = "cvm_nogc" if keep_buffers else "cvm"
        return Mode(linker=linker, optimizer="fast_run").excluding("symbolic_op_recognition")
    if mode == "numba":
        return pt_get_mode("NUMBA")
    if mode == "jax":
        import_jax_linker()
        return pt_get_mode("JAX")
    raise ValueError(f"unknown PyTensor mode {mode!r}")
