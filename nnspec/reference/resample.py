"""The float64 reference of padding, cropping and upsampling, written without the shared definitions.

Upsampling is a linear map along each spatial axis: ``interpolation_matrix(n, s, mode)`` is the ``(n * s, n)``
matrix whose row ``o`` holds the weights of the source pixels of output ``o`` (half-pixel centres: source
coordinate ``(o + 0.5) / s - 0.5``, neighbours clamped to the edges; ``nearest`` takes ``floor(o / s)``). The
forward pass applies it to the height and then the width axis; the backward pass applies its transpose. The
engines' form (:mod:`nnspec.semantics.resample`: shifted copies, blends and an interleave) is checked against it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

Sides = tuple[tuple[int, int], tuple[int, int]]


@lru_cache(maxsize=64)
def interpolation_matrix(n: int, size: int, interpolation: str) -> np.ndarray:
    """The ``(n * size, n)`` float64 weights of an axis of length ``n`` upsampled by ``size``."""
    a = np.zeros((n * size, n))
    for o in range(n * size):
        if interpolation == "nearest":
            a[o, o // size] = 1.0
            continue
        c = (o + 0.5) / size - 0.5
        lo = int(np.floor(c))
        frac = c - lo
        a[o, min(max(lo, 0), n - 1)] += 1.0 - frac
        a[o, min(max(lo + 1, 0), n - 1)] += frac
    a.setflags(write=False)
    return a


def upsample(x: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """``x`` (B, H, W, C) upsampled by ``size``."""
    ah = interpolation_matrix(x.shape[1], size[0], interpolation)
    aw = interpolation_matrix(x.shape[2], size[1], interpolation)
    return np.einsum("qw,bpwc->bpqc", aw, np.einsum("ph,bhwc->bpwc", ah, x))


def upsample_backward(
    dy: np.ndarray, spatial: tuple[int, int], size: tuple[int, int], interpolation: str
) -> np.ndarray:
    """The input gradient of :func:`upsample` for output gradient ``dy``, input spatial shape ``spatial``."""
    ah = interpolation_matrix(spatial[0], size[0], interpolation)
    aw = interpolation_matrix(spatial[1], size[1], interpolation)
    return np.einsum("ph,bpwc->bhwc", ah, np.einsum("qw,bpqc->bpwc", aw, dy))


def pad(x: np.ndarray, padding: Sides) -> np.ndarray:
    """``x`` (B, H, W, C) with zeros around it."""
    return np.pad(x, ((0, 0), *padding, (0, 0)))


def crop(x: np.ndarray, cropping: Sides) -> np.ndarray:
    """``x`` (B, H, W, C) without ``cropping`` rows and columns."""
    (top, bottom), (left, right) = cropping
    return x[:, top : x.shape[1] - bottom, left : x.shape[2] - right, :]
