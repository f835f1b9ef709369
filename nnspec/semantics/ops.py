"""The array operations that engine-independent definitions use; each backend supplies one object.

Losses, optimiser updates, learning-rate schedules, activations and dropout masks are written once in
``nnspec.runtime`` against this interface. A backend implements it in ``backends/<engine>/ops.py``;
:mod:`nnspec.semantics.numpy_ops` is the NumPy version, used as the reference in tests.

Arithmetic operators (``+ - * /``, unary ``-``, comparisons) are used directly on the engine's arrays;
everything else goes through an ``Ops`` method. ``U32`` values are the engine's representation of
unsigned 32-bit integers (an engine may hold them in a wider type and mask, as PyTensor does).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

Array = Any
U32 = Any
#: Explicit padding, one (before, after) pair per spatial axis.
Pads = tuple[tuple[int, int], ...]


class Ops(Protocol):
    """Array operations an engine provides to the shared definitions."""

    float_dtype: str

    # --- floating point -------------------------------------------------------------------------
    def constant(self, value: float) -> Array:
        """A scalar constant of the model's float dtype."""

    def sqrt(self, x: Array) -> Array: ...
    def exp(self, x: Array) -> Array: ...
    def log(self, x: Array) -> Array: ...
    def log1p(self, x: Array) -> Array: ...
    def tanh(self, x: Array) -> Array: ...
    def erf(self, x: Array) -> Array: ...
    def cos(self, x: Array) -> Array: ...
    def floor(self, x: Array) -> Array: ...
    def abs(self, x: Array) -> Array: ...
    def power(self, base: Array, exponent: Array) -> Array: ...
    def maximum(self, x: Array, y: Array) -> Array: ...
    def minimum(self, x: Array, y: Array) -> Array: ...
    def where(self, cond: Array, x: Array, y: Array) -> Array: ...
    def sigmoid(self, x: Array) -> Array: ...
    def log_softmax(self, x: Array) -> Array:
        """Log-softmax over the last axis, computed stably from logits."""

    def softmax(self, x: Array) -> Array:
        """Softmax over the last axis."""

    def one_hot(self, labels: Array, depth: int) -> Array:
        """Float one-hot rows of integer ``labels``."""

    def sum(self, x: Array, axis: int | None = None) -> Array: ...
    def mean(self, x: Array) -> Array:
        """Mean over all elements."""

    def mean_over(self, x: Array, axes: tuple[int, ...]) -> Array:
        """Mean over ``axes``, which are kept with length 1."""

    def max_over(self, x: Array, axes: tuple[int, ...]) -> Array:
        """Maximum over ``axes``, which are kept with length 1."""

    def first_max(self, x: Array) -> Array:
        """For ``x`` of shape (N, P, C): the (N, C) values at the first maximum along P.

        Its gradient goes to that one element (the reference's rule on ties). Written as an index and a
        gather, not as ``max``, whose gradient engines route by comparing recomputed values with the
        maximum, which XLA's fusion can break by rounding them differently.
        """

    def concat(self, xs: list[Array], axis: int) -> Array:
        """Concatenation of ``xs`` along ``axis`` (an axis of the batched arrays)."""

    def argmax(self, x: Array) -> Array:
        """Index of the largest value along the last axis."""

    def equal(self, x: Array, y: Array) -> Array:
        """Elementwise equality (boolean)."""

    def to_float(self, x: Array) -> Array:
        """Cast (an integer or boolean array, or a step counter) to the model's float dtype."""

    def all_finite(self, x: Array) -> Array:
        """Boolean scalar: no element of ``x`` is NaN or infinite (the divergence guard's test)."""

    def logical_and(self, a: Array, b: Array) -> Array:
        """Elementwise ``a and b`` of boolean arrays."""

    def cond(self, pred: Array, then: Callable[[], Any], otherwise: Callable[[], Any]) -> Any:
        """``then()`` when the boolean scalar ``pred`` holds, else ``otherwise()``; both return the same
        structure (tuples and dicts of arrays of the same shapes and dtypes). An engine with a lazy
        conditional runs only the branch taken."""

    def matmul(self, x: Array, y: Array) -> Array: ...
    def reshape(self, x: Array, shape: tuple[int, ...]) -> Array: ...
    def relu(self, x: Array) -> Array:
        """``x`` where ``x > 0``, else 0; derivative 0 at 0 (see :mod:`nnspec.semantics.activations`)."""

    def bias_add(self, x: Array, bias: Array) -> Array:
        """``x + bias``, the bias broadcast over the last axis."""

    # --- windows: convolution and pooling, channels last, N spatial axes -----------------------
    def conv(
        self, x: Array, kernel: Array, strides: tuple[int, ...], padding: Pads, dilation: tuple[int, ...], groups: int
    ) -> Array:
        """N-d cross-correlation of ``x`` (B, *spatial, C) with ``kernel`` (*k, C / groups, O), no bias.

        ``padding`` is zero padding, one (before, after) pair per spatial axis; ``dilation`` spaces the
        kernel's taps; ``groups`` splits the channels into that many independent convolutions (O divisible
        by ``groups``). Output (B, *out, O) with ``out = (n + before + after - dilation * (k - 1) - 1) // s + 1``.
        """

    def conv_transpose(
        self,
        y: Array,
        kernel: Array,
        input_shape: tuple[int, ...],
        strides: tuple[int, ...],
        padding: Pads,
        dilation: tuple[int, ...],
        groups: int,
    ) -> Array:
        """The adjoint of :meth:`conv` in its input: the input gradient of ``conv`` for output gradient ``y``.

        ``input_shape`` is the per-example spatial shape of the convolution's input (the result's spatial
        shape); the other arguments are the convolution's. Result (B, *input_shape, C).
        """

    def max_pool(self, x: Array, window: tuple[int, ...], strides: tuple[int, ...], padding: Pads) -> Array:
        """The maximum of each window of ``x`` (B, *spatial, C), per channel; padding takes no part (-inf).

        Its gradient goes to the first maximum of each window in row-major window order (the reference's
        rule on ties); a NaN counts as the maximum, as ``numpy.argmax`` counts it.
        """

    def avg_pool(self, x: Array, window: tuple[int, ...], strides: tuple[int, ...], padding: Pads) -> Array:
        """The mean of each window of ``x`` (B, *spatial, C) over its in-image elements (padding not counted)."""

    # --- padding and cropping of the spatial axes (zero_pad2d, crop2d, upsample2d) -------------
    def pad(self, x: Array, padding: Pads) -> Array:
        """``x`` (B, *spatial, C) with ``padding`` zeros, one (before, after) pair per spatial axis."""

    def crop(self, x: Array, cropping: Pads) -> Array:
        """``x`` (B, *spatial, C) without ``cropping`` elements, one (before, after) pair per spatial axis."""

    # --- unsigned 32-bit integers, for the dropout-mask hash -----------------------------------
    def u32(self, value: Array) -> U32:
        """Convert a Python int or an integer array/scalar (seed, layer index, step) to U32, modulo 2**32."""

    def u32_iota(self, n: int) -> U32:
        """The U32 vector ``0, 1, ..., n - 1``."""

    def u32_xor(self, a: U32, b: U32) -> U32: ...
    def u32_shr(self, a: U32, bits: int) -> U32:
        """Logical right shift by a constant."""

    def u32_mul(self, a: U32, constant: int) -> U32:
        """Product with a constant, modulo 2**32."""

    def u32_ge(self, a: U32, constant: int) -> Array:
        """Boolean ``a >= constant``."""
