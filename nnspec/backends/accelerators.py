"""How a GPU is described to a person, for ``nnspec backends`` and ``env.json``.

Each engine lists its own GPUs (``gpus()`` in ``nnspec/backends/<engine>/engine.py``, through
:meth:`nnspec.backends.base.Backend.device_details`) as ``{'kind': 'gpu', 'name', 'memory_bytes', 'id'}``.
"""

from __future__ import annotations

from typing import Any


def describe_gpu(gpu: dict[str, Any]) -> str:
    """One GPU in a few words: ``gpu:0 NVIDIA H200 (139.8 GiB)``."""
    memory = gpu.get("memory_bytes")
    size = f" ({memory / 2**30:.1f} GiB)" if memory else ""
    return f"gpu:{gpu.get('id', 0)} {gpu.get('name', '?')}{size}"
