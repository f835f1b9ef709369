"""Files that are whole or absent: atomic writes.

A file is written to a temporary name in its own folder, flushed and synced, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows); the folder is synced so that the rename itself
survives a power cut. A process killed at any moment leaves either the old file, the new file, or a
stray ``.tmp-*`` file that no reader looks at.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

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
