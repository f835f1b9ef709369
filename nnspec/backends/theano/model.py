"""``TheanoModel``: a spec compiled to PyTensor functions.

Weights, non-trainable state (running statistics) and optimiser slots are shared variables of fixed
shape (:func:`_static_shared`), updated in place by the compiled functions. The whole training step is
one PyTensor graph, built by calling the shared recipe (:meth:`nnspec.semantics.recipe.TrainingRecipe.train_step`)
on those shared variables: the batch is gathered by index from the resident data set
(``X[order[i*bs:(i+1)*bs]]``), then forward, loss, ``pytensor.grad``, schedule, optimiser and state
update; the recipe's new params, slots and state, the step counter and the epoch's loss/accuracy sums
become the ``updates`` of one compiled function. An epoch is ``n // bs`` calls of it with nothing read
back; the two sums are read once at the end. PyTensor supplies only its lowerings
(:mod:`.layers`), ``pytensor.grad`` (:func:`_value_and_grad`) and the compiled functions.

Under the divergence guard (:attr:`guard_divergence`, part of the compiled function's key) the step is the
recipe's guarded step: each shared variable's update is a switch between its new and its current value on
one boolean (its cost: docs/benchmarks.md), and the :class:`~nnspec.semantics.recipe.Guard`
lives in three more shared variables, read back once with the sums; a step that is not kept leaves every
array in place as it was.

Data arrays live in two *slot* shared variables (``X``, ``Y``) that every compiled function reads; giving
a function another data set is a swap of the slot's storage (no copy, no recompilation). With the JAX
linker the arrays in the slots are JAX device arrays, so the data stay on the GPU. Evaluation runs one
function per chunk size over the slots (the recipe's ``eval_sums``); prediction one per chunk size on a
host chunk (the recipe's ``predict``).

Functions are compiled lazily, once per kind and batch size, and cached; the seconds spent compiling
(and, for the Numba and JAX linkers, their JIT on the first call) are summed in :attr:`compile_seconds`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ...compiler.ir import Graph
from ...errors import BackendError
from ...semantics.optimizers import init_state
from ...semantics.recipe import EngineSeam, Guard, TrainingRecipe
from ..base import Backend, CompiledModel
from . import config

EVAL_CHUNK = 512  # examples per evaluation / prediction call: bounds the memory of the conv patches
GROUPS = ("params", "state", "slots")
Build = Callable[[], tuple[list[Any], Any, list[tuple[Any, Any]]]]


def _static_shared(value: np.ndarray, name: str) -> Any:
    """A shared variable whose type carries the array's shape.

    PyTensor updates a shared variable in place only when the new value's type equals the variable's
    type; gradients of layers with static batch shapes have static shapes, so without the shape here
    the optimiser's fused update wrote new arrays every step instead of updating weights and slots in place.
    """
    import pytensor

    return pytensor.shared(value, shape=value.shape, name=name)


def _value_and_grad(fn: Callable[..., Any]) -> Callable[..., Any]:
    """PyTensor's autodiff for the recipe: ``(loss, aux) = fn(params, *args)``, then ``pytensor.grad``."""
    import pytensor

    def value_and_grad(params: Mapping[str, Any], *args: Any) -> tuple[tuple[Any, Any], dict[str, Any]]:
        loss, aux = fn(params, *args)
        grads = pytensor.grad(loss, list(params.values()))
        return (loss, aux), dict(zip(params, grads))  # type: ignore[arg-type]

    return value_and_grad


class TheanoModel(CompiledModel):
    """A model compiled with PyTensor (C, Numba or JAX linker)."""

    chunk_size = EVAL_CHUNK

    def __init__(
        self,
        graph: Graph,
        backend: Backend,
        device: str,
        dtype: str,
        weights: Mapping[str, np.ndarray],
        mode: str,
        why: str = "",
    ):
        super().__init__(graph, backend, device, dtype)
        config.setup()  # before the first import of pytensor: floatX, compile cache, BLAS
        import pytensor

        from .layers import LOWERINGS
        from .ops import PyTensorOps

        self.mode = mode
        self.mode_reason = why
        self._pt_mode = config.get_mode(mode)
        self._pt_step_mode = config.get_mode(mode, keep_buffers=True)  # functions run once per training step
        self.ops = PyTensorOps(dtype)
        self.recipe = TrainingRecipe(graph, EngineSeam(self.ops, LOWERINGS.run_graph, _value_and_grad))
        params = {k: np.asarray(weights[k], dtype=dtype) for k, _, _ in graph.param_specs()}
        arrays = {
            "params": params,
            "state": {k: np.asarray(weights[k], dtype=dtype) for k, _, _ in graph.state_specs()},
            "slots": init_state(graph.train.optimizer, params),
        }
        self._shared: dict[str, dict[str, Any]] = {
            g: {k: _static_shared(np.array(v, dtype=dtype), k) for k, v in arrays[g].items()} for g in GROUPS
        }
        self._step = pytensor.shared(np.int64(0), name="step")
        self._loss_sum = pytensor.shared(np.asarray(0.0, dtype=dtype), name="loss_sum")
        self._correct_sum = pytensor.shared(np.asarray(0.0, dtype=dtype), name="correct_sum")
        self._guard = Guard(
            pytensor.shared(np.asarray(True), name="guard_ok"),
            pytensor.shared(np.asarray(0.0, dtype=dtype), name="guard_kept"),
            pytensor.shared(np.asarray(0.0, dtype=dtype), name="guard_loss"),
        )
        self._x = pytensor.shared(
            np.zeros((0, *graph.input_shape), dtype=dtype), shape=(None, *graph.input_shape), name="X"
        )
        self._y = pytensor.shared(np.zeros((0,), dtype=np.int32), name="Y")
        self._order = pytensor.shared(np.zeros((0,), dtype=np.int64), name="order")
        self._fns: dict[tuple[Any, ...], Callable[..., Any]] = {}

    # ---- graph building -------------------------------------------------------------------------
    @property
    def _params(self) -> dict[str, Any]:
        return self._shared["params"]

    @property
    def _state(self) -> dict[str, Any]:
        return self._shared["state"]

    @property
    def _slots(self) -> dict[str, Any]:
        return self._shared["slots"]

    def _x_input(self, batch: int) -> Any:
        import pytensor.tensor as pt

        return pt.TensorType(self.dtype, shape=(batch, *self.graph.input_shape))("x")

    def _train_updates(
        self, x: Any, y: Any, batch: int, guarded: bool = False
    ) -> tuple[Any, Any, list[tuple[Any, Any]]]:
        """The recipe's step on the shared variables: ``(loss, correct, updates)``; updates advance the step.

        ``guarded``: the recipe's guarded step, whose guard updates the guard's shared variables.
        """
        args = (self._params, self._slots, self._state, self._step, x, y)
        extra: list[tuple[Any, Any]] = []
        if guarded:
            r, guard = self.recipe.guarded_step(*args, self._guard, batch=batch, lazy=False)
            extra = [(var, value.astype(var.dtype)) for var, value in zip(self._guard, guard)]
        else:
            r = self.recipe.train_step(*args, batch=batch)
        pairs = [
            (self._shared[g][k], v)
            for g, new in (("params", r.params), ("slots", r.slots), ("state", r.state))
            for k, v in new.items()
        ]
        updates = [(var, value.astype(var.dtype)) for var, value in pairs if value is not var]
        return r.loss, r.correct, updates + extra + [(self._step, self._step + 1)]

    def _compiled(self, key: tuple[Any, ...], build: Build) -> Callable[..., Any]:
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

        if self.mode != "jax":
            return call
        import jax

        def full_precision_call(*args: Any) -> Any:
            # XLA on a GPU rounds float32 matrix products to TF32 unless told otherwise (measured on an
            # H200: 3.4e-4 relative error in a dense layer); the setting is part of jit's cache key, so
            # every call runs under it, not only the first.
            with jax.default_matmul_precision("highest"):
                return call(*args)

        return full_precision_call

    def _train_fn(self, batch: int, guarded: bool) -> Callable[..., Any]:
        def build() -> tuple[list[Any], Any, list[tuple[Any, Any]]]:
            import pytensor.tensor as pt

            i = pt.lscalar("i")
            idx = self._order[i * batch + pt.arange(batch)]  # a gather: static size for every linker
            loss, correct, updates = self._train_updates(self._x[idx], self._y[idx], batch, guarded)
            updates += [(self._loss_sum, self._loss_sum + loss), (self._correct_sum, self._correct_sum + correct)]
            return [i], [], updates

        return self._compiled(("train", batch, guarded), build)

    def _eval_fn(self, size: int) -> Callable[..., Any]:
        def build() -> tuple[list[Any], Any, list[tuple[Any, Any]]]:
            import pytensor.tensor as pt

            start = pt.lscalar("start")
            idx = start + pt.arange(size)
            loss_sum, correct = self.recipe.eval_sums(self._params, self._state, self._x[idx], self._y[idx], batch=size)
            return [start], [loss_sum, correct], []

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

    def read_arrays(self, group: str) -> dict[str, np.ndarray]:
        """Host copies of ``params``, ``state`` or ``slots``."""
        return {k: np.array(v.get_value(), dtype=self.dtype) for k, v in self._shared[group].items()}

    def write_arrays(self, group: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Replace ``params``, ``state`` or ``slots`` in place (same keys and shapes as now)."""
        shared = self._shared[group]
        values = {k: np.array(arrays[k], dtype=self.dtype) for k in shared}
        wrong = [
            f"'{k}' {list(v.shape)} (expected {list(shared[k].type.shape)})"
            for k, v in values.items()
            if v.shape != shared[k].type.shape
        ]
        if wrong:
            raise BackendError(f"{group}: wrong shapes: {', '.join(wrong)}")
        for k, value in values.items():
            shared[k].set_value(value)

    # ---- CompiledModel --------------------------------------------------------------------------
    def execution_notes(self) -> dict[str, str]:
        """The linker this model runs on and why (``config.choose_linker``), and the BLAS behind the C linker."""
        notes = {"linker": self.mode, "why": self.mode_reason or "chosen by the caller"}
        if self.mode == "c":
            info = config.setup()
            notes["blas"] = info.blas_ldflags or "none"
        return notes

    def train_batches(self, x: Any, y: Any, batches: np.ndarray) -> Sequence[float]:
        """The epoch's batches, one call of the compiled step per batch; the sums (and the guard) read back once."""
        steps, batch = batches.shape
        guarded = self.guard_divergence
        fn = self._train_fn(batch, guarded)
        self._load_slots(x, y)
        order = batches.reshape(-1)
        self._order.set_value(np.asarray(order, dtype=np.int64))
        if self.mode == "jax":  # once per epoch, not a host-to-device copy of the order in every call
            self._order.container.storage[0] = self.put(order)
        self._step.set_value(np.int64(self.step))
        self._loss_sum.set_value(np.asarray(0.0, dtype=self.dtype))
        self._correct_sum.set_value(np.asarray(0.0, dtype=self.dtype))
        sums = [self._loss_sum, self._correct_sum]
        if guarded:
            self._guard.ok.set_value(np.asarray(True))
            for var in self._guard[1:]:
                var.set_value(np.asarray(0.0, dtype=self.dtype))
            sums += self._guard[1:]
        for i in range(steps):
            fn(i)
        return [float(np.asarray(v.get_value())) for v in sums]

    def eval_chunk(self, x: Any, y: Any, start: int, size: int) -> tuple[Any, Any]:
        """Summed loss and hits of ``start:start+size``, gathered from the data slots (one function per size)."""
        fn = self._eval_fn(int(size))
        self._load_slots(x, y)
        loss_sum, correct = fn(start)
        return loss_sum, correct

    def predict_chunk(self, x: np.ndarray) -> np.ndarray:
        """Final outputs for one host chunk (one function per chunk size)."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        size = int(x.shape[0])

        def build() -> tuple[list[Any], Any, list[tuple[Any, Any]]]:
            xs = self._x_input(size)
            return [xs], self.recipe.predict(self._params, self._state, xs, batch=size), []

        return np.asarray(self._compiled(("predict", size), build)(x))

    def layer_outputs(self, x: np.ndarray, *, training: bool = False, step: int = 0) -> list[np.ndarray]:
        """Every node's output for host batch ``x`` (dropout masks of ``step`` when ``training``)."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        batch = int(x.shape[0])

        def build() -> tuple[list[Any], Any, list[tuple[Any, Any]]]:
            import pytensor.tensor as pt

            xs, s = self._x_input(batch), pt.lscalar("step")
            return (
                [xs, s],
                self.recipe.outputs(self._params, self._state, xs, training=training, step=s, batch=batch),
                [],
            )

        fn = self._compiled(("layers", training, batch), build)
        return [np.asarray(o) for o in fn(x, step)]

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray, *, step: int = 0) -> tuple[float, dict[str, np.ndarray]]:
        """Training loss of one host batch (dropout masks of ``step``) and its gradient per trainable weight."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        batch = int(x.shape[0])

        def build() -> tuple[list[Any], Any, list[tuple[Any, Any]]]:
            import pytensor.tensor as pt

            xs, ys, s = self._x_input(batch), pt.ivector("y"), pt.lscalar("step")
            loss, grads = self.recipe.gradients(self._params, self._state, xs, ys, s, batch=batch)
            return [xs, ys, s], [loss, *(grads[k] for k in self._params)], []

        fn = self._compiled(("grads", batch), build)
        loss, *grads = fn(x, np.asarray(y, dtype=np.int32), step)
        return float(np.asarray(loss)), {k: np.asarray(g) for k, g in zip(self._params, grads)}

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimiser step on a host batch at step :attr:`step`; returns the batch's loss."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        batch = int(x.shape[0])

        def build() -> tuple[list[Any], Any, list[tuple[Any, Any]]]:
            import pytensor.tensor as pt

            xs, ys = self._x_input(batch), pt.ivector("y")
            loss, _, updates = self._train_updates(xs, ys, batch)
            return [xs, ys], loss, updates

        fn = self._compiled(("train_step", batch), build)
        self._step.set_value(np.int64(self.step))
        loss = float(np.asarray(fn(x, np.asarray(y, dtype=np.int32))))
        self.step += 1
        return loss
