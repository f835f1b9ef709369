"""Training in several processes (one per machine, or per GPU group): the cluster a run belongs to.

``nnspec run --coordinator HOST:PORT --num-processes P --process-id I`` (or the environment variables
``NNSPEC_COORDINATOR``, ``NNSPEC_NUM_PROCESSES``, ``NNSPEC_PROCESS_ID``, or Slurm's ``SLURM_NTASKS`` /
``SLURM_PROCID`` when neither is given) makes this process one of ``P``. :func:`cluster_from` checks every setting
before anything waits (exit code 2 for a mistake, 1 for a coordinator host that does not resolve). :func:`start`
then, bounded by the start timeout (``--start-timeout``, ``NNSPEC_START_TIMEOUT``, default 120 s):

1. makes every process check in with process 0 and compare what must agree (:func:`identity`: the resolved spec,
   the settings, the data fingerprint), refusing all with the differences named (:mod:`nnspec.runtime.peers`);
2. asks the backend to start its engine's own multi-process runtime
   (:meth:`nnspec.backends.base.Backend.start_processes`), SIGINT / SIGTERM and the timeout still answered;
3. keeps watching the other processes while the run trains (a lost one ends the run with exit code 5).

Every process loads the same data set and computes the same epoch order; each device computes its share
of every batch (its consecutive examples, :meth:`nnspec.backends.base.CompiledModel.check_batch_size`).
Only the primary process (``I == 0``, :attr:`~nnspec.backends.cluster.Cluster.primary`) writes the run directory
and checkpoints.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import math
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from ..backends.cluster import DEFAULT_START_TIMEOUT, Cluster, current_cluster, set_current_cluster, split_address
from ..errors import NnspecError
from .peers import EXIT_DIFFER, EXIT_PEERS, PeerError, Peers, SettingsDiffer, host, join

if TYPE_CHECKING:
    from ..backends.base import Backend

ENV_COORDINATOR = "NNSPEC_COORDINATOR"
ENV_NUM_PROCESSES = "NNSPEC_NUM_PROCESSES"
ENV_PROCESS_ID = "NNSPEC_PROCESS_ID"
ENV_START_TIMEOUT = "NNSPEC_START_TIMEOUT"
#: The most processes a run may have (JAX and TensorFlow number them with 32-bit integers; ports end at 65535).
MAX_PROCESSES = 65536
#: The longest start timeout accepted, in seconds (a day).
MAX_START_TIMEOUT = 86400.0
#: How long resolving the coordinator's host name may take, at most, in seconds.
RESOLVE_TIMEOUT = 30.0
EXIT_USAGE = 2

__all__ = [
    "EXIT_DIFFER",
    "EXIT_PEERS",
    "ClusterSettingError",
    "PeerError",
    "SettingsDiffer",
    "cluster_from",
    "exit_codes",
    "identity",
    "start",
]


class ClusterSettingError(NnspecError):
    """A multi-process setting that cannot work (a flag or variable): exit code 2, before anything waits."""

    exit_code = EXIT_USAGE


class StoppedWhileStarting(NnspecError):
    """SIGINT or SIGTERM arrived while the processes were starting: exit code 130 or 143."""

    def __init__(self, signum: int):
        super().__init__(f"{signal.Signals(signum).name} while the processes of the run were starting; stopped")
        self.exit_code = 128 + signum


_started: set[str] = set()
_peers: Peers | None = None


def _int(value: str | int | None, what: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ClusterSettingError(f"{what} must be a whole number; got {value!r}") from None


def start_timeout_from(value: float | str | None, environ: Mapping[str, str]) -> float:
    """The start timeout in seconds: ``value`` (``--start-timeout``), else ``NNSPEC_START_TIMEOUT``, else 120; checked."""
    where = "--start-timeout"
    if value is None:
        value = environ.get(ENV_START_TIMEOUT) or None
        where = ENV_START_TIMEOUT
    if value is None:
        return DEFAULT_START_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_START_TIMEOUT):
        raise ClusterSettingError(
            f"{where} must be a number of seconds above 0 and at most {MAX_START_TIMEOUT:g}; got {value!r}"
        )
    return seconds


def cluster_from(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: Mapping[str, str] | None = None,
    start_timeout: float | str | None = None,
) -> Cluster:
    """The cluster given by flags, else ``NNSPEC_*`` variables, else Slurm's; checked before anything waits.

    Raises :class:`ClusterSettingError` (exit code 2) on a coordinator without a process count, a process count
    below 1 or above :data:`MAX_PROCESSES`, a process id out of range, a malformed ``HOST:PORT`` or start timeout.
    """
    env = os.environ if environ is None else environ
    coordinator = coordinator or env.get(ENV_COORDINATOR) or None
    count = num_processes if num_processes is not None else _int(env.get(ENV_NUM_PROCESSES), ENV_NUM_PROCESSES)
    index = process_id if process_id is not None else _int(env.get(ENV_PROCESS_ID), ENV_PROCESS_ID)
    if count is None and coordinator is not None:
        count = _int(env.get("SLURM_NTASKS"), "SLURM_NTASKS")
    if index is None and coordinator is not None:
        index = _int(env.get("SLURM_PROCID"), "SLURM_PROCID")
    timeout = start_timeout_from(start_timeout, env)
    if count is None and coordinator is not None:
        raise ClusterSettingError(
            f"--coordinator {coordinator} needs the number of processes: pass --num-processes P (or set "
            f"{ENV_NUM_PROCESSES}; under Slurm, SLURM_NTASKS)"
        )
    count = 1 if count is None else count
    index = 0 if index is None else index
    if not 1 <= count <= MAX_PROCESSES:
        raise ClusterSettingError(f"--num-processes must be between 1 and {MAX_PROCESSES}; got {count}")
    if not 0 <= index < count:
        raise ClusterSettingError(f"--process-id must be between 0 and {count - 1} for {count} processes; got {index}")
    if count > 1:
        if not coordinator:
            raise ClusterSettingError(
                f"{count} processes need a coordinator: pass --coordinator HOST:PORT (the address of process 0), or "
                f"set {ENV_COORDINATOR}"
            )
        _checked_address(coordinator)
    elif coordinator:
        _checked_address(coordinator)
    return Cluster(coordinator if count > 1 else None, count, index, timeout)


def _checked_address(address: str) -> tuple[str, int]:
    try:
        return split_address(address)
    except NnspecError as exc:
        raise ClusterSettingError(str(exc)) from None


def resolve(address: str, timeout: float = RESOLVE_TIMEOUT) -> tuple[str, int]:
    """``HOST:PORT`` with HOST looked up (at most ``timeout`` seconds); :class:`NnspecError` (exit 1) when it fails."""
    host_name, port = split_address(address)
    found: list[Any] = []
    failure: list[str] = []

    def look_up() -> None:
        try:
            found.extend(socket.getaddrinfo(host_name, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            failure.append(str(getattr(exc, "strerror", None) or exc))

    thread = threading.Thread(target=look_up, name="nnspec-resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if not found:
        why = failure[0] if failure else f"no answer within {timeout:g} s"
        raise NnspecError(
            f"the coordinator's host {host_name!r} (--coordinator {address}) cannot be resolved: {why}; give a name "
            "or address every process can reach"
        )
    return host_name, port


# ---- what every process must agree on --------------------------------------------------------------------------
def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}[{i}]", out)
    else:
        text = repr(value)
        out[prefix] = (
            text if len(text) <= 120 else text[:100] + "... (" + hashlib.sha256(text.encode()).hexdigest()[:12] + ")"
        )


def data_fingerprint(dataset: Any) -> str:
    """A short digest of a data set's splits: shapes, dtypes and contents (sampled beyond 64 MiB a split)."""
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        array = getattr(dataset, name, None)
        if array is None:
            continue
        digest.update(f"{name}{getattr(array, 'shape', '')}{getattr(array, 'dtype', '')}".encode())
        _digest_array(digest, array)
    return digest.hexdigest()[:16]


def _digest_array(digest: Any, array: Any) -> None:
    import numpy as np

    flat = np.ascontiguousarray(array).reshape(-1) if array.size else np.zeros(0)
    if flat.nbytes <= 64 << 20:
        digest.update(flat.tobytes())
        return
    step = max(1, flat.size // 1024)
    digest.update(flat[::step].tobytes())


def identity(graph: Any, dataset: Any, settings: Mapping[str, Any]) -> dict[str, str]:
    """What every process of a run must have alike: each resolved spec value (``spec.<path>``), each setting, and the
    data fingerprint (``data``); a flat mapping of short strings."""
    from ..runtime.specfile import graph_to_spec
    from ..version import __version__

    out: dict[str, str] = {}
    _flatten(graph_to_spec(graph), "", out)
    found = {f"spec.{key}": value for key, value in out.items()}
    found["dtype"] = repr(getattr(graph, "dtype", None))
    found.update({key: repr(value) for key, value in settings.items()})
    found["nnspec version"] = repr(__version__)
    found["data"] = data_fingerprint(dataset) if dataset is not None else "(none)"
    return found


def _overrides_start(backend: "type[Backend] | Backend") -> bool:
    """Whether ``backend`` implements its own multi-process start (the default refuses)."""
    from ..backends.base import Backend

    cls = backend if isinstance(backend, type) else type(backend)
    return getattr(cls.start_processes, "__func__", None) is not getattr(Backend.start_processes, "__func__", None)


# ---- start ------------------------------------------------------------------------------------------------------
def start(cluster: Cluster, backend: "type[Backend] | Backend", agreed: Mapping[str, str] | None = None) -> None:
    """Make ``cluster`` this process's cluster; for several processes meet the others (comparing ``agreed``, see
    :func:`identity`), start ``backend``'s multi-process runtime (once per engine) and watch the others.

    Must run before the engine computes anything. A one-process cluster starts nothing; a backend that cannot train
    in several processes refuses with a :class:`~nnspec.errors.NnspecError`. Raises :class:`PeerError` when the
    others do not all check in within ``cluster.start_timeout`` seconds, :class:`SettingsDiffer` when they differ.
    """
    previous = current_cluster()
    set_current_cluster(cluster)
    try:
        _start(cluster, backend, agreed)
    except BaseException:
        set_current_cluster(previous)  # a start that failed leaves this process what it was
        raise


def _start(cluster: Cluster, backend: "type[Backend] | Backend", agreed: Mapping[str, str] | None) -> None:
    global _peers
    if not cluster.multi or backend.engine in _started:
        return
    if not _overrides_start(backend):
        backend.start_processes(cluster)  # the default refuses at once, naming the backend
    address = resolve(cluster.coordinator or "", min(RESOLVE_TIMEOUT, cluster.start_timeout))
    agreed = {**(agreed or {}), "processes": str(cluster.num_processes), "backend": repr(backend.name)}
    with _raising_signals():
        deadline = time.monotonic() + cluster.start_timeout
        if cluster.primary:
            links = host(cluster.num_processes, address[1], agreed, deadline)
        else:
            links = join(cluster.process_id, address, agreed, deadline)
    _peers = Peers(cluster.process_id, cluster.num_processes, links, max(cluster.start_timeout, 30.0))
    _peers.watch()
    message = (
        f"backend '{backend.name}' did not start its multi-process runtime within {cluster.start_timeout:g} s "
        "although every process had checked in (one may have died since, or a firewall blocks its ports)"
    )
    with _answering_signals(time.monotonic() + cluster.start_timeout, message, "starting the engine"):
        backend.start_processes(cluster)
    _started.add(backend.engine)


@contextlib.contextmanager
def _raising_signals() -> Iterator[None]:
    """While the body runs (Python, bounded by its own deadline): SIGINT / SIGTERM raise
    :class:`StoppedWhileStarting` (exit 130 / 143) in it, so that what the run has claimed is rolled back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise StoppedWhileStarting(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _answering_signals(deadline: float, timeout_message: str, what: str) -> Iterator[None]:
    """While the body runs (even in an engine's native code): SIGINT / SIGTERM end this process at once with a
    message and 130 / 143; past ``deadline`` (when ``timeout_message`` is set) it ends with that message and 5."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    caught: list[int] = []
    previous = {
        s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)
    }
    old_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    done = threading.Event()
    watchdog = threading.Thread(
        target=_watchdog, args=(read_end, deadline, timeout_message, what, done), name="nnspec-start", daemon=True
    )
    watchdog.start()
    backstop = _backstop(deadline + 5.0, timeout_message) if timeout_message else None
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(old_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        watchdog.join()
        os.close(read_end)
        os.close(write_end)
        if backstop is not None:
            _stop_backstop(backstop)
    if caught:
        raise StoppedWhileStarting(caught[0])


def _watchdog(read_end: int, deadline: float, timeout_message: str, what: str, done: threading.Event) -> None:
    while not done.is_set():
        left = deadline - time.monotonic()
        if timeout_message and left <= 0:
            print(f"nnspec run: error: {timeout_message}", file=sys.stderr, flush=True)
            os._exit(EXIT_PEERS)
        readable, _, _ = select.select([read_end], [], [], max(0.0, min(0.2, left if timeout_message else 0.2)))
        if readable and not done.is_set():
            data = os.read(read_end, 16)
            signum = data[0] if data else signal.SIGTERM
            if signum in (signal.SIGINT, signal.SIGTERM):
                name = signal.Signals(signum).name
                print(
                    f"\nnnspec run: {name} while {what} with the other processes; stopped", file=sys.stderr, flush=True
                )
                os._exit(128 + signum)


_BACKSTOP = """
import os, select, sys, time
parent, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
readable, _, _ = select.select([0], [], [], seconds)
if not readable:
    sys.stderr.write("nnspec run: error: " + message + "\\n"); sys.stderr.flush()
    try:
        os.kill(parent, 9)
    except OSError:
        pass
"""


def _backstop(deadline: float, message: str) -> subprocess.Popen[bytes] | None:
    """A watchdog process for an engine that waits in native code holding the interpreter (TensorFlow): past
    ``deadline`` it prints ``message`` and kills this process (whose Python threads cannot run then)."""
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-S",
                "-c",
                _BACKSTOP,
                str(os.getpid()),
                str(max(0.0, deadline - time.monotonic())),
                message,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            close_fds=True,
        )
    except OSError:
        return None


def _stop_backstop(process: subprocess.Popen[bytes]) -> None:
    try:
        if process.stdin is not None:
            process.stdin.write(b"done\n")
            process.stdin.close()
    except OSError:
        pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()


# ---- the end of a run ---------------------------------------------------------------------------------------------
def finish(code: int) -> None:
    """Tell the other processes this one ended its run with exit code ``code`` (nothing for one process)."""
    if _peers is not None:
        _peers.finish(code)


def _code_of(exc: BaseException) -> int:
    from ..errors import OutputError, SpecError, TrainingDiverged

    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, SpecError):
        return 2
    if isinstance(exc, TrainingDiverged):
        return 3
    if isinstance(exc, OutputError):
        return 4
    code = getattr(exc, "exit_code", None)
    return int(code) if code is not None else 1


def exit_codes(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap ``nnspec run``: an error that carries its own ``exit_code`` (settings: 2, peers: 5, a signal while
    starting: 130 / 143) is printed and returned; the other processes learn how this one ended."""

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        code = 1
        try:
            code = int(run(args) or 0)
            return code
        except NnspecError as exc:
            code = _code_of(exc)
            if exc.exit_code is None:
                raise
            print(f"nnspec run: error: {exc}", file=sys.stderr)
            return code
        except BaseException as exc:
            code = _code_of(exc)
            raise
        finally:
            finish(code)

    return wrapped
