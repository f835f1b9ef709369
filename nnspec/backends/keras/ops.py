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


def _u32_constant(value: int) -> Any:
    return K.convert_to_tensor(np.uint32(value & 0xFFFFFFFF))


def engine() -> str:
    """The engine Keras runs on here (``jax``, ``tensorflow``, ...)."""
    return keras.backend.backend()
