"""Shape, parameter and FLOP rules of the convolutions Keras 3 adds to ``Conv2D``, and their geometry.

``depthwise_conv2d`` is Keras's ``DepthwiseConv2D``: each input channel convolved with its own
``depth_multiplier`` filters (kernel ``[kh, kw, in, multiplier]``; output channel ``c * multiplier + m``), which
is a convolution with ``groups = in`` and the kernel read as ``[kh, kw, 1, in * multiplier]``.
``separable_conv2d`` is Keras's ``SeparableConv2D``: that depthwise convolution (strides, padding, dilation)
then a 1x1 pointwise convolution (``pointwise_kernel [1, 1, in * multiplier, filters]``) and one bias.
``conv2d_transpose`` is Keras's ``Conv2DTranspose`` (kernel ``[kh, kw, filters, in]``): the input gradient of
the convolution of an output-sized image with that kernel, with Keras's output size
(:func:`transpose_geometry`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from .ir import Node, ParamSpec, Shape
from .rules import Inferred, ShapeProblem, _activation_flops, _needs_rank, _spatial


def _image(shape: Shape) -> None:
    _needs_rank(
        shape,
        3,
        "a rank-3 input (height, width, channels) per example",
        "give input.shape as [H, W, C], or add a `reshape` before it",
    )


def check_strides_and_dilation(strides: tuple[int, ...], dilation: tuple[int, ...]) -> None:
    """Keras's rule: strides and dilation cannot both exceed 1 (``ShapeProblem`` ``E0302``)."""
    if any(d > 1 for d in dilation) and any(s > 1 for s in strides):
        raise ShapeProblem(
            f"strides {list(strides)} and dilation {list(dilation)} cannot both exceed 1 (as in Keras)",
            "use strides: 1 with a dilation, or dilation: 1 with strides",
            code="E0302",
        )


def _depthwise(attrs: Mapping[str, Any], shape: Shape, init_key: str, name: str) -> tuple[Shape, ParamSpec, int]:
    """The depthwise part: its output shape, its kernel ``[kh, kw, in, multiplier]`` and its FLOPs."""
    _image(shape)
    window, dilation = tuple(attrs["kernel"]), tuple(attrs["dilation"])
    check_strides_and_dilation(tuple(attrs["strides"]), dilation)
    out = _spatial(attrs, shape, window, "kernel", dilation)
    taps, cin, mult = math.prod(window), shape[-1], attrs["depth_multiplier"]
    kernel = ParamSpec(name, (*window, cin, mult), attrs[init_key], taps * cin, taps * mult)
    return (*out, cin * mult), kernel, 2 * taps * math.prod(out) * cin * mult


def _bias_and_activation(attrs: Mapping[str, Any], size: int) -> int:
    return (size if attrs["use_bias"] else 0) + _activation_flops(attrs["activation"], size)


def depthwise_conv2d(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``depthwise_conv2d``: kernel ``[kh, kw, in, depth_multiplier]``, bias ``[in * depth_multiplier]``."""
    out, kernel, flops = _depthwise(attrs, shape, "kernel_init", "kernel")
    params = [kernel]
    if attrs["use_bias"]:
        params.append(ParamSpec("bias", (out[-1],), attrs["bias_init"], kernel.fan_in, kernel.fan_out))
    return Inferred(out, tuple(params), flops + _bias_and_activation(attrs, math.prod(out)))


def separable_conv2d(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``separable_conv2d``: ``depthwise_kernel [kh, kw, in, m]``, ``pointwise_kernel [1, 1, in * m, filters]``,
    bias ``[filters]``."""
    mid, depthwise, flops = _depthwise(attrs, shape, "depthwise_init", "depthwise_kernel")
    inner, filters = mid[-1], attrs["filters"]
    pointwise = ParamSpec("pointwise_kernel", (1, 1, inner, filters), attrs["pointwise_init"], inner, filters)
    params = [depthwise, pointwise]
    if attrs["use_bias"]:
        params.append(ParamSpec("bias", (filters,), attrs["bias_init"], inner, filters))
    size = math.prod(mid[:-1]) * filters
    flops += 2 * size * inner + _bias_and_activation(attrs, size)
    return Inferred((*mid[:-1], filters), tuple(params), flops)


def transpose_geometry(n: int, k: int, s: int, padding: str, output_padding: int | None) -> tuple[int, tuple[int, int]]:
    """One axis of a transposed convolution of an ``n``-long input, Keras 3's rule: the output length, and the
    (before, after) padding of the convolution (of an output-long input, kernel ``k``, stride ``s``) whose
    input gradient the transposed convolution is.

    ``valid``: ``(n - 1) * s + k + output_padding`` (default ``output_padding``: ``max(k, s) - k``); ``same``:
    ``n * s``, or ``(n - 1) * s + k % 2 + output_padding`` when ``output_padding`` is given. The trailing
    output elements no window reaches (``output_padding`` past the last one) hold only the bias.
    """
    if padding == "valid":
        extra = max(k, s) - k if output_padding is None else output_padding
        out, before = (n - 1) * s + k + extra, 0
    else:
        total = s + k - 2 if output_padding is None else k + k % 2 - 2 + output_padding
        left = min(total // 2 + total % 2, k - 1)
        out, before = (n - 1) * s + total + 2 - k, k - 1 - left
    return out, (before, max(0, (n - 1) * s + k - out - before))


def transpose_padding(node: Node) -> tuple[tuple[int, int], ...]:
    """The (before, after) padding pairs of a ``conv2d_transpose`` node's underlying convolution."""
    a = node.attrs
    ops = a["output_padding"] or (None,) * len(a["kernel"])
    return tuple(
        transpose_geometry(n, k, s, a["padding"], op)[1]
        for n, k, s, op in zip(node.input_shape, a["kernel"], a["strides"], ops)
    )


def conv2d_transpose(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``conv2d_transpose``: kernel ``[kh, kw, filters, in]``, bias ``[filters]``; output size as Keras's."""
    _image(shape)
    window, strides, ops = tuple(attrs["kernel"]), tuple(attrs["strides"]), attrs["output_padding"]
    if ops is not None and any(p >= s for p, s in zip(ops, strides)):
        raise ShapeProblem(
            f"output_padding {list(ops)} must be smaller than strides {list(strides)} on every axis (as in Keras)",
            "use an output_padding below the stride, or leave it out",
            code="E0302",
        )
    out = tuple(
        transpose_geometry(n, k, s, attrs["padding"], op)[0]
        for n, k, s, op in zip(shape[:-1], window, strides, ops or (None,) * len(window))
    )
    if min(out) < 1:
        raise ShapeProblem(
            f"its output would be empty ({'x'.join(map(str, out))})", "use a larger output_padding or input"
        )
    taps, cin, cout = math.prod(window), shape[-1], attrs["filters"]
    params = [ParamSpec("kernel", (*window, cout, cin), attrs["kernel_init"], taps * cout, taps * cin)]
    if attrs["use_bias"]:
        params.append(ParamSpec("bias", (cout,), attrs["bias_init"], taps * cout, taps * cin))
    size = math.prod(out) * cout
    flops = 2 * taps * cin * cout * math.prod(shape[:-1]) + _bias_and_activation(attrs, size)
    return Inferred((*out, cout), tuple(params), flops)
