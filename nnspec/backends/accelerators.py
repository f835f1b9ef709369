"""The GPUs an engine sees, with their names and memory, for ``nnspec backends`` and ``env.json``.

Each function imports its engine; call it only from a backend that has checked the engine is installed.
None of them raises: an engine that cannot list its devices lists none.
"""

from __future__ import annotations

from typing import Any


def jax_gpus() -> list[dict[str, Any]]:
    """JAX's GPUs: ``{'kind': 'gpu', 'name', 'memory_bytes', 'id'}`` each (memory from the device's allocator)."""
    try:
        import jax

        found = jax.devices("gpu")
    except Exception:  # no GPU plugin, or no device: JAX raises RuntimeError
        return []
    gpus = []
    for device in found:
        try:
            memory = (device.memory_stats() or {}).get("bytes_limit")
        except Exception:  # memory statistics are optional in PJRT plugins
            memory = None
        gpus.append(
            {
                "kind": "gpu",
                "name": str(device.device_kind),
                "memory_bytes": None if memory is None else int(memory),
                "id": int(device.id),
            }
        )
    return gpus


def tensorflow_gpus() -> list[dict[str, Any]]:
    """TensorFlow's GPUs: ``{'kind': 'gpu', 'name', 'memory_bytes', 'id'}`` each (memory once TensorFlow reports it)."""
    try:
        from .tensorflow.backend import load_tensorflow

        tf = load_tensorflow()
        found = tf.config.list_physical_devices("GPU")
    except Exception:
        return []
    gpus = []
    for index, device in enumerate(found):
        try:
            name = tf.config.experimental.get_device_details(device).get("device_name", device.name)
        except Exception:
            name = device.name
        try:
            memory = tf.config.experimental.get_memory_info(f"GPU:{index}").get("limit")
        except Exception:  # not reported before the device is initialised
            memory = None
        gpus.append({"kind": "gpu", "name": str(name), "memory_bytes": memory, "id": index})
    return gpus


def describe_gpu(gpu: dict[str, Any]) -> str:
    """One GPU in a few words: ``gpu:0 NVIDIA H200 (139.8 GiB)``."""
    memory = gpu.get("memory_bytes")
    size = f" ({memory / 2**30:.1f} GiB)" if memory else ""
    return f"gpu:{gpu.get('id', 0)} {gpu.get('name', '?')}{size}"
