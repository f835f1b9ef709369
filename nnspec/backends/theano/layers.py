"""PyTensor's own lowerings (convolution and pooling windows), registered by op type over the shared ones.

Every lowering has the signature shared by all engines and the reference (see
:mod:`nnspec.semantics.lowering`): ``fn(ctx, node, inputs) -> output``, batches channels last. Dense,
reshapes, dropout, activations, softmax, merges, normalisation and global pools are the shared lowerings
(:mod:`nnspec.semantics.shared_lowerings`) over :class:`~nnspec.backends.theano.ops.PyTensorOps`; with the
static batch size in ``ctx.batch`` they build the same typed graph the earlier PyTensor-only lowerings
built (a reshape to ``(-1, n)`` of a static-shaped input gets the static shape ``(batch, n)``).

PyTensor has no convolution or pooling op of its own any more, so:

* ``conv2d`` is patch extraction plus one matrix product: the (zero-padded) input's ``kh * kw`` shifted,
  strided views of shape (B, OH, OW, Cin) are concatenated on the channel axis, in (i, j, c) order, which
  is the row-major order of the [kh, kw, Cin, Cout] kernel; one reshape and one ``dot`` with the kernel
  reshaped to [kh*kw*Cin, Cout] follow (a BLAS GEMM).
* ``max_pool2d`` / ``avg_pool2d`` are a reshape and a reduction when the windows tile the input
  (stride == size, no padding), and otherwise an elementwise maximum or sum over the ``ph * pw``
  shifted strided views. ``same`` max pooling pads with -inf; ``same`` average pooling divides by the
  number of in-image elements of each window (a constant computed here).

All of these are plain PyTensor graphs, so ``pytensor.grad`` differentiates them. Importing this module
imports no PyTensor (``TheanoBackend.capabilities()`` reads the registry's keys, and PyTensor must be
configured by :func:`nnspec.backends.theano.config.setup` before its first import); the lowerings import
it when they run.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...compiler.ir import Node
from ...compiler.shapes import padding_pairs, pool_window_counts
from ...semantics.lowering import Lowering, LoweringContext, OpRegistry
from ...semantics.shared_lowerings import bias_activation, engine_registry

Context = LoweringContext
#: The shared lowerings plus PyTensor's convolution and pools.
LOWERINGS: OpRegistry[Lowering] = engine_registry("theano")
lowering = LOWERINGS.register


def _batch(ctx: Context, x: Any) -> Any:
    """The static batch size when the model gave one (every compiled function does), else the symbolic one."""
    return ctx.batch if ctx.batch is not None else x.shape[0]


def _pad(x: Any, pads: tuple[tuple[int, int], tuple[int, int]], value: float) -> Any:
    import pytensor.tensor as pt

    (top, bottom), (left, right) = pads
    if top == bottom == left == right == 0:
        return x
    b, h, w, c = (x.type.shape[i] if x.type.shape[i] is not None else x.shape[i] for i in range(4))
    base = pt.full((b, h + top + bottom, w + left + right, c), np.asarray(value, dtype=x.dtype), dtype=x.dtype)
    return pt.set_subtensor(base[:, top : top + h, left : left + w, :], x)


def _windows(x: Any, window: tuple[int, int], strides: tuple[int, int], out_hw: tuple[int, int]) -> list[Any]:
    """The ``kh * kw`` shifted strided views (B, OH, OW, C) of padded ``x``, row-major over the window."""
    (kh, kw), (sh, sw), (oh, ow) = window, strides, out_hw
    return [
        x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :] for i in range(kh) for j in range(kw)
    ]


@lowering("conv2d")
def _conv2d(ctx: Context, node: Node, inputs: list) -> Any:
    """Patches (the window's shifted views concatenated on channels) times the reshaped kernel: one GEMM."""
    import pytensor.tensor as pt

    x = inputs[0]
    kh, kw = node.attrs["kernel"]
    cin = node.input_shape[2]
    oh, ow, cout = node.output_shape
    batch = _batch(ctx, x)
    views = _windows(_pad(x, padding_pairs(node), 0.0), (kh, kw), node.attrs["strides"], (oh, ow))
    patches = views[0] if len(views) == 1 else pt.concatenate(views, axis=3)
    kernel = pt.reshape(ctx.param(node, "kernel"), (kh * kw * cin, cout))
    z = pt.dot(pt.reshape(patches, (batch * oh * ow, kh * kw * cin)), kernel)
    return bias_activation(ctx, node, pt.reshape(z, (batch, oh, ow, cout)))


def _tiles(node: Node) -> bool:
    return node.attrs["size"] == node.attrs["strides"] and node.attrs["padding"] == "valid"


def _tile_view(node: Node, x: Any, batch: Any) -> Any:
    import pytensor.tensor as pt

    (ph, pw), (oh, ow, c) = node.attrs["size"], node.output_shape
    if (oh * ph, ow * pw) != tuple(node.input_shape[:2]):
        x = x[:, : oh * ph, : ow * pw, :]
    return pt.reshape(x, (batch, oh, ph, ow, pw, c))


def _index_dtype(n: int) -> str:
    return "int8" if n <= 127 else "int16" if n <= 32767 else "int32"


def _is_max(v: Any, y: Any) -> Any:
    """Where ``v`` is its window's maximum ``y``; a NaN counts as the maximum (as ``numpy.argmax`` has it)."""
    import pytensor.tensor as pt

    return pt.or_(pt.eq(v, y), pt.isnan(v))


def _first_max_index(views: list[Any], y: Any) -> Any:
    """Index in ``views`` (row-major window order) of the first view equal to the maximum ``y``.

    Written as arithmetic, ``(1-h0) * (1 + (1-h1) * (1 + ... (1-h[n-2])))`` over the hits ``h``, not as a
    chain of ``switch``: the hits of tied windows have no pattern, and PyTensor's C ``switch`` branches, so
    the chain ran several times slower on such data than the products (measured).
    """
    import pytensor.tensor as pt

    dtype = _index_dtype(len(views))
    one = pt.constant(np.ones((), dtype=dtype))
    index = None
    for v in reversed(views[:-1]):
        missed = one - pt.cast(_is_max(v, y), dtype)
        index = missed if index is None else missed * (one + index)
    return index


def _tiles_max_pullback(window: tuple[int, int]) -> Callable[..., list[Any]]:
    def pullback(inputs: list[Any], outputs: list[Any], cotangents: list[Any]) -> list[Any]:
        """Gradient of the max over axes (2, 4) of tiles (B, OH, PH, OW, PW, C): each window's gradient to its
        first maximum in row-major window order."""
        import pytensor.tensor as pt

        (tiles,), (y,), (dy,) = inputs, outputs, cotangents
        ph, pw = window
        first = _first_max_index([tiles[:, :, i, :, j, :] for i in range(ph) for j in range(pw)], y)
        index = pt.constant(np.arange(ph * pw, dtype=_index_dtype(ph * pw)).reshape(1, 1, ph, 1, pw, 1))
        first, dy = (pt.shape_padaxis(pt.shape_padaxis(v, 2), 4) for v in (first, dy))
        return [pt.eq(index, first) * dy]

    return pullback


def _views_max_pullback(inputs: list[Any], outputs: list[Any], cotangents: list[Any]) -> list[Any]:
    """Gradient of the elementwise maximum of a window's shifted views (row-major window order): each
    position's gradient to the first view that holds the maximum."""
    import pytensor.tensor as pt

    (y,), (dy,) = outputs, cotangents
    first = _first_max_index(inputs, y)
    dtype = first.dtype
    return [pt.eq(first, pt.constant(np.asarray(k, dtype=dtype))) * dy for k in range(len(inputs))]


def _max_with_first_max_gradient(parts: list[Any], reduce: Callable[..., Any], pullback: Callable[..., Any]) -> Any:
    """``reduce(*parts)``, whose gradient is ``pullback``'s (an inlined ``OpFromGraph``: the forward graph and
    its values are exactly ``reduce``'s; only the derivative is replaced)."""
    from pytensor.compile.builders import OpFromGraph

    inner = [p.type() for p in parts]
    op = OpFromGraph(inner, [reduce(*inner)], inline=True, pullback=pullback, name="max_pool_first_max")
    return op(*parts)


def _maximum_of(*views: Any) -> Any:
    import pytensor.tensor as pt

    y = views[0]
    for v in views[1:]:
        y = pt.maximum(y, v)
    return y


def _max_pool_plain(node: Node, x: Any, batch: Any) -> Any:
    """The max pool with PyTensor's own derivative (which splits nothing only when windows cannot tie)."""
    import pytensor.tensor as pt

    if _tiles(node):
        return pt.max(_tile_view(node, x, batch), axis=(2, 4))
    xp = _pad(x, padding_pairs(node), -np.inf)
    return _maximum_of(*_windows(xp, node.attrs["size"], node.attrs["strides"], node.output_shape[:2]))  # type: ignore[arg-type]


@lowering("max_pool2d")
def _max_pool(ctx: Context, node: Node, inputs: list) -> Any:
    """The max of each window. PyTensor's own derivative of ``max``/``maximum`` gives the whole gradient to
    every element equal to the maximum, so a window with ties (equal ReLU outputs over a blank background)
    would pass it on several times; here it goes to the first maximum in row-major window order, as in the
    reference (:mod:`nnspec.reference.backward`) and on every other engine. Same forward graph as before."""
    import pytensor.tensor as pt

    x = inputs[0]
    batch = _batch(ctx, x)
    if node.attrs["size"][0] * node.attrs["size"][1] == 1:  # one element per window: no ties
        return _max_pool_plain(node, x, batch)
    if _tiles(node):
        tiles = _tile_view(node, x, batch)
        return _max_with_first_max_gradient(
            [tiles], lambda t: pt.max(t, axis=(2, 4)), _tiles_max_pullback(node.attrs["size"])
        )
    xp = _pad(x, padding_pairs(node), -np.inf)
    views = _windows(xp, node.attrs["size"], node.attrs["strides"], node.output_shape[:2])  # type: ignore[arg-type]
    return _max_with_first_max_gradient(views, _maximum_of, _views_max_pullback)


@lowering("avg_pool2d")
def _avg_pool(ctx: Context, node: Node, inputs: list) -> Any:
    """Mean of each window: a reshape and a mean when windows tile the input, else a sum of shifted views."""
    import pytensor.tensor as pt

    x = inputs[0]
    if _tiles(node):
        return pt.mean(_tile_view(node, x, _batch(ctx, x)), axis=(2, 4))
    ph, pw = node.attrs["size"]
    xp = _pad(x, padding_pairs(node), 0.0)
    views = _windows(xp, (ph, pw), node.attrs["strides"], node.output_shape[:2])  # type: ignore[arg-type]
    total = views[0]
    for v in views[1:]:
        total = total + v
    if node.attrs["padding"] == "same":
        return total * pt.constant((1.0 / pool_window_counts(node)).astype(x.dtype))
    return total * ctx.ops.constant(1.0 / (ph * pw))
