"""PyTensor set-up done by nnspec before PyTensor is imported: linker, BLAS, compile cache, floatX.

Linkers (``NNSPEC_THEANO_MODE=auto|c|numba|jax``, default ``auto``):

* ``c``: PyTensor's C linker (``cvm``) with a real BLAS linked for its matrix products. A pip install of
  PyTensor finds no BLAS flags by itself, so nnspec looks for a system BLAS library (OpenBLAS first, then
  MKL's ``mkl_rt``, then BLIS and the reference ``blas``) in the usual library folders and through
  ``ctypes.util.find_library``, links it by file name (``-l:libopenblas.so.0`` works without the ``-dev``
  package) and checks once, by compiling a small program, that the flags link and run. The result is
  remembered in the compile cache.
* ``numba``: PyTensor's Numba linker (its own default); needs no C compiler and no system BLAS.
* ``jax``: PyTensor's JAX linker: the same PyTensor graph (after PyTensor's rewrites) handed to XLA as one
  jitted program per compiled function; the GPU path, and on the CPU the fast one for float32.

The rule of ``auto`` (:func:`choose_linker`), per compiled model:

1. GPU: ``jax`` (PyTensor reaches a GPU only through its JAX linker).
2. CPU, float64, or JAX not installed: the *base linker* (:func:`default_mode`): ``c`` when a BLAS was
   found, else ``numba``. PyTensor's JAX linker computes in float32 here (nnspec keeps JAX's global
   ``jax_enable_x64`` off, since JAX and PyTensor share a process), so float64 stays on the C linker.
3. CPU, float32, a graph with a windowed layer (convolution or pooling): ``jax``.
4. CPU, float32, no windowed layer: ``jax`` when the forward pass of one training batch is at least
   :data:`JAX_MIN_STEP_FLOPS` (1 MFLOP), else the base linker: for a tiny step the JAX linker's fixed cost
   per call (about 0.25 ms more than the C linker's 0.04 ms) outweighs what XLA saves.

Measurements behind the rule (2-core AMD EPYC shared with other jobs, load average 2.5 to 4.6 throughout,
so only A/B comparisons run back to back in one process mean anything; Fashion-MNIST unless said, batch
128, Adam, float32; milliseconds per training step, median over rounds, range in brackets):

* benchmark MLP 784-128-10, 3 rounds: C linker + OpenBLAS 4.05 [2.3-4.5], JAX linker 2.39 [1.7-2.8]
  (nnspec's JAX backend 1.95 [1.8-2.0]);
* MLP 784-512-10 with dropout, process CPU time per step, 2 rounds: C 17.6, JAX linker 9.9 (JAX backend 8.8);
* benchmark convnet (Keras's simple convnet), 2 rounds: C 134.9 [129-141], JAX linker 108.5 [107-110]
  (TensorFlow backend 109.6, JAX backend 169);
* digits MLP 64-128-10, batch 32 (0.6 MFLOP forward per step), 3 rounds: C 0.26, JAX linker 0.52;
* digits convnet (8x8, conv 16 3x3 same + max pool + dense), batch 32, 3 rounds: C 1.2 [1.1-1.7],
  JAX linker 0.68 [0.62-0.77].

The C linker loses on the MLPs because its elementwise code (Adam's update, ReLU, dropout) runs
single-threaded around the GEMMs (the fused Adam update of the 784x512 kernel took 3.2 ms a step in
PyTensor's profiler) and OpenBLAS's threads spin between calls (twice XLA's process CPU time for the same
step); on the convnet half its time is outside the GEMMs: the im2col copies (``Join`` of nine shifted
views), their gradient (nine ``IncSubtensor``) and the max-pool gradient's elementwise ops. nnspec's
JAX backend, whose convolution is XLA's own, ran the convnet slower than the im2col graph through XLA,
so the Theano lowering keeps im2col under every linker. Numba was slower than the C linker on the MLP in
docs/benchmarks.md's run and takes minutes to compile the convnet, so ``auto`` picks it only without a BLAS.

Flags the user gives in ``PYTENSOR_FLAGS`` (or ``THEANO_FLAGS``, Theano's name, read too; ``PYTENSOR_FLAGS``
wins on a key both set) win over nnspec's; an item that is not ``KEY=VALUE``, a setting PyTensor does not know
or refuses is an error naming the variable (PyTensor alone would skip it with a warning). ``NNSPEC_BLAS_LDFLAGS``
sets the BLAS flags explicitly (an empty value turns BLAS off); explicit flags must look like linker flags
(:func:`blas_flags_problem`) and link a program calling BLAS. nnspec writes the merged flags back with every
value quoted (:func:`flags_string`), so no value can add a setting. The compile cache lives in
``$NNSPEC_PYTENSOR_CACHE``, default ``$XDG_CACHE_HOME/nnspec/pytensor`` (``~/.cache/nnspec/pytensor``); one
nnspec cannot write in is refused, naming it.

PyTensor's JAX dispatch module switches JAX's global ``jax_enable_x64`` on import (on when floatX is
float64, off otherwise); :func:`import_jax_linker` imports it with the user's setting saved and restored,
so that a JAX backend in the same process keeps its float32 results.
"""

from __future__ import annotations

import ctypes.util
import hashlib
import importlib.util
import json
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...compiler.ir import Graph

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
#: Forward FLOPs of one training batch from which a float32 graph without windowed layers runs on the JAX linker.
JAX_MIN_STEP_FLOPS = 1_000_000


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


#: The variables PyTensor flags are read from, in order of precedence (a key in the first wins).
FLAG_VARIABLES: tuple[str, ...] = ("PYTENSOR_FLAGS", "THEANO_FLAGS")
_FLAG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_BAD_FLAG_CHARS = re.compile(r"[\x00-\x1f\x7f'\"`\\$;|&<>]")


def _error(message: str) -> Exception:
    from ...errors import BackendError

    return BackendError(message)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:80] + "...")


def parse_flags(text: str, variable: str = "PYTENSOR_FLAGS") -> dict[str, str]:
    """``KEY=VALUE`` items of a PyTensor flags string, split as PyTensor splits them (commas, shell quoting).

    Raises :class:`~nnspec.errors.BackendError` naming ``variable`` for an item that is not ``KEY=VALUE``, a key
    that is not a setting name, or unbalanced quotes; PyTensor itself would skip such an item with a warning.
    """
    splitter = shlex.shlex(text, posix=True)
    splitter.whitespace = ","
    splitter.whitespace_split = True
    try:
        items = [item.strip() for item in splitter]
    except ValueError as exc:
        raise _error(f"{variable}={_shown(text)} cannot be read: {exc}") from None
    flags: dict[str, str] = {}
    for item in filter(None, items):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _FLAG_KEY.fullmatch(key):
            raise _error(
                f"{variable}={_shown(text)}: {_shown(item)} is not a PyTensor setting; write KEY=VALUE items "
                "separated by commas, e.g. floatX=float32,linker=cvm"
            )
        flags[key] = value.strip()
    return flags


def _user_flags() -> dict[str, tuple[str, str]]:
    """The user's PyTensor flags, ``key -> (value, variable)``: ``PYTENSOR_FLAGS`` over ``THEANO_FLAGS``."""
    flags: dict[str, tuple[str, str]] = {}
    for variable in reversed(FLAG_VARIABLES):
        text = os.environ.get(variable, "")
        if text.strip():
            flags.update({k: (v, variable) for k, v in parse_flags(text, variable).items()})
    return flags


def flags_string(flags: dict[str, str]) -> str:
    """``flags`` as a ``PYTENSOR_FLAGS`` value: every value quoted, so that a comma, ``=`` or quote in it stays
    part of that value and can never add another setting."""
    for key in flags:
        if not _FLAG_KEY.fullmatch(key):
            raise ValueError(f"not a PyTensor setting name: {key!r}")
    return ",".join(f"{k}='" + v.replace("'", "'\"'\"'") + "'" for k, v in flags.items())


def blas_flags_problem(flags: str) -> str | None:
    """Why ``flags`` are not linker flags for a BLAS (None when they look right; empty means no BLAS).

    Each whitespace-separated flag starts with ``-`` (``-lopenblas``, ``-L/opt/lib``, ``-Wl,-rpath,/opt/lib``)
    or is the absolute path of a library; commas and ``=`` belong only in ``-Wl,`` options; no quotes, control
    characters or shell syntax.
    """
    bad = _BAD_FLAG_CHARS.search(flags)
    if bad:
        return f"linker flags cannot hold {bad.group()!r} (quotes, control characters and shell syntax are not flags)"
    for word in flags.split():
        if not (word.startswith("-") or word.startswith("/")) or word in ("-", "--"):
            return f"{word!r} is not a linker flag; write e.g. -lopenblas, -L/opt/lib -lopenblas or /path/libblas.so"
        if ("," in word or "=" in word) and not word.startswith("-Wl,"):
            return f"{word!r}: a comma or '=' belongs only in a -Wl, option (e.g. -Wl,-rpath,/opt/lib)"
    return None


def folder_problem(folder: Path) -> str | None:
    """Why nothing can be written in ``folder`` (created when missing); None when a file could be created there."""
    if folder.exists() and not folder.is_dir():
        return "it exists and is not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"it cannot be created ({exc.strerror or exc})"
    try:
        fd, probe = tempfile.mkstemp(prefix=".nnspec-probe-", dir=folder)
    except OSError as exc:
        return f"nothing can be written in it ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    return None


def _check_cache(user: dict[str, tuple[str, str]]) -> None:
    """Refuse a compile cache PyTensor could not write in, naming the variable that chose it."""
    if "compiledir" in user:
        value, variable = user["compiledir"]
        where, how = Path(value).expanduser(), f"compiledir in {variable}"
    elif "base_compiledir" in user:
        value, variable = user["base_compiledir"]
        where, how = Path(value).expanduser(), f"base_compiledir in {variable}"
    else:
        where = cache_dir()
        how = f"{CACHE_ENV}" if os.environ.get(CACHE_ENV) else f"the default; {CACHE_ENV} moves it"
    problem = folder_problem(where)
    if problem:
        raise _error(
            f"PyTensor's compile cache {_shown(os.fspath(where))} ({how}) cannot be used: {problem}; point "
            f"{CACHE_ENV} at a writable folder"
        )


def _explicit_blas(user: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """BLAS flags the user set (``blas__ldflags`` in the flags, else ``NNSPEC_BLAS_LDFLAGS``) and where; checked."""
    if "blas__ldflags" in user:
        flags, variable = user["blas__ldflags"]
    elif BLAS_ENV in os.environ:
        flags, variable = os.environ[BLAS_ENV].strip(), BLAS_ENV
    else:
        return None
    problem = blas_flags_problem(flags)
    if problem:
        raise _error(f"{variable}: BLAS flags {_shown(flags)} are not valid: {problem}")
    return flags, variable


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


def _import_pytensor(user: dict[str, tuple[str, str]]) -> Any:
    """Import PyTensor; a setting it refuses or does not know becomes a :class:`BackendError` naming the variable."""
    import warnings

    sources = sorted({variable for _, variable in user.values()}) or ["nnspec's settings"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            import pytensor
        except Exception as exc:  # PyTensor checks every setting while it imports
            raise _error(f"PyTensor refused its settings (from {', '.join(sources)}): {exc}") from None
    unknown = [
        str(w.message).rsplit(":", 1)[-1].strip() for w in caught if "does not recognise this flag" in str(w.message)
    ]
    if unknown:
        names = ", ".join(f"{k} (in {user[k][1]})" if k in user else k for k in unknown)
        raise _error(f"PyTensor has no setting {names}; remove it, or check its spelling")
    return pytensor


def _check_blas(flags: str, variable: str, cache: Path) -> None:
    """Refuse explicit BLAS flags that do not link a program calling BLAS (when a C compiler is there to try)."""
    import pytensor

    if not flags or not getattr(pytensor.config, "cxx", ""):
        return
    if not _check_flags(flags, cache):
        raise _error(
            f"{variable}: BLAS flags {_shown(flags)} do not link: a small program calling BLAS failed to build with "
            f"them; fix them, or unset {variable} to let nnspec find a BLAS ({BLAS_ENV}= with no value turns BLAS off)"
        )


def setup() -> Setup:
    """Configure and import PyTensor once (idempotent); returns the BLAS decision.

    Raises :class:`~nnspec.errors.BackendError` naming the variable for malformed ``PYTENSOR_FLAGS`` /
    ``THEANO_FLAGS`` or ``NNSPEC_BLAS_LDFLAGS``, a setting PyTensor refuses or does not know, BLAS flags that
    do not link, and a compile cache that cannot be written.
    """
    global _setup
    if _setup is not None:
        return _setup
    cache = cache_dir()
    user = _user_flags()
    explicit = _explicit_blas(user)
    if "pytensor" not in sys.modules:
        _check_cache(user)
        ours = {"floatX": "float32", "base_compiledir": str(cache), "warn_float64": "ignore", "blas__ldflags": ""}
        if explicit is not None:  # else decided below; "" keeps PyTensor from its own slow, failing search
            ours["blas__ldflags"] = explicit[0]
        os.environ["PYTENSOR_FLAGS"] = flags_string({**ours, **{k: v for k, (v, _) in user.items()}})
    pytensor = _import_pytensor(user)
    compiledir = str(pytensor.config.compiledir)
    if explicit is not None:
        _check_blas(*explicit, cache)
        _setup = Setup(explicit[0], explicit[1], compiledir)
    else:
        chosen = ""
        for flags in blas_candidates():
            if _check_flags(flags, cache):
                chosen = flags
                break
        pytensor.config.blas__ldflags = chosen
        _setup = Setup(chosen, "detected" if chosen else "none found", compiledir)
    return _setup


def _requested() -> str:
    """``$NNSPEC_THEANO_MODE`` (``auto`` when unset), checked."""
    requested = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if requested != "auto" and requested not in MODES:
        from ...errors import BackendError

        raise BackendError(
            f"{MODE_ENV}={requested!r} is not a PyTensor linker nnspec knows; expected auto, c, numba or jax"
        )
    return requested


def default_mode(device: str) -> str:
    """The base linker for ``device`` (``cpu``/``gpu``): ``$NNSPEC_THEANO_MODE`` when set, ``jax`` on the GPU,
    else ``c`` with a BLAS and ``numba`` without one. :func:`choose_linker` uses it where the JAX linker is
    not the measured best (float64, tiny steps, JAX missing)."""
    setup()
    requested = _requested()
    if requested != "auto":
        return requested
    if device == "gpu":
        return "jax"
    return "c" if setup().blas_ldflags else "numba"


@dataclass(frozen=True)
class LinkerChoice:
    """The linker a model runs on and, in a few words, why."""

    mode: str
    why: str


def _base_why(mode: str) -> str:
    return "the C linker with a BLAS" if mode == "c" else "Numba: no system BLAS found for the C linker"


def choose_linker(device: str, dtype: str = "float32", graph: "Graph | None" = None) -> LinkerChoice:
    """The linker for ``graph`` in ``dtype`` on ``device``: ``$NNSPEC_THEANO_MODE``, else the rule of ``auto``
    (see the module docstring, where the measurements behind it are)."""
    requested = _requested()
    if requested != "auto":
        return LinkerChoice(requested, f"set by {MODE_ENV}={requested}")
    base = default_mode(device)
    if device == "gpu":
        return LinkerChoice("jax", "GPU: PyTensor reaches the GPU only through its JAX linker")
    if dtype != "float32":
        return LinkerChoice(base, f"{dtype}: PyTensor's JAX linker computes in float32 only here, so {_base_why(base)}")
    if importlib.util.find_spec("jax") is None:
        return LinkerChoice(base, f"JAX is not installed, so {_base_why(base)}")
    if graph is None:
        return LinkerChoice("jax", "float32 on CPU: XLA measured 1.2-1.7x faster than the C linker")
    from ...compiler.opset import SPATIAL_OPS

    windowed = sorted({n.op for n in graph.nodes if n.op in SPATIAL_OPS})
    if windowed:
        return LinkerChoice(
            "jax",
            f"float32 {'/'.join(windowed)}: XLA measured 1.25x faster than the C linker on im2col "
            "convolutions (1.8x on a small convnet)",
        )
    step_flops = graph.flops * graph.train.batch_size
    if step_flops < JAX_MIN_STEP_FLOPS:
        return LinkerChoice(
            base,
            f"small step ({step_flops / 1e6:.2f} MFLOP forward, under {JAX_MIN_STEP_FLOPS / 1e6:g} MFLOP): "
            f"the JAX linker's per-call cost outweighs XLA's gain, so {_base_why(base)}",
        )
    return LinkerChoice(
        "jax",
        f"float32, {step_flops / 1e6:.0f} MFLOP forward per step: XLA measured 1.7x faster than the C linker on MLPs",
    )


def rule_notes() -> dict[str, str]:
    """The rule of ``auto`` and the base linker here, for ``nnspec backends``
    (:meth:`TheanoBackend.execution_notes`)."""
    info = setup()
    requested = _requested()
    base = default_mode("cpu")
    notes = {
        "linker": requested if requested != "auto" else "auto",
        "rule": f"{MODE_ENV} if set; GPU: jax; CPU float32 with JAX installed: jax for convolution/pooling or "
        f"at least {JAX_MIN_STEP_FLOPS / 1e6:g} MFLOP per step, else {base}; float64: {base}",
        "base_linker": base,
        "blas": f"{info.blas_ldflags} ({info.blas_source})" if info.blas_ldflags else f"none ({info.blas_source})",
        "compile_cache": str(cache_dir()),
    }
    if requested != "auto":
        notes["rule"] = f"{MODE_ENV}={requested}: every model runs on the {requested} linker"
    return notes


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
