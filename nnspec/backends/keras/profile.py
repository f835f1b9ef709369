"""One layer's forward and backward programs on Keras 3, for ``nnspec profile`` (:mod:`nnspec.backends.profiling`).

The layer is the model's own Keras layer, called statelessly (``layer.stateless_call``, training mode)
with the layer's weights, its moving statistics and, for nnspec's dropout, the step as its counter, as
the model's training step calls it. The programs are compiled the way Keras's engine compiles them, with
the helpers of that engine's nnspec backend: on Keras-JAX :func:`nnspec.backends.jax.profile.vjp_programs`
(``jax.jit``; the backward is the jitted ``jax.vjp`` function), on Keras-TensorFlow
:func:`nnspec.backends.tensorflow.profile.tape_programs` (``tf.function``; the backward is the graph a
``GradientTape`` runs for the call).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from keras import ops as K

from ...compiler.ir import Node
from ...compiler.opset import MERGE_OPS
from ..profiling import LayerPrograms, node_arrays
from .layers import COUNTER
from .model import KerasModel


def _compiled(
    model: KerasModel, fn: Callable[..., Any], primals: tuple[Any, ...], consts: tuple[Any, ...], cotangent: Any
) -> LayerPrograms:
    """``fn``'s forward and backward programs on the engine Keras runs on (see the module docstring)."""
    if model.engine == "jax":
        from ..jax.profile import vjp_programs

        with model._scope():
            return vjp_programs(fn, primals, consts, cotangent)
    from ..tensorflow.profile import tape_programs

    return tape_programs(fn, primals, consts, cotangent, device=model.device, scope=model._scope)


def layer_programs(
    model: KerasModel, node: Node, inputs: Sequence[np.ndarray], cotangent: np.ndarray, step: int = 0
) -> LayerPrograms:
    """The forward and backward programs of ``node``'s Keras layer on ``model`` (training mode, dropout masks
    of ``step``); the backward is the VJP for ``cotangent`` w.r.t. the inputs and the layer's weights."""
    layer = model._kgraph.layers[node.name]
    keys = model._kgraph._keys
    params, state = node_arrays(model, node)
    trainable = [keys[id(v)] for v in layer.trainable_variables]
    non_trainable = [keys.get(id(v)) for v in layer.non_trainable_variables]
    fixed = [v.value for v in layer.non_trainable_variables]
    merge = node.op in MERGE_OPS
    options = {"training": True} if "training" in inspect.signature(layer.call).parameters else {}

    def run(xs: list[Any], params: dict[str, Any], state: dict[str, Any], step: Any) -> tuple[Any, dict[str, Any]]:
        ntv = [
            K.cast(step, "int32") if key == COUNTER else value if key is None else state.get(key, value)
            for key, value in zip(non_trainable, fixed)
        ]
        out, new_ntv = layer.stateless_call(
            [params[k] for k in trainable], ntv, list(xs) if merge else xs[0], **options
        )
        return out, {key: value for key, value in zip(non_trainable, new_ntv) if key in state}

    primals = ([model.put(x) for x in inputs], {k: model.put(v) for k, v in params.items()})
    consts = ({k: model.put(v) for k, v in state.items()}, model._int(step))
    return _compiled(model, run, primals, consts, model.put(cotangent))


def dispatch_programs(model: KerasModel) -> LayerPrograms:
    """The forward and backward programs of an empty layer (``x + 1`` on one number): the cost of one call."""
    one = model.put(np.ones((1,), dtype=model.dtype))
    return _compiled(model, lambda x: (x + 1, {}), (one,), (), one)
