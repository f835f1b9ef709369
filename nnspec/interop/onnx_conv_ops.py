"""ONNX lowerings of the depthwise, separable and transposed convolutions (registered in :mod:`.onnx_ops`).

* ``depthwise_conv2d``: ``Conv`` with ``group`` = the input channels, the kernel ``[kh, kw, in, m]`` as
  ``[in * m, 1, kh, kw]`` (output channel ``c * m + i``, as in Keras).
* ``separable_conv2d``: that ``Conv`` without a bias, then a 1x1 ``Conv`` with the bias.
* ``conv2d_transpose``: ``ConvTranspose``, the kernel ``[kh, kw, filters, in]`` as ``[in, filters, kh, kw]``;
  the padding of the convolution it transposes becomes ``pads`` (cropping the full transposed output), and
  the rows past the last window (Keras's ``output_padding``) ``output_padding``.
"""

from __future__ import annotations

import numpy as np

from ..compiler.conv_rules import transpose_padding
from ..compiler.ir import Node
from .onnx_graph import GraphBuilder, Value
from .onnx_ops import Weights, _bias, _then_activation, _window_attrs, converter


def _depthwise_kernel(kernel: np.ndarray) -> np.ndarray:
    """``[kh, kw, in, m]`` -> ONNX's ``[in * m, 1, kh, kw]``."""
    kh, kw, cin, mult = kernel.shape
    return np.transpose(kernel.reshape(kh, kw, 1, cin * mult), (3, 2, 0, 1))


@converter("depthwise_conv2d")
def _depthwise(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = builder.in_layout(inputs[0], True)
    kernel = builder.constant(node.key("kernel"), _depthwise_kernel(weights[node.key("kernel")]))
    ins = [x.name, kernel, *_bias(builder, node, weights)]
    group = int(node.input_shape[-1])
    return _then_activation(builder, node, "Conv", ins, 3, True, **_window_attrs(node), group=group)


@converter("separable_conv2d")
def _separable(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = builder.in_layout(inputs[0], True)
    depthwise = builder.constant(node.key("depthwise_kernel"), _depthwise_kernel(weights[node.key("depthwise_kernel")]))
    mid = builder.fresh(node, "depthwise")
    group = int(node.input_shape[-1])
    builder.emit("Conv", [x.name, depthwise], mid, name=mid, **_window_attrs(node), group=group)
    pointwise = np.transpose(weights[node.key("pointwise_kernel")], (3, 2, 0, 1))
    ins = [mid, builder.constant(node.key("pointwise_kernel"), pointwise), *_bias(builder, node, weights)]
    return _then_activation(builder, node, "Conv", ins, 3, True, kernel_shape=[1, 1])


@converter("conv2d_transpose")
def _transpose(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = builder.in_layout(inputs[0], True)
    kernel = builder.constant(node.key("kernel"), np.transpose(weights[node.key("kernel")], (3, 2, 0, 1)))
    strides, window = list(node.attrs["strides"]), list(node.attrs["kernel"])
    before = [b for b, _ in transpose_padding(node)]
    # the full transposed output is (n - 1) * s + k; crop `before` at the start, then what is left at the end
    after = [
        (n - 1) * s + k - b - o for n, s, k, b, o in zip(node.input_shape, strides, window, before, node.output_shape)
    ]
    attrs: dict[str, object] = {
        "kernel_shape": window,
        "strides": strides,
        "pads": before + [max(a, 0) for a in after],
    }
    if any(a < 0 for a in after):
        attrs["output_padding"] = [max(-a, 0) for a in after]
    ins = [x.name, kernel, *_bias(builder, node, weights)]
    return _then_activation(builder, node, "ConvTranspose", ins, 3, True, **attrs)
