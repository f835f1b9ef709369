"""The start of a multi-process run (docs/distributed.md, "Starting together"): settings checked before anything
waits (exit 2, or 1 for a host that does not resolve), a bounded wait for the other processes (exit 5), SIGINT /
SIGTERM answered while waiting (130 / 143), processes started differently refused naming the difference (exit 2),
and a process lost while training reported by the others (exit 5).

Settings refused before any engine starts are checked in-process (fast tier); anything that starts processes is in
the slow tier, with a start timeout of a few seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnspec.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]

MLP = """\
nnspec: 1.1
name: start_mlp
input: {shape: [8, 8, 1]}
layers:
  - flatten
  - dense: {units: 16, activation: relu}
  - dense: {units: 10}
  - softmax
train: {epochs: 1, batch_size: 32, seed: 3, optimizer: {adam: {learning_rate: 0.01}}}
data: {dataset: digits}
"""

_CLUSTER_VARIABLES = (
    "NNSPEC_COORDINATOR",
    "NNSPEC_NUM_PROCESSES",
    "NNSPEC_PROCESS_ID",
    "NNSPEC_START_TIMEOUT",
    "NNSPEC_WORKERS",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "TF_CONFIG",
)


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in _CLUSTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "mlp.yaml"
    path.write_text(MLP)
    return path


def _run(spec: Path, *flags: str) -> list[str]:
    return ["run", str(spec), "-q", "--no-tensorboard", "--out", str(spec.parent / "out"), *flags]


# ---- settings refused before anything waits (fast) ------------------------------------------------------------------
@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--coordinator", "localhost:12355"], "needs the number of processes"),
        (["--coordinator", "localhost:12355", "--num-processes", "0"], "between 1 and 65536; got 0"),
        (["--coordinator", "localhost:12355", "--num-processes", "-3"], "between 1 and 65536; got -3"),
        (["--coordinator", "localhost:12355", "--num-processes", str(10**30)], "between 1 and 65536"),
        (["--coordinator", "localhost:12355", "--num-processes", "2", "--process-id", "2"], "between 0 and 1"),
        (["--coordinator", "localhost:12355", "--num-processes", "2", "--process-id", "-1"], "between 0 and 1"),
        (["--process-id", "1"], "between 0 and 0"),
        (["--num-processes", "2", "--process-id", "0"], "need a coordinator"),
        (["--coordinator", "localhost:0", "--num-processes", "2", "--process-id", "0"], "from 1 to 65535"),
        (["--coordinator", "localhost:65536", "--num-processes", "2", "--process-id", "0"], "from 1 to 65535"),
        (["--coordinator", "localhost:http", "--num-processes", "2", "--process-id", "0"], "from 1 to 65535"),
        (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
        (["--coordinator", ":12355", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
        (["--coordinator", "no host:12355", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
        (["--coordinator", "::1:12355", "--num-processes", "2", "--process-id", "0"], "[::1]:12355"),
        (["--coordinator", "h:1", "--num-processes", "2", "--start-timeout", "soon"], "--start-timeout"),
        (["--coordinator", "h:1", "--num-processes", "2", "--start-timeout", "0"], "--start-timeout"),
        (["--coordinator", "h:1", "--num-processes", "2", "--start-timeout", "-5"], "--start-timeout"),
        (["--coordinator", "h:1", "--num-processes", "2", "--start-timeout", "nan"], "--start-timeout"),
        (["--coordinator", "h:1", "--num-processes", "2", "--start-timeout", "inf"], "--start-timeout"),
    ],
)
def test_bad_cluster_flags_exit_2_before_anything_waits(
    spec: Path, flags: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every setting of a multi-process run is checked first: one message naming it, exit code 2, at once."""
    begun = time.monotonic()
    code = cli(_run(spec, *flags))
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err and "Traceback" not in err and "internal error" not in err
    assert time.monotonic() - begun < 20
    assert not (spec.parent / "out").exists()


@pytest.mark.parametrize(
    "variables, expected",
    [
        ({"NNSPEC_COORDINATOR": "localhost:12355"}, "needs the number of processes"),
        ({"NNSPEC_COORDINATOR": "localhost:12355", "NNSPEC_NUM_PROCESSES": "two"}, "NNSPEC_NUM_PROCESSES"),
        ({"NNSPEC_COORDINATOR": "localhost:12355", "SLURM_NTASKS": "2", "SLURM_PROCID": "x"}, "SLURM_PROCID"),
        ({"NNSPEC_COORDINATOR": "localhost:12355", "NNSPEC_NUM_PROCESSES": "0"}, "between 1 and 65536"),
        (
            {"NNSPEC_COORDINATOR": "h:1", "NNSPEC_NUM_PROCESSES": "2", "NNSPEC_START_TIMEOUT": "1e9"},
            "NNSPEC_START_TIMEOUT",
        ),
        ({"NNSPEC_START_TIMEOUT": "later"}, "NNSPEC_START_TIMEOUT"),
    ],
)
def test_bad_cluster_variables_exit_2_naming_the_variable(
    spec: Path,
    variables: dict[str, str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same checks hold for NNSPEC_* and Slurm variables; the message names the variable."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    code = cli(_run(spec))
    err = capsys.readouterr().err
    assert code in (1, 2), err  # 1 when the command line's own check of the environment refuses it first
    assert expected in err and "Traceback" not in err


def test_unresolvable_coordinator_exits_1_at_once(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A coordinator host that does not resolve (``.invalid`` never does) is an error before anything waits."""
    begun = time.monotonic()
    code = cli(_run(spec, "--coordinator", "nnspec-coordinator.invalid:12355", "--num-processes", "2"))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "cannot be resolved" in err and "nnspec-coordinator.invalid" in err and "Traceback" not in err
    assert time.monotonic() - begun < 40


def test_cluster_settings_in_process() -> None:
    """``cluster_from``: the timeout's default, flag and variable; a flag wins over the variable."""
    from nnspec.backends.cluster import DEFAULT_START_TIMEOUT, Cluster
    from nnspec.runtime.distributed import ClusterSettingError, cluster_from

    assert cluster_from(environ={}) == Cluster(None, 1, 0, DEFAULT_START_TIMEOUT) and DEFAULT_START_TIMEOUT == 120
    assert cluster_from("h:1", 2, 1, environ={"NNSPEC_START_TIMEOUT": "7.5"}).start_timeout == 7.5
    assert cluster_from("h:1", 2, 1, environ={"NNSPEC_START_TIMEOUT": "7.5"}, start_timeout="3").start_timeout == 3
    assert cluster_from("[::1]:5", 2, 0, environ={}).coordinator == "[::1]:5"
    with pytest.raises(ClusterSettingError, match="needs the number of processes"):
        cluster_from("h:1", environ={})


def test_identity_differences_are_named(tmp_path: Path) -> None:
    """Two identities that differ are described key by key, naming both processes' values."""
    from nnspec import load
    from nnspec.runtime.distributed import identity
    from nnspec.runtime.peers import describe_differences, differences

    (tmp_path / "a.yaml").write_text(MLP)
    (tmp_path / "b.yaml").write_text(MLP.replace("batch_size: 32", "batch_size: 64"))
    a = identity(load(str(tmp_path / "a.yaml")), None, {"device": "auto"})
    b = identity(load(str(tmp_path / "b.yaml")), None, {"device": "cpu"})
    found = differences(a, b, 0, 1)
    assert any(f.startswith("spec.train.batch_size is 64 in process 1 but 32 in process 0") for f in found), found
    assert any(f.startswith("device is 'cpu' in process 1") for f in found), found
    assert "process 1 was started with other settings than process 0" in describe_differences(found, 1)
    assert differences(a, dict(a), 0, 1) == []


# ---- processes (slow) ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 65000:
            return port
    raise RuntimeError("no free port")


def _start(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    for name in (*_CLUSTER_VARIABLES, "XLA_FLAGS"):
        environ.pop(name, None)
    environ.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "nnspec", "run", *args],
        cwd=cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _process(cwd: Path, engine: str, port: int, pid: int, *extra: str, count: int = 2) -> subprocess.Popen[str]:
    return _start(
        cwd,
        "mlp.yaml",
        "--backend",
        engine,
        "-q",
        "--no-tensorboard",
        "--out",
        f"out-{pid}",
        "--coordinator",
        f"localhost:{port}",
        "--num-processes",
        str(count),
        "--process-id",
        str(pid),
        *extra,
    )


def _finish(proc: subprocess.Popen[str], limit: float = 180) -> tuple[int, str, float]:
    begun = time.monotonic()
    out, _ = proc.communicate(timeout=limit)
    return proc.returncode, out, time.monotonic() - begun


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["jax", "tensorflow"])
@pytest.mark.parametrize("pid", [0, 1])
def test_missing_peer_ends_within_the_timeout(tmp_path: Path, engine: str, pid: int) -> None:
    """A process alone (process 0 without the others, or another without process 0) waits ``--start-timeout``
    seconds, then ends with one message and exit code 5 (before: TensorFlow waited forever, JAX aborted)."""
    (tmp_path / "mlp.yaml").write_text(MLP)
    begun = time.monotonic()
    code, out, _ = _finish(_process(tmp_path, engine, _free_port(), pid, "--start-timeout", "4"), 120)
    took = time.monotonic() - begun
    print(f"{engine} process {pid} alone: exit {code} after {took:.1f} s")
    assert code == 5, out
    assert ("never checked in" if pid == 0 else "never answered") in out and "--start-timeout" in out
    assert "Traceback" not in out and "F0000" not in out and "Check failure" not in out
    assert took < 60
    assert not (tmp_path / f"out-{pid}").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("engine", ["jax", "tensorflow"])
def test_signal_while_waiting_for_peers(tmp_path: Path, engine: str, signum: int, code: int) -> None:
    """SIGINT / SIGTERM while a process waits for the others end it at once, with a message and 130 / 143, and
    leave no run directory behind."""
    (tmp_path / "mlp.yaml").write_text(MLP)
    port = _free_port()
    proc = _process(tmp_path, engine, port, 0, "--start-timeout", "300")
    for _ in range(600):  # until process 0 listens for the others
        time.sleep(0.1)
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
    proc.send_signal(signum)
    got, out, took = _finish(proc, 60)
    assert got == code, out
    assert signal.Signals(signum).name in out and "Traceback" not in out
    assert took < 30
    assert not (tmp_path / "out-0").exists()  # the claimed run directory is rolled back


@pytest.mark.slow
@pytest.mark.parametrize(
    "flag, expected",
    [
        (["--set", "train.batch_size=16"], "spec.train.batch_size is 16 in process 1 but 32 in process 0"),
        (["--epochs", "2"], "spec.train.epochs is 2 in process 1 but 1 in process 0"),
        (["--dtype", "float64"], "in process 1 but 'float32' in process 0"),
        (["--device", "cpu"], "device is 'cpu' in process 1 but 'auto' in process 0"),
    ],
)
def test_processes_started_differently_are_refused(tmp_path: Path, flag: list[str], expected: str) -> None:
    """Processes with different specs or settings refuse together (exit 2), naming the difference; nothing trains."""
    (tmp_path / "mlp.yaml").write_text(MLP)
    port = _free_port()
    procs = [_process(tmp_path, "jax", port, 0, "--start-timeout", "60")]
    procs.append(_process(tmp_path, "jax", port, 1, "--start-timeout", "60", *flag))
    results = [_finish(p, 120) for p in procs]
    for code, out, _ in results:
        assert code == 2, out
        assert expected in out and "Traceback" not in out
    assert not (tmp_path / "out-0").exists()


@pytest.mark.slow
def test_different_data_is_refused(tmp_path: Path) -> None:
    """Same spec, same relative data path, different contents: the data fingerprints differ; refused."""
    import numpy as np

    spec = MLP.replace("data: {dataset: digits}", "data: {dataset: npz, path: data.npz}").replace("[8, 8, 1]", "[4]")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "mlp.yaml").write_text(spec)
        x = rng.normal(size=(64, 4)).astype("float32")
        np.savez(folder / "data.npz", x=x, y=(np.arange(64) % 10).astype("int32"))
    port = _free_port()
    procs = [
        _start(
            tmp_path / name,
            "mlp.yaml",
            "-q",
            "--coordinator",
            f"localhost:{port}",
            "--num-processes",
            "2",
            "--process-id",
            str(i),
            "--start-timeout",
            "60",
        )
        for i, name in enumerate("ab")
    ]
    for code, out, _ in [_finish(p, 120) for p in procs]:
        assert code == 2, out
        assert "\ndata is" in out or ": data is" in out, out
        assert "Traceback" not in out


@pytest.mark.slow
def test_duplicate_process_ids_are_refused(tmp_path: Path) -> None:
    """Two processes that both say they are process 1 (of 3): refused, naming the id."""
    (tmp_path / "mlp.yaml").write_text(MLP)
    port = _free_port()
    procs = [_process(tmp_path, "jax", port, i, "--start-timeout", "60", count=3) for i in (0, 1, 1)]
    results = [_finish(p, 120) for p in procs]
    assert results[0][0] == 2 and "two processes say they are process 1" in results[0][1], results[0][1]
    assert any(code == 2 and "process 1" in out for code, out, _ in results[1:]), results


@pytest.mark.slow
@pytest.mark.parametrize("engine, victim", [("jax", 1), ("tensorflow", 1), ("jax", 0)])
def test_peer_killed_while_training(tmp_path: Path, engine: str, victim: int) -> None:
    """``kill -9`` of one process while the run trains: the other ends promptly with one message and exit code 5
    (before: a hang in the engine's collective, or a native abort minutes later)."""
    (tmp_path / "mlp.yaml").write_text(MLP.replace("epochs: 1", "epochs: 400"))
    port = _free_port()
    procs = [_process(tmp_path, engine, port, i, "--start-timeout", "60") for i in (0, 1)]
    metrics = tmp_path / "out-0" / "metrics.csv"
    for _ in range(1200):
        time.sleep(0.1)
        if metrics.is_file() and len(metrics.read_text().splitlines()) > 2:
            break
    assert metrics.is_file(), "process 0 never trained"
    procs[victim].kill()
    procs[victim].wait()
    killed = time.monotonic()
    code, out, _ = _finish(procs[1 - victim], 120)
    took = time.monotonic() - killed
    print(f"{engine}: process {1 - victim} ended {took:.1f} s after process {victim} was killed")
    assert code == 5, out
    assert f"process {victim} ended without finishing its run" in out and "Traceback" not in out
    assert took < 30
