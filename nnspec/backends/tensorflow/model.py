"""The compiled TensorFlow model: ``tf.Variable`` weights, ``tf.function`` programs, data resident on the device.

Weights and optimiser slots are ``tf.Variable`` in the contract layouts (dense ``[in, out]``, conv
``[kh, kw, in, out]``, NHWC data). Training, evaluation and prediction run as ``tf.function`` graphs with
fixed input signatures (the example axis left open), so each is traced once per model (training once per
batch size), never per epoch or per batch; :attr:`TensorFlowModel.trace_counts` counts the traces.

How an epoch runs (:class:`ExecutionPlan`) is chosen by measurement: ``fused`` runs the whole epoch as one
``tf.function`` (a ``tf.while_loop`` over the batches, gathered on the device by index from the epoch's
permutation); otherwise one ``tf.function`` call per batch, the Python loop feeding only the batch number.
``jit`` compiles the training program with XLA. The rule (:func:`default_plan`):

* CPU, a graph with a convolution or pooling layer: one fused epoch, no XLA. Measured on Keras's MNIST
  convnet at Fashion-MNIST size (60000 x 28 x 28 x 1, batch 128, 2 cores shared with another process,
  load 3-3.5), process CPU ms per step over full epochs: fused 27.3-28.0, per-step 27.8-29.0 (the
  hand-written ``tf.function`` epoch 26.5, per-step 28.3); with XLA far slower (per-step XLA 79-86 s an
  epoch, fused XLA 810-920 s: XLA's CPU convolution inside a loop).
* CPU, dense-only graphs: one fused epoch with XLA. Measured on the 784-128-10 MLP: fused XLA 0.43-0.91 s,
  fused 1.1-1.5 s, per-step XLA 1.7-2.3 s, per-step 2.2-2.5 s.
* GPU: one fused epoch with XLA, following the design notes' measurement (no GPU was available to measure
  this backend on). :meth:`TensorFlowModel.set_plan` switches plans, for benchmarks.

Evaluation runs one ``tf.function`` over all examples in chunks of :data:`EVAL_BATCH` (the last chunk
shorter), without XLA, so that every example counts exactly once. Metrics are read back once per call.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ...compiler.ir import Graph
from ...runtime.losses import correct_count, loss_from_head
from ...runtime.optimizers import apply_updates, init_state
from ...runtime.schedules import learning_rate
from ...runtime.weights import check_weights
from ..base import Backend, CompiledModel
from . import layers
from .backend import load_tensorflow
from .ops import TensorFlowOps

tf = load_tensorflow()

#: Examples per chunk when evaluating or predicting.
EVAL_BATCH = 1024
#: Ops whose presence makes XLA slower on a CPU (see the module docstring).
SPATIAL_OPS = frozenset({"conv2d", "max_pool2d", "avg_pool2d"})


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


class TensorFlowModel(CompiledModel):
    """A graph compiled to TensorFlow; see the module docstring for how it runs."""

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
        self.ops = TensorFlowOps(dtype)
        self.tf_dtype = tf.as_dtype(dtype)
        self.device_name = "/GPU:0" if device == "gpu" else "/CPU:0"
        self.plan = plan or default_plan(graph, device)
        #: How often each program was traced (Python side), keyed by program name.
        self.trace_counts: Counter[str] = Counter()
        self._keys = [key for key, _, _ in graph.param_specs()]
        with tf.device(self.device_name):
            self._params = {k: tf.Variable(np.asarray(weights[k], dtype=dtype), name=k) for k in self._keys}
            slots = init_state(graph.train.optimizer, {k: np.asarray(weights[k], dtype=dtype) for k in self._keys})
            self._slots = {k: tf.Variable(v, name=k.replace("/", "_")) for k, v in slots.items()}
        self._programs: dict[Any, Any] = {}
        x_spec = tf.TensorSpec((None, *graph.input_shape), self.tf_dtype)
        y_spec = tf.TensorSpec((None,), tf.int32)
        self._x_spec, self._y_spec = x_spec, y_spec
        self._evaluate_fn = tf.function(self._evaluate_program, input_signature=[x_spec, y_spec], autograph=False)
        self._predict_fn = tf.function(self._predict_program, input_signature=[x_spec], autograph=False)

    # ---- configuration ----------------------------------------------------------------------------
    def set_plan(self, plan: ExecutionPlan) -> None:
        """Switch how training runs (for benchmarks); programs are traced again on next use."""
        self.plan = plan
        self._programs.clear()

    # ---- traced bodies ------------------------------------------------------------------------------
    def _context(self, training: bool, step: Any) -> layers.Context:
        return layers.Context(self.ops, training=training, step=step, seed=int(self.graph.train.seed))

    def _train_batch(self, xb: Any, yb: Any, step: Any) -> tuple[Any, Any]:
        """One optimiser step on a device batch; returns (loss, correct count) ordered after the updates."""
        graph, ops, train = self.graph, self.ops, self.graph.train
        variables = [self._params[k] for k in self._keys]
        with tf.GradientTape() as tape:
            head = layers.head(self._context(True, step), graph, self._params, xb)
            loss = loss_from_head(ops, graph, head, yb)
        grads = dict(zip(self._keys, tape.gradient(loss, variables)))
        correct = correct_count(ops, head, yb)
        lr = learning_rate(ops, train.schedule, train.optimizer.learning_rate, step)
        params = {k: v.read_value() for k, v in self._params.items()}
        state = {k: v.read_value() for k, v in self._slots.items()}
        new_params, new_state = apply_updates(ops, train.optimizer, lr, step, params, grads, state, train.weight_decay)
        updates = [self._params[k].assign(new_params[k]) for k in self._keys]
        updates += [self._slots[k].assign(new_state[k]) for k in self._slots]
        with tf.control_dependencies(updates):
            return tf.identity(loss), tf.identity(correct)

    def _epoch_program(self, x: Any, y: Any, batches: Any, step0: Any) -> Any:
        """A whole epoch: a while loop over the rows of ``batches`` (indices into x, y)."""
        self.trace_counts["epoch"] += 1
        steps = tf.shape(batches)[0]
        zero = tf.zeros((), self.tf_dtype)

        def body(i: Any, loss_sum: Any, correct_sum: Any) -> tuple[Any, Any, Any]:
            idx = tf.gather(batches, i)
            loss, correct = self._train_batch(tf.gather(x, idx), tf.gather(y, idx), step0 + tf.cast(i, tf.int64))
            return i + 1, loss_sum + loss, correct_sum + correct

        _, loss_sum, correct_sum = tf.while_loop(
            lambda i, *_: i < steps, body, (tf.constant(0, tf.int32), zero, zero), parallel_iterations=1
        )
        return tf.stack([loss_sum, correct_sum])

    def _step_program(self, x: Any, y: Any, batches: Any, i: Any, step: Any) -> Any:
        """One batch of an epoch: row ``i`` of ``batches``."""
        self.trace_counts["step"] += 1
        idx = tf.gather(batches, i)
        loss, correct = self._train_batch(tf.gather(x, idx), tf.gather(y, idx), step)
        return tf.stack([loss, correct])

    def _batch_program(self, xb: Any, yb: Any, step: Any) -> Any:
        """One optimiser step on a given batch (the comparison hook ``train_step``)."""
        self.trace_counts["train_step"] += 1
        loss, _ = self._train_batch(xb, yb, step)
        return loss

    def _evaluate_program(self, x: Any, y: Any) -> Any:
        """Summed loss and correct count over all of x, y in chunks of EVAL_BATCH (the last one shorter)."""
        self.trace_counts["evaluate"] += 1
        n = tf.shape(x)[0]
        chunks = (n + EVAL_BATCH - 1) // EVAL_BATCH
        zero = tf.zeros((), self.tf_dtype)
        ctx = self._context(False, tf.constant(0, tf.int64))

        def body(i: Any, loss_sum: Any, correct_sum: Any) -> tuple[Any, Any, Any]:
            start = i * EVAL_BATCH
            size = tf.minimum(EVAL_BATCH, n - start)
            xb, yb = x[start : start + size], y[start : start + size]
            head = layers.head(ctx, self.graph, self._params, xb)
            loss = loss_from_head(self.ops, self.graph, head, yb) * self.ops.to_float(size)
            return i + 1, loss_sum + loss, correct_sum + correct_count(self.ops, head, yb)

        _, loss_sum, correct_sum = tf.while_loop(lambda i, *_: i < chunks, body, (tf.constant(0, tf.int32), zero, zero))
        return tf.stack([loss_sum, correct_sum])

    def _predict_program(self, x: Any) -> Any:
        self.trace_counts["predict"] += 1
        ctx = self._context(False, tf.constant(0, tf.int64))
        return layers.finish(ctx, self.graph, layers.head(ctx, self.graph, self._params, x))

    # ---- programs, traced once per key ---------------------------------------------------------
    def _program(self, key: Any, build: Callable[[], Any]) -> Any:
        program = self._programs.get(key)
        if program is None:
            started = time.perf_counter()
            program = build()
            self.compile_seconds += time.perf_counter() - started
            self._programs[key] = program
        return program

    def _training_program(self, batch_size: int) -> Any:
        fused, jit = self.plan.fused, self.plan.jit
        batches_spec = tf.TensorSpec((None, batch_size), tf.int32)
        scalar_i32, scalar_i64 = tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int64)
        if fused:
            signature = [self._x_spec, self._y_spec, batches_spec, scalar_i64]
            body = self._epoch_program
        else:
            signature = [self._x_spec, self._y_spec, batches_spec, scalar_i32, scalar_i64]
            body = self._step_program

        def build() -> Any:
            fn = tf.function(body, input_signature=signature, jit_compile=jit, autograph=False)
            fn.get_concrete_function()
            return fn

        return self._program(("fused" if fused else "step", jit, batch_size), build)

    # ---- CompiledModel ---------------------------------------------------------------------------
    def put(self, array: np.ndarray) -> Any:
        """Copy a host array to the device once: floats in the model's dtype, integers as int32."""
        array = np.asarray(array)
        array = array.astype(self.dtype if array.dtype.kind == "f" else np.int32, copy=False)
        with tf.device(self.device_name):
            return tf.identity(tf.convert_to_tensor(array))

    def run_epoch(self, x: Any, y: Any, order: np.ndarray, batch_size: int) -> tuple[float, float]:
        """Train over ``len(order) // batch_size`` batches of device data; mean loss and accuracy, read once."""
        order = np.asarray(order)
        batch_size = max(1, min(int(batch_size), len(order)))
        steps = len(order) // batch_size
        if steps == 0:
            return float("nan"), float("nan")
        program = self._training_program(batch_size)
        with tf.device(self.device_name):
            batches = tf.identity(tf.convert_to_tensor(order[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)))
            step0 = self.step
            if self.plan.fused:
                totals = program(x, y, batches, tf.constant(step0, tf.int64))
            else:
                parts = [program(x, y, batches, tf.constant(i, tf.int32), tf.constant(step0 + i, tf.int64)) for i in range(steps)]
                totals = tf.add_n(parts)
            loss_sum, correct_sum = (float(v) for v in totals.numpy())
        self.step += steps
        return loss_sum / steps, correct_sum / (steps * batch_size)

    def evaluate_arrays(self, x: Any, y: Any) -> tuple[float, float]:
        """Mean loss and accuracy over every example of device arrays ``x``, ``y``."""
        n = int(x.shape[0])
        if n == 0:
            return float("nan"), float("nan")
        with tf.device(self.device_name):
            loss_sum, correct_sum = (float(v) for v in self._evaluate_fn(x, y).numpy())
        return loss_sum / n, correct_sum / n

    def predict_arrays(self, x: np.ndarray) -> np.ndarray:
        """Final outputs for host array ``x``, computed in chunks of EVAL_BATCH."""
        x = np.asarray(x, dtype=self.dtype)
        with tf.device(self.device_name):
            chunks = [self._predict_fn(tf.convert_to_tensor(x[i : i + EVAL_BATCH])) for i in range(0, len(x), EVAL_BATCH)]
            if not chunks:
                return np.zeros((0, *self.graph.output_shape), dtype=self.dtype)
            return tf.concat(chunks, axis=0).numpy()

    def get_weights(self) -> dict[str, np.ndarray]:
        """Current weights as NumPy arrays in the contract layouts."""
        return {k: v.numpy() for k, v in self._params.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Replace the weights; names and shapes must match the graph (optimiser slots are kept)."""
        check_weights(self.graph, weights)
        for k, var in self._params.items():
            var.assign(np.asarray(weights[k], dtype=self.dtype))

    def layer_outputs(self, x: np.ndarray, *, training: bool = False, step: int = 0) -> list[np.ndarray]:
        """Every node's output for host batch ``x`` (eagerly; dropout masks of ``step`` when ``training``)."""
        with tf.device(self.device_name):
            ctx = self._context(training, tf.constant(step, tf.int64))
            xt = tf.convert_to_tensor(np.asarray(x, dtype=self.dtype))
            outputs = layers.run_nodes(ctx, self.graph.nodes, self._params, xt, keep_all=True)
            return [o.numpy() for o in outputs]

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray, *, step: int = 0) -> tuple[float, dict[str, np.ndarray]]:
        """Training loss of one host batch (dropout masks of ``step``) and its gradient per weight."""
        with tf.device(self.device_name):
            ctx = self._context(True, tf.constant(step, tf.int64))
            xt = tf.convert_to_tensor(np.asarray(x, dtype=self.dtype))
            yt = tf.convert_to_tensor(np.asarray(y, dtype=np.int32))
            variables = [self._params[k] for k in self._keys]
            with tf.GradientTape() as tape:
                loss = loss_from_head(self.ops, self.graph, layers.head(ctx, self.graph, self._params, xt), yt)
            grads = tape.gradient(loss, variables)
            return float(loss.numpy()), {k: g.numpy() for k, g in zip(self._keys, grads)}

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
            lambda: tf.function(self._batch_program, input_signature=signature, jit_compile=self.plan.jit, autograph=False),
        )
        with tf.device(self.device_name):
            loss = program(tf.convert_to_tensor(x), tf.convert_to_tensor(np.asarray(y, dtype=np.int32)), tf.constant(self.step, tf.int64))
            value = float(loss.numpy())
        self.step += 1
        return value
