"""Training in several processes (one per machine, or per GPU group): the cluster a run belongs to.

``nnspec run --coordinator HOST:PORT --num-processes P --process-id I`` (or the environment variables
``NNSPEC_COORDINATOR``, ``NNSPEC_NUM_PROCESSES``, ``NNSPEC_PROCESS_ID``, or Slurm's ``SLURM_NTASKS`` /
``SLURM_PROCID`` when neither is given) makes this process one of ``P``. :func:`start` then asks the backend
to start its engine's own multi-process runtime (:meth:`nnspec.backends.base.Backend.start_processes`) before
the engine is used for anything else; docs/distributed.md says what each engine does.

Every process loads the same data set and computes the same epoch order; each device computes its share
of every batch (its consecutive examples, :meth:`nnspec.backends.base.CompiledModel.check_batch_size`).
Only the primary process (``I == 0``, :attr:`~nnspec.backends.cluster.Cluster.primary`) writes the run directory
and checkpoints.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping

from ..backends.cluster import Cluster, set_current_cluster, split_address
from ..errors import NnspecError

if TYPE_CHECKING:
    from ..backends.base import Backend

ENV_COORDINATOR = "NNSPEC_COORDINATOR"
ENV_NUM_PROCESSES = "NNSPEC_NUM_PROCESSES"
ENV_PROCESS_ID = "NNSPEC_PROCESS_ID"


_started: set[str] = set()


def _int(value: str | int | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise NnspecError(f"{what} must be a whole number; got {value!r}") from None


def cluster_from(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> Cluster:
    """The cluster given by flags, else ``NNSPEC_*`` variables, else Slurm's; checked.

    Raises :class:`~nnspec.errors.NnspecError` on a missing coordinator, a process id out of range or a
    malformed ``HOST:PORT``.
    """
    env = os.environ if environ is None else environ
    coordinator = coordinator or env.get(ENV_COORDINATOR) or None
    count = num_processes if num_processes is not None else _int(env.get(ENV_NUM_PROCESSES), ENV_NUM_PROCESSES)
    index = process_id if process_id is not None else _int(env.get(ENV_PROCESS_ID), ENV_PROCESS_ID)
    if count is None and coordinator is not None:
        count = _int(env.get("SLURM_NTASKS"), "SLURM_NTASKS")
    if index is None and coordinator is not None:
        index = _int(env.get("SLURM_PROCID"), "SLURM_PROCID")
    count = 1 if count is None else count
    index = 0 if index is None else index
    if count < 1:
        raise NnspecError(f"--num-processes must be at least 1; got {count}")
    if not 0 <= index < count:
        raise NnspecError(f"--process-id must be between 0 and {count - 1} for {count} processes; got {index}")
    if count > 1:
        if not coordinator:
            raise NnspecError(
                f"{count} processes need a coordinator: pass --coordinator HOST:PORT (the address of process 0), or "
                f"set {ENV_COORDINATOR}"
            )
        split_address(coordinator)
    return Cluster(coordinator if count > 1 else None, count, index)


def start(cluster: Cluster, backend: "type[Backend] | Backend") -> None:
    """Make ``cluster`` this process's cluster and start ``backend``'s multi-process runtime (once per engine).

    Must run before the engine computes anything. A one-process cluster starts nothing; a backend that cannot
    train in several processes refuses with a :class:`~nnspec.errors.NnspecError`.
    """
    set_current_cluster(cluster)
    if not cluster.multi or backend.engine in _started:
        return
    backend.start_processes(cluster)
    _started.add(backend.engine)
