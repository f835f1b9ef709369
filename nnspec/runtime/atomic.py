"""Files that are whole or absent: atomic writes of one file, of several files, and of a folder.

A file is written to a temporary name in its own folder, flushed and synced, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows); the folder is synced so that the rename itself
survives a power cut. A process killed at any moment leaves either the old file, the new file, or a
stray ``.tmp-*`` file that no reader looks at.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
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
        write(tmp)
        os.chmod(tmp, _MODE)  # after the writer, which may have made the file anew (safetensors does, mode 0o600)
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(target.parent)
    return target


def atomic_write_all(jobs: Sequence[tuple[str | os.PathLike, Callable[[str], Any]]]) -> list[Path]:
    """Write several files, none replaced before all are written: each ``write(tmp)`` fills a temporary file
    beside its target, every one is synced, then all are renamed into place and their folders synced.

    On an error the temporary files, and any target already renamed into place, are removed, and the error is
    raised (an :class:`OSError` with the target it was writing as its ``filename``).
    """
    temps: list[tuple[str, Path]] = []
    done: list[Path] = []
    target = Path()
    try:
        for path, write in jobs:
            target = Path(path)
            fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{target.stem}-", suffix=target.suffix, dir=target.parent)
            os.close(fd)
            temps.append((tmp, target))
            write(tmp)
            os.chmod(tmp, _MODE)
            _fsync_file(tmp)
        for tmp, target in temps:
            os.replace(tmp, target)
            done.append(target)
    except BaseException as exc:
        if isinstance(exc, OSError):
            exc.filename = str(target)
        for name in [Path(tmp) for tmp, _ in temps] + done:
            try:
                os.unlink(name)
            except OSError:
                pass
        raise
    for folder in dict.fromkeys(target.parent for _, target in temps):
        fsync_dir(folder)
    return done


def atomic_folder(path: str | os.PathLike, fill: Callable[[Path], Any]) -> Path:
    """Write a folder whole: ``fill(tmp)`` writes its files into a temporary folder beside ``path``, every file is
    synced, and the folder is renamed into place in one step (an existing folder there is replaced).

    A process killed at any moment leaves the old folder, the new one, or a stray ``.tmp-*`` folder. On an
    error (a full disk: ``OSError``) the temporary folder is removed, the old folder is left as it was, and
    the error is raised.
    """
    final = Path(path)
    tmp = final.with_name(f"{TEMP_PREFIX}{final.name}-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        fill(tmp)
        for entry in tmp.iterdir():
            if entry.is_file():
                _fsync_file(entry)
        fsync_dir(tmp)
        _rename_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(final.parent)
    return final


def _rename_into_place(tmp: Path, final: Path) -> None:
    """Rename the folder ``tmp`` to ``final``; an existing ``final`` is moved aside first, and back on failure."""
    if not final.exists():
        os.rename(tmp, final)
        return
    stale = final.with_name(f"{TEMP_PREFIX}stale-{final.name}-{os.getpid()}")
    os.rename(final, stale)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(stale, final)
        raise
    shutil.rmtree(stale, ignore_errors=True)


def _fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
