"""The window primitives of :class:`~nnspec.semantics.ops.Ops` in NumPy, N-d and channels last, with their adjoints.

Convolution and pooling over ``x`` of shape (B, *spatial, C) are sums or maxima over windows:
:func:`windows` views a padded batch as (B, *out, C, *k) (a read-only view, taps spaced by the dilation),
and :func:`scatter_windows` is its adjoint (window gradients added back into the padded input, then the
padding cropped away). The reference forward and backward passes (:mod:`nnspec.reference`) and
:class:`~nnspec.semantics.numpy_ops.NumpyOps` are written with these.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np

Pads = Sequence[tuple[int, int]]
#: Letters of the output's spatial axes and of the kernel's window axes in the einsum subscripts.
_OUT, _TAPS = "hwtuv", "ijklm"


def _spatial_index(parts: Any) -> tuple[Any, ...]:
    """An index of a (B, *spatial, C) array: every example and channel, ``parts`` on the spatial axes."""
    return (slice(None), *parts, slice(None))


def _ones(n: int) -> tuple[int, ...]:
    return (1,) * n


def out_shape(
    spatial: Sequence[int], window: Sequence[int], strides: Sequence[int], padding: Pads, dilation: Sequence[int]
) -> tuple[int, ...]:
    """Spatial output shape of windows of size ``window`` over a padded ``spatial`` input."""
    return tuple(
        (n + a + b - d * (k - 1) - 1) // s + 1
        for n, k, s, (a, b), d in zip(spatial, window, strides, padding, dilation)
    )


def windows(
    x: np.ndarray,
    window: Sequence[int],
    strides: Sequence[int],
    padding: Pads,
    dilation: Sequence[int] | None = None,
    fill: float = 0.0,
) -> np.ndarray:
    """The windows of padded ``x`` (B, *spatial, C) as a view (B, *out, C, *window)."""
    n = len(window)
    dilation = tuple(dilation) if dilation is not None else _ones(n)
    padded = np.pad(x, ((0, 0), *[tuple(p) for p in padding], (0, 0)), constant_values=fill)
    span = tuple(d * (k - 1) + 1 for k, d in zip(window, dilation))
    view = np.lib.stride_tricks.sliding_window_view(padded, span, axis=tuple(range(1, n + 1)))
    steps = (
        slice(None),
        *(slice(None, None, s) for s in strides),
        slice(None),
        *(slice(None, None, d) for d in dilation),
    )
    return view[steps]


def scatter_windows(
    d_windows: np.ndarray,
    spatial: Sequence[int],
    strides: Sequence[int],
    padding: Pads,
    dilation: Sequence[int] | None = None,
) -> np.ndarray:
    """Adjoint of :func:`windows`: (B, *out, C, *window) gradients summed into the (B, *spatial, C) input."""
    n = len(spatial)
    dilation = tuple(dilation) if dilation is not None else _ones(n)
    batch, out, channels, window = (
        d_windows.shape[0],
        d_windows.shape[1 : n + 1],
        d_windows.shape[n + 1],
        d_windows.shape[n + 2 :],
    )
    padded = tuple(size + a + b for size, (a, b) in zip(spatial, padding))
    dp = np.zeros((batch, *padded, channels), dtype=d_windows.dtype)
    for taps in itertools.product(*(range(k) for k in window)):
        target = tuple(slice(t * d, t * d + s * (o - 1) + 1, s) for t, d, s, o in zip(taps, dilation, strides, out))
        dp[_spatial_index(target)] += d_windows[(Ellipsis,) + tuple(taps)]
    crop = tuple(slice(a, a + size) for size, (a, _) in zip(spatial, padding))
    return dp[_spatial_index(crop)]


def _subscripts(n: int) -> tuple[str, str]:
    return _OUT[:n], _TAPS[:n]


def conv(
    x: np.ndarray, kernel: np.ndarray, strides: Sequence[int], padding: Pads, dilation: Sequence[int], groups: int
) -> np.ndarray:
    """N-d cross-correlation of (B, *spatial, C) with a (*k, C / groups, O) kernel, no bias."""
    n = kernel.ndim - 2
    out, taps = _subscripts(n)
    patches = windows(x, kernel.shape[:n], strides, padding, dilation)
    if groups == 1:
        return np.einsum(f"b{out}c{taps},{taps}co->b{out}o", patches, kernel, optimize=True)
    grouped = patches.reshape(*patches.shape[: n + 1], groups, -1, *patches.shape[n + 2 :])
    k = kernel.reshape(*kernel.shape[: n + 1], groups, -1)
    y = np.einsum(f"b{out}gc{taps},{taps}cgq->b{out}gq", grouped, k, optimize=True)
    return y.reshape(*y.shape[: n + 1], -1)


def conv_transpose(
    dy: np.ndarray,
    kernel: np.ndarray,
    spatial: Sequence[int],
    strides: Sequence[int],
    padding: Pads,
    dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """The input gradient of :func:`conv` for output gradient ``dy``: (B, *spatial, C)."""
    n = kernel.ndim - 2
    out, taps = _subscripts(n)
    if groups == 1:
        d_windows = np.einsum(f"b{out}o,{taps}co->b{out}c{taps}", dy, kernel, optimize=True)
    else:
        g = dy.reshape(*dy.shape[: n + 1], groups, -1)
        k = kernel.reshape(*kernel.shape[: n + 1], groups, -1)
        d_windows = np.einsum(f"b{out}gq,{taps}cgq->b{out}gc{taps}", g, k, optimize=True)
        d_windows = d_windows.reshape(*d_windows.shape[: n + 1], -1, *d_windows.shape[n + 3 :])
    return scatter_windows(d_windows, spatial, strides, padding, dilation)


def conv_kernel_gradient(
    x: np.ndarray,
    dy: np.ndarray,
    window: Sequence[int],
    strides: Sequence[int],
    padding: Pads,
    dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """The kernel gradient of :func:`conv` for input ``x`` and output gradient ``dy``: (*k, C / groups, O)."""
    n = len(window)
    out, taps = _subscripts(n)
    patches = windows(x, window, strides, padding, dilation)
    if groups == 1:
        return np.einsum(f"b{out}c{taps},b{out}o->{taps}co", patches, dy, optimize=True)
    grouped = patches.reshape(*patches.shape[: n + 1], groups, -1, *patches.shape[n + 2 :])
    g = dy.reshape(*dy.shape[: n + 1], groups, -1)
    dk = np.einsum(f"b{out}gc{taps},b{out}gq->{taps}cgq", grouped, g, optimize=True)
    return dk.reshape(*dk.shape[: n + 1], -1)


def max_pool(x: np.ndarray, window: Sequence[int], strides: Sequence[int], padding: Pads) -> np.ndarray:
    """Max over each window; padding takes no part (it is -inf)."""
    n = len(window)
    return windows(x, window, strides, padding, fill=-np.inf).max(axis=tuple(range(-n, 0)))


def window_counts(spatial: Sequence[int], window: Sequence[int], strides: Sequence[int], padding: Pads) -> np.ndarray:
    """How many in-image elements each window covers: shape (*out, 1), float64."""
    n = len(window)
    ones = np.ones((1, *spatial, 1))
    return windows(ones, window, strides, padding).sum(axis=tuple(range(-n, 0)))[0]


def avg_pool(x: np.ndarray, window: Sequence[int], strides: Sequence[int], padding: Pads) -> np.ndarray:
    """Mean over the in-image elements of each window (padding is not counted)."""
    n = len(window)
    total = windows(x, window, strides, padding).sum(axis=tuple(range(-n, 0)))
    return total / window_counts(x.shape[1:-1], window, strides, padding).astype(x.dtype)


def max_pool_backward(
    x: np.ndarray, dy: np.ndarray, window: Sequence[int], strides: Sequence[int], padding: Pads
) -> np.ndarray:
    """Gradient of :func:`max_pool`: each window's gradient to its first maximum in row-major window order."""
    n = len(window)
    win = windows(x, window, strides, padding, fill=-np.inf)
    flat = win.reshape(*win.shape[: n + 2], math.prod(window))
    first = np.argmax(flat, axis=-1)
    routed = (np.arange(math.prod(window)) == first[..., None]) * dy[..., None]
    return scatter_windows(routed.reshape(win.shape), x.shape[1:-1], strides, padding)


def avg_pool_backward(
    dy: np.ndarray, spatial: Sequence[int], window: Sequence[int], strides: Sequence[int], padding: Pads
) -> np.ndarray:
    """Gradient of :func:`avg_pool`: each window's gradient spread over its in-image elements."""
    n = len(window)
    inside = windows(np.ones((1, *spatial, 1)), window, strides, padding)  # 0 on padding
    count = inside.sum(axis=tuple(range(-n, 0)))
    share = (dy / count).reshape(*dy.shape, *_ones(n))
    return scatter_windows(share * inside, spatial, strides, padding)
