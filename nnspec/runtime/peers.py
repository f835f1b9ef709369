"""The processes of a multi-process run meet before any engine starts, and watch one another while they train.

Before an engine is asked to start its own multi-process runtime (whose waits are native, unbounded or fatal),
every process checks in with process 0 over one TCP connection to the coordinator's address (process 0 listens
there until all have checked in, then hands the port to the engine). Each sends its *identity*: a flat mapping of
what must agree (the resolved spec, the settings, the data fingerprint); process 0 compares and answers ``ok`` to
all, or refuses all, naming the differences. Everything here is bounded by the start timeout and raises
:class:`PeerError` (exit code :data:`EXIT_PEERS`) or :class:`SettingsDiffer` (exit code 2).

The connections stay open while the run trains: a daemon thread sends a heartbeat every few seconds and reads the
others'. A peer whose connection closes (its process died, even by ``kill -9``), that reports a failure, or that
stays silent for the timeout ends this process with one message and :data:`EXIT_PEERS` (process 0 first tells the
others). A process that ends normally says so first (:meth:`Peers.finish`), so its closing connection is no alarm.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import NnspecError

#: Exit code of a run whose processes could not start together or that lost one of them (docs/cli.md).
EXIT_PEERS = 5
#: Exit code of a run whose processes were started with different specs, settings or data.
EXIT_DIFFER = 2
PROTOCOL = "nnspec-peers/1"
_LINE_LIMIT = 4 << 20
_MAX_SHOWN = 3


class PeerError(NnspecError):
    """The processes of a run did not all check in within the start timeout, or one of them was lost."""

    exit_code = EXIT_PEERS


class SettingsDiffer(NnspecError):
    """The processes of a run were started with different specs, settings or data (the message names them)."""

    exit_code = EXIT_DIFFER


def _remaining(deadline: float) -> float:
    return deadline - time.monotonic()


def _send(sock: socket.socket, message: Mapping[str, Any]) -> None:
    sock.sendall((json.dumps(message, sort_keys=True) + "\n").encode("utf-8"))


def _read_line(sock: socket.socket, deadline: float, buffer: bytearray) -> dict[str, Any] | None:
    """One JSON line from ``sock`` before ``deadline``; None on end of stream; ValueError on anything malformed."""
    while b"\n" not in buffer:
        left = _remaining(deadline)
        if left <= 0:
            raise TimeoutError
        sock.settimeout(min(left, 0.5))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            return None
        buffer.extend(chunk)
        if len(buffer) > _LINE_LIMIT:
            raise ValueError("message too long")
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    message = json.loads(line.decode("utf-8"))
    if not isinstance(message, dict):
        raise ValueError("not a message")
    return message


def differences(mine: Mapping[str, str], theirs: Mapping[str, str], me: int, them: int) -> list[str]:
    """Each key on which two identities differ, as ``'KEY is X in process I but Y in process J'``."""
    found = []
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key, "(not set)"), theirs.get(key, "(not set)")
        if a != b:
            found.append(f"{key} is {b} in process {them} but {a} in process {me}")
    return found


def describe_differences(found: list[str], them: int) -> str:
    """The refusal message for the differences of process ``them`` from process 0."""
    shown = "; ".join(found[:_MAX_SHOWN])
    more = f" (and {len(found) - _MAX_SHOWN} more)" if len(found) > _MAX_SHOWN else ""
    return (
        f"process {them} was started with other settings than process 0: {shown}{more}; start every process with "
        "the same spec, data and options (only --out, --quiet, --no-tensorboard and --process-id may differ)"
    )


@dataclass
class Peers:
    """The open connections of this process to the others (process 0: to each; others: to process 0)."""

    process_id: int
    num_processes: int
    links: dict[int, socket.socket]
    timeout: float
    ended: dict[int, int] = field(default_factory=dict)
    _failed: dict[int, float] = field(default_factory=dict)
    _done: int | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self) -> None:
        """Start the daemon thread that sends heartbeats and ends this process when a peer is lost."""
        self._thread = threading.Thread(target=self._watch, name="nnspec-peers", daemon=True)
        self._thread.start()

    def finish(self, code: int) -> None:
        """Tell the others this process ended its run with exit code ``code`` (their alarm stays quiet on 0)."""
        with self._lock:
            self._done = code
            for sock in list(self.links.values()):
                try:
                    _send(sock, {"end": code})
                except OSError:
                    pass

    def _watch(self) -> None:
        beat = max(0.2, min(2.0, self.timeout / 5))
        heard = {pid: time.monotonic() for pid in self.links}
        buffers = {pid: bytearray() for pid in self.links}
        last_beat = 0.0
        while self.links or self._failed:
            now = time.monotonic()
            if now - last_beat >= beat:
                self._beat()
                last_beat = now
            ready = self._ready(beat)
            for pid in ready:
                self._take(pid, buffers[pid])
                heard[pid] = time.monotonic()
            for pid in list(self.links):
                if time.monotonic() - heard[pid] > self.timeout and pid not in self.ended:
                    self._lost(pid, f"no word from process {pid} for {self.timeout:g} s (its machine or network)")
            for pid, until in list(self._failed.items()):
                if time.monotonic() > until:
                    del self._failed[pid]
                    code = self.ended[pid]
                    self._lost(pid, f"process {pid} stopped with exit code {code} ({_meaning(code)}; see its messages)")

    def _ready(self, wait: float) -> list[int]:
        socks = {sock.fileno(): pid for pid, sock in self.links.items()}
        try:
            readable, _, _ = select.select(list(socks), [], [], wait)
        except (OSError, ValueError):
            return []
        return [socks[fd] for fd in readable]

    def _beat(self) -> None:
        with self._lock:
            for pid, sock in list(self.links.items()):
                try:
                    _send(sock, {"beat": 1})
                except OSError:
                    if pid not in self.ended:
                        self._lost(pid, f"the connection to process {pid} broke")

    def _take(self, pid: int, buffer: bytearray) -> None:
        sock = self.links.get(pid)
        if sock is None:
            return
        try:
            chunk = sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self.links.pop(pid, None)
            if pid not in self.ended:
                self._lost(pid, f"process {pid} ended without finishing its run (it crashed or was killed)")
            return
        buffer.extend(chunk)
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            try:
                message = json.loads(line.decode("utf-8"))
            except ValueError:
                continue
            if isinstance(message, dict):
                self._handle(pid, message)

    def _handle(self, pid: int, message: dict[str, Any]) -> None:
        if "abort" in message:
            self._exit(str(message["abort"]), relay=False)
        if "end" in message:
            code = message["end"] if isinstance(message["end"], int) else EXIT_PEERS
            self.ended[pid] = code
            if code != 0:  # the same failure (a divergence) may be ending this process too: a short grace
                self._failed[pid] = time.monotonic() + min(self.timeout, 10.0)

    def _lost(self, pid: int, why: str) -> None:
        if self._done is not None:
            return  # this process's run is over: nothing left to protect
        self._exit(f"{why}; process {self.process_id} of {self.num_processes} cannot go on without it and stops")

    def _exit(self, message: str, relay: bool = True) -> None:
        if self._done is not None:
            return
        if relay and self.process_id == 0:
            for sock in list(self.links.values()):
                try:
                    _send(sock, {"abort": message})
                except OSError:
                    pass
        own = own_stop_request()
        if own:
            print(f"nnspec run: error: {message} (after {signal.Signals(own).name})", file=sys.stderr, flush=True)
            os._exit(128 + own)
        print(f"nnspec run: error: {message}", file=sys.stderr, flush=True)
        os._exit(EXIT_PEERS)


def _meaning(code: int) -> str:
    names = {1: "an error", 2: "a spec or command-line error", 3: "training diverged", 4: "results not written"}
    names.update({EXIT_PEERS: "it lost a peer", 130: "SIGINT", 143: "SIGTERM"})
    return names.get(code, "an error")


def own_stop_request() -> int:
    """The signal this process's stop-request handler has recorded (0 when none, or none installed)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(signum)
        requested = getattr(getattr(handler, "__self__", None), "requested", None)
        if isinstance(requested, int) and requested:
            return requested
    return 0


# ---- meeting ------------------------------------------------------------------------------------------------------
def _listen(port: int) -> socket.socket:
    """A listening socket on every address of this machine at ``port`` (IPv6 and IPv4 where both exist)."""
    try:
        if socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        return socket.create_server(("", port))
    except OSError as exc:
        raise PeerError(
            f"process 0 cannot listen on the coordinator's port {port}: {exc.strerror or exc} (another program, or "
            "an earlier run, holds it; choose another port with --coordinator HOST:PORT)"
        ) from None


def host(count: int, port: int, identity: Mapping[str, str], deadline: float) -> dict[int, Any]:
    """Process 0: accept every other process's check-in before ``deadline``; compare identities; answer all."""
    server = _listen(port)
    links: dict[int, socket.socket] = {}
    try:
        while len(links) < count - 1:
            if _remaining(deadline) <= 0:
                missing = [str(i) for i in range(1, count) if i not in links]
                raise PeerError(
                    f"process 0 waited for the other processes of the run and {len(missing)} of {count - 1} never "
                    f"checked in (process {', '.join(missing)}); start each with the same --coordinator and "
                    "--num-processes, or allow more time with --start-timeout"
                )
            _admit(server, links, count, identity, deadline)
        for sock in links.values():
            _send(sock, {"ok": True})
    except BaseException:
        for sock in links.values():
            sock.close()
        raise
    finally:
        server.close()
    return links  # type: ignore[return-value]


def _admit(
    server: socket.socket, links: dict[int, socket.socket], count: int, identity: Mapping[str, str], deadline: float
) -> None:
    """Accept one connection: a check-in joins ``links``; a stranger is dropped; a different identity refuses all."""
    server.settimeout(max(0.05, min(_remaining(deadline), 0.5)))
    try:
        sock, _ = server.accept()
    except socket.timeout:
        return
    try:
        hello = _read_line(sock, min(deadline, time.monotonic() + 10), bytearray())
    except (OSError, TimeoutError, ValueError):
        hello = None
    if not hello or hello.get("protocol") != PROTOCOL or not isinstance(hello.get("process_id"), int):
        sock.close()
        return
    pid, theirs = hello["process_id"], hello.get("identity") or {}
    problem = ""
    if pid in links or not 0 < pid < count:
        problem = (
            f"two processes say they are process {pid}" if pid in links else f"a process says it is process {pid}"
        ) + f" of {count}; give each process its own --process-id from 0 to {count - 1}"
    elif found := differences(identity, theirs, 0, pid):
        problem = describe_differences(found, pid)
    if problem:
        for other in [sock, *links.values()]:
            try:
                _send(other, {"refuse": problem})
            except OSError:
                pass
        sock.close()
        raise SettingsDiffer(problem)
    sock.setblocking(True)
    links[pid] = sock


def join(
    process_id: int, address: tuple[str, int], identity: Mapping[str, str], deadline: float
) -> dict[int, socket.socket]:
    """A process other than 0: check in with process 0 at ``address`` before ``deadline``; wait for its answer."""
    why = "no answer"
    while _remaining(deadline) > 0:
        try:
            sock = socket.create_connection(address, timeout=max(0.05, min(_remaining(deadline), 2.0)))
        except OSError as exc:
            why = exc.strerror or str(exc)
            time.sleep(max(0.0, min(0.25, _remaining(deadline))))
            continue
        try:
            _send(sock, {"protocol": PROTOCOL, "process_id": process_id, "identity": dict(identity)})
            answer = _read_line(sock, deadline, bytearray())
        except (OSError, TimeoutError, ValueError) as exc:
            sock.close()
            why = "connected, but no answer from process 0" if isinstance(exc, TimeoutError) else str(exc)
            continue
        if answer is None:
            sock.close()
            why = "connected, but the connection closed without an answer"
            time.sleep(max(0.0, min(0.25, _remaining(deadline))))
            continue
        if "refuse" in answer:
            sock.close()
            raise SettingsDiffer(str(answer["refuse"]))
        sock.setblocking(True)
        return {0: sock}
    raise PeerError(
        f"process {process_id} waited for process 0 at {address[0]}:{address[1]} and it never answered (last: {why});"
        " start process 0 on that host with the same --coordinator and --num-processes, or allow more time with "
        "--start-timeout"
    )
