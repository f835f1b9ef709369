"""One layer's forward and backward programs on TensorFlow, for ``nnspec profile`` (:mod:`nnspec.backends.profiling`).

The forward is the layer's lowering (training mode) in a ``tf.function``, compiled with XLA when the
model's execution plan compiles training with it. The backward is what TensorFlow runs for the gradient
of that function call: one call recorded on a persistent ``GradientTape`` keeps the forward's residuals,
and each ``tape.gradient`` runs the function's generated backward graph on them (the VJP alone).

Waiting: on the CPU, with TensorFlow's default synchronous eager execution, a call returns when its
results are computed; on a GPU (or with asynchronous execution) each call ends with
``tf.test.experimental.sync_devices()``. (``.numpy()`` would also wait, but it copies the output, which
costs more than small layers do.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from ...compiler.ir import Node
from ..profiling import LayerPrograms, layer_function, node_arrays
from .engine import load_tensorflow
from .layers import LOWERINGS
from .model import TensorFlowModel

tf = load_tensorflow()


def waiter(device: str) -> Callable[[], None]:
    """What waits for the device after a call: nothing on a synchronous CPU, ``sync_devices`` otherwise."""
    if device == "cpu" and tf.config.experimental.get_synchronous_execution():
        return lambda: None
    return tf.test.experimental.sync_devices


def device_scope(device_name: str) -> Callable[[], AbstractContextManager[Any]]:
    """The device placement for tracing and calls: ``tf.device(device_name)`` when TensorFlow sees a GPU (so the
    CPU can be asked for), else nothing (every op is on the CPU anyway, and the context costs a call time)."""
    if tf.config.list_logical_devices("GPU"):
        return lambda: tf.device(device_name)
    return contextlib.nullcontext


def tape_programs(
    fn: Callable[..., Any],
    primals: tuple[Any, ...],
    consts: tuple[Any, ...],
    cotangent: Any,
    *,
    jit: bool = False,
    device: str = "cpu",
    scope: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> LayerPrograms:
    """Forward and backward programs of ``fn(*primals, *consts) -> (output, aux)`` as a ``tf.function``.

    The backward differentiates ``output`` with respect to every tensor in ``primals`` (nested), for the
    output cotangent ``cotangent``; ``aux`` (a layer's new state) is computed by the forward only.
    ``scope`` is entered around tracing and around every call (device placement).
    """
    program = tf.function(fn, jit_compile=jit, autograph=False)
    sources = tf.nest.flatten(primals)
    wait = waiter(device)
    with scope():
        program.get_concrete_function(*primals, *consts)
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(sources)
            output, _ = program(*primals, *consts)

    def forward() -> None:
        with scope():
            program(*primals, *consts)
        wait()

    def backward() -> None:
        with scope():
            tape.gradient(
                output, sources, output_gradients=cotangent, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
        wait()

    return LayerPrograms(forward, backward)


def layer_programs(
    model: TensorFlowModel, node: Node, inputs: Sequence[np.ndarray], cotangent: np.ndarray, step: int = 0
) -> LayerPrograms:
    """The forward and backward programs of ``node`` on ``model``, on device copies of ``inputs`` (training mode,
    dropout masks of ``step``); the backward is the VJP for ``cotangent`` w.r.t. the inputs and the layer's weights."""
    params, state = node_arrays(model, node)
    run = layer_function(model, node, LOWERINGS)

    primals = ([model.put(x) for x in inputs], {k: model.put(v) for k, v in params.items()})
    with tf.device(model.device_name):
        consts = ({k: model.put(v) for k, v in state.items()}, tf.constant(step, tf.int64))
    return tape_programs(
        run,
        primals,
        consts,
        model.put(cotangent),
        jit=model.plan.jit,
        device=model.device,
        scope=device_scope(model.device_name),
    )


def dispatch_programs(model: TensorFlowModel) -> LayerPrograms:
    """The forward and backward programs of an empty layer (``x + 1`` on one number): the cost of one call."""
    one = model.put(np.ones((1,), dtype=model.dtype))
    return tape_programs(
        lambda x: (x + 1, {}),
        (one,),
        (),
        one,
        jit=model.plan.jit,
        device=model.device,
        scope=device_scope(model.device_name),
    )
