"""JAX itself for nnspec: its devices here, the devices of a data-parallel mesh, and its multi-process start.

Every function imports JAX when called; call them only once the backend has found JAX installed.
"""

from __future__ import annotations

from typing import Any

from ...errors import BackendError
from ..cluster import Cluster


def devices() -> list[str]:
    """``['cpu']``, plus ``'gpu'`` when JAX has a GPU backend with at least one device."""
    import jax

    found = ["cpu"]
    try:
        if jax.devices("gpu"):
            found.append("gpu")
    except RuntimeError:
        pass
    return found


def device_counts() -> dict[str, int]:
    """This process's JAX devices of each kind (virtual CPU devices count too:
    ``--xla_force_host_platform_device_count``)."""
    import jax

    counts = {"cpu": len(jax.local_devices(backend="cpu"))}
    try:
        gpus = jax.local_devices(backend="gpu")
    except RuntimeError:
        gpus = []
    if gpus:
        counts["gpu"] = len(gpus)
    return counts


def gpus() -> list[dict[str, Any]]:
    """JAX's GPUs: ``{'kind': 'gpu', 'name', 'memory_bytes', 'id'}`` each (memory from the device's allocator).

    Never raises: without a GPU plugin or device the list is empty.
    """
    try:
        import jax

        found = jax.devices("gpu")
    except Exception:  # no GPU plugin, or no device: JAX raises RuntimeError
        return []
    listed = []
    for device in found:
        try:
            memory = (device.memory_stats() or {}).get("bytes_limit")
        except Exception:  # memory statistics are optional in PJRT plugins
            memory = None
        listed.append(
            {
                "kind": "gpu",
                "name": str(device.device_kind),
                "memory_bytes": None if memory is None else int(memory),
                "id": int(device.id),
            }
        )
    return listed


def mesh_devices(kind: str, local: int) -> list[Any]:
    """The devices of a data-parallel mesh: the first ``local`` devices of ``kind`` of each process, by process.

    Raises :class:`~nnspec.errors.BackendError` when a process has fewer.
    """
    import jax

    by_process: dict[int, list[Any]] = {}
    for d in sorted(jax.devices(kind), key=lambda d: (d.process_index, d.id)):
        by_process.setdefault(d.process_index, []).append(d)
    short = {p: len(ds) for p, ds in by_process.items() if len(ds) < local}
    if short:
        raise BackendError(
            f"train.devices asks for {local} {kind.upper()} devices in each process; process(es) {sorted(short)} have "
            f"{min(short.values())}"
        )
    return [d for p in sorted(by_process) for d in by_process[p][:local]]


def use_gloo_collectives() -> None:
    """CPU collectives between processes through gloo (older JAX without the option keeps its default)."""
    import jax

    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError):
        pass


def start_processes(cluster: Cluster) -> None:
    """``jax.distributed.initialize`` for ``cluster``: every process then sees every process's devices.

    JAX's own limits (it aborts in native code when one passes) are set past nnspec's start timeout, which ends a
    start that hangs first, with a message (:func:`nnspec.runtime.distributed.start`).
    """
    import jax

    use_gloo_collectives()
    jax.distributed.initialize(coordinator_address=cluster.coordinator, **_distributed_options(cluster))


def _distributed_options(cluster: Cluster) -> dict[str, Any]:
    """``jax.distributed.initialize``'s arguments for ``cluster``: the process numbers and JAX's own time limits."""
    import inspect

    import jax

    slack = int(cluster.start_timeout) + 60
    options: dict[str, Any] = {"num_processes": cluster.num_processes, "process_id": cluster.process_id}
    accepted = inspect.signature(jax.distributed.initialize).parameters
    for name in ("initialization_timeout", "heartbeat_timeout_seconds", "shutdown_timeout_seconds"):
        if name in accepted:
            options[name] = max(slack, 100)
    return options
