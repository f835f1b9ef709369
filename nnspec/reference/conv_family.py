"""The reference's depthwise, separable and transposed convolutions and their backward passes, in NumPy.

Written over :mod:`nnspec.semantics.numpy_windows`: a depthwise convolution is the convolution with
``groups = in`` and the kernel ``[kh, kw, in, m]`` read as ``[kh, kw, 1, in * m]`` (output channel
``c * m + i``, Keras's order); a separable convolution is that, then a 1x1 convolution; a transposed
convolution is :func:`~nnspec.semantics.numpy_windows.conv_transpose` with Keras's kernel ``[kh, kw, filters,
in]`` as it is, and its input gradient is the convolution itself. :mod:`.forward` and :mod:`.backward`
register these.
"""

from __future__ import annotations

import numpy as np

from ..compiler.conv_rules import transpose_padding
from ..compiler.ir import Node
from ..compiler.shapes import dilation_of, padding_pairs, window_of
from ..semantics import numpy_windows as win

_POINTWISE = ((1, 1), ((0, 0), (0, 0)), (1, 1), 1)


def grouped_kernel(kernel: np.ndarray) -> np.ndarray:
    """A depthwise kernel ``[*k, in, m]`` as the grouped convolution's ``[*k, 1, in * m]``."""
    return kernel.reshape(*kernel.shape[:-2], 1, kernel.shape[-2] * kernel.shape[-1])


def _depthwise_args(node: Node) -> tuple:
    return tuple(node.attrs["strides"]), padding_pairs(node), dilation_of(node), int(node.input_shape[-1])


def depthwise(node: Node, x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The depthwise convolution of ``node`` (``depthwise_conv2d``, or the first half of ``separable_conv2d``)."""
    return win.conv(x, grouped_kernel(kernel), *_depthwise_args(node))


def depthwise_backward(node: Node, x: np.ndarray, kernel: np.ndarray, dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(input gradient, kernel gradient [*k, in, m])`` of :func:`depthwise` for output gradient ``dz``."""
    strides, pads, dilation, groups = _depthwise_args(node)
    dk = win.conv_kernel_gradient(x, dz, window_of(node), strides, pads, dilation, groups)
    dx = win.conv_transpose(dz, grouped_kernel(kernel), x.shape[1:-1], strides, pads, dilation, groups)
    return dx, dk.reshape(kernel.shape)


def pointwise(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The 1x1 convolution of ``separable_conv2d``."""
    return win.conv(x, kernel, *_POINTWISE)


def pointwise_backward(x: np.ndarray, kernel: np.ndarray, dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(input gradient, kernel gradient)`` of :func:`pointwise`."""
    strides, pads, dilation, groups = _POINTWISE
    dk = win.conv_kernel_gradient(x, dz, (1, 1), strides, pads, dilation, groups)
    return win.conv_transpose(dz, kernel, x.shape[1:-1], strides, pads, dilation, groups), dk


def transpose(node: Node, x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The transposed convolution of a ``conv2d_transpose`` node, no bias."""
    strides = tuple(node.attrs["strides"])
    ones = (1,) * len(strides)
    return win.conv_transpose(x, kernel, node.output_shape[:-1], strides, transpose_padding(node), ones, 1)


def transpose_backward(node: Node, x: np.ndarray, kernel: np.ndarray, dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(input gradient, kernel gradient)`` of :func:`transpose`: the convolution of ``dz`` and the kernel
    gradient of that convolution with ``dz`` as its input and ``x`` as its output gradient."""
    strides = tuple(node.attrs["strides"])
    ones, pads = (1,) * len(strides), transpose_padding(node)
    dx = win.conv(dz, kernel, strides, pads, ones, 1)
    return dx, win.conv_kernel_gradient(dz, x, window_of(node), strides, pads, ones, 1)
