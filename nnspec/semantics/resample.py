"""Upsampling by whole factors (Keras's UpSampling2D), written once over the :class:`~nnspec.semantics.ops.Ops`
primitives ``crop``, ``concat`` and ``reshape``.

Each spatial axis is resampled on its own. An axis of length ``n`` upsampled by ``s`` has ``n * s`` outputs;
output ``o = s * i + r`` reads the source coordinate ``c = (o + 0.5) / s - 0.5`` (half-pixel centres, Keras 3's
``ops.image.resize`` with ``antialias=False``):

* ``nearest``: ``x[i]`` (Keras's ``repeat``);
* ``bilinear``: ``x[lo] + (x[hi] - x[lo]) * (c - floor(c))`` with ``lo = floor(c)``, ``hi = lo + 1``, both
  clamped to ``[0, n - 1]`` (TensorFlow's ``resize_bilinear`` with ``half_pixel_centers``; JAX's ``resize``
  gives the same values when upsampling).

For a fixed phase ``r`` the fraction ``f = (r + 0.5) / s - 0.5`` is the same for every ``i``: ``f < 0`` mixes
``x[i - 1]`` and ``x[i]``, ``f >= 0`` mixes ``x[i]`` and ``x[i + 1]``. So one phase is a shifted copy of the axis
(edges repeated) blended with the axis itself, and the ``s`` phases are interleaved by a concatenation on a new
axis and a reshape. Every engine differentiates these primitives itself.
"""

from __future__ import annotations

import math
from typing import Any

from .ops import Ops

INTERPOLATIONS: tuple[str, ...] = ("nearest", "bilinear")


def phase_fractions(size: int) -> tuple[float, ...]:
    """The source offset ``(r + 0.5) / size - 0.5`` of each phase ``r`` of an axis upsampled by ``size``."""
    return tuple((r + 0.5) / size - 0.5 for r in range(size))


def _shifted(ops: Ops, x: Any, n: int, step: int) -> Any:
    """``x`` (M, n, 1, K) moved one element along axis 1, the edge repeated: ``x[i - 1]`` (``step = -1``) or
    ``x[i + 1]`` (``step = 1``), clamped to ``[0, n - 1]``."""
    if n == 1:
        return x
    if step < 0:
        return ops.concat([ops.crop(x, ((0, n - 1), (0, 0))), ops.crop(x, ((0, 1), (0, 0)))], 1)
    return ops.concat([ops.crop(x, ((1, 0), (0, 0))), ops.crop(x, ((n - 1, 0), (0, 0)))], 1)


def _phases(ops: Ops, x: Any, n: int, size: int, interpolation: str) -> list[Any]:
    """The ``size`` phases of axis 1 of ``x`` (M, n, 1, K), each (M, n, 1, K)."""
    if interpolation == "nearest":
        return [x] * size
    prev, nxt = _shifted(ops, x, n, -1), _shifted(ops, x, n, 1)
    phases = []
    for f in phase_fractions(size):
        if f < 0:
            phases.append(prev + (x - prev) * ops.constant(1.0 + f))
        else:
            phases.append(x + (nxt - x) * ops.constant(f))
    return phases


def upsample_axis(ops: Ops, x: Any, shape: tuple[int, ...], axis: int, size: int, interpolation: str) -> Any:
    """``x`` (B, *shape) upsampled by ``size`` along per-example ``axis`` of ``shape``; returns (B, *new shape)."""
    if size == 1:
        return x
    n = shape[axis]
    inner = math.prod(shape[axis + 1 :])
    grid = ops.reshape(x, (-1, n, 1, inner))
    out = ops.concat(_phases(ops, grid, n, size, interpolation), 2)
    new_shape = (*shape[:axis], n * size, *shape[axis + 1 :])
    return ops.reshape(out, (-1, *new_shape))


def upsample2d(ops: Ops, x: Any, shape: tuple[int, ...], size: tuple[int, int], interpolation: str) -> Any:
    """``x`` (B, H, W, C) upsampled by ``size`` (height, width) with ``interpolation`` (``nearest``, ``bilinear``)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; nnspec has {', '.join(INTERPOLATIONS)}")
    h, w, c = shape
    y = upsample_axis(ops, x, (h, w, c), 0, size[0], interpolation)
    return upsample_axis(ops, y, (h * size[0], w, c), 1, size[1], interpolation)
