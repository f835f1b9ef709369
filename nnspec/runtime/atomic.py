"""Files that are whole or absent: atomic writes, and JSON without NaN or Infinity tokens.

A file is written to a temporary name in its own folder, flushed and synced, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows); the folder is synced so that the rename itself
survives a power cut. A process killed at any moment leaves either the old file, the new file, or a
stray ``.tmp-*`` file that no reader looks at.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

#: Prefix of every temporary name nnspec writes; readers skip such names and cleaners remove them.
TEMP_PREFIX = ".tmp-"


def _file_mode() -> int:
    """The mode a plain ``open(..., 'w')`` would give a new file (0o666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` so that ``path`` is always either the old file or the whole new one."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(payload))


def atomic_write_with(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Like :func:`atomic_write`, for writers that take a file name (``write(tmp_path)`` fills it)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{target.stem}-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        os.chmod(tmp, _MODE)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(target.parent)
    return target


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON ``null``), recursively.

    NumPy scalars and arrays become plain Python numbers and lists.
    """
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value: Any) -> str:
    """Indented JSON text of ``value`` that strict parsers accept: non-finite numbers written as ``null``."""
    return json.dumps(finite_json(value), indent=2, allow_nan=False, default=str) + "\n"
