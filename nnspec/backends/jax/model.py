"""A model compiled for JAX: the training epoch, evaluation, prediction and the comparison hooks.

Training state (weights and optimiser slots) lives on the device; the data set is put there once. An
epoch runs in one of two modes, both compiled once per model and data shape (ahead of time, so the
compile time is measured apart from the step time, in :attr:`compile_seconds`):

* ``scan``: the whole epoch is one XLA program, a ``lax.scan`` over the epoch's batches, each gathered by
  index from the resident data set; the step counter is a traced scalar, so dropout masks and schedules
  are computed on the device.
* ``step``: one compiled program per optimiser step, dispatched asynchronously from a Python loop; the
  batch index, the step and the metric sums are carried on the device, so the loop never waits for it.

Both read metrics back once per epoch. Under the divergence guard (:attr:`guard_divergence`) each mode
has a guarded twin (``epoch_scan_guarded``, ``epoch_step_guarded``) that runs the recipe's guarded step
and carries its :class:`~nnspec.semantics.recipe.Guard` with the sums, read back with them. The scan keeps
the update under ``lax.cond`` (``lazy``), the step program selects each array with ``where`` (the faster of
the two for each, docs/benchmarks.md, "Measurements behind design choices"). On a GPU the scan selects with
``where`` too: XLA's GPU conditional reads its predicate back to the host at every step. The step itself is
the shared recipe (:class:`nnspec.semantics.recipe.TrainingRecipe`); JAX supplies its lowerings,
``jax.value_and_grad``, ``jit`` and device placement. The rule (:func:`fused_epoch`): on a GPU always
``scan``; on the CPU ``scan`` for models without convolution or pooling and ``step`` for the others, where
XLA's CPU backend takes a slow path for convolutions inside a loop.
:attr:`JaxModel.epoch_mode` may be set to ``'scan'`` or ``'step'`` to override it (benchmarks, tests).
Evaluation and prediction run one program per fixed-size chunk (the last chunk padded and masked).

Data parallelism (``train.devices`` > 1, :attr:`replicas`): the model's arrays live on a ``Mesh`` of the
devices (one axis, ``batch``; in a multi-process run every process's devices, each process's devices
consecutive) as ``NamedSharding`` arrays: weights, optimiser slots, state and the data set replicated,
each step's batch split along the mesh with ``lax.with_sharding_constraint``, so device ``d`` gathers and
computes examples ``d*b/N .. (d+1)*b/N`` of every batch from its own copy of the data set. The programs
are the one-device programs (the scan stays fused): GSPMD partitions them and inserts the all-reduces of
the loss, of the gradients and of batch-norm statistics (means over the logical, global batch), and the
dropout masks, indexed by position in the logical batch, are the one-device masks. Only the order of those
sums differs from one device. Evaluation and prediction run replicated (every device the whole chunk).

float64 models compute under ``jax.enable_x64(True)`` and float32 models under ``jax.enable_x64(False)``,
both scoped to this model's calls, so models of either precision coexist in one process unaffected.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ...compiler.ir import Graph
from ...compiler.opset import SPATIAL_OPS
from ...semantics.precision import training_slots
from ...semantics.recipe import EngineSeam, TrainingRecipe
from ..base import CompiledModel
from .engine import mesh_devices
from .layers import LOWERINGS
from .ops import JaxOps

if TYPE_CHECKING:
    from .backend import JaxBackend

#: Examples per chunk when evaluating or predicting (the last chunk is padded and masked).
EVAL_CHUNK = 1024


def fused_epoch(graph: Graph, device: str) -> bool:
    """Whether an epoch of ``graph`` on ``device`` runs as one ``lax.scan`` program (else one program per step).

    Rule: always fuse on a GPU (there a step of a small model costs less than dispatching it); on the CPU,
    fuse only models without convolution or pooling, because XLA's CPU backend runs a convolution inside a
    ``while`` loop (what a scan becomes) through a much slower code path. The measurements are in
    docs/benchmarks.md ("Measurements behind design choices").
    """
    if device == "gpu":
        return True
    return not any(node.op in SPATIAL_OPS for node in graph.nodes)


def _signature(args: Any) -> tuple:
    import jax

    leaves, tree = jax.tree_util.tree_flatten(args)
    return (tree, tuple((tuple(a.shape), str(a.dtype)) if hasattr(a, "shape") else (a,) for a in leaves))


def _value_and_grad(fn: Callable[..., Any]) -> Callable[..., Any]:
    import jax

    return jax.value_and_grad(fn, has_aux=True)


class JaxModel(CompiledModel):
    """A :class:`~nnspec.backends.base.CompiledModel` running on JAX (XLA)."""

    chunk_size = EVAL_CHUNK

    def __init__(self, graph: Graph, backend: "JaxBackend", device: str, dtype: str, weights: Mapping[str, np.ndarray]):
        import jax

        super().__init__(graph, backend, device, dtype)
        full = self.precision.full_precision_matmul
        self.ops = JaxOps(dtype, full)
        compute = JaxOps(self.precision.compute, full) if self.precision.mixed else None
        self.recipe = TrainingRecipe(
            graph, EngineSeam(self.ops, LOWERINGS.run_graph, _value_and_grad, compute), self.precision
        )
        self.epoch_mode: str = "scan" if fused_epoch(graph, device) else "step"
        self._device = jax.devices("gpu" if device == "gpu" else "cpu")[0]
        #: where replicated arrays go: the one device, or a replicated sharding over the mesh
        self._placement: Any = self._device
        self._batch_sharding: Any = None
        self._index_sharding: Any = None  # an epoch's (steps, batch) indices: each device holds its share of each batch
        if self.replicas > 1:
            from jax.sharding import Mesh, NamedSharding, PartitionSpec

            self._mesh = Mesh(
                np.array(mesh_devices("gpu" if device == "gpu" else "cpu", self.replicas // self.processes)), ("batch",)
            )
            self._placement = NamedSharding(self._mesh, PartitionSpec())
            self._batch_sharding = NamedSharding(self._mesh, PartitionSpec("batch"))
            self._index_sharding = NamedSharding(self._mesh, PartitionSpec(None, "batch"))
        self._executables: dict[tuple, Any] = {}
        state_keys = [k for k, _, _ in graph.state_specs()]
        param_keys = [k for k, _, _ in graph.param_specs()]
        with self._scope():
            self._arrays: dict[str, dict[str, Any]] = {
                "params": self._to_device({k: weights[k] for k in param_keys}),
                "state": self._to_device({k: weights[k] for k in state_keys}),
                "slots": self._to_device(training_slots(graph, {k: weights[k] for k in param_keys}, self.precision)),
            }
        self._build()

    # ---- plumbing ---------------------------------------------------------------------------------
    def _scope(self) -> Any:
        import jax

        return jax.enable_x64(self.dtype == "float64")

    def _place(self, array: np.ndarray, sharding: Any = None) -> Any:
        """A host array on the model's device, or over its mesh (every process passes the same array):
        replicated, or as ``sharding`` says."""
        import jax

        sharding = sharding or self._placement
        if self.processes > 1:
            return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])
        return jax.device_put(array, sharding)

    def _to_device(self, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
        return {k: self._place(np.asarray(v, dtype=self.dtype)) for k, v in arrays.items()}

    def _int(self, value: int) -> Any:
        return self._place(np.asarray(value, dtype=np.int32))

    def _split(self, value: Any) -> Any:
        """``value`` (a batch, examples first) split over the mesh's devices; unchanged on one device."""
        if self._batch_sharding is None:
            return value
        from jax import lax

        return lax.with_sharding_constraint(value, self._batch_sharding)

    def _jit(self, fn: Callable[..., Any]) -> Any:
        """``jax.jit(fn)``; with several devices every output replicated (so programs chain without resharding)."""
        import jax

        if self._batch_sharding is None:
            return jax.jit(fn)
        return jax.jit(fn, out_shardings=self._placement)

    def _executable(self, name: str, *args: Any) -> Any:
        """Program ``name`` compiled ahead of time for the signature of ``args`` (once; timed in compile_seconds)."""
        key = (name, _signature(args))
        exe = self._executables.get(key)
        if exe is None:
            start = time.perf_counter()
            exe = self._jitted[name].lower(*args).compile()  # type: ignore[attr-defined]
            self.compile_seconds += time.perf_counter() - start
            self._executables[key] = exe
        return exe

    def _run(self, name: str, *args: Any) -> Any:
        """Run program ``name`` on ``args``."""
        return self._executable(name, *args)(*args)

    @property
    def _trainable(self) -> tuple[Any, Any, Any]:
        a = self._arrays
        return a["params"], a["slots"], a["state"]

    def _store(self, params: Any, slots: Any, state: Any) -> None:
        self._arrays = {"params": params, "slots": slots, "state": state}

    # ---- the programs -----------------------------------------------------------------------------
    def _build(self) -> None:
        import jax.numpy as jnp
        from jax import lax

        recipe, ops, split = self.recipe, self.ops, self._split
        lazy_guard = self.device != "gpu"  # see the module docstring

        def epoch_scan(params: Any, slots: Any, state: Any, step: Any, x: Any, y: Any, idx: Any) -> Any:
            def body(carry: Any, batch: Any) -> Any:
                params, slots, state, step, loss_sum, correct = carry
                r = recipe.train_step(params, slots, state, step, split(x[batch]), split(y[batch]))
                return (r.params, r.slots, r.state, step + 1, loss_sum + r.loss, correct + r.correct), None

            zero = ops.constant(0.0)
            (params, slots, state, _, loss_sum, correct), _ = lax.scan(
                body, (params, slots, state, step, zero, zero), idx
            )
            return params, slots, state, loss_sum, correct

        def epoch_scan_guarded(params: Any, slots: Any, state: Any, step: Any, x: Any, y: Any, idx: Any) -> Any:
            def body(carry: Any, batch: Any) -> Any:
                params, slots, state, step, loss_sum, correct, guard = carry
                r, guard = recipe.guarded_step(
                    params, slots, state, step, split(x[batch]), split(y[batch]), guard, lazy=lazy_guard
                )
                return (r.params, r.slots, r.state, step + 1, loss_sum + r.loss, correct + r.correct, guard), None

            zero = ops.constant(0.0)
            start = (params, slots, state, step, zero, zero, recipe.guard_start())
            (params, slots, state, _, loss_sum, correct, guard), _ = lax.scan(body, start, idx)
            return params, slots, state, loss_sum, correct, guard

        def epoch_step_guarded(params: Any, slots: Any, state: Any, carry: Any, x: Any, y: Any, idx: Any) -> Any:
            i, step, loss_sum, correct, guard = carry
            batch = idx[i]
            r, guard = recipe.guarded_step(
                params, slots, state, step, split(x[batch]), split(y[batch]), guard, lazy=False
            )
            return r.params, r.slots, r.state, (i + 1, step + 1, loss_sum + r.loss, correct + r.correct, guard)

        def epoch_step(params: Any, slots: Any, state: Any, carry: Any, x: Any, y: Any, idx: Any) -> Any:
            i, step, loss_sum, correct = carry
            batch = idx[i]
            r = recipe.train_step(params, slots, state, step, split(x[batch]), split(y[batch]))
            return r.params, r.slots, r.state, (i + 1, step + 1, loss_sum + r.loss, correct + r.correct)

        def eval_chunk(params: Any, state: Any, x: Any, y: Any, start: Any, size: int) -> tuple[Any, Any]:
            n = x.shape[0]
            idx = start + jnp.arange(size, dtype=jnp.int32)
            valid = idx < n
            idx = jnp.minimum(idx, n - 1)
            return recipe.eval_sums(params, state, x[idx], y[idx], valid)

        def one_step(params: Any, slots: Any, state: Any, step: Any, x: Any, y: Any) -> Any:
            r = recipe.train_step(params, slots, state, step, split(x), split(y))
            return r.params, r.slots, r.state, r.loss

        self._eval_chunk_fn = eval_chunk
        self._jitted: dict[str, Callable[..., Any]] = {
            "epoch_scan": self._jit(epoch_scan),
            "epoch_step": self._jit(epoch_step),
            "epoch_scan_guarded": self._jit(epoch_scan_guarded),
            "epoch_step_guarded": self._jit(epoch_step_guarded),
            "guard_start": self._jit(recipe.guard_start),
            "predict": self._jit(recipe.predict),
            "outputs_eval": self._jit(
                lambda params, state, x, step: recipe.outputs(params, state, x, training=False, step=step)
            ),
            "outputs_train": self._jit(
                lambda params, state, x, step: recipe.outputs(params, state, x, training=True, step=step)
            ),
            "grads": self._jit(recipe.gradients),
            "one_step": self._jit(one_step),
        }

    # ---- the contract -----------------------------------------------------------------------------
    def put(self, array: np.ndarray) -> Any:
        """Copy ``array`` to the model's device (floating arrays in the model's dtype, labels as int32)."""

        array = self.host_array(array)
        with self._scope():
            return self._place(array)

    def read_arrays(self, group: str) -> dict[str, np.ndarray]:
        """Host copies of ``params``, ``state`` or ``slots``."""
        import jax

        with self._scope():
            return {k: np.array(v) for k, v in jax.device_get(self._arrays[group]).items()}

    def write_arrays(self, group: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Replace ``params``, ``state`` or ``slots`` (same keys as now)."""
        with self._scope():
            self._arrays = {**self._arrays, group: self._to_device({k: arrays[k] for k in self._arrays[group]})}

    def train_batches(self, x: Any, y: Any, batches: np.ndarray) -> Sequence[float]:
        """The epoch's batches as one ``lax.scan`` program or one program per step; the sums (and guard) read once."""
        import jax

        steps = len(batches)
        params, slots, state = self._trainable
        guarded = self.guard_divergence
        suffix = "_guarded" if guarded else ""
        with self._scope():
            idx_dev = self._place(batches, self._index_sharding)
            if self.epoch_mode == "scan":
                out = self._run("epoch_scan" + suffix, params, slots, state, self._int(self.step), x, y, idx_dev)
                params, slots, state, sums = out[0], out[1], out[2], out[3:]
            else:
                zero = self._place(np.zeros((), dtype=self.dtype))
                carry = (self._int(0), self._int(self.step), zero, zero) + (
                    (self._run("guard_start"),) if guarded else ()
                )
                step_program = self._executable("epoch_step" + suffix, params, slots, state, carry, x, y, idx_dev)
                for _ in range(steps):
                    params, slots, state, carry = step_program(params, slots, state, carry, x, y, idx_dev)
                sums = carry[2:]
            self._store(params, slots, state)
            sums = jax.device_get(sums)
        if not guarded:
            loss_sum, correct = sums
            return float(loss_sum), float(correct)
        loss_sum, correct, guard = sums
        return float(loss_sum), float(correct), float(guard.kept), float(guard.loss)

    def eval_chunk(self, x: Any, y: Any, start: int, size: int) -> tuple[Any, Any]:
        """Summed loss and hits of ``start:start+size``, computed on a chunk of fixed size (padded, masked)."""

        fixed = min(int(x.shape[0]), self.chunk_size)
        name = f"eval_chunk_{fixed}"
        if name not in self._jitted:
            fn = self._eval_chunk_fn
            self._jitted[name] = self._jit(lambda params, state, x, y, start: fn(params, state, x, y, start, fixed))
        with self._scope():
            return self._run(name, self._arrays["params"], self._arrays["state"], x, y, self._int(start))

    def to_host(self, value: Any) -> float:
        import jax

        with self._scope():
            return float(jax.device_get(value))

    def predict_chunk(self, x: np.ndarray) -> np.ndarray:
        """Final outputs for a host chunk, padded to a power of two (few compilations)."""
        import jax

        n = x.shape[0]
        size = min(self.chunk_size, 1 << max(n - 1, 0).bit_length())
        if n < size:
            x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), dtype=x.dtype)])
        with self._scope():
            out = self._run("predict", self._arrays["params"], self._arrays["state"], self._place(x))
            return np.asarray(jax.device_get(out))[:n]

    def layer_outputs(self, x: np.ndarray, *, training: bool = False, step: int = 0) -> list[np.ndarray]:
        """Every node's output for host batch ``x`` (dropout masks of ``step`` when ``training``)."""
        import jax

        with self._scope():
            name = "outputs_train" if training else "outputs_eval"
            outs = self._run(
                name,
                self._arrays["params"],
                self._arrays["state"],
                self.put(np.asarray(x, dtype=self.dtype)),
                self._int(step),
            )
            return [np.array(o) for o in jax.device_get(outs)]

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray, *, step: int = 0) -> tuple[float, dict[str, np.ndarray]]:
        """Training loss of one host batch (dropout masks of ``step``) and its gradient per weight."""
        import jax

        with self._scope():
            loss, grads = self._run(
                "grads",
                self._arrays["params"],
                self._arrays["state"],
                self.put(np.asarray(x, dtype=self.dtype)),
                self.put(np.asarray(y)),
                self._int(step),
            )
            loss, grads = jax.device_get((loss, grads))
        return float(loss), {k: np.array(v) for k, v in grads.items()}

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimiser step on a host batch at step :attr:`step`; returns the batch's loss."""
        import jax

        params, slots, state = self._trainable
        with self._scope():
            params, slots, state, loss = self._run(
                "one_step",
                params,
                slots,
                state,
                self._int(self.step),
                self.put(np.asarray(x, dtype=self.dtype)),
                self.put(np.asarray(y)),
            )
            self._store(params, slots, state)
            loss = jax.device_get(loss)
        self.step += 1
        return float(loss)
