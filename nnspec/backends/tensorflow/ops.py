"""TensorFlow implementation of :class:`nnspec.semantics.ops.Ops`.

U32 values are ``tf.uint32`` tensors: TensorFlow multiplies, shifts, XORs and compares uint32 with
wrap-around both eagerly and under XLA, bit for bit as NumPy does (checked by the tests against
:func:`nnspec.semantics.dropout.numpy_keep_mask`). Integer scalars such as a traced ``int64`` step are
reduced modulo 2**32 in int64 before the cast, so the conversion never depends on a narrowing cast's rules.

The bias is ``tf.nn.bias_add`` and ``relu`` is ``tf.nn.relu``, not ``x + b`` and the shared
``where(x > 0, x, 0)``: the same values for every non-NaN input and the same derivative everywhere (0 at
exactly 0), and grappler fuses the product or convolution, the bias and the relu into one kernel, which is
differentiated with one ``ReluGrad`` instead of a select, a zeros tensor and a second select (docs/benchmarks.md,
"Measurements behind design choices"). A NaN pre-activation stays NaN instead of becoming 0; training has
diverged by then either way.
"""

from __future__ import annotations

from typing import Any

from ...semantics.numpy_ops import crop_index
from . import windows
from .engine import load_tensorflow

tf = load_tensorflow()

_U32_MASK = 0xFFFFFFFF


class TensorFlowOps:
    """Array operations in TensorFlow for one float dtype (``float32`` or ``float64``)."""

    def __init__(self, float_dtype: str = "float32"):
        self.float_dtype = float_dtype
        self.dtype = tf.as_dtype(float_dtype)

    # --- floating point -------------------------------------------------------------------------
    def constant(self, value: float) -> Any:
        """A scalar constant of the model's float dtype."""
        return tf.constant(value, dtype=self.dtype)

    def sqrt(self, x: Any) -> Any:
        return tf.sqrt(x)

    def exp(self, x: Any) -> Any:
        return tf.exp(x)

    def log(self, x: Any) -> Any:
        return tf.math.log(x)

    def log1p(self, x: Any) -> Any:
        return tf.math.log1p(x)

    def tanh(self, x: Any) -> Any:
        return tf.tanh(x)

    def erf(self, x: Any) -> Any:
        return tf.math.erf(x)

    def cos(self, x: Any) -> Any:
        return tf.cos(x)

    def floor(self, x: Any) -> Any:
        return tf.floor(x)

    def abs(self, x: Any) -> Any:
        return tf.abs(x)

    def power(self, base: Any, exponent: Any) -> Any:
        return tf.pow(base, exponent)

    def maximum(self, x: Any, y: Any) -> Any:
        return tf.maximum(x, y)

    def minimum(self, x: Any, y: Any) -> Any:
        return tf.minimum(x, y)

    def where(self, cond: Any, x: Any, y: Any) -> Any:
        return tf.where(cond, x, y)

    def sigmoid(self, x: Any) -> Any:
        return tf.sigmoid(x)

    def log_softmax(self, x: Any) -> Any:
        """Log-softmax over the last axis, from logits."""
        return tf.nn.log_softmax(x, axis=-1)

    def softmax(self, x: Any) -> Any:
        """Softmax over the last axis."""
        return tf.nn.softmax(x, axis=-1)

    def one_hot(self, labels: Any, depth: int) -> Any:
        """Float one-hot rows of integer ``labels``."""
        return tf.one_hot(tf.cast(labels, tf.int32), depth, dtype=self.dtype)

    def sum(self, x: Any, axis: int | None = None) -> Any:
        return tf.reduce_sum(x, axis=axis)

    def mean(self, x: Any) -> Any:
        """Mean over all elements."""
        return tf.reduce_mean(x)

    def mean_over(self, x: Any, axes: tuple[int, ...]) -> Any:
        """Mean over ``axes``, kept with length 1."""
        return tf.reduce_mean(x, axis=list(axes), keepdims=True)

    def max_over(self, x: Any, axes: tuple[int, ...]) -> Any:
        """Maximum over ``axes``, kept with length 1."""
        return tf.reduce_max(x, axis=list(axes), keepdims=True)

    def first_max(self, x: Any) -> Any:
        """(N, P, C) -> (N, C): the values at the first maximum along P, gathered by index."""
        idx = tf.argmax(x, axis=1, output_type=tf.int32)
        return tf.gather(tf.transpose(x, [0, 2, 1]), idx, batch_dims=2)

    def concat(self, xs: list[Any], axis: int) -> Any:
        """Concatenation along ``axis`` of the batched tensors."""
        return tf.concat(list(xs), axis=axis)

    def argmax(self, x: Any) -> Any:
        """Index (int32) of the largest value along the last axis."""
        return tf.argmax(x, axis=-1, output_type=tf.int32)

    def equal(self, x: Any, y: Any) -> Any:
        """Elementwise equality; integer operands of different widths are compared as int64."""
        x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        if x.dtype != y.dtype:
            x, y = tf.cast(x, tf.int64), tf.cast(y, tf.int64)
        return tf.equal(x, y)

    def to_float(self, x: Any) -> Any:
        """Cast to the model's float dtype."""
        return tf.cast(x, self.dtype)

    def all_finite(self, x: Any) -> Any:
        """Boolean scalar: no element of ``x`` is NaN or infinite."""
        return tf.reduce_all(tf.math.is_finite(x))

    def logical_and(self, a: Any, b: Any) -> Any:
        return tf.logical_and(a, b)

    def cond(self, pred: Any, then: Any, otherwise: Any) -> Any:
        """``tf.cond``: only the branch taken runs."""
        return tf.cond(pred, then, otherwise)

    def matmul(self, x: Any, y: Any) -> Any:
        return tf.matmul(x, y)

    def reshape(self, x: Any, shape: tuple[int, ...]) -> Any:
        return tf.reshape(x, shape)

    def relu(self, x: Any) -> Any:
        """``tf.nn.relu``: the shared ``where(x > 0, x, 0)``'s values for every non-NaN input and its derivative
        (0 at 0: ``ReluGrad`` passes the gradient where the output is > 0); grappler fuses it (module docstring)."""
        return tf.nn.relu(x)

    def bias_add(self, x: Any, bias: Any) -> Any:
        """``tf.nn.bias_add``, which grappler fuses with the product or convolution before it."""
        return tf.nn.bias_add(x, bias)

    # --- windows (:mod:`.windows`) ---------------------------------------------------------------
    def conv(self, x: Any, kernel: Any, strides: Any, padding: Any, dilation: Any, groups: int) -> Any:
        return windows.conv(x, kernel, strides, padding, dilation, groups)

    def conv_transpose(
        self, y: Any, kernel: Any, input_shape: Any, strides: Any, padding: Any, dilation: Any, groups: int
    ) -> Any:
        return windows.conv_transpose(y, kernel, input_shape, strides, padding, dilation, groups)

    def max_pool(self, x: Any, window: Any, strides: Any, padding: Any) -> Any:
        return windows.max_pool(x, window, strides, padding)

    def avg_pool(self, x: Any, window: Any, strides: Any, padding: Any) -> Any:
        return windows.avg_pool(x, window, strides, padding)

    def pad(self, x: Any, padding: Any) -> Any:
        """``tf.pad`` with zeros on the spatial axes."""
        return tf.pad(x, [(0, 0), *[tuple(p) for p in padding], (0, 0)])

    def crop(self, x: Any, cropping: Any) -> Any:
        """A strided slice of the spatial axes."""
        return x[crop_index(cropping)]

    # --- unsigned 32-bit integers ------------------------------------------------------------------
    def u32(self, value: Any) -> Any:
        """A Python int or an integer tensor, modulo 2**32, as ``tf.uint32``."""
        if isinstance(value, int):
            return tf.constant(value & _U32_MASK, dtype=tf.uint32)
        wide = tf.bitwise.bitwise_and(tf.cast(value, tf.int64), tf.constant(_U32_MASK, tf.int64))
        return tf.cast(wide, tf.uint32)

    def u32_iota(self, n: int) -> Any:
        """``0, 1, ..., n - 1`` as ``tf.uint32``."""
        return tf.cast(tf.range(n, dtype=tf.int64), tf.uint32)

    def u32_xor(self, a: Any, b: Any) -> Any:
        return tf.bitwise.bitwise_xor(a, b)

    def u32_shr(self, a: Any, bits: int) -> Any:
        """Logical right shift by a constant."""
        return tf.bitwise.right_shift(a, tf.constant(bits, tf.uint32))

    def u32_mul(self, a: Any, constant: int) -> Any:
        """Product with a constant, modulo 2**32 (uint32 arithmetic wraps)."""
        return a * tf.constant(constant & _U32_MASK, tf.uint32)

    def u32_ge(self, a: Any, constant: int) -> Any:
        """Boolean ``a >= constant``."""
        return a >= tf.constant(constant & _U32_MASK, tf.uint32)


def replica_context() -> Any:
    """The ``tf.distribute`` replica context of a data-parallel step with more than one replica, else None."""
    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


class CrossReplicaOps(TensorFlowOps):
    """:class:`TensorFlowOps` for a step split over replicas (``tf.distribute``): a mean over the batch axis
    is a mean over the global batch.

    Inside a replica context with more than one replica, :meth:`mean_over` an axis set that includes the
    batch axis (batch norm's statistics) sums the replica's share, adds the replicas' sums with the
    replica context's ``all_reduce`` (differentiable: its gradient is an all-reduce of the gradients)
    and divides by the global element count. Elsewhere (evaluation, a single replica) it is
    :class:`TensorFlowOps`'s. Every replica holds an equal share of the batch.
    """

    def mean_over(self, x: Any, axes: tuple[int, ...]) -> Any:
        """Mean over ``axes``, kept with length 1; over the global batch when ``axes`` includes it (see the class)."""
        ctx = replica_context()
        if ctx is None or 0 not in axes:
            return super().mean_over(x, axes)
        count = ctx.num_replicas_in_sync
        for axis in axes:
            count *= int(x.shape[axis])
        total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(x, axis=list(axes), keepdims=True))
        return total / tf.constant(count, dtype=x.dtype)
