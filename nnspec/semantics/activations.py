"""Activation functions, written once against :class:`nnspec.semantics.ops.Ops`.

``gelu`` is the exact form ``0.5 x (1 + erf(x / sqrt 2))``; ``elu`` uses alpha = 1; ``softplus`` is the
stable ``log1p(exp(-|x|)) + max(x, 0)``.

The kinks are written so that every engine's automatic differentiation gives the same derivative there:
engines disagree on the gradient of ``maximum``/``minimum`` at a tie (JAX splits it, TensorFlow gives it
to the first argument, PyTensor to both), and exact ties are common (a zero input patch with a zero bias
gives a pre-activation of exactly 0). So only ``where`` (whose gradient follows the condition) and ``abs``
(``sign(0) = 0`` everywhere) are used at a kink (``Ops.relu`` is ``where(x > 0, x, 0)``, or an engine's own relu
with that derivative): ``relu'(0) = 0``, ``elu'(0) = 1``, ``softplus'(0) = 1/2``,
the values of :mod:`nnspec.reference.backward`. The forward values are the same as with max/min.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .ops import Ops

Activation = Callable[[Ops, Any], Any]


def _relu(ops: Ops, x: Any) -> Any:
    return ops.relu(x)


def _sigmoid(ops: Ops, x: Any) -> Any:
    return ops.sigmoid(x)


def _tanh(ops: Ops, x: Any) -> Any:
    return ops.tanh(x)


def _elu(ops: Ops, x: Any) -> Any:
    positive = x > ops.constant(0.0)
    negative = ops.exp(ops.where(positive, ops.constant(0.0), x)) - ops.constant(1.0)
    return ops.where(positive, x, negative)


def _gelu(ops: Ops, x: Any) -> Any:
    return ops.constant(0.5) * x * (ops.constant(1.0) + ops.erf(x * ops.constant(1.0 / math.sqrt(2.0))))


def _softplus(ops: Ops, x: Any) -> Any:
    magnitude = ops.abs(x)
    return ops.log1p(ops.exp(-magnitude)) + (x + magnitude) * ops.constant(0.5)


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
