"""The processes of one training run, as the engines see them: how many, which one is this, and who coordinates.

The run machinery (:mod:`nnspec.runtime.distributed`) finds the cluster from flags, the environment or Slurm
and hands it to the backend (:meth:`nnspec.backends.base.Backend.start_processes`); the backends read it back
here (:func:`current_cluster`) to count processes. Nothing here imports an engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import NnspecError

#: Seconds the processes of a run wait for one another to start, unless told otherwise (docs/distributed.md).
DEFAULT_START_TIMEOUT = 120.0

_HOST = re.compile(r"^(\[[0-9A-Fa-f:.%\w]+\]|[A-Za-z0-9_.%-]+|[0-9A-Fa-f:]+)$")


@dataclass(frozen=True)
class Cluster:
    """The processes of one training run: ``num_processes`` of them, this one ``process_id`` (from 0); they wait
    for one another at most ``start_timeout`` seconds."""

    coordinator: str | None = None
    num_processes: int = 1
    process_id: int = 0
    start_timeout: float = DEFAULT_START_TIMEOUT

    @property
    def multi(self) -> bool:
        """Whether more than one process takes part."""
        return self.num_processes > 1

    @property
    def primary(self) -> bool:
        """Whether this process writes the run directory and checkpoints."""
        return self.process_id == 0


_current = Cluster()


def current_cluster() -> Cluster:
    """The cluster this process belongs to (one process unless :func:`set_current_cluster` was given more)."""
    return _current


def set_current_cluster(cluster: Cluster) -> None:
    """Make ``cluster`` this process's cluster (before any model is compiled)."""
    global _current
    _current = cluster


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets: ``[::1]:12355``) as ``(host, port)``, the brackets removed; a clear
    error naming what is wrong otherwise (a missing or malformed host, a port that is not 1 to 65535)."""
    host, _, port = address.strip().rpartition(":")
    if not host or not _HOST.match(host) or (":" in host and not host.startswith("[")):
        raise NnspecError(
            f"--coordinator must be HOST:PORT (for example node01:12355, or [::1]:12355 for IPv6); got {address!r}"
        )
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise NnspecError(f"the coordinator's port must be a number from 1 to 65535; got {port!r} in {address!r}")
    return host.strip("[]"), int(port)
