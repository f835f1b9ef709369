"""The backend contract: what every engine offers nnspec, and the parts written once for all of them.

A :class:`Backend` compiles a :class:`~nnspec.compiler.ir.Graph` into a :class:`CompiledModel`. An
engine implements the small set of abstract methods of ``CompiledModel`` (one epoch on the device,
evaluation, prediction, weights in and out, and the comparison hooks); training loops, saving and
loading are shared here and in :mod:`nnspec.runtime`.

Batches: an epoch visits ``steps = n // batch_size`` full batches in the order given by the epoch's
permutation; the last ``n % batch_size`` examples of the permutation are not visited that epoch (a
different set each epoch). ``batch_size`` larger than ``n`` is clipped to ``n``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from ..compiler.ir import ACTIVATIONS, LAYER_TYPES, OPTIMIZERS, Graph
from ..errors import BackendError

if TYPE_CHECKING:
    import pandas as pd

    from ..data.dataset import Dataset


@dataclass(frozen=True)
class Capabilities:
    """What a backend supports; anything else is refused at compile time with a clear error."""

    layers: frozenset[str] = frozenset(LAYER_TYPES)
    activations: frozenset[str] = frozenset(ACTIVATIONS)
    optimizers: frozenset[str] = frozenset(OPTIMIZERS)
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = ("float32", "float64")
    gaps: Mapping[str, str] = field(default_factory=dict)


class Backend(abc.ABC):
    """One engine behind nnspec. Subclasses import their engine only inside methods, never at import time."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    engine: ClassVar[str]

    @classmethod
    @abc.abstractmethod
    def availability(cls) -> tuple[bool, str]:
        """``(True, '')`` when the engine can be imported, else ``(False, why)`` (never raises)."""

    @abc.abstractmethod
    def engine_version(self) -> str:
        """The engine's version string."""

    @abc.abstractmethod
    def devices(self) -> list[str]:
        """Device kinds this engine can use here, for example ``['cpu']`` or ``['cpu', 'gpu']``."""

    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend supports."""

    @abc.abstractmethod
    def _compile(self, graph: Graph, weights: dict[str, np.ndarray], device: str, dtype: str) -> "CompiledModel":
        """Engine-specific compilation; ``graph`` is already checked against the capabilities."""

    def resolve_device(self, device: str) -> str:
        """Turn ``auto|cpu|gpu`` into ``cpu`` or ``gpu``; asking for a device the engine lacks is an error."""
        have = self.devices()
        if device == "auto":
            return "gpu" if "gpu" in have else "cpu"
        if device not in ("cpu", "gpu"):
            raise BackendError(f"unknown device {device!r}; expected auto, cpu or gpu")
        if device not in have:
            raise BackendError(
                f"backend '{self.name}' sees no {device.upper()} on this machine (devices: {', '.join(have)}); "
                f"nnspec never falls back silently: use --device cpu or --device auto"
            )
        return device

    def check(self, graph: Graph, dtype: str) -> None:
        """Raise :class:`BackendError` naming every layer or option this backend cannot run."""
        caps = self.capabilities()
        problems: list[str] = []
        for node in graph.nodes:
            if node.op not in caps.layers:
                reason = caps.gaps.get(node.op, "not implemented")
                problems.append(f"layer {node.index} '{node.name}' ({node.op}) is not supported by backend '{self.name}': {reason}")
            act = node.attrs.get("activation")
            if act is not None and act not in caps.activations:
                problems.append(f"layer {node.index} '{node.name}': activation '{act}' is not supported by backend '{self.name}'")
        if graph.train.optimizer.name not in caps.optimizers:
            problems.append(f"optimizer '{graph.train.optimizer.name}' is not supported by backend '{self.name}'")
        if dtype not in caps.dtypes:
            problems.append(f"dtype '{dtype}' is not supported by backend '{self.name}' (supported: {', '.join(caps.dtypes)})")
        if problems:
            raise BackendError("\n".join(problems))

    def compile(
        self,
        graph: Graph,
        weights: Mapping[str, np.ndarray] | None = None,
        *,
        device: str = "auto",
        dtype: str | None = None,
    ) -> "CompiledModel":
        """Compile ``graph`` for this engine, starting from ``weights`` (default: the seeded initialisers)."""
        from ..compiler.init import initial_weights
        from ..runtime.weights import check_weights

        dtype = dtype or graph.dtype
        self.check(graph, dtype)
        resolved = self.resolve_device(device)
        if weights is None:
            weights = initial_weights(graph, dtype=dtype)
        else:
            check_weights(graph, weights)
            weights = {k: np.asarray(v, dtype=dtype) for k, v in weights.items()}
        return self._compile(graph, dict(weights), resolved, dtype)


class CompiledModel(abc.ABC):
    """A model compiled for one engine. Engines implement the abstract methods; the rest is shared."""

    def __init__(self, graph: Graph, backend: Backend, device: str, dtype: str):
        self.graph = graph
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.step = 0  # optimiser steps taken so far: drives dropout masks and schedules
        self.compile_seconds: float = 0.0

    # ---- engine-specific ----------------------------------------------------------------------
    @abc.abstractmethod
    def put(self, array: np.ndarray) -> Any:
        """Copy a host array to the device once (data sets stay resident there)."""

    @abc.abstractmethod
    def run_epoch(self, x: Any, y: Any, order: np.ndarray, batch_size: int) -> tuple[float, float]:
        """Train over ``len(order) // batch_size`` batches taken from ``order`` (device data from :meth:`put`).

        Returns the mean training loss and accuracy of the epoch's batches (dropout on), read back once.
        Advances :attr:`step` by the number of batches.
        """

    @abc.abstractmethod
    def evaluate_arrays(self, x: Any, y: Any) -> tuple[float, float]:
        """Mean loss and accuracy over all examples of device arrays ``x``, ``y`` (dropout off)."""

    @abc.abstractmethod
    def predict_arrays(self, x: np.ndarray) -> np.ndarray:
        """The model's final outputs for host array ``x`` (probabilities when it ends in softmax)."""

    @abc.abstractmethod
    def get_weights(self) -> dict[str, np.ndarray]:
        """Current weights as ``{'<layer>.<param>': array}`` in the contract layouts."""

    @abc.abstractmethod
    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Replace the weights (names and shapes must match the graph)."""

    @abc.abstractmethod
    def layer_outputs(self, x: np.ndarray, *, training: bool = False, step: int = 0) -> list[np.ndarray]:
        """Forward activations of every node for host batch ``x`` (dropout on when ``training``)."""

    @abc.abstractmethod
    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray, *, step: int = 0) -> tuple[float, dict[str, np.ndarray]]:
        """Training loss of one batch (dropout on, masks of ``step``) and its gradient per weight."""

    @abc.abstractmethod
    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimiser step on the given host batch; returns its loss and advances :attr:`step`."""

    # ---- shared ---------------------------------------------------------------------------------
    def fit(self, dataset: "Dataset | None" = None, *, epochs: int | None = None, progress: Any = None) -> "pd.DataFrame":
        """Train for ``epochs`` (default ``train.epochs``); returns the per-epoch metrics DataFrame."""
        from ..runtime.loop import fit

        return fit(self, dataset, epochs=epochs, progress=progress)

    def evaluate(self, x: np.ndarray | None = None, y: np.ndarray | None = None) -> dict[str, float]:
        """``{'loss', 'accuracy'}`` on ``(x, y)``, or on the spec's test split when not given."""
        if x is None or y is None:
            from ..data import load_dataset

            ds = load_dataset(self.graph)
            x, y = ds.x_test, ds.y_test
        loss, acc = self.evaluate_arrays(self.put(np.asarray(x, dtype=self.dtype)), self.put(np.asarray(y, dtype=np.int32)))
        return {"loss": float(loss), "accuracy": float(acc)}

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Final outputs for ``x`` (a batch of examples in the spec's input shape)."""
        x = np.asarray(x, dtype=self.dtype)
        if x.shape[1:] != tuple(self.graph.input_shape):
            from ..errors import DataError

            raise DataError(f"predict: input has per-example shape {x.shape[1:]}, the spec expects {tuple(self.graph.input_shape)}")
        return self.predict_arrays(x)

    def save(self, path: str) -> None:
        """Write the weights to a safetensors file."""
        from ..runtime.weights import save_weights

        save_weights(path, self.get_weights(), self.graph)

    def load(self, path: str) -> None:
        """Read weights from a safetensors file; names and shapes must match the spec."""
        from ..runtime.weights import load_weights

        self.set_weights(load_weights(path, self.graph))
