"""What nnspec wrote in a run directory: the manifest, older runs, links, temporaries, and removal.

A run directory's ``run.json`` carries the manifest: ``"format": "nnspec-run"`` and ``"files"``, the names
that nnspec has written (or is about to write) at the top of the folder. Names are declared before they
are written, so a process killed at any moment leaves no file of its own outside the list. Below the
top, nnspec's folders hold only what nnspec writes there: ``checkpoints/epoch-NNNNNN/{state.safetensors,
checkpoint.json}`` and ``tensorboard/events.out.tfevents.*`` (plus ``.tmp-*`` temporaries).

A folder is a run when its ``run.json`` carries the manifest, or (written by an nnspec from before the
manifest) when its ``spec.yaml`` bears nnspec's header and either its ``run.json`` holds a status or it
holds all six contract files. ``--overwrite`` removes only nnspec's entries of a run and refuses a folder
that holds anything else; no entry of a run may be a symbolic link (nnspec never reads, writes or
removes through one).

Temporary files of the files at the top are written in ``.nnspec-tmp/`` (removed after each write), never
in the run root: a process killed while writing leaves its temporary there, and the next start of a run
in the folder removes it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..errors import NnspecError
from .atomic import TEMP_PREFIX, atomic_write_with, fsync_dir

STATUS_FILE = "run.json"
LOCK_FILE = ".lock"
#: Where the temporaries of the files at the top of a run are written.
TEMP_FOLDER = ".nnspec-tmp"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
#: The ``format`` of a ``run.json`` that carries the manifest.
MANIFEST_FORMAT = "nnspec-run"
#: The files a finished run directory holds (contract; written by :mod:`nnspec.runtime.rundir`).
RUN_FILES: tuple[str, ...] = ("spec.yaml", "metrics.csv", "test.json", "history.png", "weights.safetensors", "env.json")
#: The results of a completion: stale once a complete run trains further.
RESULT_FILES: tuple[str, ...] = ("test.json", "history.png", "weights.safetensors", "env.json")
#: What a run writes at the top while it trains.
TRAINING_FILES: tuple[str, ...] = (STATUS_FILE, LOCK_FILE, "spec.yaml", "metrics.csv", CHECKPOINTS, TENSORBOARD)
#: Every name nnspec may write at the top of a run directory.
OWNED: frozenset[str] = frozenset((*RUN_FILES, *TRAINING_FILES, TEMP_FOLDER))
_FOLDERS = frozenset({CHECKPOINTS, TENSORBOARD, TEMP_FOLDER})
_STATUSES = frozenset({"running", "complete", "interrupted", "diverged", "failed"})
_SPEC_HEADER = "# resolved by nnspec"
_CHECKPOINT = re.compile(r"^epoch-\d{6,}$")
_CHECKPOINT_FILES = frozenset({"state.safetensors", "checkpoint.json"})
_EVENTS = "events.out.tfevents."
_NOUNS = {"link": "symbolic link", "folder": "folder", "file": "file", "other": "special file"}


class RunDirectoryError(NnspecError, OSError):
    """The output folder cannot be used: it holds another run, is locked, or is not writable."""


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """The ``run.json`` record of a run directory ({} when absent, a link, or unreadable)."""
    file = Path(path) / STATUS_FILE
    try:
        if file.is_symlink():
            return {}
        data = json.loads(file.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def has_manifest(record: Mapping[str, Any]) -> bool:
    """Whether a ``run.json`` record carries nnspec's manifest."""
    return record.get("format") == MANIFEST_FORMAT and isinstance(record.get("files"), list)


def _nnspec_spec(path: Path) -> bool:
    """Whether ``path/spec.yaml`` is a regular file that starts with the header nnspec writes."""
    spec = path / "spec.yaml"
    if spec.is_symlink() or not spec.is_file():
        return False
    try:
        with open(spec, "rb") as f:
            return f.read(len(_SPEC_HEADER)).decode("utf-8", "replace") == _SPEC_HEADER
    except OSError:
        return False


def run_kind(path: str | os.PathLike) -> str | None:
    """``"manifest"`` (a run with a manifest), ``"legacy"`` (a run from before the manifest), or None (no run)."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    record = read_record(folder)
    if has_manifest(record):
        return "manifest"
    if not _nnspec_spec(folder):
        return None
    if record.get("status") in _STATUSES:
        return "legacy"
    return "legacy" if all((folder / name).is_file() for name in RUN_FILES) else None


def owned_names(path: str | os.PathLike) -> frozenset[str]:
    """The names at the top of a run that nnspec wrote: its manifest's (those nnspec may write), or for a run
    from before the manifest every name nnspec may write."""
    record = read_record(path)
    if has_manifest(record):
        listed = {name for name in record["files"] if isinstance(name, str)}
        return frozenset((listed & OWNED) | {STATUS_FILE, LOCK_FILE, TEMP_FOLDER})
    return OWNED


def _is_temporary(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


def _kind(entry: os.DirEntry) -> str:
    """``link``, ``folder``, ``file`` or ``other`` (a FIFO, a device, a socket), never following a link."""
    if entry.is_symlink():
        return "link"
    if entry.is_dir(follow_symlinks=False):
        return "folder"
    return "file" if entry.is_file(follow_symlinks=False) else "other"


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:
        return []


class _Scan:
    """One walk over a run directory: the links in it and the entries nnspec did not write."""

    def __init__(self, root: Path, owned: Iterable[str]):
        self.root, self.owned = root, frozenset(owned)
        self.links: list[str] = []
        self.foreign: list[str] = []

    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    def run(self) -> "_Scan":
        for entry in _entries(self.root):
            self._top(entry)
        return self

    def _top(self, entry: os.DirEntry) -> None:
        kind = _kind(entry)
        if _is_temporary(entry.name) or entry.name == TEMP_FOLDER:
            if kind == "link":
                self.links.append(entry.name)
            return  # nnspec's temporaries: removed whole (a removal never follows a link)
        if entry.name not in self.owned:
            self.foreign.append(entry.name + ("/" if kind == "folder" else ""))
        elif kind == "link":
            self.links.append(entry.name)
        elif kind != ("folder" if entry.name in _FOLDERS else "file"):
            wanted = "folder" if entry.name in _FOLDERS else "file"
            self.foreign.append(f"{entry.name} (a {_NOUNS[kind]}, where nnspec writes a {wanted})")
        elif entry.name == CHECKPOINTS:
            self._checkpoints(Path(entry.path))
        elif entry.name == TENSORBOARD:
            self._inside(Path(entry.path), lambda e: e.name.startswith(_EVENTS) and _kind(e) == "file")

    def _checkpoints(self, folder: Path) -> None:
        for entry in _entries(folder):
            kind = _kind(entry)
            if kind == "link":
                self.links.append(self._rel(entry.path))
            elif _is_temporary(entry.name):
                self._links_below(Path(entry.path))
            elif not (_CHECKPOINT.match(entry.name) and kind == "folder"):
                self.foreign.append(self._rel(entry.path))
            else:
                self._inside(Path(entry.path), lambda e: e.name in _CHECKPOINT_FILES and _kind(e) == "file")

    def _inside(self, folder: Path, expected: Callable[[os.DirEntry], bool]) -> None:
        for entry in _entries(folder):
            if _kind(entry) == "link":
                self.links.append(self._rel(entry.path))
            elif not (expected(entry) or _is_temporary(entry.name)):
                self.foreign.append(self._rel(entry.path))

    def _links_below(self, folder: Path) -> None:
        for top, dirs, files in os.walk(folder):
            for name in dirs + files:
                if os.path.islink(os.path.join(top, name)):
                    self.links.append(self._rel(os.path.join(top, name)))


def links_in(path: str | os.PathLike) -> list[str]:
    """The symbolic links among nnspec's entries of a run directory (relative paths)."""
    return _Scan(Path(path), OWNED).run().links


def foreign_entries(path: str | os.PathLike) -> list[str]:
    """The entries of a run directory that nnspec did not write (relative paths; a folder ends in ``/``)."""
    folder = Path(path)
    return _Scan(folder, owned_names(folder)).run().foreign


def shown(names: list[str], limit: int = 5) -> str:
    """``a, b, c`` (at most ``limit`` names, then ``and N more``)."""
    head = ", ".join(names[:limit])
    return head + (f" and {len(names) - limit} more" if len(names) > limit else "")


def refuse_links(path: Path) -> None:
    """Raise :class:`RunDirectoryError` when an entry of the run directory at ``path`` is a symbolic link."""
    links = links_in(path)
    if links:
        raise RunDirectoryError(
            f"{path}: {shown(links)} {'is a symbolic link' if len(links) == 1 else 'are symbolic links'}; nnspec "
            "does not read, write or remove the files of a run through a link (make it a real folder or file, "
            "or choose another folder)"
        )


def remove_entries(root: Path, names: Iterable[str]) -> None:
    """Remove the entries ``names`` at the top of ``root`` (a folder whole; links themselves, never their targets)."""
    for name in names:
        entry = root / name
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            continue
    fsync_dir(root)


def clean_temporaries(root: Path) -> None:
    """Remove the temporaries that a killed process left at the top of ``root`` (``.nnspec-tmp/``, ``.tmp-*``)."""
    remove_entries(root, [e.name for e in _entries(root) if e.name == TEMP_FOLDER or _is_temporary(e.name)])


def _temp_folder(root: Path) -> tuple[Path, bool]:
    """``root/.nnspec-tmp`` and whether it was made now; refused when it is anything but a real folder."""
    temp = root / TEMP_FOLDER
    try:
        os.mkdir(temp)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(temp).st_mode):
            raise RunDirectoryError(
                f"{temp}: is not a folder (a link or a file); nnspec writes its temporary files there"
            ) from None
        return temp, False
    return temp, True


def write_in_run(root: str | os.PathLike, name: str, write: Callable[[str], Any]) -> Path:
    """Write ``root/name`` atomically, its temporary in ``root/.nnspec-tmp/`` (removed after), never in the root."""
    folder = Path(root)
    temp, _ = _temp_folder(folder)
    staged = temp / name
    try:
        atomic_write_with(staged, write)
        os.replace(staged, folder / name)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    finally:
        try:
            os.rmdir(temp)
        except OSError:
            pass  # another temporary (a killed process's) is there: the next start removes it
    fsync_dir(folder)
    return folder / name


def probe_writable(root: Path) -> None:
    """Create, sync and remove a probe file in ``.nnspec-tmp/``, so that a read-only or full folder fails early."""
    temp, made = _temp_folder(root)
    probe = temp / f"probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    finally:
        probe.unlink(missing_ok=True)
        if made:
            os.rmdir(temp)
