"""One layer's forward and backward programs on PyTensor, for ``nnspec profile`` (:mod:`nnspec.backends.profiling`).

Inputs, weights, state, the step and the output cotangent are shared variables of static shape (as the
model's arrays are), so each program is a compiled function without arguments, in the model's linker
and training-step mode. The forward computes the layer's output and, in training, its new state. The
backward is ``pytensor.grad`` of the output for the cotangent (``known_grads``) with respect to the
inputs and the weights, compiled with the forward values it reads (the residuals: the intermediates the
gradient graph uses, computed once) standing in as shared variables, so it runs the VJP alone instead of
recomputing the forward. A compiled PyTensor function returns when its outputs are computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from ...compiler.ir import Node
from ..profiling import LayerPrograms, node_arrays
from .model import TheanoModel


def _shared(value: np.ndarray, name: str, shape: Sequence[int | None] | None = None) -> Any:
    import pytensor

    value = np.asarray(value)
    return pytensor.shared(value, shape=tuple(value.shape) if shape is None else tuple(shape), name=name)


def _resident(model: TheanoModel, var: Any) -> Any:
    """``var`` with its value where the model keeps arrays: a floating array becomes a JAX device array under
    the JAX linker (as the model's data slots do), so that calls do not copy it from the host."""
    value = var.get_value(borrow=True)
    if model.mode == "jax" and np.issubdtype(value.dtype, np.floating):
        import jax

        var.container.storage[0] = jax.device_put(value)
    return var


def _waiting(model: TheanoModel, forward: Any, backward: Any) -> LayerPrograms:
    """The two functions as programs that return when their outputs are computed (the JAX linker's outputs
    may still be on their way: they are waited for)."""
    if model.mode != "jax":
        return LayerPrograms(forward, backward)
    import jax

    return LayerPrograms(lambda: jax.block_until_ready(forward()), lambda: jax.block_until_ready(backward()))


def residuals(output: Any, grads: Sequence[Any]) -> list[Any]:
    """The intermediates of the forward graph of ``output`` that the gradient graph ``grads`` reads directly."""
    try:
        from pytensor.graph.traversal import ancestors
    except ImportError:  # PyTensor before 2.32
        from pytensor.graph.basic import ancestors  # type: ignore[no-redef]

    forward = {v for v in ancestors([output]) if v.owner is not None}
    found: list[Any] = []
    seen: set[Any] = set()
    stack = list(grads)
    while stack:
        var = stack.pop()
        if var in seen:
            continue
        seen.add(var)
        if var in forward:
            found.append(var)
        elif var.owner is not None:
            stack.extend(var.owner.inputs)
    return found


def layer_programs(
    model: TheanoModel, node: Node, inputs: Sequence[np.ndarray], cotangent: np.ndarray, step: int = 0
) -> LayerPrograms:
    """The forward and backward functions of ``node`` on ``model`` (training mode, dropout masks of ``step``);
    the backward is the VJP for ``cotangent`` w.r.t. the inputs and the layer's weights."""
    import pytensor
    from pytensor.graph.replace import clone_replace

    from .layers import LOWERINGS

    params, state = node_arrays(model, node)
    batch = int(inputs[0].shape[0])
    dtype = model.dtype
    xs = [_resident(model, _shared(np.asarray(x, dtype=dtype), f"{node.name}.input{i}")) for i, x in enumerate(inputs)]
    p = {k: _resident(model, _shared(np.asarray(v, dtype=dtype), k)) for k, v in params.items()}
    s = {k: _resident(model, _shared(np.asarray(v, dtype=dtype), k)) for k, v in state.items()}
    step_var = pytensor.shared(np.int64(step), name="step")
    ct = _resident(model, _shared(np.asarray(cotangent, dtype=dtype), f"{node.name}.cotangent"))
    with pytensor.config.change_flags(floatX=dtype):
        ctx = model.recipe.context(p, s, training=True, step=step_var, batch=batch)
        output = LOWERINGS.lower(ctx, node, list(xs))
        forward = pytensor.function([], [output, *ctx.new_state.values()], mode=model._pt_step_mode)
        grads = cast(
            list[Any], pytensor.grad(None, [*xs, *p.values()], known_grads={output: ct}, disconnected_inputs="ignore")
        )
        saved = residuals(output, grads)
        if saved:
            values = pytensor.function([], saved, mode=model._pt_mode)()
            stand_ins = {
                var: _resident(model, _shared(np.asarray(value), f"residual{i}", var.type.shape))
                for i, (var, value) in enumerate(zip(saved, values))
            }
            grads = clone_replace(grads, replace=stand_ins)
        backward = pytensor.function([], grads, mode=model._pt_step_mode)
    return _waiting(model, forward, backward)


def dispatch_programs(model: TheanoModel) -> LayerPrograms:
    """The forward and backward functions of an empty layer (``x + 1`` on one number): the cost of one call."""
    import pytensor

    x = _resident(model, _shared(np.ones((1,), dtype=model.dtype), "x"))
    ct = _resident(model, _shared(np.ones((1,), dtype=model.dtype), "cotangent"))
    output = x + 1
    forward = pytensor.function([], output, mode=model._pt_step_mode)
    backward = pytensor.function([], pytensor.grad(None, [x], known_grads={output: ct}), mode=model._pt_step_mode)
    return _waiting(model, forward, backward)
