"""``TheanoModel``: a spec compiled to PyTensor functions.

The whole training step is one PyTensor graph: the batch is gathered by index from the resident data
set (``X[order[i*bs:(i+1)*bs]]``), the forward pass, the loss, ``pytensor.grad``, the optimiser update of
every weight and slot, the step counter and the epoch's loss/accuracy sums are shared-variable updates
of one compiled function. An epoch is ``n // bs`` calls of it with nothing read back; the two sums are
read once at the end. Evaluation accumulates in the same way over fixed-size chunks.

Data arrays live in two *slot* shared variables (``X``, ``Y``) that every compiled function reads; giving
a function another data set is a swap of the slot's storage (no copy, no recompilation). With the JAX
linker the arrays in the slots are JAX device arrays, so the data stay on the GPU.

Functions are compiled lazily, once per kind and batch size, and cached; the seconds spent compiling are
summed in :attr:`compile_seconds`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np

from ...compiler.ir import Graph
from ...runtime import losses, optimizers, schedules
from ...runtime.weights import check_weights
from ..base import Backend, CompiledModel
from . import config

EVAL_CHUNK = 512  # examples per evaluation call: bounds the memory of the conv patches


def _static_shared(value: np.ndarray, name: str) -> Any:
    """A shared variable whose type carries the array's shape.

    PyTensor updates a shared variable in place only when the new value's type equals the variable's
    type; gradients of layers with static batch shapes have static shapes, so without the shape here
    the optimiser's fused update wrote new arrays every step instead of updating weights and slots in place.
    """
    import pytensor

    return pytensor.shared(value, shape=value.shape, name=name)


class TheanoModel(CompiledModel):
    """A model compiled with PyTensor (C, Numba or JAX linker)."""

    def __init__(self, graph: Graph, backend: Backend, device: str, dtype: str, weights: Mapping[str, np.ndarray], mode: str):
        super().__init__(graph, backend, device, dtype)
        config.setup()  # before the first import of pytensor: floatX, compile cache, BLAS
        import pytensor
        import pytensor.tensor as pt

        from .ops import PyTensorOps

        self.mode = mode
        self._pt_mode = config.get_mode(mode)
        self._pt_step_mode = config.get_mode(mode, keep_buffers=True)  # functions run once per training step
        self._ops = PyTensorOps(dtype)
        self._params = {k: _static_shared(np.asarray(weights[k], dtype=dtype), k) for k, _, _ in graph.param_specs()}
        state = optimizers.init_state(graph.train.optimizer, {k: np.asarray(w, dtype=dtype) for k, w in weights.items()})
        self._state = {k: _static_shared(v, k) for k, v in state.items()}
        self._step = pytensor.shared(np.int64(0), name="step")
        self._loss_sum = pytensor.shared(np.asarray(0.0, dtype=dtype), name="loss_sum")
        self._correct_sum = pytensor.shared(np.asarray(0.0, dtype=dtype), name="correct_sum")
        ndim = len(graph.input_shape)
        self._x = pytensor.shared(np.zeros((0, *graph.input_shape), dtype=dtype), shape=(None, *graph.input_shape), name="X")
        self._y = pytensor.shared(np.zeros((0,), dtype=np.int32), name="Y")
        self._order = pytensor.shared(np.zeros((0,), dtype=np.int64), name="order")
        self._ndim = ndim
        self._fns: dict[tuple[Any, ...], Callable[..., Any]] = {}

    # ---- graph building -------------------------------------------------------------------------
    def _x_input(self, batch: int) -> Any:
        import pytensor.tensor as pt

        return pt.TensorType(self.dtype, shape=(batch, *self.graph.input_shape))("x")

    def _forward(self, x: Any, *, training: bool, step: Any, batch: int, nodes: Any = None) -> list[Any]:
        from .layers import Context, forward

        ctx = Context(self._ops, self._params, training, step, batch, self.graph.train.seed)
        return forward(self.graph, x, ctx, nodes)

    def _head_and_output(self, outputs: list[Any]) -> tuple[Any, Any]:
        return outputs[len(self.graph.logits_nodes) - 1], outputs[-1]

    def _loss_grads(self, x: Any, y: Any, step: Any, batch: int) -> tuple[Any, Any, list[Any]]:
        import pytensor

        head, _ = self._head_and_output(self._forward(x, training=True, step=step, batch=batch))
        loss = losses.loss_from_head(self._ops, self.graph, head, y)
        correct = losses.correct_count(self._ops, head, y)
        grads = pytensor.grad(loss, list(self._params.values()))
        return loss, correct, grads

    def _optimizer_updates(self, grads: list[Any], step: Any) -> list[tuple[Any, Any]]:
        cfg = self.graph.train
        lr = schedules.learning_rate(self._ops, cfg.schedule, cfg.optimizer.learning_rate, step)
        new_params, new_state = optimizers.apply_updates(
            self._ops, cfg.optimizer, lr, step, self._params, dict(zip(self._params, grads)), self._state, cfg.weight_decay
        )
        pairs = [(self._params[k], v) for k, v in new_params.items()]
        pairs += [(self._state[k], v) for k, v in new_state.items()]
        return [(var, value.astype(var.dtype)) for var, value in pairs] + [(self._step, self._step + 1)]

    def _compiled(self, key: tuple[Any, ...], build: Callable[[], tuple[list[Any], Any, list[tuple[Any, Any]]]]) -> Callable[..., Any]:
        """The compiled function ``key``, built by ``build() -> (inputs, outputs, updates)`` on first use.
        Training-step functions keep their intermediate buffers between calls (see ``config.get_mode``)."""
        if key not in self._fns:
            import pytensor

            start = time.perf_counter()
            mode = self._pt_step_mode if key[0] in ("train", "train_step") else self._pt_mode
            with pytensor.config.change_flags(floatX=self.dtype):
                inputs, outputs, updates = build()
                fn = pytensor.function(inputs, outputs, updates=updates, mode=mode, on_unused_input="ignore")
            self._fns[key] = fn if self.mode == "c" else self._jit_on_first_call(fn)
            self.compile_seconds += time.perf_counter() - start
        return self._fns[key]

    def _jit_on_first_call(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a Numba or JAX function, which JIT-compiles on its first call: that call's seconds count as
        compile time, and JAX's warnings that 64-bit types become 32-bit are silenced while it traces.

        Without ``jax_enable_x64`` the JAX linker holds PyTensor's int64/uint64 values in 32 bits; nnspec's
        graphs are written so that this changes no result (the dropout hash wraps modulo 2**32 either way).
        """
        import warnings

        done = False

        def call(*args: Any) -> Any:
            nonlocal done
            if done:
                return fn(*args)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Explicitly requested dtype")
                out = fn(*args)
            done = True
            self.compile_seconds += time.perf_counter() - start
            return out

        return call

    def _train_fn(self, batch: int) -> Callable[..., Any]:
        def build() -> tuple[list[Any], Any, list[tuple[Any, Any]]]:
            import pytensor.tensor as pt

            i = pt.lscalar("i")
            idx = self._order[i * batch + pt.arange(batch)]  # a gather: static size for every linker
            loss, correct, grads = self._loss_grads(self._x[idx], self._y[idx], self._step, batch)
            updates = self._optimizer_updates(grads, self._step)
            updates += [(self._loss_sum, self._loss_sum + loss), (self._correct_sum, self._correct_sum + correct)]
            return [i], [], updates

        return self._compiled(("train", batch), build)

    def _eval_fn(self, size: int) -> Callable[..., Any]:
        def build() -> tuple[list[Any], Any, list[tuple[Any, Any]]]:
            import pytensor.tensor as pt

            start = pt.lscalar("start")
            idx = start + pt.arange(size)
            xb, yb = self._x[idx], self._y[idx]
            head, _ = self._head_and_output(self._forward(xb, training=False, step=self._step, batch=size))
            loss = losses.loss_from_head(self._ops, self.graph, head, yb) * self._ops.constant(float(size))
            correct = losses.correct_count(self._ops, head, yb)
            return [start], [], [(self._loss_sum, self._loss_sum + loss), (self._correct_sum, self._correct_sum + correct)]

        return self._compiled(("evaluate", size), build)

    # ---- data -----------------------------------------------------------------------------------
    def put(self, array: np.ndarray) -> Any:
        """Host array -> resident array: NumPy for the C and Numba linkers, a JAX device array for JAX."""
        array = np.asarray(array)
        dtype = self.dtype if np.issubdtype(array.dtype, np.floating) else np.int32
        array = np.ascontiguousarray(array, dtype=dtype)
        if self.mode == "jax":
            import jax

            return jax.device_put(array)
        return array

    def _load_slots(self, x: Any, y: Any) -> None:
        # storage swap: no copy, no filter (the arrays come from `put`, already in the right dtype)
        self._x.container.storage[0] = x
        self._y.container.storage[0] = y

    def _reset_sums(self) -> None:
        self._loss_sum.set_value(np.asarray(0.0, dtype=self.dtype))
        self._correct_sum.set_value(np.asarray(0.0, dtype=self.dtype))

    def _read_sums(self) -> tuple[float, float]:
        return float(np.asarray(self._loss_sum.get_value())), float(np.asarray(self._correct_sum.get_value()))

    # ---- CompiledModel --------------------------------------------------------------------------
    def run_epoch(self, x: Any, y: Any, order: np.ndarray, batch_size: int) -> tuple[float, float]:
        batch = min(int(batch_size), len(order))
        steps = len(order) // batch
        fn = self._train_fn(batch)
        self._load_slots(x, y)
        self._order.set_value(np.asarray(order, dtype=np.int64))
        self._step.set_value(np.int64(self.step))
        self._reset_sums()
        for i in range(steps):
            fn(i)
        self.step += steps
        loss_sum, correct = self._read_sums()
        return loss_sum / steps, correct / (steps * batch)

    def evaluate_arrays(self, x: Any, y: Any) -> tuple[float, float]:
        self._load_slots(x, y)
        n = int(x.shape[0])
        self._reset_sums()
        for start in range(0, n, EVAL_CHUNK):
            self._eval_fn(min(EVAL_CHUNK, n - start))(start)
        loss_sum, correct = self._read_sums()
        return loss_sum / n, correct / n

    def predict_arrays(self, x: np.ndarray) -> np.ndarray:
        def predict_fn(size: int) -> Callable[..., Any]:
            def build() -> tuple[list[Any], Any, list[tuple[Any, Any]]]:
                xs = self._x_input(size)
                return [xs], self._forward(xs, training=False, step=self._step, batch=size)[-1], []

            return self._compiled(("predict", size), build)

        x = np.ascontiguousarray(x, dtype=self.dtype)
        parts = [np.asarray(predict_fn(len(x[s : s + EVAL_CHUNK]))(x[s : s + EVAL_CHUNK])) for s in range(0, len(x), EVAL_CHUNK)]
        if not parts:
            return np.zeros((0, *self.graph.output_shape), dtype=self.dtype)
        return np.concatenate(parts)

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: np.array(v.get_value(), dtype=self.dtype) for k, v in self._params.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        check_weights(self.graph, weights)
        for k, var in self._params.items():
            var.set_value(np.array(weights[k], dtype=self.dtype))

    def layer_outputs(self, x: np.ndarray, *, training: bool = False, step: int = 0) -> list[np.ndarray]:
        x = np.ascontiguousarray(x, dtype=self.dtype)
        batch = int(x.shape[0])

        def build() -> tuple[list[Any], Any, list[tuple[Any, Any]]]:
            import pytensor.tensor as pt

            xs, s = self._x_input(batch), pt.lscalar("step")
            return [xs, s], self._forward(xs, training=training, step=s, batch=batch), []

        fn = self._compiled(("layers", training, batch), build)
        return [np.asarray(o) for o in fn(x, step)]

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray, *, step: int = 0) -> tuple[float, dict[str, np.ndarray]]:
        x = np.ascontiguousarray(x, dtype=self.dtype)
        batch = int(x.shape[0])

        def build() -> tuple[list[Any], Any, list[tuple[Any, Any]]]:
            import pytensor.tensor as pt

            xs, ys, s = self._x_input(batch), pt.ivector("y"), pt.lscalar("step")
            loss, _, grads = self._loss_grads(xs, ys, s, batch)
            return [xs, ys, s], [loss, *grads], []

        fn = self._compiled(("grads", batch), build)
        loss, *grads = fn(x, np.asarray(y, dtype=np.int32), step)
        return float(np.asarray(loss)), {k: np.asarray(g) for k, g in zip(self._params, grads)}

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        x = np.ascontiguousarray(x, dtype=self.dtype)
        batch = int(x.shape[0])

        def build() -> tuple[list[Any], Any, list[tuple[Any, Any]]]:
            import pytensor.tensor as pt

            xs, ys = self._x_input(batch), pt.ivector("y")
            loss, _, grads = self._loss_grads(xs, ys, self._step, batch)
            return [xs, ys], loss, self._optimizer_updates(grads, self._step)

        fn = self._compiled(("train_step", batch), build)
        self._step.set_value(np.int64(self.step))
        loss = float(np.asarray(fn(x, np.asarray(y, dtype=np.int32))))
        self.step += 1
        return loss
