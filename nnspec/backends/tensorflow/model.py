"""The compiled TensorFlow model: ``tf.Variable`` arrays, ``tf.function`` programs, data resident on the device.

Weights, non-trainable state (batch-norm moving statistics) and optimiser slots are ``tf.Variable`` in
the contract layouts (dense ``[in, out]``, conv ``[kh, kw, in, out]``, NHWC data). Every program reads
them into dicts, computes through the shared :class:`~nnspec.semantics.recipe.TrainingRecipe` (TensorFlow
supplies its lowerings, a ``GradientTape`` as ``value_and_grad``, and ``tf.function``) and assigns the
results back in place. Training, evaluation and prediction run as ``tf.function`` graphs with fixed input
signatures (the example axis left open), so each is traced once per model (training once per batch
size), never per epoch or per batch; :attr:`TensorFlowModel.trace_counts` counts the traces.

How an epoch runs (:class:`ExecutionPlan`) is chosen by measurement: ``fused`` runs the whole epoch as one
``tf.function`` (a ``tf.while_loop`` over the batches, gathered on the device by index from the epoch's
permutation, the variables read and assigned in each iteration); otherwise one ``tf.function`` call per
batch, the Python loop feeding only the batch number. ``jit`` compiles the training program with XLA.
The rule (:func:`default_plan`):

* CPU, a graph with a convolution or pooling layer: one fused epoch, no XLA (XLA's CPU convolution inside a
  loop is far slower);
* CPU, dense-only graphs: one fused epoch with XLA;
* GPU: one fused epoch with XLA.

The measurements behind the rule are in docs/benchmarks.md ("Measurements behind design choices").
:meth:`TensorFlowModel.set_plan` switches plans, for benchmarks.

Under the divergence guard (:attr:`guard_divergence`, keyed into the traced programs) each step runs the
recipe's guarded step and assigns its selected values; the fused epoch carries the
:class:`~nnspec.semantics.recipe.Guard` as loop variables and leaves the loop after the first step that is not
kept, the per-batch plan passes it from call to call; it is read back once, with the sums. The fused XLA
epoch selects each array with ``where``; every other plan runs the update under ``tf.cond`` (the faster for
each plan, docs/benchmarks.md).

Data parallelism (``train.devices`` > 1, :attr:`replicas`): a ``tf.distribute.MirroredStrategy`` over
the first N local devices of the model's kind (GPUs, or logical CPU devices configured before TensorFlow
starts), or a ``MultiWorkerMirroredStrategy`` in a multi-process run (:mod:`nnspec.runtime.distributed`).
The variables are created under the strategy's scope (mirrored; an assignment in a replica takes the first
replica's value, and every replica computes the same one); the training programs are those above with
each step run by ``strategy.run``: replica ``r`` gathers examples ``r*b/N .. (r+1)*b/N`` of the batch, and
in its step (:class:`~nnspec.backends.tensorflow.ops.CrossReplicaOps`, :func:`replica_value_and_grad`,
:func:`replica_dropout`) batch-norm statistics are means over the global batch (an ``all_reduce`` of sums),
the loss and the gradients are averaged over the replicas with the replica context's ``all_reduce``
before the shared optimiser update, and dropout masks are the one-device masks' rows of the replica's
examples. No XLA under a strategy (its collectives are not compiled); evaluation and prediction run on
the first device.

Evaluation runs one ``tf.function`` call per chunk of :data:`EVAL_BATCH` examples (the batch axis is
dynamic, so the last, shorter chunk needs neither padding nor a new trace), without XLA; the sums are
added on the device and read back once. Prediction runs one call per chunk as well. The comparison hooks
``layer_outputs`` and ``loss_and_gradients`` run eagerly.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ...compiler.ir import Graph, Node
from ...compiler.opset import SPATIAL_OPS
from ...semantics.dropout import scale
from ...semantics.lowering import Lowering, LoweringContext, OpRegistry
from ...semantics.precision import training_slots
from ...semantics.recipe import EngineSeam, Guard, StepResult, TrainingRecipe
from ..base import Backend, CompiledModel
from .engine import load_tensorflow, replica_strategy, tensor_float_32
from .layers import LOWERINGS, compiled_keep_mask
from .ops import CrossReplicaOps, TensorFlowOps, replica_context

tf = load_tensorflow()

#: Examples per chunk when evaluating or predicting.
EVAL_BATCH = 1024


@dataclass(frozen=True)
class ExecutionPlan:
    """How training runs: one fused ``tf.function`` per epoch or one call per batch; XLA or not."""

    fused: bool = True
    jit: bool = False


def default_plan(graph: Graph, device: str) -> ExecutionPlan:
    """The measured choice for ``graph`` on ``device`` (see the module docstring)."""
    if device == "gpu":
        return ExecutionPlan(fused=True, jit=True)
    if any(node.op in SPATIAL_OPS for node in graph.nodes):
        return ExecutionPlan(fused=True, jit=False)
    return ExecutionPlan(fused=True, jit=True)


def value_and_grad(fn: Callable[..., Any]) -> Callable[..., Any]:
    """TensorFlow's ``value_and_grad``: ``fn(params, *args) -> (loss, aux)`` becomes ``g -> ((loss, aux), grads)``.

    A ``GradientTape`` watches the parameter tensors (values read from the variables), so the gradient is
    taken with respect to exactly what the forward pass used.
    """

    def run(params: Mapping[str, Any], *args: Any) -> tuple[tuple[Any, Any], dict[str, Any]]:
        keys = list(params)
        values = [params[k] for k in keys]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(values)
            loss, aux = fn(params, *args)
        grads = tape.gradient(loss, values, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return (loss, aux), dict(zip(keys, grads))

    return run


def replica_value_and_grad(fn: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`value_and_grad`, then, inside a replica context, the loss and the gradients averaged over the
    replicas (the replica context's ``all_reduce``): every replica holds the gradient of the global batch."""
    local = value_and_grad(fn)

    def run(params: Mapping[str, Any], *args: Any) -> tuple[tuple[Any, Any], dict[str, Any]]:
        (loss, aux), grads = local(params, *args)
        ctx = replica_context()
        if ctx is None:
            return (loss, aux), grads
        keys = list(grads)
        reduced = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, [loss, *(grads[k] for k in keys)])
        return (reduced[0], aux), dict(zip(keys, reduced[1:]))

    return run


def replica_dropout(ctx: LoweringContext, node: Node, inputs: list) -> Any:
    """Dropout in a replica's share of the batch: the rows of the global batch's mask that are its examples
    (so the masks are the one-device run's); TensorFlow's dropout lowering outside a replica context."""
    rctx = replica_context()
    rate = float(node.attrs["rate"])
    if rctx is None or not ctx.training or rate <= 0.0:
        return LOWERINGS["dropout"](ctx, node, inputs)
    x = inputs[0]
    local = int(ctx.batch if ctx.batch is not None else x.shape[0])
    keep = compiled_keep_mask(ctx.seed, node.index, (local * rctx.num_replicas_in_sync, *node.input_shape), rate)(
        tf.cast(ctx.step, tf.int64)
    )
    start = tf.cast(rctx.replica_id_in_sync_group, tf.int32) * local
    keep = tf.slice(keep, [start] + [0] * len(node.input_shape), [local, *node.input_shape])
    return ctx.ops.where(keep, x * ctx.ops.constant(scale(rate, ctx.ops.float_dtype)), ctx.ops.constant(0.0))


def _replica_lowerings() -> OpRegistry[Lowering]:
    """TensorFlow's lowerings with :func:`replica_dropout` for a data-parallel step."""
    registry: OpRegistry[Lowering] = OpRegistry("tensorflow")
    registry.update(LOWERINGS)
    registry["dropout"] = replica_dropout
    return registry


REPLICA_LOWERINGS = _replica_lowerings()


class TensorFlowModel(CompiledModel):
    """A graph compiled to TensorFlow; see the module docstring for how it runs."""

    chunk_size = EVAL_BATCH

    def __init__(
        self,
        graph: Graph,
        backend: Backend,
        device: str,
        dtype: str,
        weights: Mapping[str, np.ndarray],
        plan: ExecutionPlan | None = None,
    ):
        super().__init__(graph, backend, device, dtype)
        #: the ``tf.distribute`` strategy of a data-parallel model (None on one device)
        self.strategy: Any = (
            replica_strategy(device, self.replicas // self.processes, self.processes) if self.replicas > 1 else None
        )
        self.ops = CrossReplicaOps(dtype) if self.strategy is not None else TensorFlowOps(dtype)
        compute = TensorFlowOps(self.precision.compute) if self.precision.mixed else None
        if self.strategy is None:
            seam = EngineSeam(self.ops, LOWERINGS.run_graph, value_and_grad, compute)
        else:
            seam = EngineSeam(self.ops, REPLICA_LOWERINGS.run_graph, replica_value_and_grad, compute)
        self.recipe = TrainingRecipe(graph, seam, self.precision)
        self.tf_dtype = tf.as_dtype(dtype)
        self.device_name = "/GPU:0" if device == "gpu" else "/CPU:0"
        self.plan = self._allowed(plan or default_plan(graph, device))
        #: How often each program was traced (Python side), keyed by program name.
        self.trace_counts: Counter[str] = Counter()
        param_keys = [k for k, _, _ in graph.param_specs()]
        state_keys = [k for k, _, _ in graph.state_specs()]
        host = {k: np.asarray(weights[k], dtype=dtype) for k in (*param_keys, *state_keys)}
        # mirrored variables: an assignment inside a replica takes the first replica's value (all compute the same)
        mirrored = {"aggregation": tf.VariableAggregation.ONLY_FIRST_REPLICA} if self.strategy is not None else {}
        with self._device_scope():
            self._params = {k: tf.Variable(host[k], name=k, **mirrored) for k in param_keys}
            self._state = {k: tf.Variable(host[k], name=k, trainable=False, **mirrored) for k in state_keys}
            slots = training_slots(graph, {k: host[k] for k in param_keys}, self.precision)
            self._slots = {
                k: tf.Variable(v, name=k.replace("/", "_"), trainable=False, **mirrored) for k, v in slots.items()
            }
        self._vars: dict[str, dict[str, Any]] = {"params": self._params, "state": self._state, "slots": self._slots}
        self._programs: dict[Any, Any] = {}
        self._x_spec = tf.TensorSpec((None, *graph.input_shape), self.tf_dtype)
        self._y_spec = tf.TensorSpec((None,), tf.int32)
        scalar_i32 = tf.TensorSpec((), tf.int32)
        self._eval_fn = tf.function(
            self._eval_program, input_signature=[self._x_spec, self._y_spec, scalar_i32, scalar_i32], autograph=False
        )
        self._predict_fn = tf.function(self._predict_program, input_signature=[self._x_spec], autograph=False)

    # ---- configuration ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _device_scope(self) -> Iterator[None]:
        """The model's device (or its strategy's scope), with TensorFloat-32 on exactly when its precision
        policy allows it (:func:`~nnspec.backends.tensorflow.engine.tensor_float_32`)."""
        with tensor_float_32(self.precision.tf32):
            with self.strategy.scope() if self.strategy is not None else tf.device(self.device_name):
                yield

    def _allowed(self, plan: ExecutionPlan) -> ExecutionPlan:
        """``plan`` as this model can run it: without XLA under a ``tf.distribute`` strategy."""
        return ExecutionPlan(fused=plan.fused, jit=False) if self.strategy is not None else plan

    def set_plan(self, plan: ExecutionPlan) -> None:
        """Switch how training runs (for benchmarks); programs are traced again on next use."""
        self.plan = self._allowed(plan)
        self._programs.clear()

    # ---- variables --------------------------------------------------------------------------------
    def _read(self, group: str) -> dict[str, Any]:
        """Current values of one group of variables, as tensors."""
        return {k: v.read_value() for k, v in self._vars[group].items()}

    def _assign(self, group: str, values: Mapping[str, Any]) -> list[Any]:
        """Assign new values to one group of variables; returns the assignments."""
        return [v.assign(values[k]) for k, v in self._vars[group].items()]

    # ---- traced bodies ------------------------------------------------------------------------------
    def _train_batch(self, xb: Any, yb: Any, step: Any) -> tuple[Any, Any]:
        """One optimiser step on a device batch; returns (loss, correct count) ordered after the updates."""
        r = self.recipe.train_step(self._read("params"), self._read("slots"), self._read("state"), step, xb, yb)
        return self._commit(r)

    def _guarded_train_batch(self, xb: Any, yb: Any, step: Any, guard: Guard) -> tuple[Any, Any, Guard]:
        """The recipe's guarded step on a device batch: (loss, correct count, new guard) ordered after the updates."""
        params, slots, state = self._read("params"), self._read("slots"), self._read("state")
        lazy = not (self.plan.fused and self.plan.jit)  # measured: see the module docstring
        r, guard = self.recipe.guarded_step(params, slots, state, step, xb, yb, guard, lazy=lazy)
        loss, correct = self._commit(r)
        with tf.control_dependencies([loss, correct]):
            return loss, correct, Guard(*(tf.identity(v) for v in guard))

    def _batch(self, x: Any, y: Any, idx: Any, step: Any) -> tuple[Any, Any]:
        """One optimiser step on examples ``idx`` of the device data: (loss, correct count), split over the
        replicas under a strategy."""
        if self.strategy is None:
            return self._train_batch(tf.gather(x, idx), tf.gather(y, idx), step)
        return self._first(self.strategy.run(self._replica_batch, args=(x, y, idx, step)))

    def _guarded_batch(self, x: Any, y: Any, idx: Any, step: Any, guard: Guard) -> tuple[Any, Any, Guard]:
        """:meth:`_batch` under the divergence guard: (loss, correct count, new guard)."""
        if self.strategy is None:
            return self._guarded_train_batch(tf.gather(x, idx), tf.gather(y, idx), step, guard)
        loss, correct, after = self._first(self.strategy.run(self._replica_batch, args=(x, y, idx, step, tuple(guard))))
        return loss, correct, Guard(*after)

    def _replica_batch(self, x: Any, y: Any, idx: Any, step: Any, guard: Any = None) -> Any:
        """One replica's part of a step: its consecutive share of ``idx``; the correct count summed over replicas."""
        ctx = tf.distribute.get_replica_context()
        local = int(idx.shape[0]) // ctx.num_replicas_in_sync
        own = tf.slice(idx, [tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local], [local])
        xb, yb = tf.gather(x, own), tf.gather(y, own)
        if guard is None:
            loss, correct = self._train_batch(xb, yb, step)
            return loss, ctx.all_reduce(tf.distribute.ReduceOp.SUM, correct)
        loss, correct, after = self._guarded_train_batch(xb, yb, step, Guard(*guard))
        return loss, ctx.all_reduce(tf.distribute.ReduceOp.SUM, correct), tuple(after)

    def _first(self, values: Any) -> Any:
        """The first replica's values of a ``strategy.run`` result (every replica's are the same)."""
        return tf.nest.map_structure(lambda v: self.strategy.experimental_local_results(v)[0], values)

    def _commit(self, r: StepResult) -> tuple[Any, Any]:
        """Assign a step's new params, slots and state; its loss and correct count, ordered after the assignments."""
        updates = self._assign("params", r.params) + self._assign("slots", r.slots) + self._assign("state", r.state)
        with tf.control_dependencies(updates):
            return tf.identity(r.loss), tf.identity(r.correct)

    def _epoch_program(self, x: Any, y: Any, batches: Any, step0: Any) -> Any:
        """A whole epoch: a while loop over the rows of ``batches`` (indices into x, y)."""
        self.trace_counts["epoch"] += 1
        steps = tf.shape(batches)[0]
        zero = tf.zeros((), self.tf_dtype)

        def body(i: Any, loss_sum: Any, correct_sum: Any) -> tuple[Any, Any, Any]:
            loss, correct = self._batch(x, y, tf.gather(batches, i), step0 + tf.cast(i, tf.int64))
            return i + 1, loss_sum + loss, correct_sum + correct

        _, loss_sum, correct_sum = tf.while_loop(
            lambda i, *_: i < steps, body, (tf.constant(0, tf.int32), zero, zero), parallel_iterations=1
        )
        return tf.stack([loss_sum, correct_sum])

    def _guarded_epoch_program(self, x: Any, y: Any, batches: Any, step0: Any) -> Any:
        """A whole guarded epoch, left after the first step not kept: ``[loss_sum, correct_sum, kept, loss]``."""
        self.trace_counts["epoch"] += 1
        steps = tf.shape(batches)[0]
        zero = tf.zeros((), self.tf_dtype)

        def body(i: Any, loss_sum: Any, correct_sum: Any, *guard: Any) -> tuple[Any, ...]:
            loss, correct, after = self._guarded_batch(
                x, y, tf.gather(batches, i), step0 + tf.cast(i, tf.int64), Guard(*guard)
            )
            return (i + 1, loss_sum + loss, correct_sum + correct, *after)

        start = (tf.constant(0, tf.int32), zero, zero, *self.recipe.guard_start())
        _, loss_sum, correct_sum, _, kept, loss = tf.while_loop(
            lambda i, loss_sum, correct_sum, ok, *_: tf.logical_and(i < steps, ok), body, start, parallel_iterations=1
        )
        return tf.stack([loss_sum, correct_sum, kept, loss])

    def _step_program(self, x: Any, y: Any, batches: Any, i: Any, step: Any) -> Any:
        """One batch of an epoch: row ``i`` of ``batches``."""
        self.trace_counts["step"] += 1
        loss, correct = self._batch(x, y, tf.gather(batches, i), step)
        return tf.stack([loss, correct])

    def _guarded_step_program(
        self, x: Any, y: Any, batches: Any, i: Any, step: Any, ok: Any, kept: Any, last: Any
    ) -> Any:
        """One guarded batch of an epoch: ``([loss, correct], ok, kept, loss)`` with the guard passed on."""
        self.trace_counts["step"] += 1
        loss, correct, after = self._guarded_batch(x, y, tf.gather(batches, i), step, Guard(ok, kept, last))
        return (tf.stack([loss, correct]), *after)

    def _batch_program(self, xb: Any, yb: Any, step: Any) -> Any:
        """One optimiser step on a given batch (the comparison hook ``train_step``)."""
        self.trace_counts["train_step"] += 1
        loss, _ = self._train_batch(xb, yb, step)
        return loss

    def _eval_program(self, x: Any, y: Any, start: Any, size: Any) -> tuple[Any, Any]:
        """Summed loss and correct count of examples ``start:start+size`` (any length; inference mode)."""
        self.trace_counts["evaluate"] += 1
        end = start + size
        return self.recipe.eval_sums(self._read("params"), self._read("state"), x[start:end], y[start:end])

    def _predict_program(self, x: Any) -> Any:
        self.trace_counts["predict"] += 1
        return self.recipe.predict(self._read("params"), self._read("state"), x)

    # ---- programs, traced once per key ---------------------------------------------------------
    def _program(self, key: Any, build: Callable[[], Any]) -> Any:
        program = self._programs.get(key)
        if program is None:
            started = time.perf_counter()
            program = build()
            self.compile_seconds += time.perf_counter() - started
            self._programs[key] = program
        return program

    def _training_program(self, batch_size: int, guarded: bool) -> Any:
        fused, jit = self.plan.fused, self.plan.jit
        batches_spec = tf.TensorSpec((None, batch_size), tf.int32)
        scalar_i32, scalar_i64 = tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int64)
        body: Callable[..., Any]
        if fused:
            signature = [self._x_spec, self._y_spec, batches_spec, scalar_i64]
            body = self._guarded_epoch_program if guarded else self._epoch_program
        else:
            signature = [self._x_spec, self._y_spec, batches_spec, scalar_i32, scalar_i64]
            body = self._step_program
            if guarded:
                scalar = tf.TensorSpec((), self.tf_dtype)
                signature += [tf.TensorSpec((), tf.bool), scalar, scalar]
                body = self._guarded_step_program

        def build() -> Any:
            fn = tf.function(body, input_signature=signature, jit_compile=jit, autograph=False)
            fn.get_concrete_function()
            return fn

        return self._program(("fused" if fused else "step", jit, batch_size, guarded), build)

    # ---- CompiledModel ---------------------------------------------------------------------------
    def put(self, array: np.ndarray) -> Any:
        """Copy a host array to the device once: floats in the model's dtype, integers as int32."""
        array = np.asarray(array)
        array = array.astype(self.dtype if array.dtype.kind == "f" else np.int32, copy=False)
        with self._device_scope():
            return tf.identity(tf.convert_to_tensor(array))

    def read_arrays(self, group: str) -> dict[str, np.ndarray]:
        """Host copies of ``params``, ``state`` or ``slots``."""
        return {k: v.numpy() for k, v in self._vars[group].items()}

    def write_arrays(self, group: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Assign ``params``, ``state`` or ``slots`` in place (same keys and shapes as now)."""
        for k, var in self._vars[group].items():
            var.assign(np.asarray(arrays[k], dtype=self.dtype))

    def train_batches(self, x: Any, y: Any, batches: np.ndarray) -> Sequence[float]:
        """The epoch's batches in one ``tf.function`` (fused plan) or one call per step; sums (and guard) read once."""
        steps, batch_size = batches.shape
        guarded = self.guard_divergence
        program = self._training_program(batch_size, guarded)
        with self._device_scope():
            rows = tf.identity(tf.convert_to_tensor(batches))
            step0 = self.step
            if self.plan.fused:
                totals = program(x, y, rows, tf.constant(step0, tf.int64))
            elif guarded:
                guard, parts = tuple(self.recipe.guard_start()), []
                for i in range(steps):
                    part, *guard = program(
                        x, y, rows, tf.constant(i, tf.int32), tf.constant(step0 + i, tf.int64), *guard
                    )
                    parts.append(part)
                totals = tf.concat([tf.add_n(parts), tf.stack(guard[1:])], axis=0)
            else:
                parts = [
                    program(x, y, rows, tf.constant(i, tf.int32), tf.constant(step0 + i, tf.int64))
                    for i in range(steps)
                ]
                totals = tf.add_n(parts)
            return [float(v) for v in totals.numpy()]

    def eval_chunk(self, x: Any, y: Any, start: int, size: int) -> tuple[Any, Any]:
        """Summed loss and correct count (device scalars) of examples ``start:start+size`` of device arrays."""
        with self._device_scope():
            return self._eval_fn(x, y, tf.constant(start, tf.int32), tf.constant(size, tf.int32))

    def predict_chunk(self, x: np.ndarray) -> np.ndarray:
        """Final outputs for one chunk of host examples."""
        with self._device_scope():
            return self._predict_fn(tf.convert_to_tensor(np.asarray(x, dtype=self.dtype))).numpy()

    def layer_outputs(self, x: np.ndarray, *, training: bool = False, step: int = 0) -> list[np.ndarray]:
        """Every node's output for host batch ``x`` (eagerly; dropout masks of ``step`` when ``training``)."""
        with self._device_scope():
            xt = tf.convert_to_tensor(np.asarray(x, dtype=self.dtype))
            outputs = self.recipe.outputs(
                self._read("params"), self._read("state"), xt, training=training, step=tf.constant(step, tf.int64)
            )
            return [o.numpy() for o in outputs]

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray, *, step: int = 0) -> tuple[float, dict[str, np.ndarray]]:
        """Training loss of one host batch (dropout masks of ``step``) and its gradient per weight (eagerly)."""
        with self._device_scope():
            xt = tf.convert_to_tensor(np.asarray(x, dtype=self.dtype))
            yt = tf.convert_to_tensor(np.asarray(y, dtype=np.int32))
            loss, grads = self.recipe.gradients(
                self._read("params"), self._read("state"), xt, yt, tf.constant(step, tf.int64)
            )
            return float(loss.numpy()), {k: g.numpy() for k, g in grads.items()}

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimiser step on a host batch; returns its loss and advances :attr:`step`."""
        x = np.asarray(x, dtype=self.dtype)
        signature = [
            tf.TensorSpec(x.shape, self.tf_dtype),
            tf.TensorSpec((x.shape[0],), tf.int32),
            tf.TensorSpec((), tf.int64),
        ]
        program = self._program(
            ("batch", self.plan.jit, x.shape),
            lambda: tf.function(
                self._batch_program, input_signature=signature, jit_compile=self.plan.jit, autograph=False
            ),
        )
        with self._device_scope():
            loss = program(
                tf.convert_to_tensor(x),
                tf.convert_to_tensor(np.asarray(y, dtype=np.int32)),
                tf.constant(self.step, tf.int64),
            )
            value = float(loss.numpy())
        self.step += 1
        return value
