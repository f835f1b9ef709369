"""The ``keras`` backend: a spec compiled to a functional ``keras.Model`` of standard Keras 3 layers.

Keras runs on the engine it is configured for (``KERAS_BACKEND``, else ``~/.keras/keras.json``, else
TensorFlow); nnspec's Keras backend trains on ``jax`` and ``tensorflow``. Importing this module imports
neither Keras nor an engine; :meth:`KerasBackend.availability` finds out without importing them.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from ...compiler.ir import Graph
from ...errors import BackendError
from ..base import Backend, Capabilities, CompiledModel
from ..cluster import Cluster
from .engine import configured_engine

#: Keras engines nnspec's Keras backend can train on (it needs the engine's own gradient).
TRAINABLE_ENGINES: tuple[str, ...] = ("jax", "tensorflow")

FLOAT64_ON_JAX = (
    "Keras 3 on JAX promotes 64-bit dtypes to 32-bit in keras.ops (keras.backend.result_type), so a float64 model "
    "would silently compute partly in float32; use KERAS_BACKEND=tensorflow for float64"
)


DATA_PARALLEL_ON_TF = (
    "Keras 3's distribution API (keras.distribution) runs on its JAX backend only; use KERAS_BACKEND=jax, "
    "or the tensorflow backend"
)


class KerasBackend(Backend):
    """Keras 3 on the engine it is configured for (``KERAS_BACKEND``: jax or tensorflow)."""

    name = "keras"
    engine = "keras"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("keras") is None:
            return False, "keras is not installed (pip install 'nnspec[keras]')"
        engine = configured_engine()
        if engine not in TRAINABLE_ENGINES:
            return (
                False,
                f"Keras is configured for '{engine}'; nnspec's keras backend runs on KERAS_BACKEND=jax or tensorflow",
            )
        if importlib.util.find_spec(engine) is None:
            return False, f"Keras is configured for '{engine}', which is not installed"
        return True, ""

    @classmethod
    def start_processes(cls, cluster: Cluster) -> None:
        """``keras.distribution.initialize`` for ``cluster`` (Keras on JAX only)."""
        from .engine import start_processes

        start_processes(cluster)

    def engine_version(self) -> str:
        import keras

        engine = keras.backend.backend()
        module = importlib.import_module(engine)
        return f"keras {keras.__version__} on {engine} {getattr(module, '__version__', '?')}"

    def devices(self) -> list[str]:
        import keras

        if keras.backend.backend() == "jax":
            import jax

            platforms = {d.platform for d in jax.devices()}
            return ["cpu"] + (["gpu"] if platforms & {"gpu", "cuda", "rocm"} else [])
        import tensorflow as tf

        return ["cpu"] + (["gpu"] if tf.config.list_physical_devices("GPU") else [])

    def device_counts(self) -> dict[str, int]:
        """The local devices of each kind of the engine Keras runs on."""
        if configured_engine() == "jax":
            from ..jax.engine import device_counts

            return device_counts()
        from ..tensorflow.engine import device_counts as tensorflow_counts

        return tensorflow_counts()

    def device_details(self) -> list[dict[str, Any]]:
        """The GPUs of the engine Keras runs on."""
        if configured_engine() == "jax":
            from ..jax.engine import gpus

            return gpus()
        from ..tensorflow.engine import gpus as tensorflow_gpus

        return tensorflow_gpus()

    def capabilities(self) -> Capabilities:
        """The layers that have a Keras layer builder, every activation and optimiser; float64 only on TensorFlow."""
        from .layers import supported_ops

        layers = supported_ops()
        if configured_engine() == "jax":
            return Capabilities(
                layers=layers,
                devices=("cpu", "gpu"),
                dtypes=("float32",),
                data_parallel=True,
                gaps={"float64": FLOAT64_ON_JAX},
            )
        return Capabilities(
            layers=layers,
            devices=("cpu", "gpu"),
            dtypes=("float32", "float64"),
            gaps={"data_parallel": DATA_PARALLEL_ON_TF},
        )

    def check(self, graph: Graph, dtype: str) -> None:
        """As :meth:`Backend.check`, and a refused dtype says why (float64 on Keras-JAX)."""
        caps = self.capabilities()
        if dtype not in caps.dtypes and dtype in caps.gaps:
            raise BackendError(
                f"dtype '{dtype}' is not supported by backend '{self.name}' on {configured_engine()}: "
                f"{caps.gaps[dtype]}"
            )
        super().check(graph, dtype)

    def _compile(self, graph: Graph, weights: dict[str, np.ndarray], device: str, dtype: str) -> CompiledModel:
        from .model import KerasModel

        return KerasModel(graph, self, device, dtype, weights)
