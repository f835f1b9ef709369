"""A run directory's life: claimed by one process, changed only once the new run is ready, complete at the end.

``run.json`` is the run's status record, rewritten atomically at each change: ``running`` from the
moment the run starts, then ``complete`` (written last, after every other file), or ``interrupted``,
``diverged`` or ``failed``. A run killed with SIGKILL stays ``running`` with a lock nobody holds, which
:func:`read_status` reports as ``interrupted``. Only a ``complete`` run counts as finished for ``plot``,
``--resume`` and users. ``run.json`` also carries the manifest of what nnspec wrote in the folder
(:mod:`nnspec.runtime.run_manifest`).

Starting a run is a transaction. :func:`claim` checks the folder and takes its lock, and changes nothing
else in a folder that exists: an earlier run to be replaced (``--overwrite``) or continued (``--resume``)
stays as it was, byte for byte, while the new run compiles and restores its state. The first status
written (:meth:`RunDirectory.set_status`) is the commit: it writes the new record, then removes what the
new run replaces (the earlier run's files, or a resumed run's stale results) and stale temporaries. A
claim released before its commit (an error, a stop request) is rolled back: a lock file or folders that
the claim made are removed again.

The lock is an exclusive ``flock`` on ``.lock`` in the folder, opened without following a link: the
operating system releases it when the process ends in any way, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..strict_json import json_text
from .run_manifest import (
    LOCK_FILE,
    MANIFEST_FORMAT,
    OWNED,
    RESULT_FILES,
    RUN_FILES,
    STATUS_FILE,
    TEMP_FOLDER,
    TRAINING_FILES,
    RunDirectoryError,
    clean_temporaries,
    foreign_entries,
    owned_names,
    probe_writable,
    read_record,
    refuse_links,
    remove_entries,
    run_kind,
    shown,
    write_in_run,
)

__all__ = [
    "COMPLETE",
    "LOCK_FILE",
    "RUN_FILES",
    "STATUS_FILE",
    "RunDirectory",
    "RunDirectoryError",
    "claim",
    "is_locked",
    "is_run_directory",
    "read_record",
    "read_status",
]

COMPLETE = "complete"
_OPEN_LOCK = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


@dataclass
class RunDirectory:
    """A claimed run directory: its path, the open lock, the status record, and the claim's transaction.

    ``replaces`` names the entries that the commit (the first :meth:`set_status`) removes; ``files`` the
    names of the manifest (declared before they are written).
    """

    path: Path
    record: dict[str, Any] = field(default_factory=dict)
    _lock_fd: int | None = None
    replaces: tuple[str, ...] = ()
    files: set[str] = field(default_factory=lambda: set(TRAINING_FILES))
    committed: bool = False
    _lock_made: bool = False
    _made: tuple[Path, ...] = ()

    def set_status(self, status: str, **fields: Any) -> None:
        """Rewrite ``run.json`` atomically with ``status`` and any extra fields; the first call commits the run."""
        self.record.update(fields, status=status, updated=_now())
        if self.committed:
            self._write_record()
        else:
            self._commit()

    def declare(self, *names: str) -> None:
        """Add ``names`` to the manifest before they are written (``run.json`` is rewritten when one is new)."""
        new = set(names) - self.files
        self.files |= new
        if new and self.committed:
            self._write_record()

    def _write_record(self, also: tuple[str, ...] = ()) -> None:
        self.record.update(format=MANIFEST_FORMAT, files=sorted(self.files | set(also)))
        text = json_text(self.record).encode("utf-8")
        write_in_run(self.path, STATUS_FILE, lambda tmp: Path(tmp).write_bytes(text))

    def _commit(self) -> None:
        """The point of no return: the new record (listing what is still to go), then the removals."""
        self.committed = True
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)
        self._write_record(also=self.replaces)
        remove_entries(self.path, self.replaces)
        clean_temporaries(self.path)
        if self.replaces:
            self._write_record()

    def rollback(self) -> None:
        """Undo a claim that was not committed: remove the lock file and folders it made, release the lock."""
        if self.committed or self._lock_fd is None:
            return
        if self._lock_made:
            _unlink_if_same(self.path / LOCK_FILE, self._lock_fd)
        os.close(self._lock_fd)
        self._lock_fd = None
        for folder in reversed(self._made):
            try:
                os.rmdir(folder)
            except OSError:
                break

    def release(self) -> None:
        """Release the lock (the operating system also does so when the process ends); roll back if not committed."""
        if not self.committed:
            self.rollback()
        elif self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "RunDirectory":
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if self.committed and exc is not None and self.record.get("status") == "running":
                self._mark_ended_by(exc)
        finally:
            self.release()

    def _mark_ended_by(self, exc: BaseException) -> None:
        """A run that ends by an error after its commit is not left ``running``."""
        try:
            if isinstance(exc, KeyboardInterrupt):
                self.set_status("interrupted", signal="SIGINT")
            elif isinstance(exc, Exception):
                self.set_status("failed", message=(str(exc) or type(exc).__name__)[:1000])
        except OSError:
            pass


def _unlink_if_same(path: Path, fd: int) -> None:
    """Remove ``path`` if it is still the file open as ``fd``."""
    try:
        mine, there = os.fstat(fd), os.lstat(path)
        if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
            os.unlink(path)
    except OSError:
        pass


def is_run_directory(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an nnspec run (a manifest in ``run.json``, or an nnspec run from before the manifest)."""
    return run_kind(path) is not None


def _open_lock(lock: Path) -> tuple[int, bool]:
    """Open (or create) the lock file without following a link; returns the descriptor and whether it was made."""
    try:
        return os.open(lock, _OPEN_LOCK | os.O_CREAT | os.O_EXCL, 0o666), True
    except FileExistsError:
        pass
    try:
        return os.open(lock, _OPEN_LOCK), False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RunDirectoryError(
                f"{lock}: is a symbolic link; nnspec opens a run's lock file only as a file of the run itself "
                "(remove the link)"
            ) from None
        raise


def _lock(path: Path) -> tuple[int, bool]:
    """Take the exclusive lock of a run directory, or raise naming the process that holds it."""
    import fcntl

    lock = path / LOCK_FILE
    fd, made = _open_lock(lock)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            what = "a special file" if not stat.S_ISREG(info.st_mode) else "a file with other names (a hard link)"
            raise RunDirectoryError(f"{lock}: is {what}; nnspec locks a run only with a file of its own (remove it)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = _lock_holder(lock, info)
            who = f" (process {holder})" if holder else ""
            raise RunDirectoryError(
                f"{path}: another nnspec run is writing to this directory{who}; wait for it or choose another --out"
            ) from None
    except BaseException:
        if made:
            _unlink_if_same(lock, fd)
        os.close(fd)
        raise
    return fd, made


def _lock_holder(lock: Path, info: os.stat_result) -> int | None:
    """The process holding the lock: from ``/proc/locks`` where there is one, else the pid written in the file."""
    where = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if "FLOCK" in parts and where in parts and "->" not in parts:
                    return int(parts[parts.index(where) - 1])
    except (OSError, ValueError):
        pass
    return _read_pid(lock)


def _read_pid(lock: Path) -> int | None:
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return int(os.read(fd, 32).decode("ascii").strip() or 0) or None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


def _make_folders(out: Path) -> tuple[Path, ...]:
    """Create ``out`` and any missing parents; returns those made, outermost first."""
    missing: list[Path] = []
    folder = out
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    out.mkdir(parents=True, exist_ok=True)
    return tuple(reversed(missing))


def _inspect(out: Path, overwrite: bool, resume: bool) -> tuple[str, ...]:
    """Check that ``out`` can take the run; returns the entries that the commit removes. Changes nothing."""
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"{out}: exists and is not a directory; --out needs a directory")
    if resume:
        if run_kind(out) is None:
            raise RunDirectoryError(f"{out}: not a run directory; --resume takes a folder written by nnspec run")
        refuse_links(out)
        owned = owned_names(out)
        return tuple(name for name in RESULT_FILES if name in owned and os.path.lexists(out / name))
    if not out.is_dir():
        return ()
    entries = sorted(name for name in os.listdir(out) if name not in (LOCK_FILE, TEMP_FOLDER))
    if not entries:
        return ()
    if run_kind(out) is None:
        raise RunDirectoryError(
            f"{out}: exists and holds files that are not an nnspec run (found: {shown(entries)}); choose a new or "
            "empty folder for --out"
        )
    if not overwrite:
        raise RunDirectoryError(
            f"{out}: already holds a run; pass --overwrite to replace it, or --resume {out} to continue it"
        )
    refuse_links(out)
    foreign = foreign_entries(out)
    if foreign:
        raise RunDirectoryError(
            f"{out}: holds {shown(foreign)}, which nnspec did not write; --overwrite removes only what an nnspec run "
            f"wrote and nothing else: move {'it' if len(foreign) == 1 else 'them'} away or choose another --out"
        )
    return tuple(name for name in entries if name in OWNED and name != STATUS_FILE)


def claim(path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False) -> RunDirectory:
    """Claim ``path`` for a run about to start (or to resume), before any training, changing nothing else in it.

    A new or empty folder is created and claimed. An existing run is refused unless ``overwrite`` (its files
    are removed at the commit) or ``resume`` (its stale results are removed at the commit). A folder that
    is not an nnspec run, or holds anything nnspec did not write, is never emptied; links are refused. The
    folder must be writable, and no other process may hold it. See the module docstring for the transaction.
    """
    out = Path(path)
    try:
        _inspect(out, overwrite, resume)  # refuse before touching anything
        made = _make_folders(out)
        try:
            fd, lock_made = _lock(out)
        except BaseException:
            _remove_folders(made)
            raise
        run = RunDirectory(out, _lock_fd=fd, _lock_made=lock_made, _made=made)
        try:
            run.replaces = _inspect(out, overwrite, resume)  # again, now that no other nnspec changes it
            probe_writable(out)
        except BaseException:
            run.rollback()
            raise
    except OSError as exc:
        if isinstance(exc, RunDirectoryError):
            raise
        raise RunDirectoryError(f"{out}: cannot write the run directory here ({exc.strerror or exc})") from None
    previous = read_record(out) if resume else {}
    run.record = {"started": _now(), **previous, "pid": os.getpid()}
    if resume and isinstance(previous.get("files"), list):
        run.files |= {name for name in previous["files"] if isinstance(name, str)} & OWNED
    return run


def _remove_folders(made: tuple[Path, ...]) -> None:
    for folder in reversed(made):
        try:
            os.rmdir(folder)
        except OSError:
            return


def is_locked(path: str | os.PathLike) -> bool:
    """Whether a live process holds the run directory's lock (a lock file that is a link is never opened)."""
    import fcntl

    lock = Path(path) / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
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
