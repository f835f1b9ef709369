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
