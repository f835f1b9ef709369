"""Checkpoints: the whole training state after an epoch, whole or absent, and known to belong to its run.

Layout inside a run directory::

    checkpoints/
      epoch-000003/
        state.safetensors   weights/<key>, state/<key>, slots/<key>.<slot> (see training_state)
        checkpoint.json     step, epochs done, history, backend, dtype, early-stopping state, identity, digest

A checkpoint is built in a ``.tmp-*`` folder beside the others, each file synced, and renamed into place
in one step, so a process killed at any moment leaves only whole checkpoints under ``epoch-*`` names
(and perhaps a stray ``.tmp-*`` folder that readers ignore and writers remove). A write that fails (a full
disk) removes its temporary folder and leaves every earlier checkpoint as it was. Which one is the latest
is read from the names; which one is the best (early stopping) from the latest's JSON.

``checkpoint.json`` records what the checkpoint belongs to: ``run_id`` (the run directory's, kept in
``run.json``), ``spec_sha256`` (the run's ``spec.yaml`` as loaded, ``train.epochs`` left out since
``--epochs`` may raise it) and ``sha256``, a digest of every array (name, dtype, shape, bytes) and of the
rest of the record. ``run.json`` keeps the digest of the latest checkpoint under ``checkpoint_sha256``.
:func:`read_checkpoint` checks every field, then the digest, the epoch count against the folder's name,
and the identity against the run directory the checkpoint is in, and refuses (:class:`DataError`, naming
the file and the field) anything that does not fit: a damaged record, files swapped for those of an earlier
checkpoint, or a checkpoint copied from another run or another spec.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import DataError
from ..semantics.training_state import (
    FieldError,
    TrainingState,
    check_meta,
    from_tensors,
    read_count,
    read_number,
    shown,
    to_tensors,
)
from ..semantics.weights import value_problems
from ..strict_json import json_text
from .atomic import TEMP_PREFIX, atomic_folder
from .run_status import RunDirectory, read_record

FOLDER = "checkpoints"
STATE_FILE = "state.safetensors"
META_FILE = "checkpoint.json"
SPEC_FILE = "spec.yaml"
FORMAT = "nnspec-checkpoint"
FORMAT_VERSION = 2
#: ``run.json`` field with the digest of the latest checkpoint: ``{"epoch-000003": "<sha256>"}``.
POINTER_DIGEST = "checkpoint_sha256"
#: Largest ``checkpoint.json`` read (a history of millions of epochs fits).
MAX_RECORD_BYTES = 256 << 20
_NAME = re.compile(r"^epoch-(\d{6,})$")
_HEX = re.compile(r"^[0-9a-f]+$")
_EARLY_FIELDS = ("best", "best_epoch", "wait", "stopped_epoch")
_TEXT_FIELDS = ("backend", "dtype", "spec")


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


def write_checkpoint(run: RunDirectory | str | os.PathLike, ts: TrainingState, record: Mapping[str, Any]) -> Checkpoint:
    """Write ``ts`` (and the JSON-able ``record``) as the checkpoint of ``ts.epochs_done`` epochs, atomically.

    ``run`` is the claimed :class:`RunDirectory` (its ``run_id`` is made and saved in ``run.json`` first if it
    has none; the new checkpoint's digest goes to its record for the next ``run.json`` write) or a folder.
    An existing checkpoint of the same epoch (a resumed run that repeats it) is replaced. An ``OSError`` (a
    full disk) leaves the earlier checkpoints as they were and no temporary folder.
    """
    run_dir = run.path if isinstance(run, RunDirectory) else Path(run)
    folder = run_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    arrays, meta = to_tensors(ts)
    tensors = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    full = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        **meta,
        **record,
        "run_id": _run_id(run),
        "spec_sha256": spec_identity(run_dir),
    }
    full = json.loads(json_text(full))  # as it will read back: non-finite numbers as null
    full["sha256"] = state_digest(tensors, full)
    name = checkpoint_name(ts.epochs_done)
    if isinstance(run, RunDirectory):
        _forget_digest(run, name)

    def fill(tmp: Path) -> None:
        _save_tensors(tensors, tmp / STATE_FILE)
        _write_text(tmp / META_FILE, json_text(full))

    try:
        final = atomic_folder(folder / name, fill)
    except OSError as exc:
        exc.filename = os.fspath(folder / name)
        raise
    if isinstance(run, RunDirectory):
        run.record[POINTER_DIGEST] = {name: full["sha256"]}
    return Checkpoint(final, ts.epochs_done)


def _save_tensors(tensors: Mapping[str, np.ndarray], path: Path) -> None:
    """Write the arrays of a checkpoint (the one place its safetensors file is written).

    Serialised in memory and written by Python, so that a full disk is an ``OSError`` (ENOSPC) like any other
    write: safetensors' own writer reports it as a ``SafetensorError``.
    """
    from safetensors.numpy import save

    data = save(dict(tensors), metadata={"format": FORMAT})
    with open(path, "wb") as f:
        f.write(data)


def _write_text(path: Path, text: str) -> None:
    """Write the record of a checkpoint (the one place its JSON file is written)."""
    path.write_text(text, encoding="utf-8")


def _run_id(run: RunDirectory | str | os.PathLike) -> str | None:
    """The run's identity: from a claimed run (made, and saved to ``run.json``, when it has none) or ``run.json``."""
    if not isinstance(run, RunDirectory):
        found = read_record(run).get("run_id")
        return found if isinstance(found, str) else None
    found = run.record.get("run_id")
    if not (isinstance(found, str) and _is_hex(found, 32)):
        run.record["run_id"] = uuid.uuid4().hex
        run.set_status(str(run.record.get("status") or "running"))
    return str(run.record["run_id"])


def _forget_digest(run: RunDirectory, name: str) -> None:
    """Drop ``run.json``'s digest of checkpoint ``name`` before that folder is replaced (it would not match)."""
    digests = run.record.get(POINTER_DIGEST)
    if isinstance(digests, dict) and name in digests:
        del run.record[POINTER_DIGEST]
        run.set_status(str(run.record.get("status") or "running"))


def state_digest(arrays: Mapping[str, np.ndarray], record: Mapping[str, Any]) -> str:
    """SHA-256 of a checkpoint's arrays (name, dtype, shape, bytes, in name order) and of its record but ``sha256``."""
    digest = hashlib.sha256(FORMAT.encode())
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        value = value.astype(value.dtype.newbyteorder("<"), copy=False)
        digest.update(f"\0{key}\0{value.dtype.str}\0{list(value.shape)}\0".encode())
        digest.update(value.data if value.size else b"")
    rest = {k: v for k, v in record.items() if k != "sha256"}
    digest.update(b"\0" + json.dumps(rest, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())
    return digest.hexdigest()


_SPEC_CACHE: dict[tuple[str, int, int, int], str | None] = {}


def spec_identity(run_dir: str | os.PathLike) -> str | None:
    """SHA-256 of the run's ``spec.yaml`` as loaded (every value written out, ``train.epochs`` left out), or None
    when it has none or it does not load."""
    from ..compiler.frontend import load_spec
    from ..errors import NnspecError
    from .specfile import graph_to_spec

    path = Path(run_dir) / SPEC_FILE
    try:
        info = path.stat()
    except OSError:
        return None
    key = (os.fspath(path.resolve()), info.st_mtime_ns, info.st_size, info.st_ino)
    if key not in _SPEC_CACHE:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                spec = graph_to_spec(load_spec(os.fspath(path)))
        except (NnspecError, OSError, ValueError):
            _SPEC_CACHE[key] = None
        else:
            spec.get("train", {}).pop("epochs", None)
            text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
            _SPEC_CACHE[key] = hashlib.sha256(text.encode()).hexdigest()
    return _SPEC_CACHE[key]


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
    """Read one checkpoint folder and check it (see the module docstring); anything wrong is a :class:`DataError`
    naming the file (and the field)."""
    folder = Path(path)
    meta_path = folder / META_FILE
    record = _read_record(meta_path)
    try:
        _check_record(record)
    except FieldError as exc:
        raise DataError(f"{meta_path}: {exc}; the checkpoint record is damaged, so it cannot be resumed from") from None
    arrays = _read_arrays(folder / STATE_FILE)
    _check_digest(folder, arrays, record)
    _check_name(folder, record)
    _check_belongs(folder, record)
    try:
        ts = from_tensors(arrays, record)
    except FieldError as exc:
        raise DataError(f"{folder / STATE_FILE}: {exc}") from None
    return ts, record


def _read_record(meta_path: Path) -> dict[str, Any]:
    """The parsed ``checkpoint.json`` (strict JSON: no NaN or Infinity), of this format and version."""
    try:
        if meta_path.stat().st_size > MAX_RECORD_BYTES:
            raise DataError(f"{meta_path}: larger than {MAX_RECORD_BYTES >> 20} MiB; not a checkpoint record")
        record = json.loads(meta_path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{meta_path}: not a readable checkpoint record ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DataError(f"{meta_path}: not an nnspec checkpoint record")
    if record.get("version") != FORMAT_VERSION:
        raise DataError(
            f"{meta_path}: checkpoint format version {shown(record.get('version'))}; this nnspec reads version "
            f"{FORMAT_VERSION} (version 1 carried no digest or run identity, so it cannot be checked)"
        )
    return record


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _read_arrays(state_path: Path) -> dict[str, np.ndarray]:
    """The arrays of ``state.safetensors``: readable, named by group, floating point and finite."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(state_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{state_path}: not a readable safetensors file ({exc})") from None
    bad = [k for k in arrays if k.partition("/")[0] not in ("weights", "state", "slots") or not k.partition("/")[2]]
    if bad:
        raise DataError(f"{state_path}: unexpected array(s) {', '.join(sorted(bad)[:5])}")
    problems = value_problems(arrays)
    if problems:
        raise DataError(f"{state_path}: " + "; ".join(problems[:5]))
    return arrays


def _check_record(record: Mapping[str, Any]) -> None:
    """Every field of a checkpoint record, before any is used; :class:`FieldError` naming the first bad one."""
    check_meta(record)
    epochs = int(record["epochs_done"])
    if "sha256" not in record:
        raise FieldError("sha256", "missing (the checkpoint's digest)")
    if not _is_hex(record["sha256"], 64):
        raise FieldError("sha256", f"must be 64 hexadecimal digits; got {shown(record['sha256'])}")
    for key, size in (("run_id", 32), ("spec_sha256", 64)):
        if key not in record:
            raise FieldError(key, "missing")
        if record[key] is not None and not _is_hex(record[key], size):
            raise FieldError(key, f"must be null or {size} hexadecimal digits; got {shown(record[key])}")
    for key in _TEXT_FIELDS:
        if key in record and not (isinstance(record[key], str) and 0 < len(record[key]) <= 200):
            raise FieldError(key, f"must be a name (text); got {shown(record[key])}")
    if record.get("early_stopping") is not None:
        _check_early_stopping(record["early_stopping"], epochs)


def _check_early_stopping(state: Any, epochs: int) -> None:
    """The early-stopping state: ``best`` (a number, or null before any), epoch counts within the epochs done."""
    if not isinstance(state, dict):
        raise FieldError("early_stopping", f"must be an object or null; got {shown(state)}")
    extra = sorted(set(state) - set(_EARLY_FIELDS))
    if extra:
        raise FieldError("early_stopping", f"has unknown field(s) {', '.join(map(str, extra))}")
    if "best" not in state:
        raise FieldError("early_stopping.best", "missing")
    best = read_number(state["best"], "early_stopping.best")
    counts = {key: read_count(state, key, high=epochs, name=f"early_stopping.{key}") for key in _EARLY_FIELDS[1:]}
    if (best is None) != (counts["best_epoch"] == 0):
        raise FieldError(
            "early_stopping.best_epoch",
            f"{counts['best_epoch']} with best {shown(state['best'])}: a best value needs the epoch it came from",
        )


def _is_hex(value: Any, size: int) -> bool:
    return isinstance(value, str) and len(value) == size and bool(_HEX.match(value))


def _refusal(folder: Path, what: str) -> DataError:
    """The error for a checkpoint that is whole but not this run's latest state: what is wrong and what to do."""
    return DataError(
        f"{folder}: {what}; refusing to resume from it. Remove that folder to resume from an earlier checkpoint of "
        "this run, or start the run again"
    )


def _check_digest(folder: Path, arrays: Mapping[str, np.ndarray], record: Mapping[str, Any]) -> None:
    """The arrays and the record are the ones written together (the digest over both matches)."""
    if state_digest(arrays, record) != record["sha256"]:
        raise _refusal(
            folder,
            f"{STATE_FILE} and {META_FILE} do not match the digest (sha256) they were written with: one of them was "
            "changed or swapped for another checkpoint's",
        )


def _check_name(folder: Path, record: Mapping[str, Any]) -> None:
    """The state holds as many epochs as the folder's name says."""
    match = _NAME.match(folder.name)
    if match and int(match.group(1)) != record["epochs_done"]:
        raise _refusal(
            folder,
            f"it holds the state after {record['epochs_done']} epochs, not {int(match.group(1))} as its name says "
            "(another checkpoint was copied over it)",
        )


def _check_belongs(folder: Path, record: Mapping[str, Any]) -> None:
    """The checkpoint was written by the run it sits in, for its spec, and is the one ``run.json`` records."""
    run_dir = folder.parent.parent
    run = read_record(run_dir)
    mine = run.get("run_id")
    if record["run_id"] != mine:
        theirs = f"run {record['run_id']}" if record["run_id"] else "no run"
        here = f"run {mine}" if isinstance(mine, str) else "no run id in its run.json"
        raise _refusal(folder, f"it was written by {theirs}, but {run_dir} holds {here} (copied from another run?)")
    if record["spec_sha256"] != spec_identity(run_dir):
        raise _refusal(
            folder,
            f"it was written for another spec than {run_dir / SPEC_FILE} (copied from another run, or the spec "
            "was edited; to change settings when resuming, use --set KEY=VALUE)",
        )
    digests = run.get(POINTER_DIGEST)
    if isinstance(digests, dict) and folder.name in digests and digests[folder.name] != record["sha256"]:
        raise _refusal(
            folder,
            f"it is not the checkpoint this run wrote there ({run_dir / 'run.json'} records another digest for it)",
        )


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
