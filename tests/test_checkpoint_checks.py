"""Checkpoints are checked before a run resumes from them, and a failed checkpoint write loses nothing.

* A checkpoint carries a digest of its arrays and record and the identity of its run and spec: one swapped
  for an earlier checkpoint (copied over, renamed, re-digested), or copied from another run or another spec
  with the same shapes, is refused with exit 1 and a message, never resumed from.
* Every field of ``checkpoint.json`` is checked before use: a malformed one is named (file and field).
* A full disk (ENOSPC) while a checkpoint or another per-epoch file is written ends with exit 4, the
  trained weights rescued, the earlier checkpoints intact and no temporary folder left; the run then
  resumes to the same weights as a run never stopped. A real full tmpfs (slow tier, root only) too.

Runs are tiny JAX MLPs on the digits, trained in-process; tampering happens on copies of module-scoped runs.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from safetensors.numpy import load_file

from nnspec.cli import main
from nnspec.errors import DataError
from nnspec.runtime import checkpoints as ckpt
from nnspec.runtime.atomic import atomic_folder
from nnspec.runtime.checkpoints import list_checkpoints, read_checkpoint, state_digest

SPEC = """\
nnspec: 1
name: tiny
input: {shape: [8, 8, 1]}
layers:
  - flatten
  - dense: {units: 12, activation: relu}
  - dropout: 0.1
  - dense: {units: 10}
  - softmax
train:
  optimizer: {adam: {learning_rate: LR}}
  batch_size: 128
  epochs: 3
  seed: 3
  checkpoint: {every: 1, keep: 3}
  early_stopping: {monitor: val_loss, patience: 5}
data: {dataset: digits, validation_split: 0.1, test_split: 0.2}
"""
COMMON = ["--backend", "jax", "--device", "cpu", "--quiet", "--no-tensorboard"]


def _spec(folder: Path, name: str, lr: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(SPEC.replace("LR", lr))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Finished 3-epoch runs: ``a``; ``b`` of another spec with the same shapes; ``a2``, another run of ``a``'s spec.

    ``a2`` is ``a`` with another run id, its records re-digested: the same spec and seed train to the same
    weights, so this is what a second run of it holds (without paying for one).
    """
    root = tmp_path_factory.mktemp("runs")
    out = {name: root / name for name in ("a", "b")}
    for name, lr in (("a", "0.01"), ("b", "0.02")):
        assert main(["run", str(_spec(root, name, lr)), "--out", str(out[name]), *COMMON]) == 0
    out["a2"] = root / "a2"
    shutil.copytree(out["a"], out["a2"], ignore=shutil.ignore_patterns(".lock"))
    status = json.loads((out["a2"] / "run.json").read_text())
    status["run_id"] = "0123456789abcdef" * 2
    for checkpoint in list_checkpoints(out["a2"]):
        record = dict(_record(checkpoint.path), run_id=status["run_id"])
        record["sha256"] = state_digest(load_file(str(checkpoint.path / ckpt.STATE_FILE)), record)
        _write_record(checkpoint.path, record)
        status["checkpoint_sha256"] = {checkpoint.path.name: record["sha256"]}
    (out["a2"] / "run.json").write_text(json.dumps(status))
    read_checkpoint(_epoch(out["a2"], 3))  # a whole, valid checkpoint of that other run
    return out


def _copy(run: Path, where: Path) -> Path:
    target = where / "run"
    shutil.copytree(run, target, ignore=shutil.ignore_patterns(".lock"))
    return target


def _epoch(run: Path, n: int) -> Path:
    return run / "checkpoints" / f"epoch-{n:06d}"


def _resume(run: Path, capsys: pytest.CaptureFixture[str], epochs: int = 4) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["run", "--resume", str(run), "--epochs", str(epochs), *COMMON])
    return code, capsys.readouterr().err


def _refused(run: Path, capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    """Resuming ``run`` is refused with exit 1, a message holding ``needles``, and trains nothing."""
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    code, err = _resume(run, capsys)
    assert code == 1, err
    assert "internal error" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # nothing trained, nothing removed


def _record(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "checkpoint.json").read_text())


def _write_record(folder: Path, record: dict[str, Any]) -> None:
    (folder / "checkpoint.json").write_text(json.dumps(record))


# ---- what a checkpoint records ----------------------------------------------------------------------


def test_checkpoint_records_its_digest_run_and_spec(runs: dict[str, Path]) -> None:
    run = runs["a"]
    status = json.loads((run / "run.json").read_text())
    records = [_record(_epoch(run, n)) for n in (1, 2, 3)]
    assert {r["run_id"] for r in records} == {status["run_id"]}
    assert len({r["spec_sha256"] for r in records}) == 1 and records[0]["spec_sha256"]
    assert status["checkpoint_sha256"] == {"epoch-000003": records[2]["sha256"]}
    other = _record(_epoch(runs["a2"], 3))
    assert other["spec_sha256"] == records[2]["spec_sha256"] and other["run_id"] != records[2]["run_id"]
    assert _record(_epoch(runs["b"], 3))["spec_sha256"] != records[2]["spec_sha256"]
    state, record = read_checkpoint(_epoch(run, 3))
    assert state.epochs_done == 3 and record["sha256"] == state_digest(
        load_file(str(_epoch(run, 3) / ckpt.STATE_FILE)), record
    )


# ---- swapped checkpoints -----------------------------------------------------------------------------


def _older_copied_over(run: Path) -> None:
    shutil.rmtree(_epoch(run, 3))
    shutil.copytree(_epoch(run, 2), _epoch(run, 3))


def _older_renamed(run: Path) -> None:
    shutil.rmtree(_epoch(run, 3))
    os.rename(_epoch(run, 2), _epoch(run, 3))


def _state_swapped(run: Path) -> None:
    shutil.copy(_epoch(run, 2) / ckpt.STATE_FILE, _epoch(run, 3) / ckpt.STATE_FILE)


def _record_swapped(run: Path) -> None:
    shutil.copy(_epoch(run, 2) / ckpt.META_FILE, _epoch(run, 3) / ckpt.META_FILE)


def _record_edited(run: Path) -> None:
    record = _record(_epoch(run, 3))
    record["step"] += 1
    _write_record(_epoch(run, 3), record)


def _older_renamed_and_redigested(run: Path) -> None:
    """Epoch 2's state under epoch 3's name, its record made self-consistent (counts and digest recomputed)."""
    record, later = _record(_epoch(run, 2)), _record(_epoch(run, 3))
    _older_renamed(run)
    record["epochs_done"], record["history"] = 3, later["history"]
    record["sha256"] = state_digest(load_file(str(_epoch(run, 3) / ckpt.STATE_FILE)), record)
    _write_record(_epoch(run, 3), record)


@pytest.mark.parametrize(
    ("tamper", "needle"),
    [
        (_older_copied_over, "holds the state after 2 epochs, not 3"),
        (_older_renamed, "holds the state after 2 epochs, not 3"),
        (_state_swapped, "do not match the digest"),
        (_record_swapped, "do not match the digest"),
        (_record_edited, "do not match the digest"),
        (_older_renamed_and_redigested, "records another digest"),
    ],
    ids=["copied-over", "renamed", "state-swapped", "record-swapped", "record-edited", "re-digested"],
)
def test_a_checkpoint_swapped_for_an_earlier_one_is_refused(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tamper: Callable[[Path], None],
    needle: str,
) -> None:
    run = _copy(runs["a"], tmp_path)
    tamper(run)
    _refused(run, capsys, str(_epoch(run, 3)), needle, "refusing to resume")


@pytest.mark.parametrize(
    ("source", "also_status", "needle"),
    [("a2", False, "was written by run"), ("b", False, "was written by run"), ("b", True, "another spec")],
    ids=["same-spec-other-run", "other-spec-same-shapes", "other-spec-with-its-run-json"],
)
def test_a_checkpoint_from_another_run_or_spec_is_refused(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    source: str,
    also_status: bool,
    needle: str,
) -> None:
    run = _copy(runs["a"], tmp_path)
    shutil.rmtree(run / "checkpoints")
    shutil.copytree(runs[source] / "checkpoints", run / "checkpoints")
    if also_status:
        shutil.copy(runs[source] / "run.json", run / "run.json")
    _refused(run, capsys, "refusing to resume", needle)


def test_an_edited_spec_is_refused(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _copy(runs["a"], tmp_path)
    spec = run / "spec.yaml"
    spec.write_text(spec.read_text().replace("learning_rate: 0.01", "learning_rate: 0.02"))
    _refused(run, capsys, "another spec", "--set KEY=VALUE")


# ---- every field of checkpoint.json -----------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set (or, with value ``...``, delete) the field at ``path`` (``history.1.loss``)."""

    def edit(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = record
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if value is ...:
            del node[key]
        else:
            node[key] = value

    return edit


BAD_FIELDS = [
    ("step", "12", "step"),
    ("step", 1.5, "step"),
    ("step", -1, "step"),
    ("step", 2**40, "step"),
    ("step", None, "step"),
    ("step", True, "step"),
    ("step", ..., "step"),
    ("epochs_done", "three", "epochs_done"),
    ("epochs_done", 7, "history"),
    ("epochs_done", ..., "epochs_done"),
    ("history", "rows", "history"),
    ("history", None, "history"),
    ("history.1", [1, 2], "history[1]"),
    ("history.1.epoch", 5, "history[1].epoch"),
    ("history.1.epoch", "2", "history[1].epoch"),
    ("history.1.loss", "low", "history[1].loss"),
    ("history.1.accuracy", 3.5, "history[1].accuracy"),
    ("history.1.seconds", -2.0, "history[1].seconds"),
    ("history.1.val_loss", ..., "history[1]"),
    ("history.1.extra", 1.0, "history[1]"),
    ("history", ..., "history"),
    ("early_stopping", "yes", "early_stopping"),
    ("early_stopping.best", "0.5", "early_stopping.best"),
    ("early_stopping.best", None, "early_stopping.best_epoch"),
    ("early_stopping.best_epoch", -1, "early_stopping.best_epoch"),
    ("early_stopping.best_epoch", 9, "early_stopping.best_epoch"),
    ("early_stopping.wait", 10**30, "early_stopping.wait"),
    ("early_stopping.stopped_epoch", 2.0, "early_stopping.stopped_epoch"),
    ("early_stopping.wait", ..., "early_stopping.wait"),
    ("early_stopping.patience", 3, "early_stopping"),
    ("sha256", ..., "sha256"),
    ("sha256", "abc", "sha256"),
    ("run_id", 5, "run_id"),
    ("run_id", ..., "run_id"),
    ("spec_sha256", "zz", "spec_sha256"),
    ("backend", 3, "backend"),
    ("dtype", ["float32"], "dtype"),
]


@pytest.mark.parametrize(("path", "value", "field"), BAD_FIELDS, ids=[f"{p}={v!r}"[:40] for p, v, _ in BAD_FIELDS])
def test_a_malformed_field_is_named(runs: dict[str, Path], tmp_path: Path, path: str, value: Any, field: str) -> None:
    folder = tmp_path / "checkpoints" / "epoch-000003"
    shutil.copytree(_epoch(runs["a"], 3), folder)
    record = _record(folder)
    _set(path, value)(record)
    _write_record(folder, record)
    with pytest.raises(DataError) as caught:
        read_checkpoint(folder)
    message = str(caught.value)
    assert str(folder / "checkpoint.json") in message and f"field '{field}'" in message, message


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda text: text.replace('"step": ', '"step": NaN, "x": ', 1), "NaN is not a JSON number"),
        (lambda text: text.replace('"loss": ', '"loss": Infinity, "x": ', 1), "Infinity is not a JSON number"),
        (lambda text: text.replace('"step": ', '"step": 1e999, "x": ', 1), "field 'step'"),
        (lambda text: text.replace('"step": ', '"step": ' + "9" * 5000 + ', "x": ', 1), "not a readable"),
        (lambda text: text[: len(text) // 2], "not a readable checkpoint record"),
        (lambda text: text.replace('"version": 2', '"version": 1'), "format version 1"),
        (lambda text: text.replace('"version": 2', '"version": "2"'), "format version '2'"),
        (lambda text: "[" * 100_000, "not a readable checkpoint record"),
    ],
    ids=["nan", "infinity", "overflow", "huge-integer", "truncated", "version-1", "version-text", "deep"],
)
def test_malformed_json_is_refused_naming_the_file(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Callable[[str], str], needle: str
) -> None:
    run = _copy(runs["a"], tmp_path)
    meta = _epoch(run, 3) / "checkpoint.json"
    meta.write_text(edit(json.dumps(_record(_epoch(run, 3)))))
    _refused(run, capsys, str(meta), needle)


# ---- a failed checkpoint write ----------------------------------------------------------------------


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _full_at_epoch_2_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while epoch 2's checkpoint is written: half its arrays are on disk, then ENOSPC."""
    real = ckpt._save_tensors

    def save(tensors: Any, path: Path) -> None:
        if not path.parent.name.startswith(".tmp-epoch-000002"):
            return real(tensors, path)
        path.write_bytes(b"\0" * 4096)
        raise _enospc()

    monkeypatch.setattr(ckpt, "_save_tensors", save)


def _full_at_epoch_2_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while metrics.csv is written after epoch 2 (before that epoch's checkpoint)."""
    import nnspec.runtime.training_run as training_run

    real = training_run.write_metrics

    def write(history: Any, path: Any) -> None:
        if len(history) != 2:
            return real(history, path)
        Path(path).write_text("epoch,lo")
        raise _enospc()

    monkeypatch.setattr(training_run, "write_metrics", write)


@pytest.mark.parametrize("fill", [_full_at_epoch_2_checkpoint, _full_at_epoch_2_metrics], ids=["checkpoint", "metrics"])
def test_a_full_disk_during_training_exits_4_with_the_state_rescued(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fill: Callable[[pytest.MonkeyPatch], None],
) -> None:
    rescue = tmp_path / "rescue"
    rescue.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rescue))
    run, spec = tmp_path / "run", _spec(tmp_path, "a", "0.01")
    with monkeypatch.context() as patch:
        fill(patch)
        capsys.readouterr()
        code = main(["run", str(spec), "--out", str(run), *COMMON])
        err = capsys.readouterr().err
    assert code == 4, err
    assert "No space left on device" in err and "after epoch 2" in err and "internal error" not in err, err
    (rescued,) = rescue.glob("nnspec-rescued-tiny-jax-*.safetensors")
    assert f"saved to {rescued}" in err and "epoch-000001, is intact" in err and f"--resume {run}" in err, err
    want = read_checkpoint(_epoch(runs["a"], 2))[0].all_weights()  # the same run, never stopped, after epoch 2
    got = load_file(str(rescued))
    assert sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)
    assert [c.epoch for c in list_checkpoints(run)] == [1]
    read_checkpoint(_epoch(run, 1))  # the previous checkpoint is whole and still verifies
    assert not [p for p in run.rglob("*") if p.name.startswith(".tmp-")]
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "failed" and status["rescued"] == str(rescued)
    if fill is _full_at_epoch_2_metrics:
        return
    code, err = _resume(run, capsys, epochs=3)  # space freed: the run ends where the unstopped one did
    assert code == 0, err
    want, got = load_file(str(runs["a"] / "weights.safetensors")), load_file(str(run / "weights.safetensors"))
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_a_failed_folder_write_leaves_the_old_folder_and_no_temporary(tmp_path: Path) -> None:
    old = tmp_path / "epoch-000001"
    old.mkdir()
    (old / "a.txt").write_text("old")

    def fill(tmp: Path) -> None:
        (tmp / "a.txt").write_text("new, half")
        raise _enospc()

    with pytest.raises(OSError) as caught:
        atomic_folder(old, fill)
    assert caught.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-000001"] and (old / "a.txt").read_text() == "old"


@pytest.mark.slow
def test_a_real_full_tmpfs_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    """A 700 KiB tmpfs takes one checkpoint of a 460 KB state but not a second: exit 4, epoch 1 intact."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        spec = tmp_path / "big.yaml"
        spec.write_text(SPEC.replace("LR", "0.01").replace("units: 12", "units: 512").replace("keep: 3", "keep: 1"))
        env = {**os.environ, "TMPDIR": str(tmp_path)}
        run = disk / "run"
        proc = subprocess.run(
            [sys.executable, "-m", "nnspec", "run", str(spec), "--out", str(run), *COMMON],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 4, proc.stderr
        assert "No space left on device" in proc.stderr and "epoch-000001, is intact" in proc.stderr, proc.stderr
        assert len(list(tmp_path.glob("nnspec-rescued-tiny-jax-*.safetensors"))) == 1
        assert [c.epoch for c in list_checkpoints(run)] == [1]
        read_checkpoint(_epoch(run, 1))
        assert not [p for p in run.rglob("*") if p.name.startswith(".tmp-")]
        copy = tmp_path / "copy"
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock"))
        resumed = subprocess.run(
            [sys.executable, "-m", "nnspec", "run", "--resume", str(copy), *COMMON],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert resumed.returncode == 0, resumed.stderr
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
