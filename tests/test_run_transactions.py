"""A run directory changes only when the new run is ready, holds only what nnspec wrote, and is never written
through a link (issue 24, items 1-3).

* A resume, and ``--overwrite`` over an earlier run, is a transaction: any refusal before the new run has
  compiled and restored its state (an edited spec, an absent device, an engine that cannot take the flags,
  a damaged checkpoint, a stop request) leaves the folder exactly as it was, byte for byte, status included.
* ``run.json`` carries the manifest; ``--overwrite`` removes only what nnspec wrote and refuses a folder
  that is not a run, or that holds anything else, naming what it found. Runs from before the manifest
  still resume and are still replaced.
* The lock file is never opened through a link (nor as a FIFO or a hard link); linked folders of a run are
  refused; every file of a run has one mode; temporaries are never left in the run root.

Real runs of a tiny model on JAX through ``nnspec.cli.main``, in this process; the signal and kill tests
start ``nnspec`` processes (slow tier).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nnspec.cli import main
from nnspec.runtime.checkpoints import latest_checkpoint
from nnspec.runtime.run_manifest import OWNED, TEMP_FOLDER, write_in_run
from nnspec.runtime.run_status import is_locked, read_status
from nnspec.runtime.tensorboard import RunLog

TINY = """\
nnspec: 1
name: tiny
input: {shape: [8, 8, 1]}
layers: [flatten, {dense: {units: 16, activation: relu}}, {dense: {units: 10}}, softmax]
train: {epochs: 2, batch_size: 64, seed: 1}
data: {dataset: digits}
"""

#: Slow enough per epoch (batch size 2) that a signal or a kill lands while it trains.
SLOW = (
    TINY.replace("units: 16", "units: 256")
    .replace("batch_size: 64", "batch_size: 2")
    .replace("epochs: 2", "epochs: 20")
)

QUIET = ["--device", "cpu", "--quiet"]


def snapshot(folder: Path) -> dict[str, Any]:
    """Every entry under ``folder`` (links not followed): kind, mode and content, for byte-for-byte comparisons."""
    found: dict[str, Any] = {}
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, folder)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("folder", info.st_mode)
            else:
                found[rel] = ("file", info.st_mode, Path(path).read_bytes())
    return found


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def finished(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete two-epoch run (copied by each test that changes it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["run", str(spec), "--out", str(out), *QUIET]) == 0
    return out


@pytest.fixture()
def run(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out, symlinks=True)
    return out


def _damage_latest_checkpoint(out: Path) -> list[str]:
    state = out / "checkpoints" / "epoch-000002" / "state.safetensors"
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])  # cut short, as a full disk or a bad copy leaves it
    return []


def _edit_spec(out: Path) -> list[str]:
    spec = out / "spec.yaml"
    spec.write_text(spec.read_text().replace("units: 16", "units: -16"))
    return []


def _reshape_spec(out: Path) -> list[str]:
    spec = out / "spec.yaml"
    spec.write_text(spec.read_text().replace("units: 16", "units: 24"))  # valid, but the checkpoint does not fit
    return []


#: How a resume can be refused before it starts: (what is done to the run, extra arguments).
REFUSALS = {
    "edited spec": (_edit_spec, ["--epochs", "3"]),
    "edited spec, other shapes": (_reshape_spec, ["--epochs", "3"]),
    "absent device": (None, ["--epochs", "3", "--device", "gpu"]),
    "devices the engine lacks": (None, ["--epochs", "3", "--devices", "64"]),
    "unknown backend": (None, ["--epochs", "3", "--backend", "nope"]),
    "damaged checkpoint": (_damage_latest_checkpoint, ["--epochs", "3"]),
    "already complete": (None, []),
    "bad override": (None, ["--epochs", "3", "--set", "train.batch_size=0"]),
}


# ---- item 1: a failed resume or overwrite leaves the run as it was ------------------------------------------------


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refused_resume_leaves_the_run_byte_for_byte(case: str, run: Path, capsys: pytest.CaptureFixture) -> None:
    change, extra = REFUSALS[case]
    if change is not None:
        change(run)
    before = snapshot(run)
    assert read_status(run) == "complete"
    code = main(
        ["run", "--resume", str(run), "--quiet", *(extra if "--device" in extra else ["--device", "cpu", *extra])]
    )
    err = capsys.readouterr().err
    assert code in (1, 2) and "Traceback" not in err and "internal error" not in err, err
    assert snapshot(run) == before, case
    assert read_status(run) == "complete" and not is_locked(run)


def test_a_refused_overwrite_leaves_the_earlier_run_byte_for_byte(
    run: Path, spec: Path, capsys: pytest.CaptureFixture
) -> None:
    before = snapshot(run)
    for extra in (["--device", "gpu"], ["--devices", "64", "--device", "cpu"]):
        assert main(["run", str(spec), "--out", str(run), "--overwrite", "--quiet", *extra]) == 1
        assert "Traceback" not in capsys.readouterr().err
        assert snapshot(run) == before
    assert read_status(run) == "complete"


def test_a_refused_new_run_leaves_no_folder_behind(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "run"
    assert main(["run", str(spec), "--out", str(out), "--quiet", "--device", "gpu"]) == 1
    assert not (tmp_path / "a").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", str(spec), "--out", str(empty), "--quiet", "--device", "gpu"]) == 1
    assert list(empty.iterdir()) == []


def test_a_resume_removes_stale_results_and_temporaries_only_once_it_starts(
    run: Path, capsys: pytest.CaptureFixture
) -> None:
    # what a process killed while writing leaves: a temporary in .nnspec-tmp/ and one from an older nnspec
    (run / TEMP_FOLDER).mkdir()
    (run / TEMP_FOLDER / "metrics.csv").write_text("half")
    (run / ".tmp-metrics-x.csv").write_text("half")
    before = snapshot(run)
    assert main(["run", "--resume", str(run), "--epochs", "3", "--device", "gpu", "--quiet"]) == 1
    assert snapshot(run) == before  # refused: even the temporaries stay
    capsys.readouterr()
    assert main(["run", "--resume", str(run), "--epochs", "3", *QUIET]) == 0
    names = {p.name for p in run.iterdir()}
    assert not any(name.startswith(".tmp") for name in names) and TEMP_FOLDER not in names
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "complete" and record["resumed_from"] == 2 and record["epochs_done"] == 3


# ---- item 2: the manifest; --overwrite removes only what nnspec wrote ---------------------------------------------


def test_run_json_lists_what_nnspec_wrote(finished: Path) -> None:
    record = json.loads((finished / "run.json").read_text())
    assert record["format"] == "nnspec-run"
    assert {p.name for p in finished.iterdir()} <= set(record["files"]) <= OWNED


@pytest.mark.parametrize("marker", ["metrics.csv", "spec.yaml", "checkpoints", "run.json", "env.json"])
def test_overwrite_refuses_a_folder_that_merely_looks_like_a_run(
    marker: str, spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.md").write_text("mine")
    if marker == "checkpoints":
        (folder / marker).mkdir()
        (folder / marker / "model.pt").write_text("weights of mine")
    else:
        (folder / marker).write_text('{"status": "complete"}\n' if marker == "run.json" else "epoch,loss\n1,0.5\n")
    before = snapshot(folder)
    assert main(["run", str(spec), "--out", str(folder), "--overwrite", *QUIET]) == 1
    err = capsys.readouterr().err
    assert "not an nnspec run" in err and marker in err and "notes.md" in err
    assert snapshot(folder) == before


@pytest.mark.parametrize(
    "extra", ["notes.txt", "checkpoints/README", "checkpoints/epoch-000002/extra.npy", "tensorboard/mine.log", "data/"]
)
def test_overwrite_refuses_a_run_holding_anything_else_and_names_it(
    extra: str, run: Path, spec: Path, capsys: pytest.CaptureFixture
) -> None:
    path = run / extra
    if extra.endswith("/"):
        path.mkdir()
    else:
        path.write_text("not nnspec's")
    before = snapshot(run)
    assert main(["run", str(spec), "--out", str(run), "--overwrite", *QUIET]) == 1
    err = capsys.readouterr().err
    assert extra in err and "did not write" in err
    assert snapshot(run) == before


def test_overwrite_replaces_a_run_and_leaves_nothing_of_it(run: Path, spec: Path) -> None:
    assert main(["run", str(spec), "--out", str(run), "--overwrite", "--epochs", "1", "--no-tensorboard", *QUIET]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-000001"]
    assert not (run / "tensorboard").exists()  # the earlier run's log went with it
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "complete" and record.get("resumed_from") is None and record["epochs_done"] == 1


def test_runs_from_before_the_manifest_are_still_resumed_and_replaced(run: Path, spec: Path) -> None:
    record = json.loads((run / "run.json").read_text())
    for key in ("format", "files"):
        record.pop(key)
    (run / "run.json").write_text(json.dumps(record))
    assert main(["run", "--resume", str(run), "--epochs", "3", *QUIET]) == 0
    assert json.loads((run / "run.json").read_text())["format"] == "nnspec-run"
    (run / "run.json").unlink()  # older still: no run.json at all, the six contract files
    shutil.rmtree(run / "tensorboard")
    assert read_status(run) == "complete"
    assert main(["run", str(spec), "--out", str(run), "--overwrite", "--epochs", "1", "--no-tensorboard", *QUIET]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-000001"]


# ---- item 3: links, the lock file, file modes, temporaries ---------------------------------------------------------


@pytest.mark.parametrize("how", ["symlink", "hardlink", "fifo"])
def test_the_lock_file_is_never_written_through_a_link_or_as_a_special_file(
    how: str, spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    {"symlink": lambda: (out / ".lock").symlink_to(victim), "hardlink": lambda: os.link(victim, out / ".lock")}.get(
        how, lambda: os.mkfifo(out / ".lock")
    )()
    assert main(["run", str(spec), "--out", str(out), *QUIET]) == 1
    err = capsys.readouterr().err
    assert ".lock" in err and "Traceback" not in err
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


@pytest.mark.parametrize("linked", ["checkpoints", "tensorboard", "checkpoints/epoch-000002", ".lock", "spec.yaml"])
def test_linked_parts_of_a_run_are_refused_and_never_touched(
    linked: str, finished: Path, run: Path, spec: Path, capsys: pytest.CaptureFixture
) -> None:
    other = run.parent / "other"
    shutil.copytree(finished, other, symlinks=True)  # another run, whose files must stay as they are
    (run / linked).unlink() if (run / linked).is_file() else shutil.rmtree(run / linked)
    (run / linked).symlink_to(other / linked)
    theirs, mine = snapshot(other), snapshot(run)
    for argv in (
        ["run", "--resume", str(run), "--epochs", "3", *QUIET],
        ["run", str(spec), "--out", str(run), "--overwrite", *QUIET],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert linked in err and ("symbolic link" in err) and "Traceback" not in err
        assert snapshot(other) == theirs and snapshot(run) == mine


def test_the_tensorboard_log_is_not_written_through_a_link(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import nnspec

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "events.out.tfevents.1.other").write_bytes(b"another run's log")
    run = tmp_path / "run"
    run.mkdir()
    (run / "tensorboard").symlink_to(elsewhere)
    log = RunLog(run, nnspec.load(spec), 1)
    log.close()
    assert "symbolic link" in capsys.readouterr().err
    assert [p.name for p in elsewhere.iterdir()] == ["events.out.tfevents.1.other"]


def test_every_file_of_a_run_has_one_mode(finished: Path) -> None:
    modes = {
        os.path.relpath(os.path.join(top, name), finished): stat.S_IMODE(os.lstat(os.path.join(top, name)).st_mode)
        for top, _, files in os.walk(finished)
        for name in files
    }
    assert "weights.safetensors" in modes and "checkpoints/epoch-000002/state.safetensors" in modes
    assert len(set(modes.values())) == 1, modes


def test_temporaries_are_written_beside_not_in_the_run_root(tmp_path: Path) -> None:
    seen: list[Path] = []

    def write(tmp: str) -> None:
        seen.append(Path(tmp))
        Path(tmp).write_text("x")

    write_in_run(tmp_path, "metrics.csv", write)
    assert seen[0].parent == tmp_path / TEMP_FOLDER and sorted(os.listdir(tmp_path)) == ["metrics.csv"]

    def fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_in_run(tmp_path, "test.json", fail)
    assert sorted(os.listdir(tmp_path)) == ["metrics.csv"]


# ---- signals and kills (processes) ----------------------------------------------------------------------------------


def _nnspec(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "nnspec.cli", *args], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )


def _when_locked(proc: subprocess.Popen, folder: Path, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not is_locked(folder):
        assert proc.poll() is None and time.monotonic() < end, "the run never took its lock"
        time.sleep(0.005)


@pytest.mark.slow
@pytest.mark.parametrize(
    "how, signum, count",
    [("resume", signal.SIGINT, 1), ("resume", signal.SIGINT, 2), ("overwrite", signal.SIGTERM, 1)],
)
def test_a_signal_while_a_run_prepares_leaves_the_earlier_run_byte_for_byte(
    how: str, signum: int, count: int, run: Path, spec: Path
) -> None:
    before = snapshot(run)
    # the claim is taken before the engine is imported: a signal then reaches the start before its commit
    start = (
        ["--resume", str(run), "--epochs", "3"] if how == "resume" else [str(spec), "--out", str(run), "--overwrite"]
    )
    proc = _nnspec("run", *start, "--backend", "tensorflow", "--device", "cpu")
    _when_locked(proc, run)
    for _ in range(count):
        proc.send_signal(signum)
        time.sleep(0.3)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum], err
    assert "Traceback" not in err and (count > 1 or "was left as it was" in err), err
    assert snapshot(run) == before
    assert read_status(run) == "complete"


@pytest.mark.slow
def test_a_killed_run_leaves_no_temporary_in_its_root(tmp_path: Path) -> None:
    spec = tmp_path / "slow.yaml"
    spec.write_text(SLOW)
    for i, delay in enumerate((0.5, 1.5, 3.0)):
        out = tmp_path / f"run{i}"
        proc = _nnspec("run", str(spec), "--out", str(out), *QUIET)
        _when_locked(proc, out)
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=60)
        names = {p.name for p in out.iterdir()} if out.exists() else set()
        assert not any(name.startswith(".tmp") for name in names), names
        assert names <= OWNED, names
        latest = latest_checkpoint(out)
        if latest is not None:  # one epoch more: the resume starts by removing what the kill left
            resumed = _nnspec("run", "--resume", str(out), "--epochs", str(latest.epoch + 1), *QUIET)
            assert resumed.wait(timeout=300) == 0, resumed.communicate()
            assert TEMP_FOLDER not in {p.name for p in out.iterdir()} and read_status(out) == "complete"
