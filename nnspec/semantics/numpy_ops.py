"""NumPy implementation of :class:`nnspec.semantics.ops.Ops`: the reference the engines are checked against."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import numpy_windows as win


class NumpyOps:
    """Array operations in NumPy, for a given float dtype (float32 or float64)."""

    def __init__(self, float_dtype: str = "float64"):
        self.float_dtype = float_dtype
        self._dt = np.dtype(float_dtype)

    def constant(self, value: float) -> np.ndarray:
        return np.asarray(value, dtype=self._dt)

    def sqrt(self, x: Any) -> Any:
        return np.sqrt(x)

    def exp(self, x: Any) -> Any:
        return np.exp(x)

    def log(self, x: Any) -> Any:
        return np.log(x)

    def log1p(self, x: Any) -> Any:
        return np.log1p(x)

    def tanh(self, x: Any) -> Any:
        return np.tanh(x)

    def erf(self, x: Any) -> Any:
        erf = np.frompyfunc(math.erf, 1, 1)
        return np.asarray(erf(np.asarray(x, dtype=np.float64))).astype(np.asarray(x).dtype)

    def cos(self, x: Any) -> Any:
        return np.cos(x)

    def floor(self, x: Any) -> Any:
        return np.floor(x)

    def abs(self, x: Any) -> Any:
        return np.abs(x)

    def power(self, base: Any, exponent: Any) -> Any:
        return np.power(base, exponent)

    def maximum(self, x: Any, y: Any) -> Any:
        return np.maximum(x, y)

    def minimum(self, x: Any, y: Any) -> Any:
        return np.minimum(x, y)

    def where(self, cond: Any, x: Any, y: Any) -> Any:
        return np.where(cond, x, y)

    def sigmoid(self, x: Any) -> Any:
        return 1.0 / (1.0 + np.exp(-x))

    def log_softmax(self, x: Any) -> Any:
        shifted = x - np.max(x, axis=-1, keepdims=True)
        return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))

    def softmax(self, x: Any) -> Any:
        return np.exp(self.log_softmax(x))

    def one_hot(self, labels: Any, depth: int) -> Any:
        return (np.asarray(labels)[..., None] == np.arange(depth)).astype(self._dt)

    def sum(self, x: Any, axis: int | None = None) -> Any:
        return np.sum(x, axis=axis)

    def mean(self, x: Any) -> Any:
        return np.mean(x)

    def mean_over(self, x: Any, axes: tuple[int, ...]) -> Any:
        return np.mean(x, axis=axes, keepdims=True)

    def max_over(self, x: Any, axes: tuple[int, ...]) -> Any:
        return np.max(x, axis=axes, keepdims=True)

    def first_max(self, x: Any) -> Any:
        idx = np.argmax(x, axis=1)[:, None, :]
        return np.take_along_axis(x, idx, axis=1)[:, 0, :]

    def concat(self, xs: list[Any], axis: int) -> Any:
        return np.concatenate(xs, axis=axis)

    def argmax(self, x: Any) -> Any:
        return np.argmax(x, axis=-1)

    def equal(self, x: Any, y: Any) -> Any:
        return np.equal(x, y)

    def to_float(self, x: Any) -> Any:
        return np.asarray(x).astype(self._dt)

    def all_finite(self, x: Any) -> Any:
        return np.all(np.isfinite(x))

    def logical_and(self, a: Any, b: Any) -> Any:
        return np.logical_and(a, b)

    def cond(self, pred: Any, then: Any, otherwise: Any) -> Any:
        return then() if bool(pred) else otherwise()

    def matmul(self, x: Any, y: Any) -> Any:
        return x @ y

    def reshape(self, x: Any, shape: tuple[int, ...]) -> Any:
        return np.reshape(x, shape)

    def relu(self, x: Any) -> Any:
        return np.where(x > self.constant(0.0), x, self.constant(0.0))

    def bias_add(self, x: Any, bias: Any) -> Any:
        return x + bias

    def conv(self, x: Any, kernel: Any, strides: Any, padding: Any, dilation: Any, groups: int) -> Any:
        return win.conv(x, kernel, strides, padding, dilation, groups)

    def conv_transpose(
        self, y: Any, kernel: Any, input_shape: Any, strides: Any, padding: Any, dilation: Any, groups: int
    ) -> Any:
        return win.conv_transpose(y, kernel, input_shape, strides, padding, dilation, groups)

    def max_pool(self, x: Any, window: Any, strides: Any, padding: Any) -> Any:
        return win.max_pool(x, window, strides, padding)

    def avg_pool(self, x: Any, window: Any, strides: Any, padding: Any) -> Any:
        return win.avg_pool(x, window, strides, padding)

    def pad(self, x: Any, padding: Any) -> Any:
        return np.pad(x, [(0, 0), *[tuple(p) for p in padding], (0, 0)])

    def crop(self, x: Any, cropping: Any) -> Any:
        return x[crop_index(cropping)]

    def u32(self, value: Any) -> np.ndarray:
        return np.asarray(np.asarray(value, dtype=np.int64) & 0xFFFFFFFF, dtype=np.uint32)

    def u32_iota(self, n: int) -> np.ndarray:
        return np.arange(n, dtype=np.uint32)

    def u32_xor(self, a: Any, b: Any) -> Any:
        return np.bitwise_xor(a, b)

    def u32_shr(self, a: Any, bits: int) -> Any:
        return np.right_shift(a, np.uint32(bits))

    def u32_mul(self, a: Any, constant: int) -> Any:
        return np.multiply(a, np.uint32(constant), dtype=np.uint32)

    def u32_ge(self, a: Any, constant: int) -> Any:
        return a >= np.uint32(constant)


def crop_index(cropping: Any) -> tuple[slice, ...]:
    """The index of a (B, *spatial, C) array that drops ``cropping`` (one (before, after) pair per spatial axis);
    every engine's arrays take it (``x[index]``)."""
    spatial = [slice(int(a), -int(b) if b else None) for a, b in cropping]
    return (slice(None), *spatial, slice(None))
