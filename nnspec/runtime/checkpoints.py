"""Checkpoints: the whole training state after an epoch, whole or absent.

Layout inside a run directory::

    checkpoints/
      epoch-000003/
        state.safetensors   weights/<key>, state/<key>, slots/<key>.<slot> (see training_state)
        checkpoint.json     step, epochs done, history, backend, dtype, early-stopping state

A checkpoint is built in a ``.tmp-*`` folder beside the others, each file synced, and renamed into place
in one step, so a process killed at any moment leaves only whole checkpoints under ``epoch-*`` names
(and perhaps a stray ``.tmp-*`` folder that readers ignore and writers remove). Which one is the latest
is read from the names; which one is the best (early stopping) from the latest's JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import DataError
from ..semantics.training_state import TrainingState, from_tensors, to_tensors
from ..semantics.weights import value_problems
from ..strict_json import json_text
from .atomic import TEMP_PREFIX, atomic_folder

FOLDER = "checkpoints"
STATE_FILE = "state.safetensors"
META_FILE = "checkpoint.json"
FORMAT = "nnspec-checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"^epoch-(\d{6,})$")


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint on disk: its folder and the epoch count it holds."""

    path: Path
    epoch: int

    def read(self) -> tuple[TrainingState, dict[str, Any]]:
        """The training state and the JSON record (backend, dtype, early stopping, ...) of this checkpoint."""
        return read_checkpoint(self.path)


def checkpoint_name(epoch: int) -> str:
    """Folder name of the checkpoint after ``epoch`` epochs: ``epoch-000012``."""
    return f"epoch-{epoch:06d}"


def write_checkpoint(run_dir: str | os.PathLike, ts: TrainingState, record: Mapping[str, Any]) -> Checkpoint:
    """Write ``ts`` (and the JSON-able ``record``) as the checkpoint of ``ts.epochs_done`` epochs, atomically.

    An existing checkpoint of the same epoch (a resumed run that repeats it) is replaced.
    """
    from safetensors.numpy import save_file

    folder = Path(run_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    arrays, meta = to_tensors(ts)

    def fill(tmp: Path) -> None:
        tensors = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        save_file(tensors, str(tmp / STATE_FILE), metadata={"format": FORMAT})
        (tmp / META_FILE).write_text(json_text({"format": FORMAT, "version": FORMAT_VERSION, **meta, **record}))

    final = atomic_folder(folder / checkpoint_name(ts.epochs_done), fill)
    return Checkpoint(final, ts.epochs_done)


def list_checkpoints(run_dir: str | os.PathLike) -> list[Checkpoint]:
    """The complete checkpoints of a run, oldest first (temporary folders are not checkpoints)."""
    folder = Path(run_dir) / FOLDER
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match and (entry / STATE_FILE).is_file() and (entry / META_FILE).is_file():
            found.append(Checkpoint(entry, int(match.group(1))))
    return sorted(found, key=lambda c: c.epoch)


def latest_checkpoint(run_dir: str | os.PathLike) -> Checkpoint | None:
    """The checkpoint with the most epochs, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def find_checkpoint(run_dir: str | os.PathLike, epoch: int) -> Checkpoint | None:
    """The checkpoint after exactly ``epoch`` epochs, or None."""
    return next((c for c in list_checkpoints(run_dir) if c.epoch == epoch), None)


def read_checkpoint(path: str | os.PathLike) -> tuple[TrainingState, dict[str, Any]]:
    """Read one checkpoint folder; anything malformed is a :class:`DataError` naming the file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(path)
    meta_path, state_path = folder / META_FILE, folder / STATE_FILE
    try:
        record = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"{meta_path}: not a readable checkpoint record ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DataError(f"{meta_path}: not an nnspec checkpoint record")
    if record.get("version") != FORMAT_VERSION:
        raise DataError(
            f"{meta_path}: checkpoint format version {record.get('version')!r}; this nnspec reads version "
            f"{FORMAT_VERSION}"
        )
    try:
        arrays = load_file(str(state_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{state_path}: not a readable safetensors file ({exc})") from None
    bad = [k for k in arrays if k.partition("/")[0] not in ("weights", "state", "slots")]
    if bad:
        raise DataError(f"{state_path}: unexpected array(s) {', '.join(sorted(bad)[:5])}")
    problems = value_problems(arrays)
    if problems:
        raise DataError(f"{state_path}: " + "; ".join(problems[:5]))
    try:
        ts = from_tensors(arrays, record)
    except (TypeError, ValueError, KeyError) as exc:
        raise DataError(f"{meta_path}: malformed checkpoint record ({exc})") from None
    return ts, record


def prune_checkpoints(run_dir: str | os.PathLike, keep: int, protect: AbstractSet[int] = frozenset()) -> list[Path]:
    """Remove all but the ``keep`` most recent checkpoints, never those in ``protect`` (epoch counts).

    Stray temporary folders are removed too. Returns what was removed.
    """
    folder = Path(run_dir) / FOLDER
    removed: list[Path] = []
    found = list_checkpoints(run_dir)
    for checkpoint in found[: max(len(found) - keep, 0)]:
        if checkpoint.epoch not in protect:
            _remove(checkpoint.path, removed)
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.startswith(TEMP_PREFIX) and not entry.name.endswith(f"-{os.getpid()}"):
                _remove(entry, removed)
    return removed


def _remove(path: Path, removed: list[Path]) -> None:
    """Delete a folder, a checkpoint first renamed to a temporary name so that it never looks half-deleted."""
    target = path
    try:
        if not path.name.startswith(TEMP_PREFIX):
            target = path.with_name(f"{TEMP_PREFIX}gone-{path.name}-{os.getpid()}")
            os.rename(path, target)
        shutil.rmtree(target, ignore_errors=True)
        removed.append(path)
    except OSError:
        pass
