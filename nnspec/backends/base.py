"""The backend contract: what every engine offers nnspec, and the parts written once for all of them.

A :class:`Backend` compiles a :class:`~nnspec.compiler.ir.Graph` into a :class:`CompiledModel`. An
engine implements the small set of abstract methods of ``CompiledModel`` (an epoch's batches on the device,
evaluation, prediction, weights in and out, and the comparison hooks); the epoch template, saving and loading
are shared here, the training loop over epochs is :mod:`nnspec.runtime.loop`.

Batches: an epoch visits ``steps = n // batch_size`` full batches in the order given by the epoch's
permutation; the last ``n % batch_size`` examples of the permutation are not visited that epoch (a
different set each epoch). ``batch_size`` larger than ``n`` is clipped to ``n``.

Data parallelism (``train.devices``, docs/distributed.md): :meth:`Backend.resolve_replicas` turns the
spec's count (or ``all``) into :attr:`CompiledModel.replicas`, the number of devices each batch is split
over (the local count times the number of processes of a multi-process run). Each device takes
``batch_size / replicas`` consecutive examples of every batch; weights, optimiser slots and state are
replicated. A backend declares whether it can do this in :attr:`Capabilities.data_parallel`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import numpy as np

from ..compiler.ir import ACTIVATIONS, OPTIMIZERS, PRECISIONS, Graph
from ..compiler.opset import LAYER_TYPES
from ..errors import BackendError, NnspecError
from .cluster import Cluster, current_cluster

if TYPE_CHECKING:
    import pandas as pd

    from ..data.dataset import Dataset
    from ..semantics.training_state import TrainingState


@dataclass(frozen=True)
class Capabilities:
    """What a backend supports; anything else is refused at compile time with a clear error."""

    layers: frozenset[str] = frozenset(LAYER_TYPES)
    activations: frozenset[str] = frozenset(ACTIVATIONS)
    optimizers: frozenset[str] = frozenset(OPTIMIZERS)
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = ("float32", "float64")
    #: ``train.precision`` policies (see :mod:`nnspec.semantics.precision`); reasons for the others in ``gaps``
    precisions: tuple[str, ...] = PRECISIONS
    #: whether a batch can be split over several devices (``train.devices`` > 1); when not, the reason is in
    #: ``gaps['data_parallel']``
    data_parallel: bool = False
    gaps: Mapping[str, str] = field(default_factory=dict)


#: why a backend refuses ``train.devices`` > 1 when its capabilities give no reason
NO_DATA_PARALLEL = "it has no data-parallel execution"


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

    def device_details(self) -> list[dict[str, Any]]:
        """Each accelerator this engine sees: ``{'kind', 'name', 'memory_bytes'}`` (memory None when unknown).

        The CPU is not listed. The default lists nothing; engines that can use a GPU override it.
        """
        return []

    def device_counts(self) -> dict[str, int]:
        """How many local devices of each kind this engine can use here, e.g. ``{'cpu': 1, 'gpu': 4}``.

        The default counts one of each kind in :meth:`devices`; engines that split batches override it.
        """
        return {kind: 1 for kind in self.devices()}

    def process_count(self) -> int:
        """How many processes take part in this run (more than one under ``nnspec run --num-processes``)."""
        return current_cluster().num_processes

    @classmethod
    def start_processes(cls, cluster: Cluster) -> None:
        """Start the engine's own multi-process runtime for ``cluster`` (several processes), before the engine
        computes anything; :func:`nnspec.runtime.distributed.start` calls it once per engine and process.

        The default refuses: an engine that can train in several processes overrides it.
        """
        raise NnspecError(f"backend '{cls.name}' cannot train in several processes; use the jax or tensorflow backend")

    def data_parallel_gap(self) -> str:
        """Why this backend cannot split batches over devices ('' when it can)."""
        caps = self.capabilities()
        if caps.data_parallel:
            return ""
        return str(caps.gaps.get("data_parallel") or NO_DATA_PARALLEL)

    def resolve_replicas(self, graph: Graph, device: str, batch_sizes: tuple[int, ...] = ()) -> int:
        """The number of devices each batch of ``graph`` is split over on ``device`` (``cpu`` or ``gpu``).

        ``train.devices`` counts local devices (``all``: every local device of that kind); a multi-process
        run multiplies it by the number of processes. Raises :class:`BackendError` when the backend cannot
        split batches, when the machine has fewer devices, or when ``train.batch_size`` (or any of
        ``batch_sizes``) is not a multiple of the count.
        """
        requested = graph.train.devices
        have = int(self.device_counts().get(device, 1))
        local = have if requested == "all" else int(requested)
        processes = max(1, int(self.process_count()))
        if local < 1:
            raise BackendError(f"train.devices must be a positive number or all; got {requested!r}")
        total = local * processes
        if total > 1:
            gap = self.data_parallel_gap()
            if gap:
                where = f"train.devices: {requested}" if processes == 1 else f"{processes} processes"
                raise BackendError(
                    f"backend '{self.name}' cannot split batches over several devices ({where}): {gap}; use "
                    "train.devices: 1 (or --devices 1), or the jax or tensorflow backend"
                )
        if local > have:
            raise BackendError(
                f"train.devices: {requested} asks for {local} {device.upper()} devices, but backend '{self.name}' "
                f"sees {have} here; "
                f"use --devices {have} (or "
                f"all){' or --device gpu' if device == 'cpu' and 'gpu' in self.devices() else ''}"
            )
        for size in (graph.train.batch_size, *batch_sizes):
            check_batch_split(int(size), total, processes)
        return total

    def execution_notes(self) -> dict[str, str]:
        """How this engine runs here, beyond its devices (for example which linker it picked), for
        ``nnspec backends`` and ``env.json``. The default says nothing."""
        return {}

    def resolve_device(self, device: str) -> str:
        """Turn ``auto|cpu|gpu`` into ``cpu`` or ``gpu``; asking for a device the engine lacks is an error."""
        have = self.devices()
        if device == "auto":
            return "gpu" if "gpu" in have else "cpu"
        if device not in ("cpu", "gpu"):
            raise BackendError(f"unknown device {device!r}; expected auto, cpu or gpu")
        if device not in have:
            raise BackendError(
                f"backend '{self.name}' sees no {device.upper()} on this machine (devices: {', '.join(have)}); nnspec "
                "never falls back silently: use --device cpu or --device auto"
            )
        return device

    def check(self, graph: Graph, dtype: str) -> None:
        """Raise :class:`BackendError` naming every layer or option this backend cannot run."""
        caps = self.capabilities()
        problems: list[str] = []
        for node in graph.nodes:
            if node.op not in caps.layers:
                reason = caps.gaps.get(node.op, "not implemented")
                problems.append(
                    f"layer {node.index} '{node.name}' ({node.op}) is not supported by backend '{self.name}': {reason}"
                )
            act = node.attrs.get("activation")
            if act is not None and act.name not in caps.activations:
                problems.append(
                    f"layer {node.index} '{node.name}': activation '{act}' is not supported by backend '{self.name}'"
                )
        if graph.train.optimizer.name not in caps.optimizers:
            problems.append(f"optimizer '{graph.train.optimizer.name}' is not supported by backend '{self.name}'")
        if dtype not in caps.dtypes:
            problems.append(
                f"dtype '{dtype}' is not supported by backend '{self.name}' (supported: {', '.join(caps.dtypes)})"
            )
        from ..semantics.precision import policy_for

        policy = policy_for(graph, dtype).name
        if policy not in caps.precisions:
            reason = caps.gaps.get(policy, "not implemented")
            problems.append(
                f"train.precision '{policy}' is not supported by backend '{self.name}': {reason} (supported: "
                f"{', '.join(caps.precisions)})"
            )
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
        from ..semantics.weights import check_weights

        dtype = dtype or graph.dtype
        self.check(graph, dtype)
        resolved = self.resolve_device(device)
        self.resolve_replicas(graph, resolved)
        if weights is None:
            weights = initial_weights(graph, dtype=dtype)
        else:
            check_weights(graph, weights)
            weights = {k: np.asarray(v, dtype=dtype) for k, v in weights.items()}
        return self._compile(graph, dict(weights), resolved, dtype)


def check_batch_split(batch_size: int, replicas: int, processes: int = 1) -> None:
    """Raise :class:`BackendError` unless ``batch_size`` splits evenly over ``replicas`` devices."""
    if replicas > 1 and batch_size % replicas:
        lower, upper = (batch_size // replicas) * replicas, (batch_size // replicas + 1) * replicas
        over = (
            f"{replicas} devices"
            if processes == 1
            else f"{replicas} devices ({replicas // processes} in each of {processes} processes)"
        )
        hint = f"{lower} or {upper}" if lower else f"{upper}"
        raise BackendError(
            f"batch size {batch_size} does not split evenly over {over}: set train.batch_size to a multiple of "
            f"{replicas} (such as {hint}), or use a device count that divides {batch_size}"
        )


class CompiledModel(abc.ABC):
    """A model compiled for one engine.

    The engine implements the abstract methods: where arrays live (:meth:`put`, :meth:`read_arrays`,
    :meth:`write_arrays`), how an epoch's batches run (:meth:`train_batches`: one fused program, or one per
    step; :meth:`run_epoch` is the template around it), and
    the programs for one evaluation chunk, one prediction chunk, per-layer outputs, gradients and one
    training step. All of them compute through the shared :class:`~nnspec.semantics.recipe.TrainingRecipe`;
    what is the same for every engine (weights and training state in and out, chunked evaluation and
    prediction, ``fit``, save and load) is written here once.

    Arrays come in three groups, keyed as in the weights contract: ``params`` (trainable), ``state``
    (non-trainable: running statistics) and ``slots`` (optimiser slots, keyed ``<weight>/<slot>``).

    Divergence guard: while :attr:`guard_divergence` is true (``train.on_divergence: stop``; it may be
    changed after compiling), :meth:`train_batches` runs the recipe's guarded step inside its compiled
    programs. A step whose loss is not finite, and every later step of that epoch, changes nothing; the
    epoch then reports it in :attr:`diverged_step` and :attr:`diverged_loss`.

    Data parallelism: :attr:`replicas` devices each take an equal, consecutive share of every batch
    (:meth:`check_batch_size`, called by :meth:`run_epoch`); the arrays read and written
    here are host copies of the replicated weights, the same whatever the device count, so training state
    from a run on N devices continues on M.
    """

    #: examples per evaluation / prediction chunk (bounds memory; results do not depend on it)
    chunk_size: ClassVar[int] = 1024

    def __init__(self, graph: Graph, backend: Backend, device: str, dtype: str):
        self.graph = graph
        self.backend = backend
        self.device = device
        self.dtype = dtype
        from ..semantics.precision import policy_for

        #: the ``train.precision`` policy this model computes under
        self.precision = policy_for(graph, dtype)
        #: devices each batch is split over (every process's local devices together; 1: no data parallelism)
        self.replicas: int = backend.resolve_replicas(graph, device)
        #: processes taking part in training (:mod:`nnspec.runtime.distributed`)
        self.processes: int = max(1, int(backend.process_count()))
        self.step = 0  # optimiser steps taken so far: drives dropout masks and schedules
        self.compile_seconds: float = 0.0
        self.history: "pd.DataFrame | None" = None
        #: run the guarded step in training epochs (``train.on_divergence: stop``); may be changed later
        self.guard_divergence: bool = graph.train.on_divergence == "stop"
        #: set by a guarded :meth:`run_epoch` to the optimiser step (from 0 over the model's life) of the
        #: epoch's first step whose loss was not finite; None when every step's was
        self.diverged_step: int | None = None
        #: the loss of that step (NaN or infinite)
        self.diverged_loss: float = float("nan")

    # ---- engine-specific ----------------------------------------------------------------------
    @abc.abstractmethod
    def put(self, array: np.ndarray) -> Any:
        """Copy a host array to the device once (data sets stay resident there)."""

    @abc.abstractmethod
    def read_arrays(self, group: str) -> dict[str, np.ndarray]:
        """Host copies of one group of arrays: ``params``, ``state`` or ``slots``."""

    @abc.abstractmethod
    def write_arrays(self, group: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Replace one group of arrays (same keys and shapes as :meth:`read_arrays` gives)."""

    @abc.abstractmethod
    def train_batches(self, x: Any, y: Any, batches: np.ndarray) -> Sequence[float]:
        """Train over the rows of ``batches`` (``(steps, batch_size)`` int32 indices into device data ``x``, ``y``),
        the first from optimiser step :attr:`step`, in the engine's own loop (fused where it can be).

        Returns the host sums over the steps, read back once: ``(loss_sum, correct_sum)``, and under the
        divergence guard ``(loss_sum, correct_sum, kept_steps, first_nonfinite_loss)`` (see :meth:`_end_epoch`).
        Leaves :attr:`step` to :meth:`run_epoch`.
        """

    @abc.abstractmethod
    def eval_chunk(self, x: Any, y: Any, start: int, size: int) -> tuple[Any, Any]:
        """Summed loss and correct count (device values) of examples ``start:start+size`` of device arrays."""

    @abc.abstractmethod
    def predict_chunk(self, x: np.ndarray) -> np.ndarray:
        """Final outputs for one chunk of host examples (at most :attr:`chunk_size`)."""

    @abc.abstractmethod
    def layer_outputs(self, x: np.ndarray, *, training: bool = False, step: int = 0) -> list[np.ndarray]:
        """Forward activations of every node for host batch ``x`` (dropout on when ``training``)."""

    @abc.abstractmethod
    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray, *, step: int = 0) -> tuple[float, dict[str, np.ndarray]]:
        """Training loss of one batch (dropout on, masks of ``step``) and its gradient per trainable weight."""

    @abc.abstractmethod
    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimiser step on the given host batch; returns its loss and advances :attr:`step`."""

    def run_epoch(self, x: Any, y: Any, order: np.ndarray, batch_size: int) -> tuple[float, float]:
        """Train over ``len(order) // batch_size`` batches taken from ``order`` (device data from :meth:`put`).

        The one epoch template of every engine: a ``batch_size`` larger than the data is clipped to it and
        checked against the devices (:meth:`check_batch_size`); the epoch's full batches are the rows of
        ``order[: steps * batch_size].reshape(steps, batch_size)`` (int32), which the engine trains over
        (:meth:`train_batches`). Returns the mean training loss and accuracy of the epoch's batches (dropout
        on) and advances :attr:`step` by the number of batches; NaN, NaN when ``order`` holds no full batch.
        Under the divergence guard, a step with a non-finite loss ends the epoch's effect there.
        """
        self._start_epoch()
        batch_size = max(1, min(int(batch_size), len(order)))
        self.check_batch_size(batch_size)
        steps = len(order) // batch_size
        if steps == 0:
            return float("nan"), float("nan")
        batches = np.asarray(order[: steps * batch_size], dtype=np.int32).reshape(steps, batch_size)
        return self._end_epoch(steps, batch_size, *self.train_batches(x, y, batches))

    def check_batch_size(self, batch_size: int) -> None:
        """Raise :class:`BackendError` unless ``batch_size`` splits evenly over :attr:`replicas` devices."""
        check_batch_split(int(batch_size), self.replicas, self.processes)

    def _start_epoch(self) -> None:
        """Clear the divergence record (:meth:`run_epoch` does it first)."""
        self.diverged_step = None
        self.diverged_loss = float("nan")

    def _end_epoch(
        self,
        steps: int,
        batch_size: int,
        loss_sum: float,
        correct_sum: float,
        kept: float | None = None,
        last_loss: float = float("nan"),
    ) -> tuple[float, float]:
        """Close an epoch of ``steps`` batches, ``kept`` of them kept (all when None), with host sums over the kept.

        Advances :attr:`step` by the steps kept; when fewer than ``steps`` were kept, records the first
        one that was not (:attr:`diverged_step`) and its loss ``last_loss`` (:attr:`diverged_loss`).
        Returns the mean loss and accuracy over the kept steps (NaN, NaN when none was).
        """
        kept_steps = steps if kept is None else int(round(kept))
        if kept_steps < steps:
            self.diverged_step = self.step + kept_steps
            self.diverged_loss = float(last_loss)
        self.step += kept_steps
        if kept_steps == 0:
            return float("nan"), float("nan")
        return float(loss_sum) / kept_steps, float(correct_sum) / (kept_steps * batch_size)

    def execution_notes(self) -> dict[str, str]:
        """How this compiled model runs (for ``env.json``): what its backend says, and the data-parallel split."""
        notes = dict(self.backend.execution_notes())
        if self.replicas > 1:
            where = f" in {self.processes} processes" if self.processes > 1 else ""
            notes["data_parallel"] = f"each batch split over {self.replicas} {self.device.upper()} devices{where}"
        return notes

    def host_array(self, array: np.ndarray) -> np.ndarray:
        """``array`` as a device copy should hold it: floating arrays in the model's dtype, integer arrays
        (labels) as int32, anything else unchanged."""
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.floating):
            return array.astype(self.dtype, copy=False)
        if np.issubdtype(array.dtype, np.integer):
            return array.astype(np.int32, copy=False)
        return array

    def to_host(self, value: Any) -> float:
        """A device scalar as a Python float (engines with lazy arrays may override)."""
        return float(np.asarray(value))

    # ---- weights and training state ---------------------------------------------------------------
    def get_weights(self) -> dict[str, np.ndarray]:
        """Trainable weights and non-trainable state as ``{'<layer>.<name>': array}`` in the contract layouts."""
        return {**self.read_arrays("params"), **self.read_arrays("state")}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Replace weights and state (names and shapes must match the graph); optimiser slots are kept."""
        from ..semantics.weights import check_weights

        check_weights(self.graph, weights)
        state_keys = {k for k, _, _ in self.graph.state_specs()}
        self.write_arrays(
            "params", {k: np.asarray(v, dtype=self.dtype) for k, v in weights.items() if k not in state_keys}
        )
        if state_keys:
            self.write_arrays("state", {k: np.asarray(weights[k], dtype=self.dtype) for k in state_keys})

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """The optimiser's slots as host copies, keyed ``'<weight>/<slot>'``."""
        return self.read_arrays("slots")

    def set_optimizer_state(self, slots: Mapping[str, np.ndarray]) -> None:
        """Replace the optimiser's slots (same keys and shapes as :meth:`optimizer_state`)."""
        self.write_arrays("slots", {k: np.asarray(v, dtype=self.dtype) for k, v in slots.items()})

    def get_training_state(self) -> "TrainingState":
        """The whole training state: weights, state, optimiser slots, step, epochs done and history."""
        from ..semantics.training_state import TrainingState, slot_key_to_contract

        slots = {slot_key_to_contract(k): v for k, v in self.read_arrays("slots").items()}
        history = None if self.history is None else self.history.copy()
        return TrainingState(
            self.read_arrays("params"),
            self.read_arrays("state"),
            slots,
            int(self.step),
            0 if history is None else len(history),
            history,
        )

    def set_training_state(self, ts: "TrainingState") -> None:
        """Continue from ``ts`` exactly: arrays, step and history (what :meth:`get_training_state` gave)."""
        from ..semantics.training_state import slot_key_to_runtime

        self.set_weights(ts.all_weights())
        have = self.read_arrays("slots")
        slots = {slot_key_to_runtime(k): v for k, v in ts.slots.items()}
        if set(slots) != set(have):
            raise BackendError(
                f"training state's optimiser slots {sorted(slots)} do not match this model's {sorted(have)}"
            )
        self.set_optimizer_state(slots)
        self.step = int(ts.step)
        self.history = None if ts.history is None else ts.history.copy()

    # ---- shared ---------------------------------------------------------------------------------
    def evaluate_arrays(self, x: Any, y: Any) -> tuple[float, float]:
        """Mean loss and accuracy over all examples of device arrays ``x``, ``y`` (inference mode).

        One program call per chunk of :attr:`chunk_size` examples, sums added on the device, read back once.
        """
        from ..semantics.recipe import chunks

        n = int(x.shape[0])
        if n == 0:
            return float("nan"), float("nan")
        loss_sum = correct = None
        for start, size in chunks(n, self.chunk_size):
            part_loss, part_correct = self.eval_chunk(x, y, start, size)
            loss_sum = part_loss if loss_sum is None else loss_sum + part_loss
            correct = part_correct if correct is None else correct + part_correct
        return self.to_host(loss_sum) / n, self.to_host(correct) / n

    def predict_arrays(self, x: np.ndarray) -> np.ndarray:
        """The model's final outputs for host array ``x`` (probabilities when it ends in softmax), by chunks."""
        from ..semantics.recipe import chunks

        x = np.asarray(x, dtype=self.dtype)
        parts = [
            np.asarray(self.predict_chunk(x[start : start + size])) for start, size in chunks(len(x), self.chunk_size)
        ]
        if not parts:
            return np.zeros((0, *self.graph.output_shape), dtype=self.dtype)
        return np.concatenate(parts)

    def fit(
        self, dataset: "Dataset | None" = None, *, epochs: int | None = None, progress: Any = None
    ) -> "pd.DataFrame":
        """Train for ``epochs`` (default ``train.epochs``); returns the per-epoch metrics DataFrame.

        The loop is :func:`nnspec.runtime.loop.fit`, run machinery above the engines, reached through
        :mod:`nnspec.fit_driver` (the package facade installs it).
        """
        from .. import fit_driver

        return fit_driver.fit(self, dataset, epochs=epochs, progress=progress)

    def evaluate(self, x: np.ndarray | None = None, y: np.ndarray | None = None) -> dict[str, float]:
        """``{'loss', 'accuracy'}`` on ``(x, y)``, or on the spec's test split when not given."""
        if x is None or y is None:
            from ..data import load_dataset

            ds = load_dataset(self.graph)
            x, y = ds.x_test, ds.y_test
        loss, acc = self.evaluate_arrays(
            self.put(np.asarray(x, dtype=self.dtype)), self.put(np.asarray(y, dtype=np.int32))
        )
        return {"loss": float(loss), "accuracy": float(acc)}

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Final outputs for ``x`` (a batch of examples in the spec's input shape)."""
        x = np.asarray(x, dtype=self.dtype)
        if x.shape[1:] != tuple(self.graph.input_shape):
            from ..errors import DataError

            raise DataError(
                f"predict: input has per-example shape {x.shape[1:]}, the spec expects {tuple(self.graph.input_shape)}"
            )
        return self.predict_arrays(x)

    def save(self, path: str) -> None:
        """Write the weights and state to a safetensors file."""
        from ..semantics.weights import save_weights

        save_weights(path, self.get_weights(), self.graph)

    def load(self, path: str) -> None:
        """Read weights and state from a safetensors file; names and shapes must match the spec."""
        from ..semantics.weights import load_weights

        self.set_weights(load_weights(path, self.graph))
