"""JAX's window primitives (N-d convolution, its transpose, max and average pooling), channels last.

Used by :class:`~nnspec.backends.jax.ops.JaxOps`. Convolutions run at the given precision and keep their
inputs' dtype. Three take a measured faster form (docs/benchmarks.md, "Measurements behind design choices"):
the convolution on the CPU with a JAX older than 0.11 (:func:`conv`: matrix products there), the depthwise
convolution on the CPU (:func:`depthwise_views`: shifted views times the taps' weights) and the max pool
over tiling windows (:func:`tiled_max_pool`: a reshape and a max, on every device).
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ...semantics.numpy_windows import window_counts

Pads = Sequence[tuple[int, int]]

#: Whether this JAX's XLA runs a CPU convolution on one thread (measured: 0.10.2 does, 0.11.2 does not).
SERIAL_CPU_CONVOLUTION: bool = tuple(jax.__version_info__) < (0, 11)


def _spatial_index(parts: Any) -> tuple[Any, ...]:
    """An index of a (B, *spatial, C) array: every example and channel, ``parts`` on the spatial axes."""
    return (slice(None), *parts, slice(None))


def dimension_numbers(n: int) -> tuple[str, str, str]:
    """Channels-last dimension numbers of an ``n``-d convolution: ``("NHWC", "HWIO", "NHWC")`` for 2-D."""
    spatial = "HWDEFG"[:n]
    return f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"


def conv(
    x: Any, kernel: Any, strides: tuple[int, ...], padding: Pads, dilation: tuple[int, ...], groups: int, precision: Any
) -> Any:
    """N-d convolution, (B, *spatial, C) data and (*k, C / groups, O) kernel, in the form fastest where compiled.

    XLA's convolution (``lax.conv_general_dilated``; cuDNN on a GPU) everywhere, except on the CPU with a
    JAX older than 0.11 (:data:`SERIAL_CPU_CONVOLUTION`) and one group, where ``lax.platform_dependent``
    picks :func:`patch_conv` (convolution and kernel gradient as matrix products) when the program is
    lowered for the CPU: that XLA runs a CPU convolution's forward pass and kernel gradient on one thread.
    A depthwise convolution (one group per input channel) is :func:`depthwise_views` when lowered for the
    CPU (measured faster there than XLA's grouped convolution). All keep the input dtype and give the same
    values and gradients up to rounding.
    """
    direct = functools.partial(
        _direct_conv, strides=strides, padding=padding, dilation=dilation, groups=groups, precision=precision
    )
    if is_depthwise(x, kernel, groups):
        views = functools.partial(depthwise_views, strides=strides, padding=padding, dilation=dilation)
        return lax.platform_dependent(x, kernel, cpu=views, default=direct)
    if not SERIAL_CPU_CONVOLUTION or groups != 1:
        return direct(x, kernel)
    patches = functools.partial(
        _padded_patch_conv, strides=strides, padding=padding, dilation=dilation, precision=precision
    )
    return lax.platform_dependent(x, kernel, cpu=patches, default=direct)


def is_depthwise(x: Any, kernel: Any, groups: int) -> bool:
    """Whether a convolution is depthwise: one group per input channel (kernel ``(*k, 1, C * m)``)."""
    return groups > 1 and groups == x.shape[-1]


def depthwise_views(x: Any, kernel: Any, *, strides: tuple[int, ...], padding: Pads, dilation: tuple[int, ...]) -> Any:
    """A depthwise convolution as a sum over the window's taps of shifted strided views times the tap's weights.

    On the CPU this is 2-4x faster than XLA's grouped convolution (``feature_group_count = C``) forward and
    backward (docs/benchmarks.md, "Depthwise convolution"). Output channel ``c * m + i`` (Keras's order).
    """
    n, channels = len(strides), x.shape[-1]
    window, mult = kernel.shape[:n], kernel.shape[-1] // channels
    if any(p for pair in padding for p in pair):
        x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    b, spatial = x.shape[0], x.shape[1:-1]
    out = [(size - d * (k - 1) - 1) // s + 1 for size, k, s, d in zip(spatial, window, strides, dilation)]
    total = None
    for taps in itertools.product(*(range(k) for k in window)):
        start = tuple(t * d for t, d in zip(taps, dilation))
        view = lax.slice(
            x,
            (0, *start, 0),
            (b, *(a + (o - 1) * s + 1 for a, o, s in zip(start, out, strides)), channels),
            (1, *strides, 1),
        )
        weights = kernel[taps][0]
        if mult == 1:
            term = view * weights
        else:
            term = (view[..., None] * weights.reshape(channels, mult)).reshape(*view.shape[:-1], channels * mult)
        total = term if total is None else total + term
    return total


def _direct_conv(
    x: Any,
    kernel: Any,
    *,
    strides: tuple[int, ...],
    padding: Any,
    dilation: tuple[int, ...],
    groups: int,
    precision: Any,
) -> Any:
    return lax.conv_general_dilated(
        x,
        kernel,
        strides,
        padding,
        rhs_dilation=dilation,
        dimension_numbers=dimension_numbers(len(strides)),
        feature_group_count=groups,
        precision=precision,
    )


def _padded_patch_conv(
    x: Any, kernel: Any, *, strides: tuple[int, ...], padding: Pads, dilation: tuple[int, ...], precision: Any
) -> Any:
    if any(p for pair in padding for p in pair):
        x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    return patch_conv(x, kernel, strides, dilation, precision)


def conv_transpose(
    y: Any,
    kernel: Any,
    input_shape: tuple[int, ...],
    strides: tuple[int, ...],
    padding: Pads,
    dilation: tuple[int, ...],
    groups: int,
    precision: Any,
) -> Any:
    """The input gradient of :func:`conv` for output gradient ``y`` (the VJP of XLA's convolution, which is linear)."""
    channels = kernel.shape[-2] * groups
    zeros = jnp.zeros((y.shape[0], *input_shape, channels), dtype=y.dtype)
    _, vjp = jax.vjp(
        lambda v: _direct_conv(
            v, kernel, strides=strides, padding=padding, dilation=dilation, groups=groups, precision=precision
        ),
        zeros,
    )
    return vjp(y)[0]


def patches(x: Any, window: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...]) -> Any:
    """The ``valid`` windows of (B, *spatial, C) ``x`` as (B, *out, prod(window) * C), features in the kernel's order.

    One strided slice per tap, concatenated on the channel axis (im2col); a dot with the kernel reshaped to
    ``(prod(window) * C, out)`` is then the convolution.
    """
    b, spatial, c = x.shape[0], x.shape[1:-1], x.shape[-1]
    out = [(n - d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(spatial, window, strides, dilation)]
    views = [
        lax.slice(
            x,
            (0, *(t * d for t, d in zip(taps, dilation)), 0),
            (b, *(t * d + (o - 1) * s + 1 for t, d, o, s in zip(taps, dilation, out, strides)), c),
            (1, *strides, 1),
        )
        for taps in itertools.product(*(range(k) for k in window))
    ]
    return views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def patch_conv(x: Any, kernel: Any, strides: tuple[int, ...], dilation: tuple[int, ...], precision: Any) -> Any:
    """``valid`` convolution as im2col and one matrix product; its VJP reuses the patches for the kernel gradient.

    Kernel gradient: ``patches^T @ cotangent`` (a matrix product); input gradient: XLA's own transposed
    convolution (``jax.vjp`` of ``lax.conv_general_dilated``), which is already multi-threaded on the CPU
    and cheaper than scattering the patches back.
    """
    return _patch_conv_fwd(x, kernel, strides, dilation, precision)[0]


def _patch_conv_fwd(
    x: Any, kernel: Any, strides: tuple[int, ...], dilation: tuple[int, ...], precision: Any
) -> tuple[Any, tuple[Any, Any, Any]]:
    n = len(strides)
    taps, (cin, cout) = kernel.shape[:n], kernel.shape[n:]
    cols = patches(x, taps, strides, dilation)
    flat = kernel.reshape(math.prod(taps) * cin, cout)
    z = lax.dot_general(cols, flat, (((n + 1,), (0,)), ((), ())), precision=precision)
    return z, (x, kernel, cols)


def _patch_conv_bwd(
    strides: tuple[int, ...], dilation: tuple[int, ...], precision: Any, residuals: tuple[Any, Any, Any], g: Any
) -> tuple[Any, Any]:
    x, kernel, cols = residuals
    axes = tuple(range(len(strides) + 1))
    dkernel = lax.dot_general(cols, g, ((axes, axes), ((), ())), precision=precision).reshape(kernel.shape)
    _, input_vjp = jax.vjp(
        lambda v: _direct_conv(
            v, kernel, strides=strides, padding="VALID", dilation=dilation, groups=1, precision=precision
        ),
        x,
    )
    return input_vjp(g)[0], dkernel


patch_conv.defvjp(_patch_conv_fwd, _patch_conv_bwd)


def tiles_input(window: tuple[int, ...], strides: tuple[int, ...], padding: Pads) -> bool:
    """Whether pool windows tile the input (stride == size, no padding): then a reshape splits it into them.

    Elements past the last whole window (``valid`` padding of a size that does not divide) are in no
    window, so they are cropped away.
    """
    return tuple(window) == tuple(strides) and not any(p for pair in padding for p in pair)


def _tiles(x: Any, window: tuple[int, ...]) -> Any:
    """``x`` (B, *spatial, C) cropped to whole windows and split: (B, o1, k1, o2, k2, ..., C), a reshape."""
    b, spatial, c = x.shape[0], x.shape[1:-1], x.shape[-1]
    out = [n // k for n, k in zip(spatial, window)]
    cropped = x[_spatial_index((slice(None, o * k) for o, k in zip(out, window)))]
    return jnp.reshape(cropped, (b, *(d for o, k in zip(out, window) for d in (o, k)), c))


def _window_axes(n: int) -> tuple[int, ...]:
    return tuple(range(2, 2 * n + 1, 2))


def _first_max_mask(tiles: Any, window: tuple[int, ...]) -> Any:
    """True at the first maximum of each window in row-major window order (the reference's rule on ties).

    Found with ``argmax`` over each window's elements, never by comparing elements with the maximum: under
    ``jit`` XLA may fuse the producer of ``tiles`` (a batch norm, say) into several kernels that round it
    differently, and then no element of a window equals its maximum and the window gets no gradient. An
    index always picks exactly one element. A NaN counts as the maximum, as ``numpy.argmax`` counts it.
    """
    n = len(window)
    out_axes = tuple(range(1, 2 * n, 2))
    perm = (0, *out_axes, 2 * n + 1, *_window_axes(n))
    flat = jnp.transpose(tiles, perm)
    windows = flat.reshape(*flat.shape[: n + 2], math.prod(window))
    first = jnp.expand_dims(jnp.argmax(windows, axis=-1), _window_axes(n))
    element_shape = (1, *(d for k in window for d in (1, k)), 1)
    return first == jnp.arange(math.prod(window)).reshape(element_shape)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def tiled_max_pool(x: Any, window: tuple[int, ...]) -> Any:
    """Max pool of (B, *spatial, C) ``x`` over non-overlapping ``window`` tiles, as a reshape and a max.

    Same values as ``lax.reduce_window`` (a max is exact). The derivative routes each window's gradient to
    its first maximum (:func:`_first_max_mask`); a plain ``jnp.max`` would split it between tied elements.
    Why not ``reduce_window``: its gradient is XLA's ``select_and_scatter``, which on the CPU costs about
    as much as the rest of a convnet step.
    """
    return jnp.max(_tiles(x, window), axis=_window_axes(len(window)))


@tiled_max_pool.defjvp
def _tiled_max_pool_jvp(window: tuple[int, ...], primals: tuple[Any], tangents: tuple[Any]) -> tuple[Any, Any]:
    (x,), (t,) = primals, tangents
    tiles = _tiles(x, window)
    axes = _window_axes(len(window))
    y = jnp.max(tiles, axis=axes)
    mask = _first_max_mask(tiles, window)
    return y, jnp.sum(jnp.where(mask, _tiles(t, window), jnp.zeros((), t.dtype)), axis=axes)


def _reduce_window_args(window: tuple[int, ...], strides: tuple[int, ...], padding: Pads) -> tuple[Any, Any, Any]:
    return (1, *window, 1), (1, *strides, 1), ((0, 0), *(tuple(p) for p in padding), (0, 0))


def max_pool(x: Any, window: tuple[int, ...], strides: tuple[int, ...], padding: Pads) -> Any:
    """Max pool: a reshape and a max when the windows tile the input, else ``lax.reduce_window``.

    Both give the same values and the same gradients, the first maximum of a window taking it on ties;
    only the tiled form also agrees with the reference on windows holding a NaN or only -inf.
    """
    window, strides = tuple(window), tuple(strides)
    if tiles_input(window, strides, padding):
        return tiled_max_pool(x, window)
    dims, steps, pads = _reduce_window_args(window, strides, padding)
    return lax.reduce_window(x, np.array(-np.inf, dtype=x.dtype), lax.max, dims, steps, pads)


def avg_pool(x: Any, window: tuple[int, ...], strides: tuple[int, ...], padding: Pads) -> Any:
    """Window sums (``lax.reduce_window``) divided by the number of in-image elements of each window."""
    dims, steps, pads = _reduce_window_args(tuple(window), tuple(strides), padding)
    total = lax.reduce_window(x, np.array(0, dtype=x.dtype), lax.add, dims, steps, pads)
    counts = window_counts(tuple(x.shape[1:-1]), window, strides, padding)
    return total / jnp.asarray(counts, dtype=x.dtype)
