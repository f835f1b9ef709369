"""PyTensor implementation of :class:`nnspec.semantics.ops.Ops` (symbolic: every method builds graph nodes).

Unsigned 32-bit values are held in ``uint64``: PyTensor has no shift operators and its fused elementwise
C code does not wrap ``uint32`` products, so a product of two values below 2**32 is formed exactly in
64 bits and masked with ``& 0xFFFFFFFF``; a right shift by ``k`` is an integer division by ``2**k``.
Every constant mixed with them is a ``uint64`` constant, so that no operation promotes to float.

``first_max`` (the global max pool) gathers each maximum by its index (``argmax``, the first maximum as
in NumPy) from the flattened input, so its gradient goes to that one element: PyTensor's derivative of
``max`` would give the whole gradient to every tied element (a ReLU channel that is zero everywhere).

``log_softmax`` and ``softmax`` are written from elementwise ops and reductions, not with PyTensor's
``special.log_softmax``/``softmax``: those are symbolic ops without C code, which the C linker ran through a
Python ``perform`` inside every compiled step (the C mode also keeps PyTensor from recognising the
elementwise softmax as its op again; see ``config.get_mode``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import zero_grad

from ...semantics.numpy_ops import crop_index
from . import windows

_MASK32 = 0xFFFFFFFF


def _shifted(x: Any) -> Any:
    """``x`` minus its maximum over the last axis, the shift held out of the gradient.

    The shift's true derivative is zero (log-softmax and softmax are invariant under it); keeping it out
    of the graph of the derivative also avoids ``max``'s gradient, which PyTensor gives to every tied
    maximum.
    """
    return x - zero_grad(pt.max(x, axis=-1, keepdims=True))


def _u64(value: int) -> Any:
    return pt.constant(np.uint64(value), dtype="uint64")


def _flatten(tree: Any) -> tuple[list[Any], Any]:
    """The leaves of nested tuples and dicts, and a function that rebuilds the tree from new leaves."""
    if isinstance(tree, dict):
        parts = [_flatten(v) for v in tree.values()]
        keys = list(tree)
    elif isinstance(tree, (tuple, list)):
        parts = [_flatten(v) for v in tree]
        keys = None
    else:
        return [tree], lambda leaves: leaves[0]
    sizes = [len(leaves) for leaves, _ in parts]

    def rebuild(leaves: list[Any]) -> Any:
        out, at = [], 0
        for (_, build), n in zip(parts, sizes):
            out.append(build(list(leaves[at : at + n])))
            at += n
        return dict(zip(keys, out)) if keys is not None else type(tree)(out)

    return [leaf for leaves, _ in parts for leaf in leaves], rebuild


class PyTensorOps:
    """Symbolic array operations for one float dtype (``float32`` or ``float64``)."""

    def __init__(self, float_dtype: str = "float32"):
        self.float_dtype = float_dtype

    def constant(self, value: float) -> Any:
        return pt.constant(np.asarray(value, dtype=self.float_dtype))

    def sqrt(self, x: Any) -> Any:
        return pt.sqrt(x)

    def exp(self, x: Any) -> Any:
        return pt.exp(x)

    def log(self, x: Any) -> Any:
        return pt.log(x)

    def log1p(self, x: Any) -> Any:
        return pt.log1p(x)

    def tanh(self, x: Any) -> Any:
        return pt.tanh(x)

    def erf(self, x: Any) -> Any:
        return pt.erf(x)

    def cos(self, x: Any) -> Any:
        return pt.cos(x)

    def floor(self, x: Any) -> Any:
        return pt.floor(x)

    def abs(self, x: Any) -> Any:
        return pt.abs(x)

    def power(self, base: Any, exponent: Any) -> Any:
        return pt.power(base, exponent)

    def maximum(self, x: Any, y: Any) -> Any:
        return pt.maximum(x, y)

    def minimum(self, x: Any, y: Any) -> Any:
        return pt.minimum(x, y)

    def where(self, cond: Any, x: Any, y: Any) -> Any:
        return pt.switch(cond, x, y)

    def sigmoid(self, x: Any) -> Any:
        return pt.sigmoid(x)

    def log_softmax(self, x: Any) -> Any:
        shifted = _shifted(x)
        return shifted - pt.log(pt.sum(pt.exp(shifted), axis=-1, keepdims=True))

    def softmax(self, x: Any) -> Any:
        e = pt.exp(_shifted(x))
        return e / pt.sum(e, axis=-1, keepdims=True)

    def one_hot(self, labels: Any, depth: int) -> Any:
        return pt.cast(pt.eq(pt.shape_padright(labels), pt.arange(depth)), self.float_dtype)

    def sum(self, x: Any, axis: int | None = None) -> Any:
        return pt.sum(x, axis=axis)

    def mean(self, x: Any) -> Any:
        return pt.cast(pt.mean(x), self.float_dtype)

    def mean_over(self, x: Any, axes: tuple[int, ...]) -> Any:
        return pt.cast(pt.mean(x, axis=axes, keepdims=True), self.float_dtype)

    def max_over(self, x: Any, axes: tuple[int, ...]) -> Any:
        return pt.max(x, axis=axes, keepdims=True)

    def first_max(self, x: Any) -> Any:
        n, p, c = (x.shape[i] for i in range(3))
        first = pt.argmax(x, axis=1)
        flat = pt.shape_padright(pt.arange(n) * (p * c)) + first * c + pt.shape_padleft(pt.arange(c))
        return pt.reshape(pt.reshape(x, (-1,))[pt.reshape(flat, (-1,))], (n, c))

    def concat(self, xs: list[Any], axis: int) -> Any:
        return pt.concatenate(xs, axis=axis)

    def argmax(self, x: Any) -> Any:
        return pt.argmax(x, axis=-1)

    def equal(self, x: Any, y: Any) -> Any:
        return pt.eq(x, y)

    def to_float(self, x: Any) -> Any:
        return pt.cast(x, self.float_dtype)

    def all_finite(self, x: Any) -> Any:
        return pt.all(pt.isfinite(x))

    def logical_and(self, a: Any, b: Any) -> Any:
        return pt.and_(a, b)

    def cond(self, pred: Any, then: Any, otherwise: Any) -> Any:
        """PyTensor's ``ifelse`` over the branches' arrays (lazy under the VM linkers)."""
        from pytensor.ifelse import ifelse

        a, b = then(), otherwise()
        leaves_a, rebuild = _flatten(a)
        leaves_b, _ = _flatten(b)
        return rebuild(ifelse(pred, leaves_a, leaves_b)) if leaves_a else a

    def matmul(self, x: Any, y: Any) -> Any:
        return pt.dot(x, y)

    def reshape(self, x: Any, shape: tuple[int, ...]) -> Any:
        return pt.reshape(x, shape)

    def relu(self, x: Any) -> Any:
        return pt.switch(x > self.constant(0.0), x, self.constant(0.0))

    def bias_add(self, x: Any, bias: Any) -> Any:
        return x + bias

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
        return windows.avg_pool(x, window, strides, padding, self.constant)

    def pad(self, x: Any, padding: Any) -> Any:
        """Zeros with ``x`` set into their inner part (``set_subtensor``; its gradient is the slice)."""
        spatial = [int(n) + a + b for n, (a, b) in zip(x.type.shape[1:-1], padding)]
        zeros = pt.zeros((x.shape[0], *spatial, x.shape[-1]), dtype=x.dtype)
        inner = tuple(slice(a, a + int(n)) for n, (a, _) in zip(x.type.shape[1:-1], padding))
        index = (slice(None), *inner, slice(None))
        return pt.set_subtensor(zeros[index], x)

    def crop(self, x: Any, cropping: Any) -> Any:
        return x[crop_index(cropping)]

    # --- unsigned 32-bit integers held in uint64 -----------------------------------------------
    def u32(self, value: Any) -> Any:
        if isinstance(value, (int, np.integer)):
            return _u64(int(value) & _MASK32)
        return pt.bitwise_and(pt.cast(pt.cast(value, "int64"), "uint64"), _u64(_MASK32))

    def u32_iota(self, n: int) -> Any:
        return pt.arange(n, dtype="uint64")

    def u32_xor(self, a: Any, b: Any) -> Any:
        return pt.bitwise_xor(a, b)

    def u32_shr(self, a: Any, bits: int) -> Any:
        return pt.int_div(a, _u64(2**bits))

    def u32_mul(self, a: Any, constant: int) -> Any:
        return pt.bitwise_and(a * _u64(constant & _MASK32), _u64(_MASK32))

    def u32_ge(self, a: Any, constant: int) -> Any:
        return pt.ge(a, _u64(constant))
