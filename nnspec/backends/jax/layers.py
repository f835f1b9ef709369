"""JAX's own lowerings (convolution and pooling windows), registered by op type over the shared ones.

Every lowering has the signature shared by all engines and the reference (see
:mod:`nnspec.semantics.lowering`): ``fn(ctx, node, inputs) -> output``, batches channels last. Shared
definitions (activations, dropout masks, normalisation, merges, global pools) come from
:mod:`nnspec.runtime`, evaluated with :class:`~nnspec.backends.jax.ops.JaxOps`.

Convolutions and matrix products run at ``ctx.ops.precision`` (``HIGHEST`` for float32, ``DEFAULT``
under ``tf32`` and mixed precision) and keep their inputs' dtype. Two lowerings take a measured faster
form: the convolution on the CPU (:func:`conv2d`: matrix products there) and the max pool over tiling
windows (:func:`tiled_max_pool`: a reshape and a max, on every device).
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
from ...semantics.lowering import Lowering, LoweringContext, OpRegistry
from ...semantics.shared_lowerings import bias_activation, engine_registry
from .ops import HIGHEST

Context = LoweringContext
#: The shared lowerings (:mod:`nnspec.semantics.shared_lowerings`) plus JAX's convolution and pools.
LOWERINGS: OpRegistry[Lowering] = engine_registry("jax")
lowering = LOWERINGS.register


@lowering("conv2d")
def _conv2d(ctx: Context, node: Node, inputs: list) -> Any:
    precision = getattr(ctx.ops, "precision", HIGHEST)
    z = conv2d(inputs[0], ctx.param(node, "kernel"), tuple(node.attrs["strides"]), padding_pairs(node), precision)
    return bias_activation(ctx, node, z)


#: Whether this JAX's XLA runs a CPU convolution on one thread (measured: 0.10.2 does, 0.11.2 does not; see :func:`conv2d`).
SERIAL_CPU_CONVOLUTION: bool = tuple(jax.__version_info__) < (0, 11)


def conv2d(x: Any, kernel: Any, strides: tuple[int, int], padding: Any, precision: Any) -> Any:
    """2-D convolution, NHWC data and HWIO kernel, in the form that is fastest where it is compiled.

    XLA's convolution (``lax.conv_general_dilated``; cuDNN on a GPU) everywhere, except on the CPU with a
    JAX older than 0.11 (:data:`SERIAL_CPU_CONVOLUTION`), where ``lax.platform_dependent`` picks
    :func:`patch_conv2d` (convolution and kernel gradient as matrix products) when the program is lowered
    for the CPU. Both keep the input dtype (bfloat16 stays bfloat16), run at ``precision`` and give the same
    values and gradients up to float rounding.

    Why: JAX 0.10.2's XLA runs a CPU convolution's forward pass and kernel gradient on one thread, while its
    matrix products (and the input gradient) use every core. Share of time with two or more runnable
    threads, benchmark convnet (batch 128) on a 2-core AMD EPYC, a load-independent figure: second
    convolution forward 7 %, kernel gradient 3 %, input gradient 87 %, the equivalent matrix product 80 %;
    the whole training step 18 % with XLA's convolution, 63 to 68 % as matrix products (TensorFlow's step:
    74 to 85 %). Wall time per step, nnspec's convnet, TensorFlow / XLA convolution / matrix products
    interleaved, 6 rounds of 20 steps on the shared, loaded machine: 331 / 488 / 409 ms (median), the
    matrix-product form 0.69 to 0.94x of the XLA convolution's time in every round (an earlier 4-round run had
    it 1.16x slower, 205 vs 177 ms: on a loaded machine the figures are noisy). JAX 0.11.2 on the same
    machine runs the convolution on both threads (81 to 84 % of the step), and there the plain convolution
    is the faster form: on 2 pinned, otherwise idle cores of an Intel Xeon, 30.0 ms a step vs 54.6 ms as
    matrix products. Hence the version test.
    """
    direct = functools.partial(_direct_conv2d, strides=strides, padding=padding, precision=precision)
    if not SERIAL_CPU_CONVOLUTION:
        return direct(x, kernel)
    patches = functools.partial(_padded_patch_conv2d, strides=strides, padding=padding, precision=precision)
    return lax.platform_dependent(x, kernel, cpu=patches, default=direct)


def _direct_conv2d(x: Any, kernel: Any, *, strides: tuple[int, int], padding: Any, precision: Any) -> Any:
    return lax.conv_general_dilated(
        x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision
    )


def _padded_patch_conv2d(x: Any, kernel: Any, *, strides: tuple[int, int], padding: Any, precision: Any) -> Any:
    (top, bottom), (left, right) = padding
    if top or bottom or left or right:
        x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    return patch_conv2d(x, kernel, strides, precision)


def patches(x: Any, kh: int, kw: int, strides: tuple[int, int]) -> Any:
    """The ``valid`` windows of (N, H, W, C) ``x`` as (N, OH, OW, kh*kw*C), features in the kernel's (kh, kw, C) order.

    ``kh * kw`` strided slices concatenated on the channel axis (im2col); a dot with the kernel reshaped to
    ``(kh*kw*C, out)`` is then the convolution.
    """
    (sh, sw), (n, h, w, c) = strides, x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    windows = [
        lax.slice(x, (0, i, j, 0), (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, c), (1, sh, sw, 1))
        for i in range(kh)
        for j in range(kw)
    ]
    return windows[0] if len(windows) == 1 else jnp.concatenate(windows, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def patch_conv2d(x: Any, kernel: Any, strides: tuple[int, int], precision: Any) -> Any:
    """``valid`` convolution as im2col and one matrix product; its VJP reuses the patches for the kernel gradient.

    Kernel gradient: ``patches^T @ cotangent`` (a matrix product); input gradient: XLA's own transposed
    convolution (``jax.vjp`` of ``lax.conv_general_dilated``), which is already multi-threaded on the CPU
    and cheaper than scattering the patches back.
    """
    return _patch_conv2d_fwd(x, kernel, strides, precision)[0]


def _patch_conv2d_fwd(
    x: Any, kernel: Any, strides: tuple[int, int], precision: Any
) -> tuple[Any, tuple[Any, Any, Any]]:
    kh, kw, cin, cout = kernel.shape
    cols = patches(x, kh, kw, strides)
    z = lax.dot_general(cols, kernel.reshape(kh * kw * cin, cout), (((3,), (0,)), ((), ())), precision=precision)
    return z, (x, kernel, cols)


def _patch_conv2d_bwd(
    strides: tuple[int, int], precision: Any, residuals: tuple[Any, Any, Any], g: Any
) -> tuple[Any, Any]:
    x, kernel, cols = residuals
    dkernel = lax.dot_general(cols, g, (((0, 1, 2), (0, 1, 2)), ((), ())), precision=precision).reshape(kernel.shape)
    _, input_vjp = jax.vjp(
        lambda v: _direct_conv2d(v, kernel, strides=strides, padding="VALID", precision=precision), x
    )
    return input_vjp(g)[0], dkernel


patch_conv2d.defvjp(_patch_conv2d_fwd, _patch_conv2d_bwd)


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
