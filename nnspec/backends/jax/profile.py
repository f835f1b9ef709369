"""One layer's forward and backward programs on JAX, for ``nnspec profile`` (:mod:`nnspec.backends.profiling`).

The forward is the layer's lowering (training mode) jitted and compiled ahead of time. The backward is
the function ``jax.vjp`` returns, evaluated once on the device so that it holds the forward's residuals,
then jitted as a program of its own: it runs the vector-Jacobian product alone. Both wait with
``jax.block_until_ready``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ...compiler.ir import Node
from ..profiling import LayerPrograms, layer_function, node_arrays
from .layers import LOWERINGS
from .model import JaxModel


def vjp_programs(
    fn: Callable[..., Any], primals: tuple[Any, ...], consts: tuple[Any, ...], cotangent: Any
) -> LayerPrograms:
    """Forward and backward programs of ``fn(*primals, *consts) -> (output, aux)``.

    The backward differentiates ``output`` with respect to every array in ``primals`` (pytrees), for the
    output cotangent ``cotangent``; ``aux`` (a layer's new state) is computed by the forward, not differentiated.
    """
    forward = jax.jit(fn).lower(*primals, *consts).compile()

    def residuals(primals: tuple[Any, ...], consts: tuple[Any, ...]) -> Any:
        _, pullback, _ = jax.vjp(lambda *p: fn(*p, *consts), *primals, has_aux=True)
        return pullback

    pullback = jax.jit(residuals)(primals, consts)
    backward = jax.jit(lambda pullback, cotangent: pullback(cotangent)).lower(pullback, cotangent).compile()
    return LayerPrograms(
        forward=lambda: jax.block_until_ready(forward(*primals, *consts)),
        backward=lambda: jax.block_until_ready(backward(pullback, cotangent)),
    )


def layer_programs(
    model: JaxModel, node: Node, inputs: Sequence[np.ndarray], cotangent: np.ndarray, step: int = 0
) -> LayerPrograms:
    """The forward and backward programs of ``node`` on ``model``, on device copies of ``inputs`` (training mode,
    dropout masks of ``step``); the backward is the VJP for ``cotangent`` w.r.t. the inputs and the layer's weights."""
    params, state = node_arrays(model, node)
    run = layer_function(model, node, LOWERINGS)

    with model._scope():
        device = [model.put(x) for x in inputs], {k: model.put(v) for k, v in params.items()}
        consts = ({k: model.put(v) for k, v in state.items()}, model._int(step))
        return vjp_programs(run, device, consts, model.put(cotangent))


def dispatch_programs(model: JaxModel) -> LayerPrograms:
    """The forward and backward programs of an empty layer (``x + 1`` on one number): the cost of one call."""
    with model._scope():
        one = model.put(np.ones((1,), dtype=model.dtype))
        return vjp_programs(lambda x: (x + 1, {}), (one,), (), one)
