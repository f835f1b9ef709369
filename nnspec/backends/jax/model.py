"""A model compiled for JAX: the training epoch, evaluation, prediction and the comparison hooks.

Training state (weights and optimiser slots) lives on the device; the data set is put there once. An
epoch runs in one of two modes, both compiled once per model and data shape (ahead of time, so the
compile time is measured apart from the step time, in :attr:`compile_seconds`):

* ``scan``: the whole epoch is one XLA program, a ``lax.scan`` over the epoch's batches, each gathered by
  index from the resident data set; the step counter is a traced scalar, so dropout masks and schedules
  are computed on the device.
* ``step``: one compiled program per optimiser step, dispatched asynchronously from a Python loop; the
  batch index, the step and the metric sums are carried on the device, so the loop never waits for it.

Both read metrics back once per epoch. The rule (:func:`fused_epoch`, with the measurements behind it):
on a GPU always ``scan``; on the CPU ``scan`` for models without convolution or pooling (an MLP epoch:
0.41 s CPU fused vs 0.59 s per step) and ``step`` for the others (a convnet step: 61 ms CPU per step vs
565 ms inside a scan, where XLA's CPU backend takes a slow path for convolutions).
:attr:`JaxModel.epoch_mode` may be set to ``'scan'`` or ``'step'`` to override it (benchmarks, tests).
Evaluation follows the same choice: one ``lax.map`` over chunks, or one program per chunk.

float64 models compute under ``jax.enable_x64(True)`` and float32 models under ``jax.enable_x64(False)``,
both scoped to this model's calls, so models of either precision coexist in one process unaffected.
"""

from __future__ import annotations

import functools
import operator
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ...compiler.ir import Graph
from ...runtime.losses import correct_count, loss_from_head
from ...runtime.optimizers import apply_updates, init_state
from ...runtime.schedules import learning_rate
from ...runtime.weights import check_weights
from ..base import CompiledModel
from .layers import Context, finish, head, run_nodes
from .ops import JaxOps

if TYPE_CHECKING:
    from .backend import JaxBackend

#: Examples per chunk when evaluating or predicting (the last chunk is padded and masked).
EVAL_CHUNK = 1024
_SPATIAL_OPS = frozenset({"conv2d", "max_pool2d", "avg_pool2d"})


def fused_epoch(graph: Graph, device: str) -> bool:
    """Whether an epoch of ``graph`` on ``device`` runs as one ``lax.scan`` program (else one program per step).

    Rule: always fuse on a GPU (there a step of a small model costs less than dispatching it); on the CPU,
    fuse only models without convolution or pooling, because XLA's CPU backend runs a convolution inside a
    ``while`` loop (what a scan becomes) through a much slower code path.

    Measured with JAX 0.10.2 on this project's 2-core CPU (shared, so CPU seconds are the steadier figure),
    Fashion-MNIST-shaped random data (60000x28x28x1), batch 128, Adam, best of 3 epochs after compiling:

    * MLP flatten-dense128(relu)-dense10-softmax, 468 steps: fused 0.55 s wall / 0.41 s CPU per epoch,
      per step 0.58 s wall / 0.59 s CPU (fused about 1.4x less CPU);
    * convnet conv32(3x3, relu)-maxpool2-conv64(3x3, relu)-maxpool2-flatten-dropout(0.5)-dense10-softmax,
      with the tiled max pool of :func:`nnspec.backends.jax.layers.tiled_max_pool`, 20 to 50 steps, CPU
      seconds a step: per step 61 ms (about 29 s CPU a 468-step epoch), fused 565 ms: fused about 9x
      slower. (With ``reduce_window`` pooling: per step 128 to 133 ms, fused 660 to 750 ms.)
    """
    if device == "gpu":
        return True
    return not any(node.op in _SPATIAL_OPS for node in graph.nodes)


def _signature(args: Any) -> tuple:
    import jax

    leaves, tree = jax.tree_util.tree_flatten(args)
    return (tree, tuple((tuple(a.shape), str(a.dtype)) for a in leaves))


class JaxModel(CompiledModel):
    """A :class:`~nnspec.backends.base.CompiledModel` running on JAX (XLA)."""

    def __init__(self, graph: Graph, backend: "JaxBackend", device: str, dtype: str, weights: Mapping[str, np.ndarray]):
        import jax

        super().__init__(graph, backend, device, dtype)
        self.ops = JaxOps(dtype)
        self.epoch_mode: str = "scan" if fused_epoch(graph, device) else "step"
        self._device = jax.devices("gpu" if device == "gpu" else "cpu")[0]
        self._executables: dict[tuple, Any] = {}
        with self._scope():
            self._params = self._to_device({k: np.asarray(v, dtype=dtype) for k, v in weights.items()})
            self._opt_state = self._to_device(init_state(graph.train.optimizer, weights))
        self._build()

    # ---- plumbing ---------------------------------------------------------------------------------
    def _scope(self) -> Any:
        import jax

        return jax.enable_x64(self.dtype == "float64")

    def _to_device(self, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
        import jax

        return {k: jax.device_put(np.asarray(v, dtype=self.dtype), self._device) for k, v in arrays.items()}

    def _int(self, value: int) -> Any:
        import jax

        return jax.device_put(np.asarray(value, dtype=np.int32), self._device)

    def _executable(self, name: str, *args: Any) -> Any:
        """Program ``name`` compiled ahead of time for the signature of ``args`` (once; timed in compile_seconds)."""
        key = (name, _signature(args))
        exe = self._executables.get(key)
        if exe is None:
            start = time.perf_counter()
            exe = self._jitted[name].lower(*args).compile()
            self.compile_seconds += time.perf_counter() - start
            self._executables[key] = exe
        return exe

    def _run(self, name: str, *args: Any) -> Any:
        """Run program ``name`` on ``args``."""
        return self._executable(name, *args)(*args)

    # ---- the programs -----------------------------------------------------------------------------
    def _build(self) -> None:
        import jax
        import jax.numpy as jnp
        from jax import lax

        graph, ops = self.graph, self.ops
        train = graph.train
        seed = int(train.seed)

        def loss_fn(params: Any, x: Any, y: Any, step: Any) -> tuple[Any, Any]:
            h = head(Context(ops, training=True, step=step, seed=seed), graph, params, x)
            return loss_from_head(ops, graph, h, y), h

        def update(params: Any, opt_state: Any, step: Any, x: Any, y: Any) -> tuple[Any, Any, Any, Any]:
            (loss, h), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, step)
            lr = learning_rate(ops, train.schedule, train.optimizer.learning_rate, step)
            params, opt_state = apply_updates(ops, train.optimizer, lr, step, params, grads, opt_state, train.weight_decay)
            return params, opt_state, loss, correct_count(ops, h, y)

        def epoch_scan(params: Any, opt_state: Any, step: Any, x: Any, y: Any, idx: Any) -> Any:
            def body(carry: Any, batch: Any) -> Any:
                params, opt_state, step, loss_sum, correct = carry
                params, opt_state, loss, c = update(params, opt_state, step, x[batch], y[batch])
                return (params, opt_state, step + 1, loss_sum + loss, correct + c), None

            zero = ops.constant(0.0)
            (params, opt_state, _, loss_sum, correct), _ = lax.scan(body, (params, opt_state, step, zero, zero), idx)
            return params, opt_state, loss_sum, correct

        def epoch_step(params: Any, opt_state: Any, carry: Any, x: Any, y: Any, idx: Any) -> Any:
            i, step, loss_sum, correct = carry
            batch = idx[i]
            params, opt_state, loss, c = update(params, opt_state, step, x[batch], y[batch])
            return params, opt_state, (i + 1, step + 1, loss_sum + loss, correct + c)

        def chunk_sums(params: Any, x: Any, y: Any, start: Any, size: int) -> tuple[Any, Any]:
            n = x.shape[0]
            idx = start + jnp.arange(size, dtype=jnp.int32)
            valid = idx < n
            idx = jnp.minimum(idx, n - 1)
            xb, yb = x[idx], y[idx]
            h = head(Context(ops), graph, params, xb)
            per_example = jax.vmap(lambda hh, yy: loss_from_head(ops, graph, hh[None], yy[None]))(h, yb)
            hits = ops.to_float(ops.equal(ops.argmax(h), yb))
            zero = ops.constant(0.0)
            return jnp.sum(jnp.where(valid, per_example, zero)), jnp.sum(jnp.where(valid, hits, zero))

        def eval_fused(params: Any, x: Any, y: Any) -> tuple[Any, Any]:
            size = min(x.shape[0], EVAL_CHUNK)
            starts = jnp.arange(-(-x.shape[0] // size), dtype=jnp.int32) * size
            losses, hits = lax.map(lambda s: chunk_sums(params, x, y, s, size), starts)
            return jnp.sum(losses), jnp.sum(hits)

        def eval_chunk(params: Any, x: Any, y: Any, start: Any) -> tuple[Any, Any]:
            return chunk_sums(params, x, y, start, min(x.shape[0], EVAL_CHUNK))

        def predict(params: Any, x: Any) -> Any:
            ctx = Context(ops)
            return finish(ctx, graph, head(ctx, graph, params, x))

        def outputs(params: Any, x: Any, step: Any, training: bool) -> Any:
            ctx = Context(ops, training=training, step=step, seed=seed)
            return run_nodes(ctx, graph.nodes, params, x, keep_all=True)

        def grads(params: Any, x: Any, y: Any, step: Any) -> Any:
            (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, step)
            return loss, g

        def one_step(params: Any, opt_state: Any, step: Any, x: Any, y: Any) -> Any:
            params, opt_state, loss, _ = update(params, opt_state, step, x, y)
            return params, opt_state, loss

        self._jitted: dict[str, Callable[..., Any]] = {
            "epoch_scan": jax.jit(epoch_scan),
            "epoch_step": jax.jit(epoch_step),
            "eval_fused": jax.jit(eval_fused),
            "eval_chunk": jax.jit(eval_chunk),
            "predict": jax.jit(predict),
            "outputs_eval": jax.jit(functools.partial(outputs, training=False)),
            "outputs_train": jax.jit(functools.partial(outputs, training=True)),
            "grads": jax.jit(grads),
            "one_step": jax.jit(one_step),
        }

    # ---- the contract -----------------------------------------------------------------------------
    def put(self, array: np.ndarray) -> Any:
        """Copy ``array`` to the model's device (floating arrays in the model's dtype, labels as int32)."""
        import jax

        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.floating):
            array = array.astype(self.dtype, copy=False)
        elif np.issubdtype(array.dtype, np.integer):
            array = array.astype(np.int32, copy=False)
        with self._scope():
            return jax.device_put(array, self._device)

    def run_epoch(self, x: Any, y: Any, order: np.ndarray, batch_size: int) -> tuple[float, float]:
        """Train one epoch over the full batches of ``order``; returns its mean loss and accuracy."""
        import jax

        batch_size = min(int(batch_size), len(order))
        steps = len(order) // batch_size
        if steps == 0:
            return float("nan"), float("nan")
        idx = np.asarray(order[: steps * batch_size], dtype=np.int32).reshape(steps, batch_size)
        with self._scope():
            idx_dev = jax.device_put(idx, self._device)
            if self.epoch_mode == "scan":
                self._params, self._opt_state, loss_sum, correct = self._run(
                    "epoch_scan", self._params, self._opt_state, self._int(self.step), x, y, idx_dev
                )
            else:
                zero = jax.device_put(np.zeros((), dtype=self.dtype), self._device)
                carry = (self._int(0), self._int(self.step), zero, zero)
                step_program = self._executable("epoch_step", self._params, self._opt_state, carry, x, y, idx_dev)
                for _ in range(steps):
                    self._params, self._opt_state, carry = step_program(self._params, self._opt_state, carry, x, y, idx_dev)
                loss_sum, correct = carry[2], carry[3]
            loss_sum, correct = jax.device_get((loss_sum, correct))
        self.step += steps
        return float(loss_sum) / steps, float(correct) / (steps * batch_size)

    def evaluate_arrays(self, x: Any, y: Any) -> tuple[float, float]:
        """Mean loss and accuracy over every example of device arrays ``x``, ``y`` (dropout off)."""
        import jax

        n = int(x.shape[0])
        if n == 0:
            return float("nan"), float("nan")
        with self._scope():
            if self.epoch_mode == "scan":
                loss_sum, hits = self._run("eval_fused", self._params, x, y)
            else:
                size = min(n, EVAL_CHUNK)
                parts = [self._run("eval_chunk", self._params, x, y, self._int(s)) for s in range(0, n, size)]
                loss_sum = functools.reduce(operator.add, (p[0] for p in parts))
                hits = functools.reduce(operator.add, (p[1] for p in parts))
            loss_sum, hits = jax.device_get((loss_sum, hits))
        return float(loss_sum) / n, float(hits) / n

    def predict_arrays(self, x: np.ndarray) -> np.ndarray:
        """Final outputs for host array ``x``, in chunks whose size is a power of two (few compilations)."""
        import jax

        x = np.asarray(x, dtype=self.dtype)
        n = x.shape[0]
        if n == 0:
            return np.zeros((0, *self.graph.output_shape), dtype=self.dtype)
        size = min(EVAL_CHUNK, 1 << (n - 1).bit_length())
        pieces = []
        with self._scope():
            for start in range(0, n, size):
                chunk = x[start : start + size]
                if len(chunk) < size:
                    chunk = np.concatenate([chunk, np.zeros((size - len(chunk), *x.shape[1:]), dtype=x.dtype)])
                pieces.append(self._run("predict", self._params, jax.device_put(chunk, self._device)))
            out = np.concatenate([np.asarray(p) for p in jax.device_get(pieces)])
        return out[:n]

    def get_weights(self) -> dict[str, np.ndarray]:
        """Current weights as host copies, ``{'<layer>.<param>': array}``."""
        import jax

        with self._scope():
            return {k: np.array(v) for k, v in jax.device_get(self._params).items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Replace the weights (the optimiser's slots are kept, as in Keras)."""
        check_weights(self.graph, weights)
        with self._scope():
            self._params = self._to_device({k: weights[k] for k in self._params})

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """The optimiser's slots as host copies, keyed ``'<weight>/<slot>'``."""
        import jax

        with self._scope():
            return {k: np.array(v) for k, v in jax.device_get(self._opt_state).items()}

    def set_optimizer_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Replace the optimiser's slots (same keys and shapes as :meth:`optimizer_state`)."""
        with self._scope():
            self._opt_state = self._to_device({k: state[k] for k in self._opt_state})

    def layer_outputs(self, x: np.ndarray, *, training: bool = False, step: int = 0) -> list[np.ndarray]:
        """Every node's output for host batch ``x`` (dropout masks of ``step`` when ``training``)."""
        import jax

        with self._scope():
            name = "outputs_train" if training else "outputs_eval"
            outs = self._run(name, self._params, self.put(np.asarray(x, dtype=self.dtype)), self._int(step))
            return [np.array(o) for o in jax.device_get(outs)]

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray, *, step: int = 0) -> tuple[float, dict[str, np.ndarray]]:
        """Training loss of one host batch (dropout masks of ``step``) and its gradient per weight."""
        import jax

        with self._scope():
            loss, grads = self._run(
                "grads", self._params, self.put(np.asarray(x, dtype=self.dtype)), self.put(np.asarray(y)), self._int(step)
            )
            loss, grads = jax.device_get((loss, grads))
        return float(loss), {k: np.array(v) for k, v in grads.items()}

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimiser step on a host batch at step :attr:`step`; returns the batch's loss."""
        import jax

        with self._scope():
            self._params, self._opt_state, loss = self._run(
                "one_step",
                self._params,
                self._opt_state,
                self._int(self.step),
                self.put(np.asarray(x, dtype=self.dtype)),
                self.put(np.asarray(y)),
            )
            loss = jax.device_get(loss)
        self.step += 1
        return float(loss)
