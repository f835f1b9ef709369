"""Lowerings that are the same on every engine, written once over the engine's :class:`Ops`.

An op whose meaning is expressed by the :class:`~nnspec.semantics.ops.Ops` primitives and the shared
definitions of :mod:`nnspec.semantics` (dense, convolutions and pools over the window primitives,
activations, dropout masks, normalisation, merges, global pools, reshapes) is lowered here; each engine's
registry starts from these (:func:`engine_registry`) and may replace one where measurement found a faster
form with the same numbers (TensorFlow's dropout).
"""

from __future__ import annotations

import math
from typing import Any

from ..compiler.conv_rules import transpose_padding
from ..compiler.ir import Node
from ..compiler.shapes import dilation_of, padding_pairs, window_of
from . import merges, resample
from . import normalization as norm
from .activations import activate
from .dropout import apply_dropout, layer_mask_shape
from .lowering import Lowering, LoweringContext, OpRegistry

Context = LoweringContext
SHARED: OpRegistry[Lowering] = OpRegistry("shared")
shared = SHARED.register


def engine_registry(engine: str) -> OpRegistry[Lowering]:
    """A new registry for ``engine``, holding the shared lowerings (an engine may replace any of them)."""
    registry: OpRegistry[Lowering] = OpRegistry(engine)
    registry.update(SHARED)
    return registry


def bias_activation(ctx: Context, node: Node, z: Any) -> Any:
    """``activation(z + bias)`` (no bias when ``use_bias`` is false)."""
    if node.attrs["use_bias"]:
        z = ctx.ops.bias_add(z, ctx.param(node, "bias"))
    return activate(ctx.ops, node.attrs["activation"], z)


@shared("dense")
def dense(ctx: Context, node: Node, inputs: list) -> Any:
    """``activation(x @ kernel + bias)`` on the last axis; an input of higher rank is one matrix product of its rows."""
    x, kernel = inputs[0], ctx.param(node, "kernel")
    if len(node.input_shape) == 1:
        return bias_activation(ctx, node, ctx.ops.matmul(x, kernel))
    z = ctx.ops.matmul(ctx.ops.reshape(x, (-1, node.input_shape[-1])), kernel)
    return bias_activation(ctx, node, ctx.ops.reshape(z, (-1, *node.output_shape)))


@shared("conv1d", "conv2d")
def conv(ctx: Context, node: Node, inputs: list) -> Any:
    """``activation(conv(x, kernel) + bias)`` over the node's window, strides, dilation and padding."""
    z = ctx.ops.conv(
        inputs[0],
        ctx.param(node, "kernel"),
        tuple(node.attrs["strides"]),
        padding_pairs(node),
        dilation_of(node),
        int(node.attrs.get("groups", 1)),
    )
    return bias_activation(ctx, node, z)


def depthwise(ctx: Context, node: Node, x: Any, kernel: str) -> Any:
    """The depthwise convolution of ``x`` with the node's ``kernel`` ``[kh, kw, in, m]``: the convolution with
    ``groups = in`` and the kernel read as ``[kh, kw, 1, in * m]`` (output channel ``c * m + i``, Keras's order)."""
    *window, cin, mult = next(p.shape for p in node.params if p.name == kernel)
    grouped = ctx.ops.reshape(ctx.param(node, kernel), (*window, 1, cin * mult))
    return ctx.ops.conv(x, grouped, tuple(node.attrs["strides"]), padding_pairs(node), dilation_of(node), cin)


@shared("depthwise_conv2d")
def depthwise_conv2d(ctx: Context, node: Node, inputs: list) -> Any:
    """``activation(depthwise(x, kernel) + bias)``."""
    return bias_activation(ctx, node, depthwise(ctx, node, inputs[0], "kernel"))


@shared("separable_conv2d")
def separable_conv2d(ctx: Context, node: Node, inputs: list) -> Any:
    """``activation(pointwise(depthwise(x)) + bias)``, the pointwise convolution 1x1 and ungrouped."""
    mid = depthwise(ctx, node, inputs[0], "depthwise_kernel")
    z = ctx.ops.conv(mid, ctx.param(node, "pointwise_kernel"), (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    return bias_activation(ctx, node, z)


@shared("conv2d_transpose")
def conv2d_transpose(ctx: Context, node: Node, inputs: list) -> Any:
    """``activation(conv_transpose(x, kernel) + bias)``: the input gradient of the convolution (kernel
    ``[kh, kw, filters, in]``) whose input is this layer's output, Keras's sizes (:func:`transpose_padding`)."""
    spatial = tuple(node.output_shape[:-1])
    strides, pads = tuple(node.attrs["strides"]), transpose_padding(node)
    z = ctx.ops.conv_transpose(inputs[0], ctx.param(node, "kernel"), spatial, strides, pads, (1,) * len(spatial), 1)
    return bias_activation(ctx, node, z)


@shared("max_pool1d", "max_pool2d")
def max_pool(ctx: Context, node: Node, inputs: list) -> Any:
    """The maximum of each window (padding takes no part; ties: the first maximum gets the gradient)."""
    return ctx.ops.max_pool(inputs[0], window_of(node), tuple(node.attrs["strides"]), padding_pairs(node))


@shared("avg_pool1d", "avg_pool2d")
def avg_pool(ctx: Context, node: Node, inputs: list) -> Any:
    """The mean of each window over its in-image elements."""
    return ctx.ops.avg_pool(inputs[0], window_of(node), tuple(node.attrs["strides"]), padding_pairs(node))


@shared("flatten")
def flatten(ctx: Context, node: Node, inputs: list) -> Any:
    """Row-major over (H, W, C)."""
    return ctx.ops.reshape(inputs[0], (-1, math.prod(node.input_shape)))


@shared("reshape")
def reshape(ctx: Context, node: Node, inputs: list) -> Any:
    """To the per-example ``shape``."""
    return ctx.ops.reshape(inputs[0], (-1, *node.attrs["shape"]))


@shared("dropout", "spatial_dropout2d")
def dropout(ctx: Context, node: Node, inputs: list) -> Any:
    """The counter-based mask of (seed, layer index, step) in training, drawn at the layer's mask shape
    (``noise_shape``; one value per channel for ``spatial_dropout2d``) and broadcast; the identity otherwise."""
    x = inputs[0]
    if not ctx.training:
        return x
    batch = ctx.batch if ctx.batch is not None else x.shape[0]
    shape = layer_mask_shape(node, batch, spatial=node.op == "spatial_dropout2d")
    return apply_dropout(ctx.ops, x, ctx.seed, node.index, ctx.step, float(node.attrs["rate"]), shape)


@shared("zero_pad2d")
def zero_pad2d(ctx: Context, node: Node, inputs: list) -> Any:
    """Zeros around the image: ``padding`` ((top, bottom), (left, right))."""
    return ctx.ops.pad(inputs[0], node.attrs["padding"])


@shared("crop2d")
def crop2d(ctx: Context, node: Node, inputs: list) -> Any:
    """The image without its ``cropping`` ((top, bottom), (left, right))."""
    return ctx.ops.crop(inputs[0], node.attrs["cropping"])


@shared("upsample2d")
def upsample2d(ctx: Context, node: Node, inputs: list) -> Any:
    """Upsampling by ``size``, nearest or bilinear (:mod:`nnspec.semantics.resample`)."""
    shape = tuple(node.input_shape)
    return resample.upsample2d(ctx.ops, inputs[0], shape, node.attrs["size"], node.attrs["interpolation"])  # type: ignore[arg-type]


@shared("activation")
def activation(ctx: Context, node: Node, inputs: list) -> Any:
    """The named activation."""
    return activate(ctx.ops, node.attrs["activation"], inputs[0])


@shared("softmax")
def softmax(ctx: Context, node: Node, inputs: list) -> Any:
    """Softmax over the last axis."""
    return ctx.ops.softmax(inputs[0])


@shared("add", "multiply", "subtract", "average", "maximum", "minimum")
def elementwise_merge(ctx: Context, node: Node, inputs: list) -> Any:
    """The element-wise merge of the inputs, broadcast as Keras broadcasts (:mod:`nnspec.semantics.merges`)."""
    return merges.merge_node(ctx.ops, node, inputs)


@shared("concat")
def concat(ctx: Context, node: Node, inputs: list) -> Any:
    """Concatenation on the per-example ``axis`` (batched axis ``axis + 1``)."""
    return ctx.ops.concat(inputs, node.attrs["axis"] + 1)


def affine(ctx: Context, node: Node) -> tuple[Any, Any]:
    """``(gamma, beta)`` of a normalisation layer, None where ``scale`` / ``center`` is off."""
    gamma = ctx.param(node, "gamma") if node.attrs["scale"] else None
    beta = ctx.param(node, "beta") if node.attrs["center"] else None
    return gamma, beta


@shared("batch_norm")
def batch_norm(ctx: Context, node: Node, inputs: list) -> Any:
    """Batch statistics and a moving-average state update in training; moving statistics otherwise.

    Computed in the storage type (float32 under mixed precision, as Keras's layers do): batch statistics
    and their gradients overflow or lose their meaning in float16 and bfloat16.
    """
    wide = ctx.wide_ops
    x = inputs[0] if wide is ctx.ops else wide.to_float(inputs[0])
    gamma, beta = affine(ctx, node)
    mean, var = ctx.read_state(node, "moving_mean"), ctx.read_state(node, "moving_variance")
    if not ctx.training:
        y = norm.batch_norm_infer(wide, x, gamma, beta, mean, var, node.attrs["epsilon"])
    else:
        y, new_mean, new_var = norm.batch_norm_train(
            wide, x, gamma, beta, mean, var, node.attrs["momentum"], node.attrs["epsilon"]
        )
        ctx.write_state(node, "moving_mean", new_mean)
        ctx.write_state(node, "moving_variance", new_var)
    return y if wide is ctx.ops else ctx.ops.to_float(y)


@shared("layer_norm")
def layer_norm(ctx: Context, node: Node, inputs: list) -> Any:
    """Normalisation of each example over its last axis (in the storage type, as batch_norm)."""
    wide = ctx.wide_ops
    x = inputs[0] if wide is ctx.ops else wide.to_float(inputs[0])
    gamma, beta = affine(ctx, node)
    y = norm.layer_norm(wide, x, gamma, beta, node.attrs["epsilon"])
    return y if wide is ctx.ops else ctx.ops.to_float(y)


def _pooled(ctx: Context, node: Node, pooled: Any) -> Any:
    """A global pool's (N, C) result, with the pooled axes kept as length 1 under ``keepdims``."""
    return ctx.ops.reshape(pooled, (-1, *node.output_shape)) if node.attrs.get("keepdims") else pooled


@shared("rescaling")
def rescaling(ctx: Context, node: Node, inputs: list) -> Any:
    """``x * scale + offset`` (a number, or one per channel)."""
    return merges.rescale(ctx.ops, inputs[0], node.attrs["scale"], node.attrs["offset"])


@shared("layer_scale")
def layer_scale(ctx: Context, node: Node, inputs: list) -> Any:
    """``x * gamma``, gamma per channel (the last axis)."""
    return inputs[0] * ctx.param(node, "gamma")


@shared("global_avg_pool2d")
def global_avg_pool2d(ctx: Context, node: Node, inputs: list) -> Any:
    """Mean over height and width."""
    return _pooled(ctx, node, norm.global_avg_pool2d(ctx.ops, inputs[0], node.output_shape[-1]))


@shared("global_max_pool2d")
def global_max_pool2d(ctx: Context, node: Node, inputs: list) -> Any:
    """Maximum over height and width."""
    return _pooled(ctx, node, norm.global_max_pool2d(ctx.ops, inputs[0], node.input_shape))  # type: ignore[arg-type]


@shared("global_avg_pool1d")
def global_avg_pool1d(ctx: Context, node: Node, inputs: list) -> Any:
    """Mean over the steps of (N, steps, C)."""
    return _pooled(ctx, node, ctx.ops.reshape(ctx.ops.mean_over(inputs[0], (1,)), (-1, node.output_shape[-1])))


@shared("global_max_pool1d")
def global_max_pool1d(ctx: Context, node: Node, inputs: list) -> Any:
    """Maximum over the steps of (N, steps, C); the gradient goes to the first maximum (``Ops.first_max``)."""
    return _pooled(ctx, node, ctx.ops.first_max(inputs[0]))
