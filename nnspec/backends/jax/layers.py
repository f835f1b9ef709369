"""JAX's own lowerings (convolution and pooling windows), registered by op type over the shared ones.

Every lowering has the signature shared by all engines and the reference (see
:mod:`nnspec.backends.lowering`): ``fn(ctx, node, inputs) -> output``, batches channels last. Shared
definitions (activations, dropout masks, normalisation, merges, global pools) come from
:mod:`nnspec.runtime`, evaluated with :class:`~nnspec.backends.jax.ops.JaxOps`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ...compiler.ir import Node
from ...compiler.shapes import padding_pairs, pool_window_counts
from ..lowering import Lowering, LoweringContext, OpRegistry
from ..shared_lowerings import bias_activation, engine_registry
from .ops import HIGHEST

Context = LoweringContext
#: The shared lowerings (:mod:`nnspec.backends.shared_lowerings`) plus JAX's convolution and pools.
LOWERINGS: OpRegistry[Lowering] = engine_registry("jax")
lowering = LOWERINGS.register


@lowering("conv2d")
def _conv2d(ctx: Context, node: Node, inputs: list) -> Any:
    z = lax.conv_general_dilated(
        inputs[0],
        ctx.param(node, "kernel"),
        window_strides=tuple(node.attrs["strides"]),
        padding=padding_pairs(node),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=HIGHEST,
    )
    return bias_activation(ctx, node, z)


def _window(node: Node) -> tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, int], ...]]:
    (ph, pw), (sh, sw) = node.attrs["size"], node.attrs["strides"]
    pad_h, pad_w = padding_pairs(node)
    return (1, ph, pw, 1), (1, sh, sw, 1), ((0, 0), pad_h, pad_w, (0, 0))


def tiled_window(node: Node) -> tuple[int, int] | None:
    """The pool's window ``(ph, pw)`` when its windows tile the input (stride == size, no padding), else None.

    Rows and columns past the last whole window (``valid`` padding of a size that does not divide) are in
    no window, so they are cropped away.
    """
    size, strides = tuple(node.attrs["size"]), tuple(node.attrs["strides"])
    if size != strides or any(p for pair in padding_pairs(node) for p in pair):
        return None
    return size  # type: ignore[return-value]


def _tiles(x: Any, window: tuple[int, int]) -> Any:
    """``x`` (N, H, W, C) cropped to whole windows and split into them: (N, OH, PH, OW, PW, C), a reshape."""
    (ph, pw), (n, h, w, c) = window, x.shape
    oh, ow = h // ph, w // pw
    return jnp.reshape(x[:, : oh * ph, : ow * pw, :], (n, oh, ph, ow, pw, c))


def _first_max_mask(tiles: Any) -> Any:
    """True at the first maximum of each window in row-major window order (the reference's rule on ties).

    Found with ``argmax`` over each window's elements, never by comparing elements with the maximum: under
    ``jit`` XLA may fuse the producer of ``tiles`` (a batch norm, say) into several kernels that round it
    differently, and then no element of a window equals its maximum and the window gets no gradient. An
    index always picks exactly one element. A NaN counts as the maximum, as ``numpy.argmax`` counts it in
    the reference.
    """
    n, oh, ph, ow, pw, c = tiles.shape
    windows = jnp.transpose(tiles, (0, 1, 3, 5, 2, 4)).reshape(n, oh, ow, c, ph * pw)
    first = jnp.argmax(windows, axis=-1)[:, :, None, :, None, :]
    element = jnp.arange(ph * pw).reshape(1, 1, ph, 1, pw, 1)
    return first == element


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def tiled_max_pool(x: Any, window: tuple[int, int]) -> Any:
    """Max pool of (N, H, W, C) ``x`` over non-overlapping ``window`` tiles, as a reshape and a max.

    Same values as ``lax.reduce_window`` (a max is exact). The derivative routes each window's gradient to
    its first maximum (:func:`_first_max_mask`), as the NumPy reference does; a plain ``jnp.max`` would
    split it between tied elements. Why not ``reduce_window``: its gradient is XLA's ``select_and_scatter``,
    which on the CPU costs about as much as the rest of a convnet step (see :func:`_max_pool2d`).
    """
    return jnp.max(_tiles(x, window), axis=(2, 4))


@tiled_max_pool.defjvp
def _tiled_max_pool_jvp(window: tuple[int, int], primals: tuple[Any], tangents: tuple[Any]) -> tuple[Any, Any]:
    (x,), (t,) = primals, tangents
    tiles = _tiles(x, window)
    y = jnp.max(tiles, axis=(2, 4))
    mask = _first_max_mask(tiles)
    return y, jnp.sum(jnp.where(mask, _tiles(t, window), jnp.zeros((), t.dtype)), axis=(2, 4))


@lowering("max_pool2d")
def _max_pool2d(ctx: Context, node: Node, inputs: list) -> Any:
    """Max pool: a reshape and a max when the windows tile the input, else ``lax.reduce_window``.

    The tiled form is for speed on the CPU. Measured (JAX 0.10.2, 2 shared cores, CPU seconds per step of
    the benchmark convnet, batch 128, Adam, 60000x28x28x1 resident data): 127 to 130 ms with
    ``reduce_window`` (whose gradient is XLA's ``select_and_scatter``) vs 60 to 61 ms tiled. Both give the
    same values and the same gradients, the first maximum of a window taking it on ties; only the tiled
    form also agrees with the reference on windows holding a NaN or only -inf.
    """
    x = inputs[0]
    window = tiled_window(node)
    if window is not None:
        return tiled_max_pool(x, window)
    dims, strides, pads = _window(node)
    return lax.reduce_window(x, np.array(-np.inf, dtype=x.dtype), lax.max, dims, strides, pads)


@lowering("avg_pool2d")
def _avg_pool2d(ctx: Context, node: Node, inputs: list) -> Any:
    x = inputs[0]
    dims, strides, pads = _window(node)
    total = lax.reduce_window(x, np.array(0, dtype=x.dtype), lax.add, dims, strides, pads)
    return total / jnp.asarray(pool_window_counts(node), dtype=x.dtype)
