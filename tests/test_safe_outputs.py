"""Safe outputs (issue 24): every file a command writes where the user said is written whole, never through a
link and never over a device, FIFO, socket or folder; figures go exactly where the message says; damaged
``metrics.csv`` files, enormous profile batches and huge or mistaken sweeps end in messages, not internal errors;
and a sweep's workers never outlive it.

The fast tests run the CLI in-process; the ones that start processes or send signals are marked slow.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nnspec.cli import main
from nnspec.errors import DataError, SpecError
from nnspec.outputs import OutputPathError, write_output, write_outputs
from nnspec.runtime.history import MAX_METRICS_BYTES, read_metrics
from nnspec.tools.sweep_plan import MAX_RUNS, GridAxis, combinations, parse_grid
from nnspec.tools.sweep_record import Sweep
from nnspec.tools.sweep_runner import check_runs

HEADER = "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n"
GOOD_METRICS = HEADER + "1,0.9,0.6,,,0.5\n2,0.5,0.8,,,0.5\n"

SPEC = """\
nnspec: 1
name: tiny
input: {shape: [8, 8, 1]}
layers: [flatten, {dense: {units: 10}}, softmax]
train: {batch_size: 16, epochs: 1, seed: 0}
data: {dataset: digits}
"""

# a spec that takes its training settings from a base (extends), for the sweep's extends grid
CHILD = """\
nnspec: 1
name: child
input: {shape: [8, 8, 1]}
layers: [flatten, {dense: {units: 10}}, softmax]
data: {dataset: digits}
"""
BASE = "nnspec: 1\ntrain: {{optimizer: {{sgd: {{learning_rate: {lr}}}}}, batch_size: 16, epochs: 1}}\n"


@pytest.fixture()
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "run-good"
    folder.mkdir()
    (folder / "metrics.csv").write_text(GOOD_METRICS)
    (folder / "spec.yaml").write_text(SPEC)
    return folder


# ---- special files in an output's place -------------------------------------------------------------------------
def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _link_to_file(path: Path) -> None:
    target = path.parent / "precious.txt"
    target.write_text("keep me")
    path.symlink_to(target)


def _dangling_link(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere" / "x")


def _link_to_device(path: Path) -> None:
    path.symlink_to("/dev/null")


def _socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()


SPECIALS: dict[str, tuple[Callable[[Path], None], str]] = {
    "fifo": (_fifo, "it exists and is not a regular file (a FIFO"),
    "link-to-file": (_link_to_file, "it is a symbolic link to"),
    "dangling-link": (_dangling_link, "it is a symbolic link to"),
    "link-to-device": (_link_to_device, "it is a symbolic link to /dev/null"),
    "socket": (_socket, "it exists and is not a regular file (a socket"),
}

# each command that writes a user-named file: its arguments, with {out} the output path ({tmp}, {spec}, {run})
COMMANDS: dict[str, tuple[list[str], str]] = {
    "schema": (["schema", "-o", "{out}"], "out.json"),
    "export-keras": (["export", "{spec}", "{out}"], "out.keras"),
    "export-onnx": (["export", "{spec}", "{out}"], "out.onnx"),
    "import-spec": (["import", "{tmp}/model.keras", "-o", "{out}"], "out.yaml"),
    "import-weights": (["import", "{tmp}/model.keras", "-o", "{tmp}/s.yaml", "--weights-out", "{out}"], "w.st"),
    "predict": (["predict", "{spec}", "-w", "{tmp}/w.safetensors", "-i", "{tmp}/x.npy", "-o", "{out}"], "out.npy"),
    "plot": (["plot", "{run}", "-o", "{out}"], "out.png"),
    "profile": (["profile", "{spec}", "-b", "jax", "--plot", "{out}"], "out.png"),
}


def _argv(command: str, tmp_path: Path, spec: Path, run: Path, out: Path) -> list[str]:
    words, _ = COMMANDS[command]
    return [w.format(out=out, tmp=tmp_path, spec=spec, run=run) for w in words]


def _refused(capsys: pytest.CaptureFixture[str], code: int, *says: str) -> str:
    err = capsys.readouterr().err
    assert code == 1, err
    assert all(s in err for s in says), err
    assert "internal error" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("kind", sorted(SPECIALS))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_a_special_file_in_its_outputs_place(
    command: str, kind: str, tmp_path: Path, spec: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, says = SPECIALS[kind]
    out = tmp_path / COMMANDS[command][1]
    make(out)
    before = os.lstat(out)
    code = main(_argv(command, tmp_path, spec, run_dir, out))
    _refused(capsys, code, str(out), says)
    after = os.lstat(out)
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino
    if kind == "link-to-file":
        assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full", "/dev/zero"])
@pytest.mark.parametrize("command", ["schema", "import-spec", "predict", "plot", "profile"])
def test_a_device_node_is_never_replaced(
    command: str, device: str, tmp_path: Path, spec: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not os.path.exists(device) or not stat.S_ISCHR(os.lstat(device).st_mode):
        pytest.skip(f"{device} is not a character device on this machine")
    code = main(_argv(command, tmp_path, spec, run_dir, Path(device)))
    _refused(capsys, code, f"{device}: cannot write the", "a character device")
    assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_a_folder_given_as_a_file_is_refused_by_every_file_command(
    tmp_path: Path, spec: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("schema", "import-spec", "predict"):
        folder = tmp_path / f"{command}-dir"
        folder.mkdir()
        _refused(capsys, main(_argv(command, tmp_path, spec, run_dir, folder)), "it is a folder")
        assert not os.listdir(folder)


def test_compare_and_sweep_refuse_special_files_among_their_outputs(
    tmp_path: Path, spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report"
    report.mkdir()
    os.mkfifo(report / "compare.csv")
    code = main(["compare", str(spec), "-b", "jax", "--out", str(report)])
    _refused(capsys, code, f"{report / 'compare.csv'}: cannot write the report", "FIFO")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "results.md").symlink_to(tmp_path / "elsewhere.md")
    code = main(["sweep", str(spec), "--grid", "train.seed=1,2", "--out", str(sweep)])
    _refused(capsys, code, f"{sweep / 'results.md'}: cannot write the sweep results", "symbolic link")
    assert not (tmp_path / "elsewhere.md").exists() and sorted(os.listdir(sweep)) == ["results.md"]


# ---- the writer ---------------------------------------------------------------------------------------------------
def test_writes_are_whole_replace_only_the_name_and_leave_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    other_name = tmp_path / "hard-link.json"
    os.link(target, other_name)
    write_output(target, "new", "schema")
    assert target.read_text() == "new" and other_name.read_text() == "old"  # the name is replaced, not the inode
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask

    def fails(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputPathError, match="out.json: cannot write the schema: No space left on device; nothing"):
        write_output(target, fails, "schema")
    assert target.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["hard-link.json", "out.json"]


@pytest.mark.parametrize("swap", ["symlink", "fifo"])
def test_a_special_file_put_in_place_while_writing_is_not_replaced(tmp_path: Path, swap: str) -> None:
    target = tmp_path / "out.yaml"
    precious = tmp_path / "precious"
    precious.write_text("keep")

    def writer(tmp: str) -> None:
        Path(tmp).write_text("spec")
        target.unlink(missing_ok=True)
        if swap == "symlink":
            target.symlink_to(precious)
        else:
            os.mkfifo(target)

    for existing in (False, True):
        target.unlink(missing_ok=True)
        if existing:
            target.write_text("old")
        with pytest.raises(OutputPathError, match="out.yaml: cannot write the spec: it"):
            write_outputs([(target, writer)], "spec")
        assert precious.read_text() == "keep" and (target.is_symlink() if swap == "symlink" else target.is_fifo())
        assert sorted(os.listdir(tmp_path)) == ["out.yaml", "precious"]


# ---- figures: where they go, in which format ----------------------------------------------------------------------
def test_plot_into_a_folder_writes_runs_png_there_and_says_so(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "figures"
    folder.mkdir()
    assert main(["plot", str(run_dir), "-o", str(folder)]) == 0
    captured = capsys.readouterr()
    assert (folder / "runs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.listdir(folder) == ["runs.png"]
    assert (
        f"the figure goes to {folder / 'runs.png'}" in captured.err and f"wrote {folder / 'runs.png'}" in captured.out
    )
    # no suffix: PNG written to exactly that name, nothing else
    assert main(["plot", str(run_dir), "-o", str(tmp_path / "plain")]) == 0
    assert (tmp_path / "plain").read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "plain.png").exists()
    assert main(["plot", str(run_dir), "-o", str(tmp_path / "chart.svg")]) == 0
    assert b"<svg" in (tmp_path / "chart.svg").read_bytes()[:400]
    # a trailing slash on a folder that does not exist is not a file name
    _refused(capsys, main(["plot", str(run_dir), "-o", f"{tmp_path / 'nodir'}/"]), "no such folder exists")


@pytest.mark.parametrize("command", ["plot", "profile"])
@pytest.mark.parametrize("name", ["out.xyz", "out.PNGX", "out.pgf"])
def test_an_unknown_image_format_lists_the_known_ones(
    command: str, name: str, tmp_path: Path, spec: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / name
    err = _refused(capsys, main(_argv(command, tmp_path, spec, run_dir, out)), f"{out}:", "unknown image format")
    assert ".png" in err and ".svg" in err and ".pdf" in err and not out.exists()


def test_profile_into_a_folder_writes_profile_png_there(
    tmp_path: Path, spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "charts"
    folder.mkdir()
    args = ["profile", str(spec), "-b", "jax", "--repeats", "1", "--warmup", "0", "--batch", "4", "--device", "cpu"]
    assert main([*args, "--plot", str(folder)]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert (folder / "profile.png").read_bytes()[:4] == b"\x89PNG" and os.listdir(folder) == ["profile.png"]
    assert f"chart written to {folder / 'profile.png'}" in err and "is a folder" in err


# ---- damaged metrics.csv in diff and plot -------------------------------------------------------------------------
DAMAGED: dict[str, tuple[bytes, str]] = {
    "garbage": (b"garbage\n", "lacks column(s) epoch"),
    "wrong-columns": (b"a,b,c\n1,2,3\n", "lacks column(s) epoch"),
    "non-numeric": (HEADER.encode() + b"1,abc,0.5,,,1\n", "column loss, data row 1: 'abc' is not a number"),
    "no-epoch": (HEADER.encode() + b",0.5,0.5,,,1\n", "column epoch, data row 1"),
    "fractional-epoch": (HEADER.encode() + b"1.5,0.5,0.5,,,1\n", "1.5 is not an epoch number"),
    "repeated-epoch": (HEADER.encode() + b"1,1,1,,,1\n1,1,1,,,1\n", "epoch 1 appears twice"),
    "extra-fields": (HEADER.encode() + b"1,1,1,1,1,1,7,8\n", "data row 1 has 8 fields, the header 6"),
    "empty": (b"", "empty"),
    "blank": (b"\n\n  \n", "empty"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
    "not-utf8": (HEADER.encode() + b"1,\xff\xfe,1,,,1\n", "not UTF-8"),
    "open-quote": (b'"epoch,loss\n1,2\n', "lacks column(s)"),
    "twice-named": (b"epoch,loss,loss,accuracy,val_loss,val_accuracy,seconds\n", "names loss more than once"),
    "huge-field": (HEADER.encode() + b"1," + b"9" * 200_000 + b",1,,,1\n", "not a readable metrics CSV"),
}


def _damage(folder: Path, kind: str) -> str:
    """Make ``folder`` a run directory whose metrics.csv is damaged as ``kind`` says; the expected message part."""
    folder.mkdir()
    (folder / "spec.yaml").write_text(SPEC)
    metrics = folder / "metrics.csv"
    if kind == "huge":
        with open(metrics, "wb") as f:
            f.truncate(MAX_METRICS_BYTES + 1)  # sparse: no disk used, never read
        return "more than a metrics file can be"
    if kind == "fifo":
        os.mkfifo(metrics)
        return "not a regular file"
    data, says = DAMAGED[kind]
    metrics.write_bytes(data)
    return says


@pytest.mark.parametrize("kind", [*sorted(DAMAGED), "huge", "fifo"])
def test_a_damaged_metrics_csv_is_a_message_naming_it_in_plot_diff_and_the_reader(
    kind: str, tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "run-bad"
    says = _damage(bad, kind)
    metrics = bad / "metrics.csv"
    with pytest.raises(DataError, match="not a regular file|" + str(metrics)):
        read_metrics(metrics)
    _refused(capsys, main(["plot", str(bad), "-o", str(tmp_path / "p.png")]), str(metrics), says)
    assert not (tmp_path / "p.png").exists()
    err = capsys.readouterr().err
    code = main(["diff", str(run_dir), str(bad)])
    err = capsys.readouterr().err
    assert code == 1 and "internal error" not in err and "Traceback" not in err, err
    assert str(bad) in err


def test_other_damaged_run_files_in_diff_and_plot_are_messages_or_ignored(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "run-other"
    other.mkdir()
    (other / "spec.yaml").write_text(SPEC)
    (other / "metrics.csv").write_text(GOOD_METRICS)
    os.mkfifo(other / "env.json")  # reading it would wait for a writer: it is not read
    assert main(["diff", str(run_dir), str(other)]) == 0, capsys.readouterr().err
    (other / "test.json").write_text("[" * 100_000 + "]" * 100_000)
    for argv in (["diff", str(run_dir), str(other)], ["plot", str(other), "-o", str(tmp_path / "p.png")]):
        _refused(capsys, main(argv), f"{other}: a JSON file of this run", "nested too deeply")


def test_metrics_nnspec_writes_still_read(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(HEADER + "1,nan,,,,0.5\n2,inf,0.5,0.7,0.4,0.5\n3, 0.25 ,0.75,,,\n")
    frame = read_metrics(path)
    assert list(frame["epoch"]) == [1, 2, 3] and frame["loss"].isna().iloc[0] and frame["loss"].iloc[2] == 0.25
    path.write_text(HEADER)
    assert len(read_metrics(path)) == 0


# ---- profile: the memory check ------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", [["--batch", "2000000000"], ["--set", "train.batch_size=2000000000"]])
def test_profile_refuses_an_enormous_batch_before_allocating(
    how: list[str], spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()
    code = main(["profile", str(spec), "-b", "jax", *how])
    _refused(capsys, code, "one batch of 2,000,000,000", "nothing was allocated")
    assert time.perf_counter() - started < 20


# ---- sweeps: huge, extends ----------------------------------------------------------------------------------------
def test_a_huge_random_sweep_is_refused_or_sampled_at_once(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    axes = [GridAxis(f"k{i}", tuple(str(v) for v in range(10))) for i in range(25)]  # 10**25 combinations
    started = time.perf_counter()
    sample = combinations(axes, sample=7, seed=3)
    assert len(set(sample)) == 7 and sample == combinations(axes, sample=7, seed=3)
    for sample_size in (MAX_RUNS + 1, 10**15):
        with pytest.raises(Exception, match=f"a sweep runs at most {MAX_RUNS:,} runs"):
            combinations(axes, sample=sample_size)
    with pytest.raises(Exception, match="combinations, more than a sweep runs"):
        combinations(axes)
    assert time.perf_counter() - started < 5
    grid = [f"train.seed={','.join(map(str, range(100)))}", f"train.batch_size={','.join(map(str, range(1, 200)))}"]
    out = tmp_path / "huge"
    code = main(["sweep", str(spec), "--grid", *grid, "--random", "100000000", "--out", str(out)])
    _refused(capsys, code, "--random 100,000,000: a sweep runs at most")
    code = main(["sweep", str(spec), "--grid", *grid, "--backends", "jax,tf", "--random", "9000", "--out", str(out)])
    _refused(capsys, code, "the sweep would start 18,000 runs")
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--grid", "--set"])
def test_a_sweep_extends_naming_a_missing_base_is_refused_before_anything(
    flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "child.yaml").write_text(CHILD)
    (tmp_path / "a.yaml").write_text(BASE.format(lr=0.1))
    setting = ["--grid", "extends=a.yaml,missing.yaml"] if flag == "--grid" else ["--set", "extends=missing.yaml"]
    grid = [] if flag == "--grid" else ["--grid", "train.seed=1,2"]
    code = main(["sweep", "child.yaml", *setting, *grid, "--out", "sw"])
    err = capsys.readouterr().err
    assert code == 2 and f"{flag} extends=missing.yaml" in err and str(tmp_path / "missing.yaml") in err, err
    assert not (tmp_path / "sw").exists()


def test_a_sweep_grid_over_extends_gives_each_run_its_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    child = tmp_path / "specs" / "child.yaml"
    child.parent.mkdir()
    child.write_text(CHILD)
    for name, lr in (("a", 0.1), ("b", 0.02)):
        (tmp_path / f"{name}.yaml").write_text(BASE.format(lr=lr))
    sweep = Sweep(child, tmp_path / "sw", parse_grid(["extends=a.yaml,b.yaml"]), ("jax",))
    sweep.check_extends()
    runs = sweep.runs()
    invalid, _ = check_runs(sweep, runs)
    assert not invalid and [r.name for r in runs] == ["extends=a.yaml-jax", "extends=b.yaml-jax"]
    from nnspec import load

    rates = [load(str(child), overrides=sweep.run_overrides(r)).train.optimizer.learning_rate for r in runs]
    assert rates == [0.1, 0.02]
    assert sweep.run_overrides(runs[0]) == [f"extends={json.dumps(str(tmp_path / 'a.yaml'))}"]  # absolute: any cwd
    with pytest.raises(SpecError):  # a value that is not a path
        Sweep(child, tmp_path / "sw", parse_grid(["extends=[1,2]"]), ("jax",)).check_extends()


# ---- sweep workers never outlive the sweep (slow: processes and signals) ------------------------------------------
LONG = """\
nnspec: 1
name: long
input: {shape: [8, 8, 1]}
layers: [flatten, {dense: {units: 16, activation: relu}}, {dense: {units: 10}}, softmax]
train: {batch_size: 8, epochs: 100000, seed: 0}
data: {dataset: digits}
"""


def _children_of(parent: int) -> list[int]:
    """The pids of the live processes whose parent is ``parent`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _alive(int(entry)):
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the workers")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP])
def test_sweep_workers_stop_when_the_sweep_is_killed(tmp_path: Path, how: signal.Signals) -> None:
    spec = tmp_path / "long.yaml"
    spec.write_text(LONG)
    command = [sys.executable, "-m", "nnspec.cli", "sweep", str(spec), "--grid", "train.seed=1,2", "--jobs", "2"]
    sweep = subprocess.Popen(
        [*command, "--device", "cpu", "--out", str(tmp_path / "sw")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    workers: list[int] = []
    try:
        trained = [tmp_path / "sw" / name / "metrics.csv" for name in ("seed=1-jax", "seed=2-jax")]
        assert _wait_for(lambda: all(m.exists() for m in trained), 120), "the workers did not start training"
        workers = _children_of(sweep.pid)
        assert len(workers) == 2
        os.kill(sweep.pid, how)
        sweep.wait(timeout=120)
        assert _wait_for(lambda: not any(_alive(w) for w in workers), 90), f"{workers} outlived the sweep ({how.name})"
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if sweep.poll() is None:
            sweep.kill()


@pytest.mark.slow
def test_a_sweep_stopping_on_an_error_stops_its_workers(tmp_path: Path) -> None:
    from nnspec.tools.sweep_plan import PlannedRun
    from nnspec.tools.sweep_runner import RunResult, SweepRunner, _Job

    runner = SweepRunner(Sweep(tmp_path / "s.yaml", tmp_path, (), ("jax",)), lambda line: None)
    for n in range(2):
        job = _Job(RunResult(PlannedRun(f"r{n}", "jax", ())), tmp_path, [])
        job.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        runner.running.append(job)
    processes = [job.process for job in runner.running]
    started = time.monotonic()
    runner.stop_all(grace=5)
    assert all(p is not None and p.poll() is not None for p in processes) and not runner.running
    assert time.monotonic() - started < 10
