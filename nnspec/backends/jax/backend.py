"""The JAX backend: compiles an nnspec graph to XLA programs through JAX.

Importing this module imports no JAX; :meth:`JaxBackend.availability` only looks for the package.
Every v1 layer, activation and optimiser is supported, in float32 and float64, on the CPU and on a GPU
when JAX sees one. How an epoch is run (one fused ``lax.scan`` program or one program per step) is
chosen per model and device by :func:`nnspec.backends.jax.model.fused_epoch`.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ...compiler.ir import Graph
from ..base import Backend, Capabilities
from ..cluster import Cluster

if TYPE_CHECKING:
    from .model import JaxModel


class JaxBackend(Backend):
    """nnspec on JAX (CPU, and GPU when the installed jaxlib has one)."""

    name: ClassVar[str] = "jax"
    engine: ClassVar[str] = "jax"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """``(True, '')`` when the ``jax`` package is installed (it is not imported here)."""
        try:
            found = importlib.util.find_spec("jax") is not None and importlib.util.find_spec("jaxlib") is not None
        except (ImportError, ValueError):
            found = False
        return (True, "") if found else (False, "the 'jax' package is not installed (pip install 'nnspec[jax]')")

    @classmethod
    def start_processes(cls, cluster: Cluster) -> None:
        """``jax.distributed.initialize`` for ``cluster`` (CPU collectives through gloo)."""
        from .engine import start_processes

        start_processes(cluster)

    def engine_version(self) -> str:
        """JAX's version."""
        import jax

        return jax.__version__

    def devices(self) -> list[str]:
        """``['cpu']``, plus ``'gpu'`` when JAX has a GPU backend with at least one device."""
        from .engine import devices

        return devices()

    def device_counts(self) -> dict[str, int]:
        """This process's JAX devices of each kind (virtual CPU devices count)."""
        from .engine import device_counts

        return device_counts()

    def device_details(self) -> list[dict[str, Any]]:
        """JAX's GPUs with their names and memory."""
        from .engine import gpus

        return gpus()

    def capabilities(self) -> Capabilities:
        """The layers it has lowerings for (every layer), every activation and optimiser; float32 and float64;
        CPU and GPU; data parallel over several devices (``jax.sharding``)."""
        from .layers import LOWERINGS

        return Capabilities(layers=frozenset(LOWERINGS), devices=("cpu", "gpu"), data_parallel=True)

    def _compile(self, graph: Graph, weights: dict[str, np.ndarray], device: str, dtype: str) -> "JaxModel":
        from .model import JaxModel

        return JaxModel(graph, self, device, dtype, weights)
