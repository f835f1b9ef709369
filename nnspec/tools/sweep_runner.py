"""Running a sweep's runs as ordinary ``nnspec run`` processes, J at a time, surviving restarts and signals.

Each run is ``python -m nnspec.tools.sweep_worker run SPEC --set ... --backend B --out DIR/<name> --quiet``
(``nnspec run`` tied to the sweep: :mod:`nnspec.tools.sweep_worker`) in a process of its own (engines stay
isolated), its output in ``DIR/logs/<name>.log`` (a regular file: a link or a FIFO there is refused before any
run starts). Before anything starts, every
run's spec is checked here (no engine needed): a combination the spec language refuses is recorded as
failed at once. What a run directory already holds decides what a start does with it:

* ``complete`` -- skipped; ``diverged`` -- kept (a seeded run diverges again); ``running`` under a live
  process -- left alone;
* anything else with a ``spec.yaml`` -- ``nnspec run --resume`` (from its last checkpoint, or from the
  first epoch when it has none); a folder without one -- started again with ``--overwrite``.

The workers run in sessions of their own, so a Ctrl-C at the terminal reaches only the sweep, which
passes each signal on to every worker: at the first, workers finish their epoch, save and exit 130,
and no new run starts; at the second, they exit at once. SIGHUP (the terminal closed) is passed on as SIGTERM.
No worker outlives the sweep: should the sweep stop on an error, it stops its workers (SIGTERM, then SIGKILL
after :data:`STOP_GRACE_SECONDS`) before it exits, and a sweep killed outright makes them stop on their own
(:mod:`nnspec.tools.sweep_worker`).
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from ..errors import EXIT_DIVERGED, NnspecError, SpecError
from ..runtime.interrupts import EXIT_CODES
from .sweep_plan import PlannedRun
from .sweep_record import Sweep
from .sweep_worker import PARENT_ENV

LOG_DIR = "logs"
_POLL_SECONDS = 0.2
#: How long a sweep that stops on an error gives its workers to exit after SIGTERM before it kills them.
STOP_GRACE_SECONDS = 10.0
#: The signals the sweep passes on to its workers, and as what (SIGHUP: the terminal closed).
_FORWARDED: dict[int, int] = {
    signal.SIGINT: signal.SIGINT,
    signal.SIGTERM: signal.SIGTERM,
    **({signal.SIGHUP: signal.SIGTERM} if hasattr(signal, "SIGHUP") else {}),
}
_ACTIONS = {"new": "new run", "resume": "resuming it", "restart": "starting it again"}


@dataclass
class RunResult:
    """What became of one run: ``status`` (``complete``, ``failed``, ``diverged``, ``interrupted``,
    ``running`` elsewhere, or ``pending`` when the sweep stopped first), the error line of a failure,
    what this start did (``new``, ``resume``, ``restart``, ``skip``, ``invalid``) and its wall time."""

    run: PlannedRun
    status: str = "pending"
    error: str = ""
    action: str = ""
    seconds: float | None = None


@dataclass
class _Job:
    result: RunResult
    folder: Path
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    log_start: int = 0
    started: float = 0.0


def check_runs(sweep: Sweep, runs: list[PlannedRun]) -> tuple[dict[str, str], Any]:
    """``({run name: first error line}, graph of the first run that checks)`` for the runs whose spec
    does not check; raises the first :class:`SpecError` when none checks.

    A combination that does not check is the sweep's finding, not a reason to stop it.
    """
    from .. import load

    errors: dict[str, str] = {}
    first: SpecError | None = None
    graph = None
    for run in runs:
        try:
            loaded = load(str(sweep.spec), overrides=sweep.run_overrides(run))
        except SpecError as exc:
            first = first or exc
            errors[run.name] = exc.diagnostics[0].format().splitlines()[0] if exc.diagnostics else str(exc)
            continue
        if graph is None:
            graph = loaded
    if graph is None and first is not None:
        raise first
    return errors, graph


def plan_action(folder: Path) -> str:
    """What a start of the sweep does with a run directory: ``new``, ``skip``, ``resume`` or ``restart``."""
    from ..runtime.run_status import COMPLETE, is_run_directory, read_status

    if not folder.is_dir() or not is_run_directory(folder):
        return "new"
    status = read_status(folder)
    if status in (COMPLETE, "diverged", "running"):
        return "skip"
    return "resume" if (folder / "spec.yaml").is_file() else "restart"


def worker_command(sweep: Sweep, run: PlannedRun, action: str) -> list[str]:
    """The ``nnspec run`` command line of one run (its run directory is ``<out>/<name>``)."""
    folder = str(sweep.out / run.name)
    common = ["--backend", run.backend, "--device", sweep.device, "--quiet"]
    if action == "resume":
        return [sys.executable, "-m", "nnspec.tools.sweep_worker", "run", "--resume", folder, *common]
    sets = [w for o in sweep.run_overrides(run) for w in ("--set", o)]
    return [
        sys.executable,
        "-m",
        "nnspec.tools.sweep_worker",
        "run",
        str(sweep.spec),
        *sets,
        "--out",
        folder,
        *common,
        *(["--overwrite"] if action == "restart" else []),
    ]


def _worker_env(jobs: int) -> dict[str, str]:
    """The workers' environment: this nnspec importable, and GPU memory shared when several run at once."""
    import nnspec

    env = dict(os.environ)
    root = str(Path(nnspec.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env[PARENT_ENV] = str(os.getpid())
    if jobs > 1:
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    return env


class _Signals:
    """SIGINT / SIGTERM / SIGHUP while the sweep runs: remembered, and passed on to every live worker (see
    :data:`_FORWARDED`)."""

    def __init__(self, forward: Callable[[int], None]):
        self.forward = forward
        self.requested: int | None = None
        self.count = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.requested = self.requested or signum
        name = signal.Signals(signum).name
        self.forward(_FORWARDED.get(signum, signum))
        if self.count == 1:
            message = (
                f"{name} received: no new runs start; the runs in progress save their state and stop (send it again "
                "to stop them at once)"
            )
        else:
            message = f"{name} again: stopping the runs in progress at once"
        try:
            print(f"\nnnspec sweep: {message}", file=sys.stderr, flush=True)
        except (OSError, ValueError):  # stderr gone (the terminal closed): the signal is passed on all the same
            pass

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in _FORWARDED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM, 0 when no signal came."""
        return EXIT_CODES.get(self.requested, 128 + self.requested) if self.requested else 0


def _error_line(log_path: Path, start: int) -> str:
    """The error a worker printed in this attempt: its last ``error`` line, else its last line."""
    try:
        with open(log_path, "rb") as f:
            f.seek(start)
            lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[-1][:500]


def _outcome(job: _Job, code: int, log_path: Path) -> tuple[str, str]:
    """The status and error line of a finished worker, from its exit code, run.json and log."""
    from ..runtime.run_status import COMPLETE, read_record, read_status

    folder = job.folder
    if code == 0 and read_status(folder) == COMPLETE:
        return COMPLETE, ""
    if code in EXIT_CODES.values() or -code in EXIT_CODES:
        return "interrupted", f"stopped by {signal.Signals(code - 128 if code > 0 else -code).name}"
    if code == EXIT_DIVERGED:
        return "diverged", str(read_record(folder).get("message") or _error_line(log_path, job.log_start))
    if code < 0:
        return "failed", f"killed by {signal.Signals(-code).name}"
    return "failed", _error_line(log_path, job.log_start) or f"nnspec run exited with {code}"


def _signal(job: _Job, signum: int) -> None:
    """Send ``signum`` to a worker that is still running."""
    if job.process is not None and job.process.poll() is None:
        try:
            os.kill(job.process.pid, signum)
        except ProcessLookupError:
            pass


def check_logs(folder: Path, logs: list[Path]) -> None:
    """Make the logs folder and refuse, before any worker starts, a logs folder that is a link or not a folder, or a
    log whose place holds a link, a FIFO, a device or a folder (:func:`nnspec.outputs.check_output_file`)."""
    from ..outputs import check_output_file, check_output_folder

    if folder.is_symlink():
        raise NnspecError(f"{folder}: cannot use the sweep's logs folder: it is a symbolic link; remove it")
    check_output_folder(folder, "sweep's logs folder", error=NnspecError)
    folder.mkdir(parents=True, exist_ok=True)
    for path in logs:
        check_output_file(path, "run's log", error=NnspecError)


def open_log(path: Path) -> IO[bytes]:
    """Open a worker's log for appending: never through a link, never a FIFO or device (an :class:`NnspecError`
    naming it; the open does not wait on a FIFO)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        raise NnspecError(f"{path}: cannot write the run's log: {reason}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NnspecError(f"{path}: cannot write the run's log: it is not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "ab")


class SweepRunner:
    """Runs a sweep's planned runs (see the module docstring); ``say`` prints progress lines."""

    def __init__(self, sweep: Sweep, say: Callable[[str], None]):
        self.sweep, self.say = sweep, say
        self.running: list[_Job] = []

    def _forward(self, signum: int) -> None:
        for job in list(self.running):
            _signal(job, signum)

    def run(self, runs: list[PlannedRun], invalid: dict[str, str]) -> tuple[list[RunResult], int]:
        """Run what is not finished yet; returns every run's result and the signal's exit code (0 if none came).

        Should anything here fail while workers run, they are stopped before the error goes on (:meth:`stop_all`)."""
        results, queue = self._plan(runs, invalid)
        skipped = sum(1 for r in results if r.action == "skip")
        if skipped:
            self.say(f"nnspec sweep: {skipped} of {len(runs)} runs already done: skipped")
        check_logs(self.sweep.out / LOG_DIR, [self._log_path(job.result.run) for job in queue])
        try:
            return results, self._loop(queue)
        finally:
            self.stop_all()

    def _plan(self, runs: list[PlannedRun], invalid: dict[str, str]) -> tuple[list[RunResult], list[_Job]]:
        """Every run's result so far (the invalid and skipped ones settled) and the jobs to start, in order."""
        from ..runtime.run_status import read_record, read_status

        results: list[RunResult] = []
        queue: list[_Job] = []
        for run in runs:
            result = RunResult(run)
            results.append(result)
            folder = self.sweep.out / run.name
            if run.name in invalid:
                result.status, result.error, result.action = "failed", invalid[run.name], "invalid"
                continue
            action = plan_action(folder)
            result.action = action
            if action == "skip":
                result.status = read_status(folder)
                result.error = str(read_record(folder).get("message") or "") if result.status == "diverged" else ""
                if result.status == "running":
                    result.error = "another process is running it"
                continue
            queue.append(_Job(result, folder, worker_command(self.sweep, run, action)))
        return results, queue

    def _loop(self, queue: list[_Job]) -> int:
        """Start the jobs, J at a time, until all are done or a signal stopped them; the signal's exit code."""
        total = len(queue)
        env = _worker_env(self.sweep.jobs)
        done = 0
        with _Signals(self._forward) as signals:
            while queue or self.running:
                while queue and len(self.running) < self.sweep.jobs and signals.requested is None:
                    job = queue.pop(0)
                    self._start(job, env)
                    if signals.requested is not None:  # the signal came while it was starting
                        _signal(job, _FORWARDED.get(signals.requested, signals.requested))
                    self.say(f"start {job.result.run.name} ({_ACTIONS[job.result.action]})")
                for job in list(self.running):
                    code = job.process.poll() if job.process else 0
                    if code is None:
                        continue
                    self.running.remove(job)
                    done += 1
                    self._finish(job, code)
                    self.say(
                        f"[{done}/{total}] {job.result.run.name}: {job.result.status} in {job.result.seconds:.1f} s"
                        + (f" ({job.result.error})" if job.result.error else "")
                    )
                if signals.requested is not None and not self.running:
                    break
                time.sleep(_POLL_SECONDS)
        return signals.exit_code

    def stop_all(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop every worker still running: SIGTERM (a run saves and exits), then SIGKILL after ``grace`` seconds."""
        live = [job for job in self.running if job.process is not None and job.process.poll() is None]
        for job in live:
            _signal(job, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for job in live:
            assert job.process is not None
            try:
                job.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                job.process.kill()
                job.process.wait()
        for job in self.running:
            if job.log is not None:
                job.log.close()
        self.running.clear()

    def _log_path(self, run: PlannedRun) -> Path:
        return self.sweep.out / LOG_DIR / f"{run.name}.log"

    def _start(self, job: _Job, env: dict[str, str]) -> None:
        import shlex

        job.log = open_log(self._log_path(job.result.run))
        job.log.write(
            f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {job.result.action}: {shlex.join(job.command)}\n".encode()
        )
        job.log.flush()
        job.log_start = job.log.tell()
        job.started = time.perf_counter()
        job.process = subprocess.Popen(
            job.command,
            stdin=subprocess.DEVNULL,
            stdout=job.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.running.append(job)

    def _finish(self, job: _Job, code: int) -> None:
        if job.log is not None:
            job.log.close()
        job.result.seconds = time.perf_counter() - job.started
        job.result.status, job.result.error = _outcome(job, code, self._log_path(job.result.run))
