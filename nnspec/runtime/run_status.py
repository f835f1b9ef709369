"""A run directory's life: claimed by one process, marked with its status, complete only at the end.

``run.json`` is the run's status record, rewritten atomically at each change: ``running`` from the
moment the folder is claimed, then ``complete`` (written last, after every other file), or
``interrupted``, ``diverged`` or ``failed``. A run killed with SIGKILL stays ``running`` with a lock
nobody holds, which :func:`read_status` reports as ``interrupted``. Only a ``complete`` run counts as
finished for ``plot``, ``--resume`` and users.

The lock is an exclusive ``flock`` on ``.lock`` in the folder: the operating system releases it when
the process ends in any way, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import NnspecError
from ..strict_json import json_text
from .atomic import TEMP_PREFIX, atomic_write

STATUS_FILE = "run.json"
LOCK_FILE = ".lock"
COMPLETE = "complete"
#: The files a finished run directory holds (contract; written by :mod:`nnspec.runtime.rundir`).
RUN_FILES: tuple[str, ...] = ("spec.yaml", "metrics.csv", "test.json", "history.png", "weights.safetensors", "env.json")
#: Files and folders that mark a folder as an nnspec run (``--overwrite`` clears only such folders).
RUN_MARKERS: tuple[str, ...] = (STATUS_FILE, "spec.yaml", "metrics.csv", "checkpoints")


class RunDirectoryError(NnspecError, OSError):
    """The output folder cannot be used: it holds another run, is locked, or is not writable."""


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


@dataclass
class RunDirectory:
    """A claimed run directory: its path, the open lock, and the status record being kept."""

    path: Path
    record: dict[str, Any] = field(default_factory=dict)
    _lock_fd: int | None = None

    def set_status(self, status: str, **fields: Any) -> None:
        """Rewrite ``run.json`` atomically with ``status`` and any extra fields."""
        self.record.update(fields, status=status, updated=_now())
        atomic_write(self.path / STATUS_FILE, json_text(self.record))

    def release(self) -> None:
        """Release the lock (the operating system also does so when the process ends)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "RunDirectory":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def is_run_directory(path: Path) -> bool:
    """Whether ``path`` holds any file that nnspec writes into a run directory."""
    return any((path / name).exists() for name in RUN_MARKERS)


def _lock(path: Path) -> int:
    """Take the exclusive lock of a run directory, or raise naming the process that holds it."""
    import fcntl

    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            holder = _read_pid(path)
            who = f" (process {holder})" if holder else ""
            raise RunDirectoryError(
                f"{path}: another nnspec run is writing to this directory{who}; wait for it or choose another --out"
            ) from None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _read_pid(path: Path) -> int | None:
    try:
        return int((path / LOCK_FILE).read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _check_writable(path: Path) -> None:
    """Create and remove a probe file, so that a read-only or full folder fails before training."""
    probe = path / f"{TEMP_PREFIX}probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def _clear(path: Path) -> None:
    """Remove everything in a run directory but its lock file."""
    for entry in path.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def claim(path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False) -> RunDirectory:
    """Claim ``path`` as the directory of a run about to start (or to resume), before any training.

    A new or empty folder is created and claimed. An existing run is refused unless ``overwrite`` (it is
    then emptied) or ``resume`` (it is kept). A folder that holds other files is never emptied. The
    folder must be writable, and no other process may hold it.
    """
    out = Path(path)
    try:
        if out.exists() and not out.is_dir():
            raise RunDirectoryError(f"{out}: exists and is not a directory; --out needs a directory")
        if resume:
            if not out.is_dir() or not is_run_directory(out):
                raise RunDirectoryError(f"{out}: not a run directory; --resume takes a folder written by nnspec run")
        elif out.is_dir() and any(e.name != LOCK_FILE for e in out.iterdir()):
            if not is_run_directory(out):
                raise RunDirectoryError(
                    f"{out}: exists and holds files that are not an nnspec run; choose a new or empty folder for --out"
                )
            if not overwrite:
                raise RunDirectoryError(
                    f"{out}: already holds a run; pass --overwrite to replace it, or --resume {out} to continue it"
                )
        out.mkdir(parents=True, exist_ok=True)
        fd = _lock(out)
        try:
            if overwrite and not resume:
                _clear(out)
            _check_writable(out)
        except BaseException:
            os.close(fd)
            raise
    except OSError as exc:
        if isinstance(exc, RunDirectoryError):
            raise
        raise RunDirectoryError(f"{out}: cannot write the run directory here ({exc.strerror or exc})") from None
    previous = read_record(out) if resume else {}
    return RunDirectory(out, {"started": _now(), **previous, "pid": os.getpid()}, fd)


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """The ``run.json`` record of a run directory ({} when absent or unreadable)."""
    try:
        data = json.loads((Path(path) / STATUS_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def is_locked(path: str | os.PathLike) -> bool:
    """Whether a live process holds the run directory's lock."""
    import fcntl

    lock = Path(path) / LOCK_FILE
    if not lock.exists():
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def read_status(path: str | os.PathLike) -> str:
    """``complete``, ``running`` (a live process holds it), ``interrupted``, ``diverged``, ``failed`` or ``unknown``.

    A run directory written before status records existed counts as complete when it holds every
    contract file; one marked ``running`` whose lock nobody holds was killed: ``interrupted``.
    """
    record: Mapping[str, Any] = read_record(path)
    status = str(record.get("status") or "")
    if not status:
        return (
            COMPLETE
            if all((Path(path) / name).is_file() for name in RUN_FILES) and not (Path(path) / STATUS_FILE).exists()
            else "unknown"
        )
    if status == "running" and not is_locked(path):
        return "interrupted"
    return status
