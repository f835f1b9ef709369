"""The dropout-mask definition shared by every engine (see docs/spec.md, "Dropout masks").

A mask is a pure function of (seed, layer index, step, element index), computed with the 32-bit
``lowbias32`` integer hash, so that every engine, on any device, drops exactly the same units:

    lowbias32(x): x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16   (mod 2**32)
    key  = lowbias32(lowbias32(lowbias32(seed) ^ layer_index) ^ step)
    h[i] = lowbias32(key ^ i)            for the flat, row-major element index i of the (batch, ...) tensor
    keep[i] = (h[i] >> 8) >= threshold,  threshold = round(rate * 2**24)
    y[i] = keep[i] ? x[i] * scale : 0,   scale = 1 / (1 - rate) rounded to the model's float dtype

``step`` counts optimiser steps from 0 over the whole training run. A ``noise_shape`` (and
``spatial_dropout2d``) draws the mask at a smaller shape, 1 on the axes it is shared along, numbered
row-major in that shape, and broadcasts it over the input (:func:`layer_mask_shape`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..compiler.ir import Node
from ..compiler.resample_rules import mask_shape
from .numpy_ops import NumpyOps
from .ops import Ops

LOWBIAS32_M1 = 0x7FEB352D
LOWBIAS32_M2 = 0x846CA68B


def lowbias32(ops: Ops, x: Any) -> Any:
    """The lowbias32 hash of U32 values ``x``."""
    x = ops.u32_xor(x, ops.u32_shr(x, 16))
    x = ops.u32_mul(x, LOWBIAS32_M1)
    x = ops.u32_xor(x, ops.u32_shr(x, 15))
    x = ops.u32_mul(x, LOWBIAS32_M2)
    return ops.u32_xor(x, ops.u32_shr(x, 16))


def threshold(rate: float) -> int:
    """The 24-bit threshold under which a unit is dropped."""
    return int(round(rate * (1 << 24)))


def mask_key(ops: Ops, seed: int, layer_index: int, step: Any) -> Any:
    """The per-(seed, layer, step) key; ``step`` may be a traced/symbolic integer scalar."""
    k = lowbias32(ops, ops.u32(seed))
    k = lowbias32(ops, ops.u32_xor(k, ops.u32(layer_index)))
    return lowbias32(ops, ops.u32_xor(k, ops.u32(step)))


def keep_mask(ops: Ops, seed: int, layer_index: int, step: Any, shape: tuple[int, ...], rate: float) -> Any:
    """Boolean keep-mask of ``shape`` (the batch axis included) for one dropout layer at one step."""
    size = int(np.prod(shape))
    h = lowbias32(ops, ops.u32_xor(ops.u32_iota(size), mask_key(ops, seed, layer_index, step)))
    return ops.reshape(ops.u32_ge(ops.u32_shr(h, 8), threshold(rate)), tuple(shape))


def scale(rate: float, dtype: str) -> float:
    """The factor kept units are multiplied by, rounded to ``dtype``."""
    return float(np.asarray(1.0 / (1.0 - rate), dtype=dtype))


def layer_mask_shape(node: Node, batch: int, spatial: bool = False) -> tuple[int, ...]:
    """The shape (batch axis first) at which dropout layer ``node`` draws its mask: its input's, or 1 on the
    axes its ``noise_shape`` shares the mask along (with ``spatial``: all but the channels)."""
    return (int(batch), *mask_shape(node.attrs.get("noise_shape"), tuple(node.input_shape), spatial))


def apply_dropout(ops: Ops, x: Any, seed: int, layer_index: int, step: Any, rate: float, shape: tuple[int, ...]) -> Any:
    """Training-time dropout of ``x``; the mask is drawn at ``shape``: the full static shape of ``x``, or a shape
    with 1 on the axes the mask is broadcast along (see :func:`layer_mask_shape`)."""
    if rate <= 0.0:
        return x
    keep = keep_mask(ops, seed, layer_index, step, shape, rate)
    return ops.where(keep, x * ops.constant(scale(rate, ops.float_dtype)), ops.constant(0.0))


def numpy_keep_mask(seed: int, layer_index: int, step: int, shape: tuple[int, ...], rate: float) -> np.ndarray:
    """The NumPy definition of the mask: what every engine must reproduce bit for bit."""
    return np.asarray(keep_mask(NumpyOps(), seed, layer_index, step, shape, rate), dtype=bool)
