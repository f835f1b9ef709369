"""Activation functions, written once against :class:`nnspec.runtime.ops.Ops`.

``gelu`` is the exact form ``0.5 x (1 + erf(x / sqrt 2))``; ``elu`` uses alpha = 1; ``softplus`` is the
stable ``log1p(exp(-|x|)) + max(x, 0)``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .ops import Ops

Activation = Callable[[Ops, Any], Any]


def _relu(ops: Ops, x: Any) -> Any:
    return ops.maximum(x, ops.constant(0.0))


def _sigmoid(ops: Ops, x: Any) -> Any:
    return ops.sigmoid(x)


def _tanh(ops: Ops, x: Any) -> Any:
    return ops.tanh(x)


def _elu(ops: Ops, x: Any) -> Any:
    negative = ops.exp(ops.minimum(x, ops.constant(0.0))) - ops.constant(1.0)
    return ops.where(x > ops.constant(0.0), x, negative)


def _gelu(ops: Ops, x: Any) -> Any:
    return ops.constant(0.5) * x * (ops.constant(1.0) + ops.erf(x * ops.constant(1.0 / math.sqrt(2.0))))


def _softplus(ops: Ops, x: Any) -> Any:
    return ops.log1p(ops.exp(-ops.abs(x))) + ops.maximum(x, ops.constant(0.0))


def _linear(ops: Ops, x: Any) -> Any:
    return x


ACTIVATIONS: dict[str, Activation] = {
    "relu": _relu,
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "elu": _elu,
    "gelu": _gelu,
    "softplus": _softplus,
    "linear": _linear,
}


def activate(ops: Ops, name: str, x: Any) -> Any:
    """Apply activation ``name`` to ``x``."""
    return ACTIVATIONS[name](ops, x)
