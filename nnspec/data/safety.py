"""Defences shared by every reader of user files (data, inputs, weights).

* :func:`check_path` / :func:`open_regular`: a path must name a regular file. NUL bytes, missing files,
  folders, FIFOs, devices, sockets and unreadable files are refused with a message naming the path; a FIFO
  is never opened in a way that blocks.
* :func:`check_size`: a size a file *declares* (an IDX or ``.npy`` header, a zip member) is refused before
  anything is allocated when it is over :func:`max_bytes` (4 GiB, or ``$NNSPEC_MAX_DATA_BYTES``) or over
  the memory available.
* :func:`first_bad_value` / :func:`check_features`: NaN, infinity and values that overflow float32 are
  refused, naming the first bad index (``x[12, 3, 4]``).
* :func:`class_indices`: labels become int32 class indices only when none is negative, fractional, NaN or
  beyond int32; otherwise the first bad label is named.

Every problem is raised as the error class the caller passes (:class:`DataError` by default).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import BinaryIO, Callable

import numpy as np

from ..errors import DataError, NnspecError

#: Largest size a file may declare, unless ``$NNSPEC_MAX_DATA_BYTES`` says otherwise.
DEFAULT_MAX_BYTES = 4 << 30
MAX_BYTES_ENV = "NNSPEC_MAX_DATA_BYTES"
INT32_MAX = 2**31 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
_CHUNK_ELEMENTS = 1 << 22

ErrorType = Callable[[str], NnspecError]


def shown(path: str | os.PathLike) -> str:
    """``path`` as printed in messages: NUL bytes spelled ``\\0`` so a message never carries one."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    return text.replace("\0", "\\0")


def human_bytes(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps it at least 1 (``3.0 GiB``)."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"  # pragma: no cover - the loop always returns


def max_bytes() -> int:
    """The cap on declared sizes: ``$NNSPEC_MAX_DATA_BYTES`` (bytes, or a size such as ``8G``), else 4 GiB.

    Raises :class:`~nnspec.compiler.env_settings.EnvironmentSettingError` naming the variable when it is not a positive size.
    """
    from ..compiler.env_settings import env_size

    return env_size(MAX_BYTES_ENV, DEFAULT_MAX_BYTES) or DEFAULT_MAX_BYTES


def available_memory() -> int | None:
    """Bytes of memory this process can still get (see :func:`nnspec.compiler.memory.available_memory`: the
    available memory, bounded by a cgroup limit and by ``ulimit -v``/``-d``); None if unknown."""
    from ..compiler.memory import available_memory as room

    return room()[0]


def check_size(nbytes: int, path: str, what: str, error: ErrorType = DataError) -> None:
    """Refuse ``nbytes`` (a size ``path`` declares for ``what``) over the cap or over the memory available."""
    cap = max_bytes()
    if nbytes > cap:
        raise error(
            f"{shown(path)}: {what}: {human_bytes(nbytes)} ({nbytes} bytes) declared, over the limit of "
            f"{human_bytes(cap)}; set ${MAX_BYTES_ENV} to a larger number of bytes if the file is genuine"
        )
    free = available_memory()
    if free is not None and nbytes > free:
        raise error(
            f"{shown(path)}: {what}: {human_bytes(nbytes)} ({nbytes} bytes) declared, but only {human_bytes(free)} of "
            "memory is available"
        )


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _os_problem(path: str, exc: OSError, what: str) -> str:
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return f"{shown(path)}: no such {what}"
    if isinstance(exc, PermissionError):
        return f"{shown(path)}: permission denied (cannot read the {what})"
    return f"{shown(path)}: cannot read the {what} ({exc.strerror or exc})"


def check_path(path: str | os.PathLike, what: str = "file", error: ErrorType = DataError) -> os.stat_result:
    """Stat ``path`` and refuse anything but a readable regular file (``what`` names it in messages)."""
    path = os.fspath(path)
    if "\0" in path:
        raise error(f"{shown(path)}: the path contains a NUL byte; no {what} can have that name")
    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:
        raise error(
            _os_problem(path, exc, what) if isinstance(exc, OSError) else f"{shown(path)}: not a usable path ({exc})"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{shown(path)}: is {_kind(st.st_mode)}, expected a {what}")
    return st


def open_regular(path: str | os.PathLike, what: str = "file", error: ErrorType = DataError) -> BinaryIO:
    """Open ``path`` for binary reading after :func:`check_path`; never blocks, even if a FIFO is swapped in."""
    path = os.fspath(path)
    check_path(path, what, error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(_os_problem(path, exc, what)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{shown(path)}: is {_kind(st.st_mode)}, expected a {what}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def format_index(name: str, index: tuple[int, ...]) -> str:
    """``name[i, j, ...]``: how a position in an array is shown in messages."""
    return f"{name}[{', '.join(str(int(i)) for i in index)}]"


@dataclass(frozen=True)
class BadValue:
    """A value refused in an array: its index, the value, and whether it is finite (too large for float32)."""

    index: tuple[int, ...]
    value: float | complex

    def describe(self, name: str) -> str:
        """``x[12, 3] = nan`` or ``x[0, 1] = 1e+39 (too large for float32)``."""
        finite = bool(np.isfinite(self.value))
        return f"{format_index(name, self.index)} = {self.value!r}" + (" (too large for float32)" if finite else "")


def first_bad_value(array: np.ndarray, float32_range: bool = True) -> BadValue | None:
    """The first NaN or infinity in ``array`` (row-major order); None when there is none.

    With ``float32_range``, a finite float64 value too large for float32 (it would become infinity) is bad
    too. Works block by block along the first axis, so a large array needs little extra memory.
    """
    if array.dtype.kind not in "fc":
        return None
    scalar = array.ndim == 0
    if scalar:
        array = array.reshape(1)
    limit = FLOAT32_MAX if float32_range and array.dtype.kind == "f" and array.dtype.itemsize > 4 else None
    per_row = max(1, int(np.prod(array.shape[1:], dtype=np.float64)))
    step = max(1, _CHUNK_ELEMENTS // per_row)
    for start in range(0, array.shape[0], step):
        block = array[start : start + step]
        bad = ~np.isfinite(block)
        if limit is not None:
            with np.errstate(invalid="ignore"):
                bad |= np.abs(block) > limit
        if bad.any():
            where = np.unravel_index(int(np.argmax(bad.reshape(-1))), block.shape)
            index = () if scalar else (int(where[0]) + start, *(int(i) for i in where[1:]))
            return BadValue(index, block[where].item())
    return None


def check_features(array: np.ndarray, path: str, name: str, error: ErrorType = DataError) -> np.ndarray:
    """Refuse a 0-d, non-numeric, empty or non-finite feature array; ``name`` is the array's name in messages."""
    if array.ndim == 0:
        raise error(
            f"{shown(path)}: '{name}' is a 0-d array (a single number); expected one example per row, shape (N, ...)"
        )
    if array.dtype.kind not in "iufb":
        raise error(f"{shown(path)}: inputs must be numeric; '{name}' has dtype {array.dtype}")
    if len(array) == 0:
        raise error(f"{shown(path)}: '{name}' holds no examples (shape {array.shape})")
    bad = first_bad_value(array)
    if bad is not None:
        raise error(f"{shown(path)}: {bad.describe(name)}; nnspec refuses NaN and infinite input values")
    return array


def class_indices(
    y: np.ndarray, path: str, name: str = "y", at: Callable[[int], str] | None = None, error: ErrorType = DataError
) -> np.ndarray:
    """Labels ``y`` (one per example, shape (N,) or (N, 1)) as int32 class indices, or an error naming the first bad
    one.

    ``at(i)`` names position ``i`` in messages (default ``name[i]``). Refused: 0-d or multi-column arrays,
    non-numeric dtypes, NaN, infinity, fractional values, negative values and values beyond int32.
    """
    at = at or (lambda i: f"{name}[{i}]")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 0:
        raise error(
            f"{shown(path)}: '{name}' is a 0-d array (a single number); expected one label per example, shape (N,)"
        )
    if y.ndim != 1:
        raise error(f"{shown(path)}: labels must be one integer per example; '{name}' has shape {y.shape}")
    if y.dtype.kind == "b":
        return y.astype(np.int32)
    if y.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(y) | (y != np.floor(y)) | (y < 0) | (y > INT32_MAX)
    elif y.dtype.kind in "iu":
        bad = (y < 0) | (y > INT32_MAX)
    else:
        raise error(f"{shown(path)}: labels must be integer class indices; '{name}' has dtype {y.dtype}")
    if bad.any():
        i = int(np.argmax(bad))
        value = y[i]
        if y.dtype.kind == "f" and not np.isfinite(value):
            why = "not finite"
        elif y.dtype.kind == "f" and value != np.floor(value):
            why = "not a whole number"
        elif value < 0:
            why = "negative"
        else:
            why = f"beyond the largest class index nnspec can hold ({INT32_MAX})"
        raise error(f"{shown(path)}: labels must be class indices 0, 1, 2, ...; {at(i)} is {value.item()!r}, {why}")
    return y.astype(np.int32)
