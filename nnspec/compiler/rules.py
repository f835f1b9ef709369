"""Shape, parameter and FLOP rules, one pure function per op type (the opset refers to them).

A rule takes the op's canonical attributes and the per-example input shape (a merge rule: the shapes
of all its inputs and the names of the layers they come from) and returns what inference learns about
the layer, or raises :class:`ShapeProblem` with a message and a hint. The front end turns a
``ShapeProblem`` into a positioned diagnostic.

Padding and rounding (the same on every backend), for a window spanning ``k = dilation * (size - 1) + 1``:
``valid`` gives ``floor((n - k) / s) + 1``; ``same`` gives ``ceil(n / s)`` and pads
``max((out - 1) * s + k - n, 0)`` in all, ``total // 2`` before and the rest (the odd pixel) after, which is
TensorFlow's rule; ``causal`` (``conv1d``) pads ``k - 1`` before and nothing after, so that an output step
sees no later input step, and gives ``ceil(n / s)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .ir import Initializer, ParamSpec, Shape

#: Most values one tensor may hold (per example for a layer output, in all for a weight): 2**48, about
#: a petabyte in float32. A spec asking for more is refused: no machine holds it, and counts that big
#: overflow the 64-bit sizes of array libraries once multiplied by a batch and an item size.
MAX_ELEMENTS = 2**48


class ShapeProblem(Exception):
    """A layer cannot take its input; ``message`` says what was found and ``hint`` how to fix it."""

    def __init__(self, message: str, hint: str | None = None, code: str = "E0301"):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


@dataclass(frozen=True)
class Inferred:
    """What shape inference learns about one layer."""

    output_shape: Shape
    params: tuple[ParamSpec, ...] = ()
    flops: int = 0
    state: tuple[ParamSpec, ...] = ()


#: The rule of an op that reads one input.
Rule = Callable[[Mapping[str, Any], Shape], Inferred]
#: The rule of a merge op: the shapes of all inputs and the names of the layers they come from.
MergeRule = Callable[[Mapping[str, Any], tuple[Shape, ...], tuple[str, ...]], Inferred]


def _size(shape: Sequence[int]) -> int:
    return math.prod(shape)


def check_sizes(inferred: Inferred) -> None:
    """Raise :class:`ShapeProblem` (``E0306``) when the output or a weight would hold more than
    :data:`MAX_ELEMENTS` values."""
    size = _size(inferred.output_shape)
    if size > MAX_ELEMENTS:
        raise ShapeProblem(
            f"its output would hold {size:,} values per example, more than {MAX_ELEMENTS:,} (2^48); "
            "no machine can hold it",
            "use fewer units or filters, larger strides, or a smaller input",
            code="E0306",
        )
    for param in (*inferred.params, *inferred.state):
        size = _size(param.shape)
        if size > MAX_ELEMENTS:
            raise ShapeProblem(
                f"its {param.name} {param.shape} would hold {size:,} values, more than {MAX_ELEMENTS:,} (2^48); "
                "no machine can hold it",
                "use fewer units or filters, or a smaller kernel",
                code="E0306",
            )


def output_length(n: int, k: int, s: int, padding: str) -> int:
    """Length of one spatial axis after a window spanning ``k`` with stride ``s`` (see module docstring)."""
    if padding in ("same", "causal"):
        return -(-n // s)
    return (n - k) // s + 1


def same_padding(n: int, k: int, s: int) -> tuple[int, int]:
    """Padding (before, after) of one axis under ``same``: the odd pixel goes after."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _needs_rank(shape: Shape, rank: int, what: str, hint: str) -> None:
    if len(shape) != rank:
        raise ShapeProblem(f"needs {what}; got {shape}", hint)


def _spatial(
    attrs: Mapping[str, Any], shape: Shape, window: tuple[int, ...], label: str, dilation: tuple[int, ...] | None = None
) -> tuple[int, ...]:
    """The output's spatial shape for a window over the spatial axes of ``shape`` (all but the channels)."""
    spatial = shape[:-1]
    dilation = dilation or (1,) * len(window)
    spans = tuple(d * (k - 1) + 1 for k, d in zip(window, dilation))
    padding = attrs["padding"]
    if padding == "valid" and any(span > n for span, n in zip(spans, spatial)):
        dilated = "" if spans == tuple(window) else f" (spanning {'x'.join(map(str, spans))} dilated)"
        raise ShapeProblem(
            f"{label} {'x'.join(map(str, window))}{dilated} is larger than its input {'x'.join(map(str, spatial))} "
            "with padding 'valid'",
            f"use a smaller {label}, or padding: same",
            code="E0302",
        )
    return tuple(output_length(n, span, s, padding) for n, span, s in zip(spatial, spans, attrs["strides"]))


def _activation_flops(name: str, n: int) -> int:
    return 0 if name == "linear" else n


def dense(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``dense`` on the last axis of an input of any rank (as Keras's Dense);
    kernel ``[in, units]``, bias ``[units]``."""
    if not shape:
        raise ShapeProblem("needs an input with a feature axis; got a scalar per example", "add a `reshape` before it")
    n_in, units = shape[-1], attrs["units"]
    params = [ParamSpec("kernel", (n_in, units), attrs["kernel_init"], n_in, units)]
    if attrs["use_bias"]:
        params.append(ParamSpec("bias", (units,), attrs["bias_init"], n_in, units))
    rows = _size(shape[:-1])
    flops = rows * (
        2 * n_in * units + (units if attrs["use_bias"] else 0) + _activation_flops(attrs["activation"], units)
    )
    return Inferred((*shape[:-1], units), tuple(params), flops)


def _conv(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """A convolution over every axis of ``shape`` but the last: kernel ``[*k, in / groups, filters]``, bias
    ``[filters]``."""
    window = tuple(attrs["kernel"])
    dilation = tuple(attrs.get("dilation", (1,) * len(window)))
    if any(d > 1 for d in dilation) and any(s > 1 for s in attrs["strides"]):
        raise ShapeProblem(
            f"strides {list(attrs['strides'])} and dilation {list(dilation)} cannot both exceed 1 (as in Keras)",
            "use strides: 1 with a dilation, or dilation: 1 with strides",
            code="E0302",
        )
    out = _spatial(attrs, shape, window, "kernel", dilation)
    taps, groups, cout = math.prod(window), int(attrs.get("groups", 1)), attrs["filters"]
    if shape[-1] % groups or cout % groups:
        raise ShapeProblem(
            f"groups {groups} must divide the input's {shape[-1]} channels and the {cout} filters",
            "use a number of groups that divides both (1: an ordinary convolution)",
            code="E0302",
        )
    cin = shape[-1] // groups
    fan_in, fan_out = taps * cin, taps * cout
    params = [ParamSpec("kernel", (*window, cin, cout), attrs["kernel_init"], fan_in, fan_out)]
    if attrs["use_bias"]:
        params.append(ParamSpec("bias", (cout,), attrs["bias_init"], fan_in, fan_out))
    size = _size(out) * cout
    flops = 2 * taps * cin * size + (size if attrs["use_bias"] else 0) + _activation_flops(attrs["activation"], size)
    return Inferred((*out, cout), tuple(params), flops)


def conv1d(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``conv1d``: a rank-2 input (steps, channels); kernel ``[k, in, filters]`` and bias ``[filters]``."""
    _needs_rank(
        shape, 2, "a rank-2 input (steps, channels) per example", "give input.shape as [steps, C], or add a `reshape`"
    )
    return _conv(attrs, shape)


def conv2d(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``conv2d``: a rank-3 input; kernel ``[kh, kw, in / groups, filters]`` and bias ``[filters]``."""
    _needs_rank(
        shape,
        3,
        "a rank-3 input (height, width, channels) per example",
        "give input.shape as [H, W, C], or add a `reshape` before it",
    )
    return _conv(attrs, shape)


def _pool(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    window = tuple(attrs["size"])
    out = _spatial(attrs, shape, window, "pool size")
    return Inferred((*out, shape[-1]), (), math.prod(window) * _size(out) * shape[-1])


def pool1d(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``max_pool1d`` and ``avg_pool1d``: a rank-2 input (steps, channels); the channels are kept."""
    _needs_rank(
        shape, 2, "a rank-2 input (steps, channels) per example", "pool only after a conv1d or a reshape to [steps, C]"
    )
    return _pool(attrs, shape)


def pool2d(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``max_pool2d`` and ``avg_pool2d``: a rank-3 input; the channels are kept."""
    _needs_rank(
        shape,
        3,
        "a rank-3 input (height, width, channels) per example",
        "pool only after a conv2d or a reshape to [H, W, C]",
    )
    return _pool(attrs, shape)


def flatten(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``flatten``: any input to one axis."""
    return Inferred((_size(shape),))


def reshape(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``reshape``: the target (already free of ``-1``) must hold as many values as the input."""
    target = tuple(attrs["shape"])
    if _size(target) != _size(shape):
        raise ShapeProblem(
            f"cannot reshape {shape} ({_size(shape)} values) to {target} ({_size(target)} values)",
            "the new shape must hold the same number of values; use -1 for one axis to infer it",
            code="E0303",
        )
    return Inferred(target)


def dropout(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``dropout``: the shape is kept; one FLOP per element."""
    return Inferred(shape, (), _size(shape))


def activation(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``activation``: the shape is kept; one FLOP per element unless linear."""
    return Inferred(shape, (), _activation_flops(attrs["activation"], _size(shape)))


def softmax(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``softmax``: the shape is kept; three FLOPs per element."""
    return Inferred(shape, (), 3 * _size(shape))


def concat(attrs: Mapping[str, Any], shapes: tuple[Shape, ...], names: tuple[str, ...]) -> Inferred:
    """``concat``: inputs of one rank that agree on every axis but the (per-example) ``axis``."""
    rank = len(shapes[0])
    axis = attrs["axis"]
    for shape, name in zip(shapes[1:], names[1:]):
        if len(shape) != rank:
            raise ShapeProblem(
                f"cannot concatenate {names[0]!r} {shapes[0]} and {name!r} {shape}: their ranks differ",
                "concatenate outputs of one rank (flatten both, or both (H, W, C))",
                code="E0305",
            )
    if not -rank <= axis < rank:
        raise ShapeProblem(
            f"axis {axis} is out of range for inputs of rank {rank} (per example)",
            f"use an axis from {-rank} to {rank - 1}; the default -1 is the channel axis",
            code="E0305",
        )
    axis %= rank
    for shape, name in zip(shapes[1:], names[1:]):
        if any(a != b for i, (a, b) in enumerate(zip(shape, shapes[0])) if i != axis):
            raise ShapeProblem(
                f"cannot concatenate {names[0]!r} {shapes[0]} and {name!r} {shape} on axis {axis}: "
                "the other axes differ",
                "the inputs must agree on every axis but the concatenation axis",
                code="E0305",
            )
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return Inferred(tuple(out))


def _norm_params(attrs: Mapping[str, Any], channels: int) -> tuple[ParamSpec, ...]:
    params = []
    if attrs["scale"]:
        params.append(ParamSpec("gamma", (channels,), Initializer("ones")))
    if attrs["center"]:
        params.append(ParamSpec("beta", (channels,), Initializer("zeros")))
    return tuple(params)


def batch_norm(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``batch_norm`` over the last axis: ``gamma``/``beta`` trainable, ``moving_mean``/``moving_variance`` state."""
    if not shape:
        raise ShapeProblem(
            "needs an input with a channel axis; got a scalar per example",
            "apply batch_norm to a dense or conv2d output",
        )
    channels = shape[-1]
    state = (
        ParamSpec("moving_mean", (channels,), Initializer("zeros")),
        ParamSpec("moving_variance", (channels,), Initializer("ones")),
    )
    return Inferred(shape, _norm_params(attrs, channels), 2 * _size(shape), state)


def layer_norm(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``layer_norm`` over the last axis: ``gamma``/``beta`` trainable, no state."""
    if not shape:
        raise ShapeProblem(
            "needs an input with a feature axis; got a scalar per example",
            "apply layer_norm to a dense or conv2d output",
        )
    return Inferred(shape, _norm_params(attrs, shape[-1]), 7 * _size(shape))


def global_pool2d(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``global_avg_pool2d`` and ``global_max_pool2d``: (H, W, C) -> (C,), or (1, 1, C) with ``keepdims``."""
    _needs_rank(
        shape,
        3,
        "a rank-3 input (height, width, channels) per example",
        "pool only after a conv2d or a reshape to [H, W, C]",
    )
    return Inferred((1, 1, shape[2]) if attrs.get("keepdims") else (shape[2],), (), _size(shape))


def global_pool1d(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``global_avg_pool1d`` and ``global_max_pool1d``: (steps, C) -> (C,), or (1, C) with ``keepdims``."""
    _needs_rank(
        shape, 2, "a rank-2 input (steps, channels) per example", "pool only after a conv1d or a reshape to [steps, C]"
    )
    return Inferred((1, shape[1]) if attrs.get("keepdims") else (shape[1],), (), _size(shape))
