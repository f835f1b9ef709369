"""PyTensor's window primitives (N-d convolution, its transpose, max and average pooling), channels last.

PyTensor has no convolution or pooling op of its own any more, so (used by
:class:`~nnspec.backends.theano.ops.PyTensorOps`):

* a convolution is patch extraction plus one matrix product: the (zero-padded) input's shifted, strided
  views of shape (B, *out, C), one per kernel tap in row-major order (the order of the (*k, C, O) kernel),
  are concatenated on the channel axis; one reshape and one ``dot`` with the kernel reshaped to
  (prod(k) * C, O) follow (a BLAS GEMM). Grouped convolutions are one such product per group, except a
  depthwise one (a group per input channel): the sum of the views times each tap's weights, measured faster
  (docs/benchmarks.md, "Depthwise convolution").
* max and average pools are a reshape and a reduction when the windows tile the input (stride == size,
  no padding), and otherwise an elementwise maximum or sum over the window's shifted strided views. Max
  pooling pads with -inf; average pooling divides by the number of in-image elements of each window (a
  constant computed here) when there is padding.

All of these are plain PyTensor graphs, so ``pytensor.grad`` differentiates them; the max pools replace
only the derivative (each window's gradient to its first maximum, as the reference). Shapes are the
static shapes of the graph (the models give every input a static batch size).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Sequence

import numpy as np
import pytensor.tensor as pt

from ...errors import BackendError
from ...semantics.numpy_windows import out_shape, window_counts

Pads = Sequence[tuple[int, int]]


def _spatial_index(parts: Any) -> tuple[Any, ...]:
    """An index of a (B, *spatial, C) array: every example and channel, ``parts`` on the spatial axes."""
    return (slice(None), *parts, slice(None))


def _dims(x: Any) -> list[Any]:
    """Each axis's length: the static one where the type knows it, else the symbolic one."""
    return [x.type.shape[i] if x.type.shape[i] is not None else x.shape[i] for i in range(x.ndim)]


def _spatial(x: Any) -> tuple[int, ...]:
    shape = x.type.shape[1:-1]
    if any(d is None for d in shape):
        raise BackendError(f"a PyTensor convolution or pool needs a static spatial shape; got {x.type.shape}")
    return tuple(int(d) for d in shape)


def _pad(x: Any, padding: Pads, value: float) -> Any:
    if not any(a or b for a, b in padding):
        return x
    b, *spatial, c = _dims(x)
    padded = [n + a + z for n, (a, z) in zip(spatial, padding)]
    base = pt.full((b, *padded, c), np.asarray(value, dtype=x.dtype), dtype=x.dtype)
    inner = tuple(slice(a, a + n) for n, (a, _) in zip(spatial, padding))
    return pt.set_subtensor(base[_spatial_index(inner)], x)


def _views(
    x: Any, window: Sequence[int], strides: Sequence[int], out: Sequence[int], dilation: Sequence[int]
) -> list[Any]:
    """The shifted strided views (B, *out, C) of padded ``x``, one per window tap in row-major order."""
    return [
        x[_spatial_index(slice(t * d, t * d + s * (o - 1) + 1, s) for t, d, s, o in zip(taps, dilation, strides, out))]
        for taps in itertools.product(*(range(k) for k in window))
    ]


def _patch_product(x: Any, kernel: Any, strides: Sequence[int], padding: Pads, dilation: Sequence[int]) -> Any:
    n = len(strides)
    window, (cin, cout) = tuple(int(d) for d in kernel.type.shape[:n]), kernel.type.shape[n:]
    out = out_shape(_spatial(x), window, strides, padding, dilation)
    batch = _dims(x)[0]
    views = _views(_pad(x, padding, 0.0), window, strides, out, dilation)
    patches = views[0] if len(views) == 1 else pt.concatenate(views, axis=n + 1)
    taps = math.prod(window) * cin
    z = pt.dot(pt.reshape(patches, (batch * math.prod(out), taps)), pt.reshape(kernel, (taps, cout)))
    return pt.reshape(z, (batch, *out, cout))


def conv(x: Any, kernel: Any, strides: Sequence[int], padding: Pads, dilation: Sequence[int], groups: int) -> Any:
    """Patches (the window's shifted views concatenated on channels) times the reshaped kernel: one GEMM per group."""
    if kernel.type.shape is None or any(d is None for d in kernel.type.shape):
        raise BackendError(f"a PyTensor convolution needs a kernel of static shape; got {kernel.type.shape}")
    if groups == 1:
        return _patch_product(x, kernel, strides, padding, dilation)
    if groups == _dims(x)[-1]:
        return _depthwise_views(x, kernel, strides, padding, dilation)
    cin, cout = int(kernel.type.shape[-2]), int(kernel.type.shape[-1]) // groups
    parts = [
        _patch_product(
            x[..., g * cin : (g + 1) * cin], kernel[..., g * cout : (g + 1) * cout], strides, padding, dilation
        )
        for g in range(groups)
    ]
    return pt.concatenate(parts, axis=-1)


def _depthwise_views(x: Any, kernel: Any, strides: Sequence[int], padding: Pads, dilation: Sequence[int]) -> Any:
    """A depthwise convolution (kernel ``(*k, 1, C * m)``): the sum over the window's taps of the shifted views
    times the tap's weights, output channel ``c * m + i``."""
    n, channels = len(strides), int(_dims(x)[-1])
    window, mult = tuple(int(d) for d in kernel.type.shape[:n]), int(kernel.type.shape[-1]) // channels
    out = out_shape(_spatial(x), window, strides, padding, dilation)
    total = None
    for taps, view in zip(
        itertools.product(*(range(k) for k in window)), _views(_pad(x, padding, 0.0), window, strides, out, dilation)
    ):
        weights = kernel[taps][0]
        if mult == 1:
            term = view * weights
        else:
            batch = _dims(view)[0]
            term = pt.reshape(view[..., None] * pt.reshape(weights, (channels, mult)), (batch, *out, channels * mult))
        total = term if total is None else total + term
    return total


def conv_transpose(
    y: Any,
    kernel: Any,
    input_shape: Sequence[int],
    strides: Sequence[int],
    padding: Pads,
    dilation: Sequence[int],
    groups: int,
) -> Any:
    """The input gradient of :func:`conv` (its L-operator at ``y``: the convolution is linear in its input)."""
    from pytensor.gradient import Lop

    channels = int(kernel.type.shape[-2]) * groups
    batch = _dims(y)[0]
    x = pt.zeros((batch, *input_shape, channels), dtype=y.dtype)
    x = pt.specify_shape(x, (y.type.shape[0], *input_shape, channels))
    return Lop(conv(x, kernel, strides, padding, dilation, groups), x, y)


def tiles_input(window: Sequence[int], strides: Sequence[int], padding: Pads) -> bool:
    """Whether windows tile the input (stride == size, no padding)."""
    return tuple(window) == tuple(strides) and not any(a or b for a, b in padding)


def _tile_view(x: Any, window: Sequence[int]) -> Any:
    """``x`` (B, *spatial, C) cropped to whole windows and split: (B, o1, k1, o2, k2, ..., C), a reshape."""
    spatial = _spatial(x)
    out = [n // k for n, k in zip(spatial, window)]
    if tuple(o * k for o, k in zip(out, window)) != spatial:
        x = x[_spatial_index((slice(None, o * k) for o, k in zip(out, window)))]
    b, c = _dims(x)[0], _dims(x)[-1]
    return pt.reshape(x, (b, *(d for o, k in zip(out, window) for d in (o, k)), c))


def _window_axes(n: int) -> tuple[int, ...]:
    return tuple(range(2, 2 * n + 1, 2))


def _index_dtype(n: int) -> str:
    return "int8" if n <= 127 else "int16" if n <= 32767 else "int32"


def _is_max(v: Any, y: Any) -> Any:
    """Where ``v`` is its window's maximum ``y``; a NaN counts as the maximum (as ``numpy.argmax`` has it)."""
    return pt.or_(pt.eq(v, y), pt.isnan(v))


def _first_max_index(views: list[Any], y: Any) -> Any:
    """Index in ``views`` (row-major window order) of the first view equal to the maximum ``y``.

    Written as arithmetic, ``(1-h0) * (1 + (1-h1) * (1 + ... (1-h[n-2])))`` over the hits ``h``, not as a
    chain of ``switch``: the hits of tied windows have no pattern, and PyTensor's C ``switch`` branches, so
    the chain ran several times slower on such data than the products (measured).
    """
    dtype = _index_dtype(len(views))
    one = pt.constant(np.ones((), dtype=dtype))
    index = None
    for v in reversed(views[:-1]):
        missed = one - pt.cast(_is_max(v, y), dtype)
        index = missed if index is None else missed * (one + index)
    return index


def _tiles_max_pullback(window: tuple[int, ...]) -> Callable[..., list[Any]]:
    n = len(window)

    def pullback(inputs: list[Any], outputs: list[Any], cotangents: list[Any]) -> list[Any]:
        """Gradient of the max over the window axes of tiles (B, o1, k1, ..., C): each window's gradient to
        its first maximum in row-major window order."""
        (tiles,), (y,), (dy,) = inputs, outputs, cotangents
        views = [
            tiles[_spatial_index((part for o_k in zip([slice(None)] * n, taps) for part in o_k))]
            for taps in itertools.product(*(range(k) for k in window))
        ]
        first = _first_max_index(views, y)
        shape = (1, *(d for k in window for d in (1, k)), 1)
        index = pt.constant(np.arange(math.prod(window), dtype=_index_dtype(math.prod(window))).reshape(shape))
        for axis in _window_axes(n):
            first, dy = pt.shape_padaxis(first, axis), pt.shape_padaxis(dy, axis)
        return [pt.eq(index, first) * dy]

    return pullback


def _views_max_pullback(inputs: list[Any], outputs: list[Any], cotangents: list[Any]) -> list[Any]:
    """Gradient of the elementwise maximum of a window's shifted views (row-major window order): each
    position's gradient to the first view that holds the maximum."""
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
    y = views[0]
    for v in views[1:]:
        y = pt.maximum(y, v)
    return y


def _pool_views(x: Any, window: Sequence[int], strides: Sequence[int], padding: Pads, fill: float) -> list[Any]:
    out = out_shape(_spatial(x), window, strides, padding, (1,) * len(window))
    return _views(_pad(x, padding, fill), window, strides, out, (1,) * len(window))


def max_pool(x: Any, window: Sequence[int], strides: Sequence[int], padding: Pads) -> Any:
    """The max of each window. PyTensor's own derivative of ``max``/``maximum`` gives the whole gradient to
    every element equal to the maximum, so a window with ties (equal ReLU outputs over a blank background)
    would pass it on several times; here it goes to the first maximum in row-major window order, as in the
    reference (:mod:`nnspec.reference.backward`) and on every other engine."""
    window, strides = tuple(window), tuple(strides)
    axes = _window_axes(len(window))
    tiled = tiles_input(window, strides, padding)
    if math.prod(window) == 1:  # one element per window: no ties
        if tiled:
            return pt.max(_tile_view(x, window), axis=axes)
        return _maximum_of(*_pool_views(x, window, strides, padding, -np.inf))
    if tiled:
        return _max_with_first_max_gradient(
            [_tile_view(x, window)], lambda t: pt.max(t, axis=axes), _tiles_max_pullback(window)
        )
    return _max_with_first_max_gradient(
        _pool_views(x, window, strides, padding, -np.inf), _maximum_of, _views_max_pullback
    )


def avg_pool(x: Any, window: Sequence[int], strides: Sequence[int], padding: Pads, one_over: Any) -> Any:
    """Mean of each window: a reshape and a mean when windows tile the input, else a sum of shifted views
    times the inverse window count (``one_over(value)`` makes the scalar constant of the model's dtype)."""
    window, strides = tuple(window), tuple(strides)
    if tiles_input(window, strides, padding):
        return pt.mean(_tile_view(x, window), axis=_window_axes(len(window)))
    views = _pool_views(x, window, strides, padding, 0.0)
    total = views[0]
    for v in views[1:]:
        total = total + v
    if any(a or b for a, b in padding):
        return total * pt.constant((1.0 / window_counts(_spatial(x), window, strides, padding)).astype(x.dtype))
    return total * one_over(1.0 / math.prod(window))
