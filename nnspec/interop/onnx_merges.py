"""ONNX lowerings of the element-wise merges, ``rescaling`` and ``layer_scale`` (registered in :mod:`.onnx_ops`).

ONNX broadcasts as NumPy does, aligning on the last axis; nnspec's merges align per-example shapes on the last
axis too, so an input of lower rank gets axes of length 1 right after the batch axis (``Unsqueeze``). Inputs of
one rank are merged in the first one's layout (no transposes); inputs of several ranks are merged channels last.
``add``, ``multiply`` and ``maximum`` / ``minimum`` are ``Sum``, ``Mul`` (a chain), ``Max`` / ``Min``
(first input at a tie: the values are the same at inference), ``subtract`` is ``Sub`` and ``average`` ``Mean``.
A per-channel factor (``rescaling`` lists, ``layer_scale``'s gamma) is shaped ``(C, 1, ..., 1)`` on a
channels-first tensor.
"""

from __future__ import annotations

import numpy as np

from ..compiler.ir import Node
from .onnx_graph import GraphBuilder, Value
from .onnx_ops import Weights, converter

_OPS = {"add": "Sum", "average": "Mean", "maximum": "Max", "minimum": "Min", "subtract": "Sub"}


def _aligned(builder: GraphBuilder, node: Node, inputs: list[Value]) -> list[Value]:
    """The inputs at the output's rank, in one layout."""
    rank = len(node.output_shape)
    if all(v.rank == rank for v in inputs):
        return builder.same_layout(inputs)
    out = []
    for i, v in enumerate(inputs):
        v = builder.in_layout(v, False)
        if v.rank < rank:
            axes = builder.constant(builder.fresh(node, f"axes{i}"), np.arange(1, 1 + rank - v.rank), dtype=np.int64)
            name = builder.emit("Unsqueeze", [v.name, axes], builder.fresh(node, f"input{i}"), name=f"{node.name}/u{i}")
            v = Value(name, rank, False)
        out.append(v)
    return out


@converter("add", "multiply", "subtract", "average", "maximum", "minimum")
def _elementwise(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    values = _aligned(builder, node, inputs)
    layout = values[0].channels_first and values[0].rank >= 2
    out = builder.tensor_name(node)
    if node.op != "multiply":
        emitted = builder.emit(_OPS[node.op], [v.name for v in values], out, name=node.name)
        return Value(emitted, len(node.output_shape), layout)
    total = values[0].name
    for position, v in enumerate(values[1:], start=2):
        last = position == len(values)
        target = out if last else builder.fresh(node, f"product{position}")
        total = builder.emit("Mul", [total, v.name], target, name=node.name if last else target)
    return Value(total, len(node.output_shape), layout)


def _per_channel(builder: GraphBuilder, node: Node, x: Value, values: np.ndarray, part: str) -> str:
    """A constant of a number or of one number per channel, shaped to broadcast over ``x``'s layout."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1 and x.channels_first and x.rank >= 2:
        values = values.reshape(-1, *((1,) * (x.rank - 1)))
    return builder.constant(builder.fresh(node, part), values)


@converter("rescaling")
def _rescaling(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = inputs[0]
    scale = _per_channel(builder, node, x, np.asarray(node.attrs["scale"]), "scale")
    offset = _per_channel(builder, node, x, np.asarray(node.attrs["offset"]), "offset")
    scaled = builder.emit("Mul", [x.name, scale], builder.fresh(node, "scaled"), name=f"{node.name}/scale")
    out = builder.emit("Add", [scaled, offset], builder.tensor_name(node), name=node.name)
    return Value(out, x.rank, x.channels_first)


@converter("layer_scale")
def _layer_scale(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = inputs[0]
    gamma = _per_channel(builder, node, x, weights[node.key("gamma")], "gamma")
    out = builder.emit("Mul", [x.name, gamma], builder.tensor_name(node), name=node.name)
    return Value(out, x.rank, x.channels_first)
