"""Batch and layer normalisation (Keras 3 semantics), merges and global pools, written once over :class:`Ops`.

``batch_norm`` normalises over every axis but the last (the channel axis), as
``keras.layers.BatchNormalization(axis=-1)``:

* training: ``mean`` and the biased ``var`` of the batch per channel;
  ``y = (x - mean) / sqrt(var + epsilon) * gamma + beta``; the state moves as
  ``moving = moving * momentum + batch_statistic * (1 - momentum)`` (the biased variance, as Keras).
* inference: the same with ``moving_mean`` and ``moving_variance``.

``layer_norm`` normalises each example over its last axis, as ``keras.layers.LayerNormalization(axis=-1)``:
``y = (x - mean) / sqrt(var + epsilon) * gamma + beta`` with the biased variance of that axis.

``gamma`` is absent when ``scale: false`` and ``beta`` when ``center: false``.
"""

from __future__ import annotations

from typing import Any

from .ops import Ops


def moments(ops: Ops, x: Any, axes: tuple[int, ...]) -> tuple[Any, Any]:
    """Mean and biased variance of ``x`` over ``axes`` (kept as size-1 axes)."""
    mean = ops.mean_over(x, axes)
    centered = x - mean
    return mean, ops.mean_over(centered * centered, axes)


def normalize(ops: Ops, x: Any, mean: Any, var: Any, gamma: Any | None, beta: Any | None, epsilon: float) -> Any:
    """``(x - mean) / sqrt(var + epsilon) * gamma + beta`` (gamma, beta optional)."""
    y = (x - mean) / ops.sqrt(var + ops.constant(epsilon))
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


def batch_norm_train(
    ops: Ops,
    x: Any,
    gamma: Any | None,
    beta: Any | None,
    moving_mean: Any,
    moving_variance: Any,
    momentum: float,
    epsilon: float,
) -> tuple[Any, Any, Any]:
    """Training-mode batch norm: ``(y, new_moving_mean, new_moving_variance)``."""
    axes = tuple(range(x.ndim - 1))
    mean, var = moments(ops, x, axes)
    y = normalize(ops, x, mean, var, gamma, beta, epsilon)
    keep, take = ops.constant(momentum), ops.constant(1.0 - momentum)
    flat_mean, flat_var = ops.reshape(mean, (-1,)), ops.reshape(var, (-1,))
    return y, moving_mean * keep + flat_mean * take, moving_variance * keep + flat_var * take


def batch_norm_infer(
    ops: Ops, x: Any, gamma: Any | None, beta: Any | None, moving_mean: Any, moving_variance: Any, epsilon: float
) -> Any:
    """Inference-mode batch norm with the moving statistics."""
    return normalize(ops, x, moving_mean, moving_variance, gamma, beta, epsilon)


def layer_norm(ops: Ops, x: Any, gamma: Any | None, beta: Any | None, epsilon: float) -> Any:
    """Layer norm over the last axis of each example."""
    mean, var = moments(ops, x, (x.ndim - 1,))
    return normalize(ops, x, mean, var, gamma, beta, epsilon)


def add_all(values: list[Any]) -> Any:
    """Elementwise sum of two or more arrays of one shape, left to right."""
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


def global_avg_pool2d(ops: Ops, x: Any, channels: int) -> Any:
    """Mean over height and width of (N, H, W, C): (N, C)."""
    return ops.reshape(ops.mean_over(x, (1, 2)), (-1, channels))


def global_max_pool2d(ops: Ops, x: Any, shape: tuple[int, int, int]) -> Any:
    """Max over height and width of (N, H, W, C): (N, C); the gradient goes to the first maximum in
    row-major (h, w) order (see :meth:`nnspec.semantics.ops.Ops.first_max`). ``shape`` is (H, W, C)."""
    height, width, channels = shape
    return ops.first_max(ops.reshape(x, (-1, height * width, channels)))
