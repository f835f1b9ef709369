"""The TensorFlow backend: registration, devices and capabilities.

TensorFlow itself (its quiet import and configuration, devices, several processes) is in
:mod:`nnspec.backends.tensorflow.engine`; importing this module imports no TensorFlow.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

import numpy as np

from ...compiler.ir import Graph
from ..base import Backend, Capabilities
from ..cluster import Cluster

if TYPE_CHECKING:
    from .model import TensorFlowModel


class TensorFlowBackend(Backend):
    """Compiles nnspec graphs to TensorFlow ``tf.function`` programs over ``tf.Variable`` weights."""

    name = "tensorflow"
    aliases = ("tf",)
    engine = "tensorflow"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Whether TensorFlow is installed, judged without importing it."""
        try:
            found = importlib.util.find_spec("tensorflow") is not None
        except (ImportError, ValueError):
            found = False
        if found:
            return True, ""
        return False, "TensorFlow is not installed (pip install 'nnspec[tensorflow]')"

    @classmethod
    def start_processes(cls, cluster: Cluster) -> None:
        """``TF_CONFIG`` and ``MultiWorkerMirroredStrategy`` for ``cluster``."""
        from .engine import start_processes

        start_processes(cluster)

    def engine_version(self) -> str:
        """TensorFlow's version string."""
        from .engine import load_tensorflow

        return str(load_tensorflow().__version__)

    def devices(self) -> list[str]:
        """``['cpu']``, plus ``'gpu'`` when TensorFlow sees a GPU."""
        from .engine import devices

        return devices()

    def device_counts(self) -> dict[str, int]:
        """TensorFlow's logical devices of each kind."""
        from .engine import device_counts

        return device_counts()

    def device_details(self) -> list[dict[str, Any]]:
        """TensorFlow's GPUs with their names (and memory once TensorFlow reports it)."""
        from .engine import gpus

        return gpus()

    def capabilities(self) -> Capabilities:
        """The layers it has lowerings for (every layer), every activation and optimiser; float32 and float64;
        CPU and GPU; data parallel over several devices and workers (``tf.distribute``).

        ``devices`` says what it supports; :meth:`devices` says what is on this machine.
        """
        from .layers import LOWERINGS

        return Capabilities(layers=frozenset(LOWERINGS), devices=("cpu", "gpu"), data_parallel=True)

    def _compile(self, graph: Graph, weights: dict[str, np.ndarray], device: str, dtype: str) -> "TensorFlowModel":
        from .model import TensorFlowModel

        return TensorFlowModel(graph, self, device, dtype, weights)
