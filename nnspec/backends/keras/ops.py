"""Keras 3 implementation of :class:`nnspec.semantics.ops.Ops`, over ``keras.ops`` (imports Keras).

Everything goes through ``keras.ops``, so the same code runs on whichever engine Keras is configured for
(``KERAS_BACKEND``). Unsigned 32-bit arithmetic for the dropout hash uses ``keras.ops`` bitwise ops on
``uint32`` tensors: products wrap modulo 2**32 on JAX and TensorFlow alike, and every constant is made a
``uint32`` tensor first so that no type promotion widens it.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops as K

from ...semantics.numpy_ops import crop_index
from ...semantics.numpy_windows import window_counts


class KerasOps:
    """Array operations in ``keras.ops`` for one float dtype (``float32`` or ``float64``)."""

    def __init__(self, float_dtype: str = "float32"):
        self.float_dtype = float_dtype

    def constant(self, value: float) -> Any:
        return K.convert_to_tensor(np.asarray(value, dtype=self.float_dtype))

    def sqrt(self, x: Any) -> Any:
        return K.sqrt(x)

    def exp(self, x: Any) -> Any:
        return K.exp(x)

    def log(self, x: Any) -> Any:
        return K.log(x)

    def log1p(self, x: Any) -> Any:
        return K.log1p(x)

    def tanh(self, x: Any) -> Any:
        return K.tanh(x)

    def erf(self, x: Any) -> Any:
        return K.erf(x)

    def cos(self, x: Any) -> Any:
        return K.cos(x)

    def floor(self, x: Any) -> Any:
        return K.floor(x)

    def abs(self, x: Any) -> Any:
        return K.abs(x)

    def power(self, base: Any, exponent: Any) -> Any:
        return K.power(base, exponent)

    def maximum(self, x: Any, y: Any) -> Any:
        return K.maximum(x, y)

    def minimum(self, x: Any, y: Any) -> Any:
        return K.minimum(x, y)

    def where(self, cond: Any, x: Any, y: Any) -> Any:
        return K.where(cond, x, y)

    def sigmoid(self, x: Any) -> Any:
        return K.sigmoid(x)

    def log_softmax(self, x: Any) -> Any:
        shifted = x - K.stop_gradient(K.max(x, axis=-1, keepdims=True))
        return shifted - K.log(K.sum(K.exp(shifted), axis=-1, keepdims=True))

    def softmax(self, x: Any) -> Any:
        return K.exp(self.log_softmax(x))

    def one_hot(self, labels: Any, depth: int) -> Any:
        return K.one_hot(K.cast(labels, "int32"), depth, dtype=self.float_dtype)

    def sum(self, x: Any, axis: int | None = None) -> Any:
        return K.sum(x, axis=axis)

    def mean(self, x: Any) -> Any:
        # keras.ops.mean computes in float32 on JAX even for float64 input; a sum keeps the dtype.
        size = math.prod(x.shape) if all(d is not None for d in x.shape) else K.size(x)
        return K.sum(x) / self.to_float(size)

    def mean_over(self, x: Any, axes: tuple[int, ...]) -> Any:
        # a sum divided by the count, as in mean(): keeps float64 on every engine
        count = math.prod(x.shape[a] for a in axes)
        return K.sum(x, axis=axes, keepdims=True) / self.constant(float(count))

    def max_over(self, x: Any, axes: tuple[int, ...]) -> Any:
        return K.max(x, axis=axes, keepdims=True)

    def first_max(self, x: Any) -> Any:
        idx = K.expand_dims(K.argmax(x, axis=1), 1)
        return K.take_along_axis(x, idx, axis=1)[:, 0, :]

    def concat(self, xs: list[Any], axis: int) -> Any:
        return K.concatenate(list(xs), axis=axis)

    def argmax(self, x: Any) -> Any:
        return K.cast(K.argmax(x, axis=-1), "int32")

    def equal(self, x: Any, y: Any) -> Any:
        return K.equal(K.cast(x, "int32"), K.cast(y, "int32"))

    def to_float(self, x: Any) -> Any:
        return K.cast(x, self.float_dtype)

    def all_finite(self, x: Any) -> Any:
        return K.all(K.isfinite(x))

    def logical_and(self, a: Any, b: Any) -> Any:
        return K.logical_and(a, b)

    def cond(self, pred: Any, then: Any, otherwise: Any) -> Any:
        return K.cond(pred, then, otherwise)

    def matmul(self, x: Any, y: Any) -> Any:
        return K.matmul(x, y)

    def reshape(self, x: Any, shape: tuple[int, ...]) -> Any:
        return K.reshape(x, shape)

    def relu(self, x: Any) -> Any:
        return K.where(x > self.constant(0.0), x, self.constant(0.0))

    def bias_add(self, x: Any, bias: Any) -> Any:
        return x + bias

    # --- windows: keras.ops's, with ``valid`` after an explicit pad where the padding is not ``same`` ----
    def conv(self, x: Any, kernel: Any, strides: Any, padding: Any, dilation: Any, groups: int) -> Any:
        n = len(strides)
        span = [d * (k - 1) + 1 for k, d in zip(kernel.shape[:n], dilation)]
        name = _padding_name(x.shape[1:-1], span, strides, padding)
        if name is None:
            x, name = _pad(x, padding, 0.0), "valid"
        args = {"strides": tuple(strides), "padding": name, "dilation_rate": tuple(dilation)}
        if groups == 1:
            return K.conv(x, kernel, data_format="channels_last", **args)
        xs, ks = K.split(x, groups, axis=-1), K.split(kernel, groups, axis=-1)
        return K.concatenate([K.conv(a, k, data_format="channels_last", **args) for a, k in zip(xs, ks)], axis=-1)

    def conv_transpose(
        self, y: Any, kernel: Any, input_shape: Any, strides: Any, padding: Any, dilation: Any, groups: int
    ) -> Any:
        """The convolution's adjoint as a convolution: ``y`` spread out by the strides (zeros between), padded
        by the kernel's span less one, correlated with the kernel flipped and its channel axes swapped."""
        n = len(strides)
        window, out = tuple(kernel.shape[:n]), tuple(y.shape[1:-1])
        spread = _spread(y, strides)
        padded = [size + a + b for size, (a, b) in zip(input_shape, padding)]
        pads = [(d * (k - 1), p - (o - 1) * s - 1) for k, d, p, o, s in zip(window, dilation, padded, out, strides)]
        flipped = K.swapaxes(K.flip(kernel, axis=tuple(range(n))), n, n + 1)  # (*k, O, C)
        if groups == 1:
            full = self.conv(spread, flipped, (1,) * n, pads, dilation, 1)
        else:
            parts = zip(K.split(spread, groups, axis=-1), K.split(flipped, groups, axis=-2))
            full = K.concatenate([self.conv(g, k, (1,) * n, pads, dilation, 1) for g, k in parts], axis=-1)
        crop = tuple(slice(a, a + size) for size, (a, _) in zip(input_shape, padding))
        return full[_spatial_index(crop)]

    def max_pool(self, x: Any, window: Any, strides: Any, padding: Any) -> Any:
        name = _padding_name(x.shape[1:-1], window, strides, padding)
        if name is None:
            x, name = _pad(x, padding, -np.inf), "valid"
        return K.max_pool(x, tuple(window), tuple(strides), name, data_format="channels_last")

    def avg_pool(self, x: Any, window: Any, strides: Any, padding: Any) -> Any:
        name = _padding_name(x.shape[1:-1], window, strides, padding)
        if name is not None:
            return K.average_pool(x, tuple(window), tuple(strides), name, data_format="channels_last")
        mean = K.average_pool(
            _pad(x, padding, 0.0), tuple(window), tuple(strides), "valid", data_format="channels_last"
        )
        scale = math.prod(window) / window_counts(tuple(x.shape[1:-1]), window, strides, padding)
        return mean * K.convert_to_tensor(scale.astype(self.float_dtype))

    def pad(self, x: Any, padding: Any) -> Any:
        return _pad(x, padding, 0.0)

    def crop(self, x: Any, cropping: Any) -> Any:
        return x[crop_index(cropping)]

    # --- unsigned 32-bit integers -----------------------------------------------------------------
    def u32(self, value: Any) -> Any:
        if isinstance(value, (int, np.integer)):
            return _u32_constant(int(value))
        return K.cast(value, "uint32")

    def u32_iota(self, n: int) -> Any:
        return K.convert_to_tensor(np.arange(n, dtype=np.uint32))

    def u32_xor(self, a: Any, b: Any) -> Any:
        return K.bitwise_xor(a, b)

    def u32_shr(self, a: Any, bits: int) -> Any:
        return K.right_shift(a, _u32_constant(bits))

    def u32_mul(self, a: Any, constant: int) -> Any:
        return K.multiply(a, _u32_constant(constant))

    def u32_ge(self, a: Any, constant: int) -> Any:
        return K.greater_equal(a, _u32_constant(constant))


def _spatial_index(parts: Any) -> tuple[Any, ...]:
    """An index of a (B, *spatial, C) array: every example and channel, ``parts`` on the spatial axes."""
    return (slice(None), *parts, slice(None))


def _spread(y: Any, strides: Any) -> Any:
    """``y`` (B, *out, C) with ``stride - 1`` zeros between its elements on each spatial axis."""
    for axis, s in enumerate(strides, start=1):
        if s == 1:
            continue
        length = int(y.shape[axis])
        stacked = K.stack([y] + [K.zeros_like(y)] * (s - 1), axis=axis + 1)
        merged = [-1, *(int(d) for d in y.shape[1:])]
        merged[axis] = length * s
        y = K.reshape(stacked, merged)
        y = y[
            _spatial_index(
                slice(None, (length - 1) * s + 1) if i == axis else slice(None) for i in range(1, y.ndim - 1)
            )
        ]
    return y


def _padding_name(spatial: Any, span: Any, strides: Any, padding: Any) -> str | None:
    """``valid`` or ``same`` when explicit ``padding`` is Keras's padding of that name, else None."""
    pads = [tuple(p) for p in padding]
    if not any(a or b for a, b in pads):
        return "valid"
    same = []
    for n, k, s in zip(spatial, span, strides):
        total = max((-(-int(n) // s) - 1) * s + k - int(n), 0)
        same.append((total // 2, total - total // 2))
    return "same" if pads == same else None


def _pad(x: Any, padding: Any, value: float) -> Any:
    return K.pad(x, [(0, 0), *[tuple(p) for p in padding], (0, 0)], constant_values=value)


def _u32_constant(value: int) -> Any:
    return K.convert_to_tensor(np.uint32(value & 0xFFFFFFFF))


def engine() -> str:
    """The engine Keras runs on here (``jax``, ``tensorflow``, ...)."""
    return keras.backend.backend()
