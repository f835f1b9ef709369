"""JAX implementation of :class:`nnspec.semantics.ops.Ops` (imports JAX: load it only from inside the backend).

Matrix products and convolutions (:mod:`.windows`) run at :attr:`JaxOps.precision`: ``Precision.HIGHEST``
by default, so that a GPU never silently uses TF32 for float32 work; ``Precision.DEFAULT`` under the ``tf32``
and mixed precision policies (XLA then uses TF32 or the low type's tensor cores). On the CPU it changes
nothing and costs nothing measurable (docs/benchmarks.md, "Measurements behind design choices").
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ...semantics.numpy_ops import crop_index
from . import windows

HIGHEST = lax.Precision.HIGHEST


class JaxOps:
    """Array operations in ``jax.numpy`` for one float dtype (float64 needs the x64 scope of the model)."""

    def __init__(self, float_dtype: str = "float32", full_precision: bool = True):
        self.float_dtype = float_dtype
        self.dtype = jnp.dtype(float_dtype)
        #: the precision of matrix products and convolutions
        self.precision = HIGHEST if full_precision else lax.Precision.DEFAULT

    def constant(self, value: float) -> Any:
        return jnp.asarray(value, dtype=self.dtype)

    def sqrt(self, x: Any) -> Any:
        return jnp.sqrt(x)

    def exp(self, x: Any) -> Any:
        return jnp.exp(x)

    def log(self, x: Any) -> Any:
        return jnp.log(x)

    def log1p(self, x: Any) -> Any:
        return jnp.log1p(x)

    def tanh(self, x: Any) -> Any:
        return jnp.tanh(x)

    def erf(self, x: Any) -> Any:
        return lax.erf(x)

    def cos(self, x: Any) -> Any:
        return jnp.cos(x)

    def floor(self, x: Any) -> Any:
        return jnp.floor(x)

    def abs(self, x: Any) -> Any:
        return jnp.abs(x)

    def power(self, base: Any, exponent: Any) -> Any:
        return jnp.power(base, exponent)

    def maximum(self, x: Any, y: Any) -> Any:
        return jnp.maximum(x, y)

    def minimum(self, x: Any, y: Any) -> Any:
        return jnp.minimum(x, y)

    def where(self, cond: Any, x: Any, y: Any) -> Any:
        return jnp.where(cond, x, y)

    def sigmoid(self, x: Any) -> Any:
        return jax.nn.sigmoid(x)

    def log_softmax(self, x: Any) -> Any:
        shifted = x - lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
        return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))

    def softmax(self, x: Any) -> Any:
        return jnp.exp(self.log_softmax(x))

    def one_hot(self, labels: Any, depth: int) -> Any:
        return jax.nn.one_hot(labels, depth, dtype=self.dtype)

    def sum(self, x: Any, axis: int | None = None) -> Any:
        return jnp.sum(x, axis=axis)

    def mean(self, x: Any) -> Any:
        return jnp.mean(x)

    def mean_over(self, x: Any, axes: tuple[int, ...]) -> Any:
        return jnp.mean(x, axis=axes, keepdims=True)

    def max_over(self, x: Any, axes: tuple[int, ...]) -> Any:
        return jnp.max(x, axis=axes, keepdims=True)

    def first_max(self, x: Any) -> Any:
        idx = jnp.argmax(x, axis=1)[:, None, :]
        return jnp.take_along_axis(x, idx, axis=1)[:, 0, :]

    def concat(self, xs: list[Any], axis: int) -> Any:
        return jnp.concatenate(xs, axis=axis)

    def argmax(self, x: Any) -> Any:
        return jnp.argmax(x, axis=-1).astype(jnp.int32)

    def equal(self, x: Any, y: Any) -> Any:
        return jnp.equal(x, y)

    def to_float(self, x: Any) -> Any:
        return jnp.asarray(x).astype(self.dtype)

    def all_finite(self, x: Any) -> Any:
        return jnp.all(jnp.isfinite(x))

    def logical_and(self, a: Any, b: Any) -> Any:
        return jnp.logical_and(a, b)

    def cond(self, pred: Any, then: Any, otherwise: Any) -> Any:
        return lax.cond(pred, then, otherwise)

    def matmul(self, x: Any, y: Any) -> Any:
        return jnp.matmul(x, y, precision=self.precision)

    def reshape(self, x: Any, shape: tuple[int, ...]) -> Any:
        return jnp.reshape(x, shape)

    def relu(self, x: Any) -> Any:
        return jnp.where(x > self.constant(0.0), x, self.constant(0.0))

    def bias_add(self, x: Any, bias: Any) -> Any:
        return x + bias

    def conv(self, x: Any, kernel: Any, strides: Any, padding: Any, dilation: Any, groups: int) -> Any:
        return windows.conv(x, kernel, tuple(strides), padding, tuple(dilation), groups, self.precision)

    def conv_transpose(
        self, y: Any, kernel: Any, input_shape: Any, strides: Any, padding: Any, dilation: Any, groups: int
    ) -> Any:
        return windows.conv_transpose(
            y, kernel, tuple(input_shape), tuple(strides), padding, tuple(dilation), groups, self.precision
        )

    def max_pool(self, x: Any, window: Any, strides: Any, padding: Any) -> Any:
        return windows.max_pool(x, tuple(window), tuple(strides), padding)

    def avg_pool(self, x: Any, window: Any, strides: Any, padding: Any) -> Any:
        return windows.avg_pool(x, tuple(window), tuple(strides), padding)

    def pad(self, x: Any, padding: Any) -> Any:
        return jnp.pad(x, [(0, 0), *[tuple(p) for p in padding], (0, 0)])

    def crop(self, x: Any, cropping: Any) -> Any:
        return x[crop_index(cropping)]

    def u32(self, value: Any) -> Any:
        if isinstance(value, int):
            return jnp.asarray(value & 0xFFFFFFFF, dtype=jnp.uint32)
        return jnp.asarray(value).astype(jnp.uint32)

    def u32_iota(self, n: int) -> Any:
        return lax.iota(jnp.uint32, n)

    def u32_xor(self, a: Any, b: Any) -> Any:
        return jnp.bitwise_xor(a, b)

    def u32_shr(self, a: Any, bits: int) -> Any:
        return jnp.right_shift(a, jnp.asarray(bits, dtype=jnp.uint32))

    def u32_mul(self, a: Any, constant: int) -> Any:
        return jnp.multiply(a, jnp.asarray(constant, dtype=jnp.uint32))

    def u32_ge(self, a: Any, constant: int) -> Any:
        return a >= jnp.asarray(constant, dtype=jnp.uint32)
