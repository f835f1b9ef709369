"""Shape rules and value readers of the element-wise merges and the per-channel affine layers.

The element-wise merges (``add``, ``multiply``, ``subtract``, ``average``, ``maximum``, ``minimum``) broadcast
as Keras 3's merge layers do: per-example shapes are aligned on their last axis (an input of lower rank gets
axes of length 1 after the batch axis, as Keras's ``expand_dims(x, axis=1)``), and on each axis the lengths
must be equal or one of them 1. So a per-channel gate ``(C,)`` or ``(1, 1, C)`` multiplies a feature map
``(H, W, C)``. ``rescaling`` (``x * scale + offset``) and ``layer_scale`` (``x * gamma``) act on the last axis.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from .ir import Initializer, ParamSpec, Shape
from .loader import YNode, YSeq
from .rules import Inferred, ShapeProblem
from .values import Invalid, describe, read_float


def broadcast_shapes(shapes: tuple[Shape, ...]) -> Shape | None:
    """The broadcast per-example shape of ``shapes`` (aligned on the last axis), or None when they do not broadcast."""
    rank = max(len(s) for s in shapes)
    out = [1] * rank
    for shape in shapes:
        padded = (1,) * (rank - len(shape)) + tuple(shape)
        for axis, n in enumerate(padded):
            if n == out[axis] or n == 1:
                continue
            if out[axis] != 1:
                return None
            out[axis] = n
    return tuple(out)


def elementwise(attrs: Mapping[str, Any], shapes: tuple[Shape, ...], names: tuple[str, ...]) -> Inferred:
    """An element-wise merge of two or more inputs whose shapes broadcast (Keras's merge layers' rule)."""
    out = broadcast_shapes(shapes)
    if out is None:
        listed = ", ".join(f"{name!r} {shape}" for name, shape in zip(names, shapes))
        raise ShapeProblem(
            f"cannot merge {listed} element-wise: the shapes do not broadcast (aligned on the last axis, each "
            "length must be equal or 1)",
            "make both branches produce the same shape (for example a 1x1 conv2d on the shortcut, or padding: "
            "same), or a per-channel gate of shape (C,) or (1, 1, C)",
            code="E0305",
        )
    return Inferred(out, (), (len(shapes) - 1) * math.prod(out))


def subtract(attrs: Mapping[str, Any], shapes: tuple[Shape, ...], names: tuple[str, ...]) -> Inferred:
    """``subtract``: exactly two inputs whose shapes broadcast."""
    if len(shapes) != 2:
        raise ShapeProblem(
            f"subtract takes exactly two inputs; got {len(shapes)} ({', '.join(map(repr, names))})",
            "list two layers: `- subtract: {inputs: [a, b]}` computes a - b",
            code="E0305",
        )
    return elementwise(attrs, shapes, names)


def _channel_values(value: Any, shape: Shape, key: str) -> None:
    if isinstance(value, (tuple, list)) and len(value) != 1 and (not shape or len(value) != shape[-1]):
        channels = shape[-1] if shape else "none"
        raise ShapeProblem(
            f"{key} lists {len(value)} values but the input has {channels} channels (its last axis)",
            f"give one number, or one per channel ({channels})",
            code="E0305",
        )


def rescaling(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``rescaling``: the shape is kept; a per-channel ``scale`` or ``offset`` lists one number per channel."""
    _channel_values(attrs["scale"], shape, "scale")
    _channel_values(attrs["offset"], shape, "offset")
    return Inferred(shape, (), 2 * math.prod(shape))


def layer_scale(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``layer_scale``: ``gamma`` ``[channels]``, initialised to ``init_values``; the shape is kept."""
    if not shape:
        raise ShapeProblem(
            "needs an input with a channel axis; got a scalar per example",
            "apply layer_scale to a dense or conv output",
        )
    gamma = ParamSpec("gamma", (shape[-1],), Initializer("constant", (("value", float(attrs["init_values"])),)))
    return Inferred(shape, (gamma,), math.prod(shape))


def read_number_or_list(node: YNode) -> float | tuple[float, ...]:
    """A number, or a list of numbers (one per channel) as a tuple of floats."""
    if isinstance(node, YSeq):
        if not node.items:
            raise Invalid(
                "must be a number or a non-empty list of numbers; got []", "write e.g. 0.5 or [1, 2, 3]", node
            )
        return tuple(read_float(item) for item in node.items)
    try:
        return read_float(node)
    except Invalid:
        raise Invalid(
            f"must be a number or a list of numbers (one per channel); got {describe(node)}",
            "write e.g. 0.00392156862745098 or [0.5, 0.25, 0.125]",
            node,
        ) from None
