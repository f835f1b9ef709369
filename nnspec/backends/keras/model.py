"""``KerasModel``: a spec compiled to a functional ``keras.Model`` and trained through nnspec's shared recipe.

The network is a functional Keras model of standard layers wired as the graph says (see :mod:`.layers`).
Training, evaluation and prediction are :class:`nnspec.semantics.recipe.TrainingRecipe`'s, like every
engine's: the loss from the logits, the optimiser update, the schedule and the state update are nnspec's
shared definitions over ``keras.ops``. What is Keras's own is the engine seam:

* the graph walk (:meth:`KerasModel._walk`) runs the Keras model statelessly (``model.stateless_call``):
  trainable variables from the recipe's ``params``, non-trainable ones from its ``state`` (batch-norm
  moving statistics) and, for each ``CounterDropout`` counter, the optimiser step, which keys the dropout
  masks. The moving statistics Keras's ``BatchNormalization`` computes while training are what the walk
  writes back as the new state;
* the gradient: ``jax.value_and_grad`` on Keras-JAX, ``tf.GradientTape`` on Keras-TensorFlow;
* compilation: ``jax.jit`` / ``tf.function``, one compiled call per step; data stay on the device and the
  epoch's loss and accuracy are summed there and read back once. Under the divergence guard
  (:attr:`guard_divergence`) the step is the recipe's guarded step, its
  :class:`~nnspec.semantics.recipe.Guard` carried from call to call and read back with the sums; the update
  runs under ``tf.cond`` on Keras-TensorFlow and is selected array by array on Keras-JAX (the faster on
  each, docs/benchmarks.md).

Data parallelism (``train.devices`` > 1, Keras on JAX only): Keras 3's distribution API. A
``keras.distribution.DataParallel`` over the devices gives the mesh and the layouts: weights, state, slots
and the data set are placed replicated (``keras.distribution.distribute_tensor`` with an all-``None``
``TensorLayout``), each step's batch is laid out with ``DataParallel.get_data_layout`` (split on the batch
axis) inside the jitted step, and JAX's GSPMD partitions the step: gradients, the loss and batch-norm
statistics reduced over the global batch, dropout masks those of the logical (global) batch. Keras's
distribution API has no TensorFlow implementation: on ``KERAS_BACKEND=tensorflow`` the backend refuses.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import keras
import numpy as np
from keras import ops as K

from ...compiler.ir import INPUT, Graph
from ...errors import BackendError
from ...semantics.lowering import LoweringContext
from ...semantics.precision import training_slots
from ...semantics.recipe import EngineSeam, TrainingRecipe
from ..base import Backend, CompiledModel
from .layers import COUNTER, BuildOptions, KerasGraph, build_graph
from .ops import KerasOps

#: examples per device call in evaluate / predict (bounds memory; the result does not depend on it)
EVAL_CHUNK = 2048


def value_and_grad(engine: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The engine's ``value_and_grad``: ``f(params, *args) -> (loss, aux)`` to ``g -> ((loss, aux), grads)``."""
    if engine == "jax":
        import jax

        return lambda fn: jax.value_and_grad(fn, has_aux=True)
    import tensorflow as tf

    def transform(fn: Callable[..., Any]) -> Callable[..., Any]:
        def with_grads(params: Mapping[str, Any], *args: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(params)
                loss, aux = fn(params, *args)
            grads = tape.gradient(loss, dict(params), unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return (loss, aux), grads

        return with_grads

    return transform


class KerasModel(CompiledModel):
    """A graph compiled to Keras 3 on the engine Keras is configured for (JAX or TensorFlow)."""

    chunk_size = EVAL_CHUNK

    def __init__(self, graph: Graph, backend: Backend, device: str, dtype: str, weights: Mapping[str, np.ndarray]):
        super().__init__(graph, backend, device, dtype)
        self.engine = keras.backend.backend()
        if self.engine not in ("jax", "tensorflow"):
            raise BackendError(
                f"nnspec's keras backend trains on KERAS_BACKEND=jax or tensorflow; Keras is set to '{self.engine}'"
            )
        self.ops = KerasOps(dtype)
        #: Keras's ``DataParallel`` distribution of a data-parallel model (None on one device)
        self.distribution: Any = self._data_parallel() if self.replicas > 1 else None
        # Under a mixed policy Keras's own layers cast weights and inputs to the compute type (their dtype
        # policy is the precision's name); the walk casts their outputs back (see _walk).
        self.recipe = TrainingRecipe(
            graph, EngineSeam(self.ops, self._walk, value_and_grad(self.engine)), self.precision
        )
        self._state_owner = {node.key(spec.name): (node, spec.name) for node in graph.nodes for spec in node.state}
        start = time.perf_counter()
        with self._scope():
            layer_dtype = self.precision.name if self.precision.mixed else dtype
            self._kgraph: KerasGraph = build_graph(graph, BuildOptions(dtype=layer_dtype, seed=graph.train.seed))
            self.keras_model = self._kgraph.model
            for names in (self._needed(None), self._needed((graph.head,))):
                if names:  # a model whose head is its input needs no runner for it
                    self._kgraph.runner(names)
            params = {k: weights[k] for k, _, _ in graph.param_specs()}
            self._arrays: dict[str, dict[str, Any]] = {
                "params": self._to_device(params),
                "state": self._to_device({k: weights[k] for k, _, _ in graph.state_specs()}),
                "slots": self._to_device(training_slots(graph, params, self.precision)),
            }
            self._compile_functions()
        self.compile_seconds = time.perf_counter() - start

    # ---- engine plumbing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        """Device placement, float64 (JAX's x64 mode) and the matmul precision of the policy (full float32
        unless the policy is tf32 or mixed; TensorFlow's process-wide TF32 switch is restored on exit)."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(keras.device(f"{self.device}:0"))
            if self.engine == "jax":
                import jax

                stack.enter_context(jax.enable_x64(self.dtype == "float64"))
                precision = (
                    "highest"
                    if self.precision.full_precision_matmul
                    else ("tensorfloat32" if self.precision.tf32 else "default")
                )
                stack.enter_context(jax.default_matmul_precision(precision))
            else:
                from ..tensorflow.engine import tensor_float_32

                stack.enter_context(tensor_float_32(self.precision.tf32))
            yield

    def _jit(self, fn: Callable[..., Any], static: tuple[int, ...] = ()) -> Callable[..., Any]:
        if self.engine == "jax":
            import jax

            return jax.jit(fn, static_argnums=static)
        import tensorflow as tf

        return tf.function(fn)

    def _data_parallel(self) -> Any:
        """``keras.distribution.DataParallel`` over the first local devices of the model's kind of each process."""
        if self.engine != "jax":
            raise BackendError(
                "Keras 3's distribution API (keras.distribution.DataParallel) runs on its JAX backend only; use "
                "KERAS_BACKEND=jax, or the tensorflow backend"
            )
        from keras import distribution

        from ..jax.engine import mesh_devices

        devices = mesh_devices("gpu" if self.device == "gpu" else "cpu", self.replicas // self.processes)
        return distribution.DataParallel(devices=[f"{d.platform}:{d.id}" for d in devices])

    def _place(self, array: np.ndarray) -> Any:
        """A host array as a device tensor; replicated over the devices under a distribution."""
        if self.distribution is None:
            return K.convert_to_tensor(array)
        from keras import distribution

        return distribution.distribute_tensor(
            array, distribution.TensorLayout([None] * np.ndim(array), self.distribution.device_mesh)
        )

    def _split(self, batch: Any) -> Any:
        """A batch (examples first) laid out over the devices by the distribution (inside a jitted step)."""
        if self.distribution is None:
            return batch
        from keras import distribution

        return distribution.distribute_tensor(batch, self.distribution.get_data_layout(tuple(batch.shape)))

    def _to_device(self, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
        return {k: self._place(np.asarray(v, dtype=self.dtype)) for k, v in arrays.items()}

    def _int(self, value: int) -> Any:
        with self._scope():
            return K.convert_to_tensor(np.int32(value))

    # ---- the engine seam: the graph walk ------------------------------------------------------------
    def _needed(self, targets: Sequence[str] | None) -> tuple[str, ...]:
        """Names of the nodes ``targets`` depend on (every node for None), in declaration order."""
        if targets is None:
            return tuple(n.name for n in self.graph.nodes)
        names = {n.name for t in targets if t != INPUT for n in self.graph.ancestors(t)}
        return tuple(n.name for n in self.graph.nodes if n.name in names)

    def _walk(self, ctx: LoweringContext, graph: Graph, x: Any, targets: Sequence[str] | None = None) -> dict[str, Any]:
        """The outputs of the nodes ``targets`` need, from one stateless call of the Keras model.

        Moving statistics that Keras's layers update in training are written to ``ctx`` as new state.
        """
        names = self._needed(targets)
        if not names:
            return {INPUT: x}
        runner = self._kgraph.runner(names)
        step = K.cast(ctx.step, "int32")
        previous = runner.model.non_trainable_variables
        ntv = [
            step if key == COUNTER else ctx.state[key] if key is not None else v.value
            for key, v in zip(runner.non_trainable, previous)
        ]
        tv = [ctx.params[key] for key in runner.trainable]
        outs, new_ntv = runner.model.stateless_call(tv, ntv, x, training=ctx.training)
        if ctx.training:
            for key, value in zip(runner.non_trainable, new_ntv):
                if key in self._state_owner:
                    node, name = self._state_owner[key]
                    ctx.write_state(node, name, value)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        if self.precision.mixed:
            outs = [K.cast(o, self.dtype) for o in outs]
        return {INPUT: x, **dict(zip(names, outs))}

    # ---- the compiled programs --------------------------------------------------------------------
    def _compile_functions(self) -> None:
        recipe, dtype, split = self.recipe, self.dtype, self._split
        lazy = self.engine == "tensorflow"  # the guarded update under tf.cond; on JAX a select per array

        def epoch_step(
            params: Any, slots: Any, state: Any, sums: Any, x: Any, y: Any, order: Any, i: Any, step: Any
        ) -> Any:
            batch = K.take(order, i, axis=0)
            r = recipe.train_step(
                params, slots, state, step, split(K.take(x, batch, axis=0)), split(K.take(y, batch, axis=0))
            )
            return r.params, r.slots, r.state, sums + K.stack([K.cast(r.loss, dtype), K.cast(r.correct, dtype)])

        def guarded_epoch_step(
            params: Any, slots: Any, state: Any, sums: Any, guard: Any, x: Any, y: Any, order: Any, i: Any, step: Any
        ) -> Any:
            batch = K.take(order, i, axis=0)
            r, guard = recipe.guarded_step(
                params,
                slots,
                state,
                step,
                split(K.take(x, batch, axis=0)),
                split(K.take(y, batch, axis=0)),
                guard,
                lazy=lazy,
            )
            return r.params, r.slots, r.state, sums + K.stack([K.cast(r.loss, dtype), K.cast(r.correct, dtype)]), guard

        def one_step(params: Any, slots: Any, state: Any, step: Any, x: Any, y: Any) -> Any:
            r = recipe.train_step(params, slots, state, step, split(x), split(y))
            return r.params, r.slots, r.state, r.loss

        def outputs(params: Any, state: Any, x: Any, step: Any, training: bool) -> Any:
            return recipe.outputs(params, state, x, training=training, step=step)

        self._epoch_step = self._jit(epoch_step)
        self._guarded_epoch_step = self._jit(guarded_epoch_step)
        self._one_step = self._jit(one_step)
        self._gradients = self._jit(recipe.gradients)
        self._eval_sums = self._jit(recipe.eval_sums)
        self._predict = self._jit(recipe.predict)
        self._outputs = self._jit(outputs, static=(4,))

    # ---- CompiledModel --------------------------------------------------------------------------
    def put(self, array: np.ndarray) -> Any:
        """Copy ``array`` to the device (floating arrays in the model's dtype, integers as int32)."""
        array = self.host_array(array)
        with self._scope():
            return self._place(array)

    def read_arrays(self, group: str) -> dict[str, np.ndarray]:
        """Host copies of ``params``, ``state`` or ``slots``."""
        with self._scope():
            return {k: np.array(K.convert_to_numpy(v)) for k, v in self._arrays[group].items()}

    def write_arrays(self, group: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Replace ``params``, ``state`` or ``slots`` (same keys as now)."""
        with self._scope():
            self._arrays = {**self._arrays, group: self._to_device({k: arrays[k] for k in self._arrays[group]})}

    def to_host(self, value: Any) -> float:
        """A device scalar as a Python float."""
        with self._scope():
            return float(K.convert_to_numpy(value))

    def train_batches(self, x: Any, y: Any, batches: np.ndarray) -> Sequence[float]:
        """The epoch's batches, one compiled call per step; the sums (and guard) read once."""
        steps = len(batches)
        rows = self.put(batches)
        a = self._arrays
        params, slots, state = a["params"], a["slots"], a["state"]
        with self._scope():
            sums = K.zeros((2,), dtype=self.dtype)
            if self.guard_divergence:
                guard = self.recipe.guard_start()
                for i in range(steps):
                    params, slots, state, sums, guard = self._guarded_epoch_step(
                        params, slots, state, sums, guard, x, y, rows, self._int(i), self._int(self.step + i)
                    )
                sums = K.concatenate([sums, K.stack([K.cast(guard.kept, self.dtype), K.cast(guard.loss, self.dtype)])])
            else:
                for i in range(steps):
                    params, slots, state, sums = self._epoch_step(
                        params, slots, state, sums, x, y, rows, self._int(i), self._int(self.step + i)
                    )
            self._arrays = {"params": dict(params), "slots": dict(slots), "state": dict(state)}
            totals = K.convert_to_numpy(sums)
        return [float(v) for v in totals]

    def eval_chunk(self, x: Any, y: Any, start: int, size: int) -> tuple[Any, Any]:
        """Summed loss and correct count of examples ``start:start+size`` (device values)."""
        with self._scope():
            a = self._arrays
            return self._eval_sums(a["params"], a["state"], x[start : start + size], y[start : start + size])

    def predict_chunk(self, x: np.ndarray) -> np.ndarray:
        """Final outputs for one chunk of host examples."""
        with self._scope():
            a = self._arrays
            return np.asarray(K.convert_to_numpy(self._predict(a["params"], a["state"], self.put(x))))

    def layer_outputs(self, x: np.ndarray, *, training: bool = False, step: int = 0) -> list[np.ndarray]:
        """Every node's output for host batch ``x`` (dropout masks of ``step`` when ``training``)."""
        with self._scope():
            a = self._arrays
            outs = self._outputs(
                a["params"], a["state"], self.put(np.asarray(x, dtype=self.dtype)), self._int(step), bool(training)
            )
            return [np.asarray(K.convert_to_numpy(o)) for o in outs]

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray, *, step: int = 0) -> tuple[float, dict[str, np.ndarray]]:
        """Training loss of one host batch (dropout masks of ``step``) and its gradient per trainable weight."""
        with self._scope():
            a = self._arrays
            loss, grads = self._gradients(
                a["params"],
                a["state"],
                self.put(np.asarray(x, dtype=self.dtype)),
                self.put(np.asarray(y)),
                self._int(step),
            )
            return float(K.convert_to_numpy(loss)), {k: np.asarray(K.convert_to_numpy(g)) for k, g in grads.items()}

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimiser step on a host batch at step :attr:`step`; returns the batch's loss."""
        a = self._arrays
        with self._scope():
            params, slots, state, loss = self._one_step(
                a["params"],
                a["slots"],
                a["state"],
                self._int(self.step),
                self.put(np.asarray(x, dtype=self.dtype)),
                self.put(np.asarray(y)),
            )
            self._arrays = {"params": dict(params), "slots": dict(slots), "state": dict(state)}
            value = float(K.convert_to_numpy(loss))
        self.step += 1
        return value

    # ---- Keras-facing ---------------------------------------------------------------------------
    def to_keras(self) -> keras.Model:
        """The ``keras.Model`` (with nnspec's ``CounterDropout``) holding the current weights and moving statistics."""
        with self._scope():
            self._kgraph.assign(self.get_weights())
        return self.keras_model
