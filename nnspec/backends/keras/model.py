"""``KerasModel``: a spec compiled to a ``keras.Model`` and trained with nnspec's shared definitions.

The network is a functional Keras model made of standard layers (see :mod:`.layers`). The training step
is nnspec's, written with ``keras.ops``: the model runs statelessly (``model.stateless_call``) on weight
tensors held here, the loss comes from the logits (:func:`nnspec.runtime.losses.loss_from_head`), the
update from :func:`nnspec.runtime.optimizers.apply_updates` and the learning rate from
:func:`nnspec.runtime.schedules.learning_rate`. Only the gradient and the compilation are per engine:
``jax.value_and_grad`` + ``jax.jit`` on JAX, ``tf.GradientTape`` + ``tf.function`` on TensorFlow.
The optimiser step drives the dropout masks: it is passed in place of each ``CounterDropout`` counter.
Data stay on the device; per-epoch loss and accuracy are summed on the device and read once per epoch.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator, Mapping

import keras
import numpy as np
from keras import ops as K

from ...compiler.ir import Graph
from ...errors import BackendError
from ...runtime.losses import correct_count, loss_from_head
from ...runtime.optimizers import apply_updates, init_state
from ...runtime.schedules import learning_rate
from ...runtime.weights import check_weights
from ..base import Backend, CompiledModel
from .layers import BuildOptions, CounterDropout, assign_weights, build_models, layer_weight_variables
from .ops import KerasOps

#: examples per device call in evaluate / predict (bounds memory; the result does not depend on it)
EVAL_CHUNK = 2048

Tensors = list[Any]


class KerasModel(CompiledModel):
    """A graph compiled to Keras 3 on the engine Keras is configured for (JAX or TensorFlow)."""

    def __init__(self, graph: Graph, backend: Backend, device: str, dtype: str, weights: Mapping[str, np.ndarray]):
        super().__init__(graph, backend, device, dtype)
        self.engine = keras.backend.backend()
        if self.engine not in ("jax", "tensorflow"):
            raise BackendError(f"nnspec's keras backend trains on KERAS_BACKEND=jax or tensorflow; Keras is set to '{self.engine}'")
        self._ops = KerasOps(dtype)
        start = time.perf_counter()
        with self._scope():
            self.keras_model, self._outputs_model = build_models(graph, BuildOptions(dtype=dtype, seed=graph.train.seed))
            by_key = layer_weight_variables(self._outputs_model, graph)
            ids = {id(v): k for k, v in by_key.items()}
            self._keys: list[str] = [ids[id(v)] for v in self._outputs_model.trainable_variables]
            self._counters = [
                i for i, v in enumerate(self._outputs_model.non_trainable_variables) if _owned_by_counter(self._outputs_model, v)
            ]
            self._ntv = [v.value for v in self._outputs_model.non_trainable_variables]
            self._tv = [self.put(np.asarray(weights[k], dtype=dtype)) for k in self._keys]
            self._opt = {k: self.put(v) for k, v in init_state(graph.train.optimizer, {k: weights[k] for k in self._keys}).items()}
            self._compile_functions()
        self.compile_seconds = time.perf_counter() - start

    # ---- engine plumbing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        """Device placement, float64 (JAX's x64 mode) and full float32 matmul precision (no TF32)."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(keras.device(f"{self.device}:0"))
            if self.engine == "jax":
                import jax

                stack.enter_context(jax.enable_x64(self.dtype == "float64"))
                stack.enter_context(jax.default_matmul_precision("highest"))
            yield

    def _jit(self, fn: Callable[..., Any], static: tuple[int, ...] = ()) -> Callable[..., Any]:
        if self.engine == "jax":
            import jax

            return jax.jit(fn, static_argnums=static)
        import tensorflow as tf

        return tf.function(fn)

    def _value_and_grad(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn(tv, *args) -> (loss, aux)`` to ``g(tv, *args) -> ((loss, aux), grads)``."""
        if self.engine == "jax":
            import jax

            return jax.value_and_grad(fn, has_aux=True)
        import tensorflow as tf

        def value_and_grad(tv: Tensors, *args: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(tv)
                loss, aux = fn(tv, *args)
            return (loss, aux), tape.gradient(loss, tv)

        return value_and_grad

    def _int(self, value: int) -> Any:
        with self._scope():
            return K.convert_to_tensor(np.int32(value))

    # ---- the pure functions that get compiled ---------------------------------------------------
    def _forward(self, tv: Tensors, x: Any, training: bool, step: Any) -> list[Any]:
        ntv = list(self._ntv)
        for i in self._counters:
            ntv[i] = K.cast(step, "int32")
        outs, _ = self._outputs_model.stateless_call(tv, ntv, x, training=training)
        return list(outs) if isinstance(outs, (list, tuple)) else [outs]

    def _head(self, outs: list[Any], x: Any) -> Any:
        n = len(self.graph.logits_nodes)
        return outs[n - 1] if n else x

    def _loss(self, tv: Tensors, x: Any, y: Any, step: Any) -> tuple[Any, Any]:
        head = self._head(self._forward(tv, x, True, step), x)
        return loss_from_head(self._ops, self.graph, head, y), correct_count(self._ops, head, y)

    def _compile_functions(self) -> None:
        ops, cfg, graph = self._ops, self.graph.train.optimizer, self.graph
        value_and_grad = self._value_and_grad(self._loss)

        def update(tv: Tensors, opt: dict[str, Any], x: Any, y: Any, step: Any) -> tuple[Tensors, dict[str, Any], Any, Any, Tensors]:
            (loss, correct), grads = value_and_grad(tv, x, y, step)
            lr = learning_rate(ops, graph.train.schedule, cfg.learning_rate, step)
            params = dict(zip(self._keys, tv))
            new_params, new_opt = apply_updates(ops, cfg, lr, step, params, dict(zip(self._keys, grads)), opt, graph.train.weight_decay)
            return [new_params[k] for k in self._keys], new_opt, loss, correct, list(grads)

        def epoch_step(tv: Tensors, opt: dict[str, Any], sums: Any, x: Any, y: Any, order: Any, i: Any, step: Any) -> Any:
            batch = K.take(order, i, axis=0)
            tv, opt, loss, correct, _ = update(tv, opt, K.take(x, batch, axis=0), K.take(y, batch, axis=0), step)
            return tv, opt, sums + K.stack([K.cast(loss, self.dtype), K.cast(correct, self.dtype)])

        def single_step(tv: Tensors, opt: dict[str, Any], x: Any, y: Any, step: Any) -> Any:
            tv, opt, loss, _, _ = update(tv, opt, x, y, step)
            return tv, opt, loss

        def loss_grads(tv: Tensors, x: Any, y: Any, step: Any) -> Any:
            (loss, _), grads = value_and_grad(tv, x, y, step)
            return loss, list(grads)

        def evaluate(tv: Tensors, x: Any, y: Any) -> Any:
            head = self._head(self._forward(tv, x, False, 0), x)
            n = ops.to_float(K.shape(x)[0])
            return K.stack([loss_from_head(ops, graph, head, y) * n, correct_count(ops, head, y)])

        def predict(tv: Tensors, x: Any) -> Any:
            return self._forward(tv, x, False, 0)[-1] if graph.nodes else x

        def outputs(tv: Tensors, x: Any, step: Any, training: bool) -> Any:
            return self._forward(tv, x, training, step)

        self._epoch_step = self._jit(epoch_step)
        self._single_step = self._jit(single_step)
        self._loss_grads = self._jit(loss_grads)
        self._evaluate = self._jit(evaluate)
        self._predict = self._jit(predict)
        self._outputs = self._jit(outputs, static=(3,))

    # ---- CompiledModel --------------------------------------------------------------------------
    def put(self, array: np.ndarray) -> Any:
        with self._scope():
            return K.convert_to_tensor(np.asarray(array))

    def run_epoch(self, x: Any, y: Any, order: np.ndarray, batch_size: int) -> tuple[float, float]:
        batch_size = max(1, min(batch_size, len(order)))  # a batch larger than the data is clipped to it
        steps = len(order) // batch_size
        if steps == 0:
            return float("nan"), float("nan")
        batches = self.put(np.asarray(order[: steps * batch_size], dtype=np.int32).reshape(steps, batch_size))
        with self._scope():
            tv, opt = self._tv, self._opt
            sums = K.zeros((2,), dtype=self.dtype)
            for i in range(steps):
                tv, opt, sums = self._epoch_step(tv, opt, sums, x, y, batches, self._int(i), self._int(self.step + i))
            self._tv, self._opt = list(tv), dict(opt)
            totals = K.convert_to_numpy(sums)
        self.step += steps
        return float(totals[0]) / steps, float(totals[1]) / (steps * batch_size)

    def evaluate_arrays(self, x: Any, y: Any) -> tuple[float, float]:
        n = int(x.shape[0])
        totals = np.zeros(2)
        with self._scope():
            for start in range(0, n, EVAL_CHUNK):
                part = self._evaluate(self._tv, x[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK])
                totals += K.convert_to_numpy(part).astype(np.float64)
        return float(totals[0] / n), float(totals[1] / n)

    def predict_arrays(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        parts = []
        with self._scope():
            for start in range(0, len(x), EVAL_CHUNK):
                parts.append(K.convert_to_numpy(self._predict(self._tv, self.put(x[start : start + EVAL_CHUNK]))))
        return np.concatenate(parts) if parts else np.zeros((0, *self.graph.output_shape), self.dtype)

    def get_weights(self) -> dict[str, np.ndarray]:
        with self._scope():
            return {k: np.asarray(K.convert_to_numpy(v)) for k, v in zip(self._keys, self._tv)}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        check_weights(self.graph, weights)
        self._tv = [self.put(np.asarray(weights[k], dtype=self.dtype)) for k in self._keys]

    def layer_outputs(self, x: np.ndarray, *, training: bool = False, step: int = 0) -> list[np.ndarray]:
        with self._scope():
            outs = self._outputs(self._tv, self.put(np.asarray(x, dtype=self.dtype)), self._int(step), bool(training))
            return [np.asarray(K.convert_to_numpy(o)) for o in outs]

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray, *, step: int = 0) -> tuple[float, dict[str, np.ndarray]]:
        with self._scope():
            xb, yb = self.put(np.asarray(x, dtype=self.dtype)), self.put(np.asarray(y, dtype=np.int32))
            loss, grads = self._loss_grads(self._tv, xb, yb, self._int(step))
            return float(K.convert_to_numpy(loss)), {k: np.asarray(K.convert_to_numpy(g)) for k, g in zip(self._keys, grads)}

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        with self._scope():
            xb, yb = self.put(np.asarray(x, dtype=self.dtype)), self.put(np.asarray(y, dtype=np.int32))
            tv, opt, loss = self._single_step(self._tv, self._opt, xb, yb, self._int(self.step))
            self._tv, self._opt = list(tv), dict(opt)
            value = float(K.convert_to_numpy(loss))
        self.step += 1
        return value

    # ---- Keras-facing ---------------------------------------------------------------------------
    def to_keras(self) -> keras.Model:
        """The ``keras.Model`` (with nnspec's ``CounterDropout``) holding the current weights."""
        with self._scope():
            assign_weights(self.keras_model, self.graph, self.get_weights())
        return self.keras_model


def _owned_by_counter(model: keras.Model, variable: Any) -> bool:
    return any(isinstance(layer, CounterDropout) and variable is layer.step for layer in model.layers)
