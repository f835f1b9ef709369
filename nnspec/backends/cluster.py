"""The processes of one training run, as the engines see them: how many, which one is this, and who coordinates.

The run machinery (:mod:`nnspec.runtime.distributed`) finds the cluster from flags, the environment or Slurm
and hands it to the backend (:meth:`nnspec.backends.base.Backend.start_processes`); the backends read it back
here (:func:`current_cluster`) to count processes. Nothing here imports an engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import NnspecError


@dataclass(frozen=True)
class Cluster:
    """The processes of one training run: ``num_processes`` of them, this one ``process_id`` (from 0)."""

    coordinator: str | None = None
    num_processes: int = 1
    process_id: int = 0

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
    """``HOST:PORT`` as ``(host, port)``; a clear error otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NnspecError(f"--coordinator must be HOST:PORT (for example node01:12355); got {address!r}")
    return host, int(port)
