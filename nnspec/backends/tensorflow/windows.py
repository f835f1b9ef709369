"""TensorFlow's window primitives (N-d convolution, its transpose, max and average pooling), channels last.

Used by :class:`~nnspec.backends.tensorflow.ops.TensorFlowOps`. Explicit padding that is TensorFlow's
``SAME`` (the odd element after) or ``VALID`` (none) is passed as that name, so the convolution and pool
ops are the ones TensorFlow's ``tf.nn`` functions build for it (``tf.nn.conv2d``, ``tf.nn.max_pool2d`` and
``tf.nn.avg_pool2d`` in 2-D): its max pool ignores padded positions (as padding with -inf would) and its
average pool divides by the in-image elements only, which is the contract. Any other padding (``causal``)
is a ``tf.pad`` before a ``VALID`` window. A 2-D depthwise convolution (one group per input channel) is
``tf.nn.depthwise_conv2d`` (measured 11x faster than one convolution per channel on the CPU: docs/benchmarks.md,
"Depthwise convolution"); other grouped convolutions are one convolution per group (TensorFlow's CPU kernels
have none); the transposed convolution is TensorFlow's gradient of the convolution.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ...semantics.numpy_windows import window_counts
from .engine import load_tensorflow

tf = load_tensorflow()

Pads = Sequence[tuple[int, int]]


def _spatial_index(parts: Any) -> tuple[Any, ...]:
    """An index of a (B, *spatial, C) array: every example and channel, ``parts`` on the spatial axes."""
    return (slice(None), *parts, slice(None))


def _same_pads(spatial: Sequence[int], window: Sequence[int], strides: Sequence[int]) -> list[tuple[int, int]]:
    pads = []
    for n, k, s in zip(spatial, window, strides):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def padding_name(spatial: Sequence[int], window: Sequence[int], strides: Sequence[int], padding: Pads) -> str | None:
    """``VALID`` or ``SAME`` when ``padding`` is TensorFlow's padding of that name (``window``: the span of
    the window, dilation included), else None."""
    pads = [tuple(p) for p in padding]
    if not any(a or b for a, b in pads):
        return "VALID"
    return "SAME" if pads == _same_pads(spatial, window, strides) else None


def _span(window: Sequence[int], dilation: Sequence[int]) -> list[int]:
    return [d * (k - 1) + 1 for k, d in zip(window, dilation)]


def _pad(x: Any, padding: Pads, value: float) -> Any:
    return tf.pad(x, [[0, 0], *[list(p) for p in padding], [0, 0]], constant_values=value)


def _spatial(x: Any) -> list[int]:
    return [int(d) for d in x.shape[1:-1]]


def _one_conv(x: Any, kernel: Any, strides: tuple[int, ...], name: str, dilation: tuple[int, ...]) -> Any:
    if len(strides) == 2 and dilation == (1, 1):
        return tf.nn.conv2d(x, kernel, strides=[1, *strides, 1], padding=name, data_format="NHWC")
    return tf.nn.convolution(x, kernel, strides=list(strides), padding=name, dilations=list(dilation))


def conv(x: Any, kernel: Any, strides: Sequence[int], padding: Pads, dilation: Sequence[int], groups: int) -> Any:
    """N-d convolution of (B, *spatial, C) with (*k, C / groups, O), no bias."""
    strides, dilation = tuple(strides), tuple(dilation)
    n = len(strides)
    name = padding_name(_spatial(x), _span(kernel.shape[:n], dilation), strides, padding)
    if name is None:
        x, name = _pad(x, padding, 0.0), "VALID"
    if groups == 1:
        return _one_conv(x, kernel, strides, name, dilation)
    channels = int(x.shape[-1])
    if n == 2 and groups == channels:
        depthwise = tf.reshape(kernel, [*kernel.shape[:2], channels, int(kernel.shape[-1]) // channels])
        return tf.nn.depthwise_conv2d(x, depthwise, [1, *strides, 1], name, dilations=list(dilation))
    xs, ks = tf.split(x, groups, axis=-1), tf.split(kernel, groups, axis=-1)
    return tf.concat([_one_conv(a, k, strides, name, dilation) for a, k in zip(xs, ks)], axis=-1)


def conv_transpose(
    y: Any,
    kernel: Any,
    input_shape: Sequence[int],
    strides: Sequence[int],
    padding: Pads,
    dilation: Sequence[int],
    groups: int,
) -> Any:
    """The input gradient of :func:`conv` for output gradient ``y``: TensorFlow's own gradient of the
    convolution, which is linear in its input (``tf.nn.conv_transpose`` has no dilation on the CPU)."""
    channels = int(kernel.shape[-2]) * groups
    x = tf.zeros(tf.stack([tf.shape(y)[0], *input_shape, channels]), dtype=y.dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = conv(x, kernel, strides, padding, dilation, groups)
    return tape.gradient(out, x, output_gradients=y)


def _pool(x: Any, window: tuple[int, ...], strides: tuple[int, ...], name: str, kind: str) -> Any:
    if len(window) == 2:
        fn = tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d
        return fn(x, ksize=[1, *window, 1], strides=[1, *strides, 1], padding=name, data_format="NHWC")
    fn = tf.nn.max_pool if kind == "max" else tf.nn.avg_pool
    return fn(x, ksize=list(window), strides=list(strides), padding=name)


def max_pool(x: Any, window: Sequence[int], strides: Sequence[int], padding: Pads) -> Any:
    """``tf.nn``'s max pool (padding with -inf where it is not ``SAME`` or ``VALID``)."""
    window, strides = tuple(window), tuple(strides)
    name = padding_name(_spatial(x), window, strides, padding)
    if name is None:
        x, name = _pad(x, padding, -np.inf), "VALID"
    return _pool(x, window, strides, name, "max")


def avg_pool(x: Any, window: Sequence[int], strides: Sequence[int], padding: Pads) -> Any:
    """``tf.nn``'s average pool (over in-image elements: other padding is rescaled by the window counts)."""
    window, strides = tuple(window), tuple(strides)
    spatial = _spatial(x)
    name = padding_name(spatial, window, strides, padding)
    if name is not None:
        return _pool(x, window, strides, name, "avg")
    mean = _pool(_pad(x, padding, 0.0), window, strides, "VALID", "avg")
    scale = math.prod(window) / window_counts(spatial, window, strides, padding)
    return mean * tf.constant(scale, dtype=x.dtype)
