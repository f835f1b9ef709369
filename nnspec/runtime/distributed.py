"""Training in several processes (one per machine, or per GPU group): the cluster a run belongs to.

``nnspec run --coordinator HOST:PORT --num-processes P --process-id I`` (or the environment variables
``NNSPEC_COORDINATOR``, ``NNSPEC_NUM_PROCESSES``, ``NNSPEC_PROCESS_ID``, or Slurm's ``SLURM_NTASKS`` /
``SLURM_PROCID`` when neither is given) makes this process one of ``P``. :func:`start` then starts the
engine's own multi-process runtime before the engine is used for anything else:

* JAX: ``jax.distributed.initialize(coordinator, P, I)``; every process then sees every process's
  devices, and the model's mesh spans them all (CPU collectives through gloo);
* TensorFlow: ``TF_CONFIG`` (a cluster of ``P`` workers: the coordinator's host with ports counted up
  from its port, unless ``NNSPEC_WORKERS`` lists ``host:port`` for each) for ``MultiWorkerMirroredStrategy``.

Every process loads the same data set and computes the same epoch order; each device computes its share
of every batch (its consecutive examples, :meth:`nnspec.backends.base.CompiledModel.check_batch_size`).
Only the primary process (``I == 0``) writes the run directory and checkpoints (:func:`is_primary`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Mapping

from ..errors import NnspecError

ENV_COORDINATOR = "NNSPEC_COORDINATOR"
ENV_NUM_PROCESSES = "NNSPEC_NUM_PROCESSES"
ENV_PROCESS_ID = "NNSPEC_PROCESS_ID"
ENV_WORKERS = "NNSPEC_WORKERS"


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
_started: set[str] = set()


def current_cluster() -> Cluster:
    """The cluster this process belongs to (one process unless :func:`start` was called for more)."""
    return _current


def is_primary() -> bool:
    """Whether this process writes the run directory and checkpoints (always so in a one-process run)."""
    return _current.primary


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
                f"{count} processes need a coordinator: pass --coordinator HOST:PORT (the address of process 0), or set {ENV_COORDINATOR}"
            )
        split_address(coordinator)
    return Cluster(coordinator if count > 1 else None, count, index)


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` as ``(host, port)``; a clear error otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NnspecError(f"--coordinator must be HOST:PORT (for example node01:12355); got {address!r}")
    return host, int(port)


def tf_config(cluster: Cluster, environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The ``TF_CONFIG`` of this process: workers from ``NNSPEC_WORKERS`` (comma-separated ``host:port``),
    else the coordinator's host with ports counted up from its port (processes on one machine)."""
    env = os.environ if environ is None else environ
    listed = [w.strip() for w in env.get(ENV_WORKERS, "").split(",") if w.strip()]
    if listed:
        if len(listed) != cluster.num_processes:
            raise NnspecError(f"{ENV_WORKERS} lists {len(listed)} workers for {cluster.num_processes} processes")
        for worker in listed:
            split_address(worker)
        workers = listed
    else:
        host, port = split_address(cluster.coordinator or "")
        workers = [f"{host}:{port + i}" for i in range(cluster.num_processes)]
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": cluster.process_id}}


def start(cluster: Cluster, engine: str) -> None:
    """Make ``cluster`` this process's cluster and start ``engine``'s multi-process runtime (once).

    ``engine``: ``jax``, ``tensorflow`` or ``keras`` (Keras on JAX starts JAX's). Must run before the
    engine computes anything. A one-process cluster starts nothing.
    """
    global _current
    _current = cluster
    if not cluster.multi or engine in _started:
        return
    if engine == "jax" or (engine == "keras" and _keras_engine() == "jax"):
        import jax

        try:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        except (AttributeError, ValueError):  # older JAX without the option
            pass
        if engine == "keras":
            from keras import distribution

            distribution.initialize(
                job_addresses=cluster.coordinator, num_processes=cluster.num_processes, process_id=cluster.process_id
            )
        else:
            jax.distributed.initialize(
                coordinator_address=cluster.coordinator,
                num_processes=cluster.num_processes,
                process_id=cluster.process_id,
            )
    elif engine == "tensorflow":
        os.environ["TF_CONFIG"] = json.dumps(tf_config(cluster))
        from ..backends.tensorflow.backend import start_multi_worker

        start_multi_worker()
    else:
        raise NnspecError(f"backend '{engine}' cannot train in several processes; use the jax or tensorflow backend")
    _started.add(engine)


def _keras_engine() -> str:
    from ..backends.keras.backend import configured_engine

    return configured_engine()
