"""The element-wise merges and per-channel affine layers, written once over :class:`~nnspec.semantics.ops.Ops`.

Inputs broadcast as Keras 3's merge layers broadcast them (see :mod:`nnspec.compiler.merge_rules`): an input of
lower per-example rank gets axes of length 1 right after the batch axis, then the engine's own broadcasting
applies. Each input is reshaped to its full batched rank, with those length-1 axes written out, so that every
engine knows statically which axes broadcast (PyTensor needs that). ``maximum`` and ``minimum`` are chains of
``where`` (``where(a >= b, a, b)``), so that at a tie the first input takes the whole gradient on every engine:
engines disagree on the gradient of their own max/min at a tie (see :mod:`nnspec.semantics.activations`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..compiler.ir import Node, Shape
from .ops import Ops


def to_rank(ops: Ops, x: Any, shape: Shape, rank: int) -> Any:
    """``x`` (batched, per-example ``shape``) with length-1 axes after the batch axis up to per-example ``rank``."""
    if len(shape) >= rank:
        return x
    return ops.reshape(x, (-1, *((1,) * (rank - len(shape))), *shape))


def aligned(ops: Ops, node: Node, inputs: Sequence[Any]) -> list[Any]:
    """The inputs of a merge node, each at the output's per-example rank (Keras's expand_dims at axis 1)."""
    rank = len(node.output_shape)
    return [to_rank(ops, x, tuple(shape), rank) for x, shape in zip(inputs, node.input_shapes)]


def first_max(ops: Ops, a: Any, b: Any) -> Any:
    """``max(a, b)``; at a tie ``a`` (and its gradient)."""
    return ops.where(a >= b, a, b)


def first_min(ops: Ops, a: Any, b: Any) -> Any:
    """``min(a, b)``; at a tie ``a`` (and its gradient)."""
    return ops.where(a <= b, a, b)


#: The merges that join their inputs left to right with one binary operation (``average`` then divides).
BINARY: dict[str, Callable[[Ops, Any, Any], Any]] = {
    "add": lambda ops, a, b: a + b,
    "average": lambda ops, a, b: a + b,
    "multiply": lambda ops, a, b: a * b,
    "maximum": first_max,
    "minimum": first_min,
}
#: The merges whose gradient at a tie goes to the first input.
EXTREMES: dict[str, Callable[[Ops, Any, Any], Any]] = {"maximum": first_max, "minimum": first_min}


def merge(ops: Ops, op: str, values: Sequence[Any]) -> Any:
    """The element-wise merge ``op`` of ``values`` (already at one rank): left to right, as Keras computes it."""
    if op == "subtract":
        first, second = values
        return first - second
    combine = BINARY[op]
    total = values[0]
    for value in values[1:]:
        total = combine(ops, total, value)
    if op == "average":
        total = total / ops.constant(float(len(values)))
    return total


def merge_node(ops: Ops, node: Node, inputs: Sequence[Any]) -> Any:
    """The value of an element-wise merge node on its (batched) inputs."""
    return merge(ops, node.op, aligned(ops, node, inputs))


def channel_constant(ops: Ops, value: float | Sequence[float]) -> Any:
    """A number, or a per-channel vector (broadcast over the last axis), in the model's float type."""
    if isinstance(value, (int, float)):
        return ops.constant(float(value))
    return ops.concat([ops.reshape(ops.constant(float(v)), (1,)) for v in value], 0)


def rescale(ops: Ops, x: Any, scale: float | Sequence[float], offset: float | Sequence[float]) -> Any:
    """``x * scale + offset`` (Keras's Rescaling); a factor of 1 and an offset of 0 are left out."""
    if not isinstance(scale, (int, float)) or scale != 1.0:
        x = x * channel_constant(ops, scale)
    if not isinstance(offset, (int, float)) or offset != 0.0:
        x = x + channel_constant(ops, offset)
    return x
