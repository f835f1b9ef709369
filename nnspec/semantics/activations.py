"""Activation functions, written once against :class:`nnspec.semantics.ops.Ops`: Keras 3's whole set.

Values follow Keras 3's definitions (``keras.activations``): ``gelu`` is exact (``0.5 x (1 + erf(x / sqrt 2))``)
unless ``approximate``; ``hard_sigmoid`` is ``relu6(x + 3) / 6``; ``selu`` uses Keras's alpha and scale;
``relu`` takes ``negative_slope``, ``max_value`` and ``threshold`` as Keras's ``ReLU`` layer does; ``softplus``
is the stable ``log1p(exp(-|x|)) + max(x, 0)``; ``softmax`` and ``log_softmax`` act on the last axis.

The kinks are written so that every engine's automatic differentiation gives the same derivative there:
engines disagree on the gradient of ``maximum``/``minimum`` at a tie (JAX splits it, TensorFlow gives it
to the first argument, PyTensor to both), and exact ties are common (a zero input patch with a zero bias
gives a pre-activation of exactly 0). So only ``where`` (whose gradient follows the condition) and ``abs``
(``sign(0) = 0`` everywhere) are used at a kink (``Ops.relu`` is ``where(x > 0, x, 0)``, or an engine's own relu
with that derivative). The derivative at a kink is the one of the branch ``where`` takes there
(``relu'(0) = 0``, ``elu'(0) = alpha``, ``relu6'(6) = 1``, ``hard_sigmoid'(3) = 1/6``), the values of
:func:`nnspec.reference.backward.activation_backward`. The forward values are Keras's.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ..compiler.ir import Activation
from .ops import Ops

ActivationFn = Callable[[Ops, Any, Activation], Any]

#: Keras's SELU constants.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
#: The tanh approximation of gelu: 0.5 x (1 + tanh(sqrt(2 / pi) (x + GELU_CUBIC x^3))).
GELU_CUBIC = 0.044715


def _relu(ops: Ops, x: Any, act: Activation) -> Any:
    slope, max_value, threshold = act.arg("negative_slope", 0.0), act.arg("max_value", None), act.arg("threshold", 0.0)
    zero = ops.constant(0.0)
    if threshold == 0.0:
        kept = ops.relu(x)
    else:
        kept = ops.where(x > ops.constant(threshold), x, zero)
    if max_value is not None:
        kept = clip_at(ops, kept, 0.0, float(max_value))
    if slope != 0.0:
        below = ops.constant(threshold) - x
        kept = kept - ops.constant(slope) * ops.where(below > zero, below, zero)
    return kept


def clip_at(ops: Ops, x: Any, low: float, high: float) -> Any:
    """``x`` clipped to ``[low, high]``; the derivative is 1 on the closed interval, 0 outside."""
    inside = ops.where(x < ops.constant(low), ops.constant(low), x)
    return ops.where(x > ops.constant(high), ops.constant(high), inside)


def _relu6(ops: Ops, x: Any, act: Activation) -> Any:
    return clip_at(ops, ops.relu(x), 0.0, 6.0)


def _leaky_relu(ops: Ops, x: Any, act: Activation) -> Any:
    return ops.where(x > ops.constant(0.0), x, ops.constant(act.arg("negative_slope", 0.2)) * x)


def _elu_of(ops: Ops, x: Any, alpha: float, inner: float = 1.0) -> Any:
    """``x`` above 0, else ``alpha (exp(x / inner) - 1)``; exp sees only the non-positive part."""
    positive = x > ops.constant(0.0)
    negative = ops.where(positive, ops.constant(0.0), x)
    if inner != 1.0:
        negative = negative / ops.constant(inner)
    return ops.where(positive, x, ops.constant(alpha) * (ops.exp(negative) - ops.constant(1.0)))


def _elu(ops: Ops, x: Any, act: Activation) -> Any:
    return _elu_of(ops, x, act.arg("alpha", 1.0))


def _selu(ops: Ops, x: Any, act: Activation) -> Any:
    return ops.constant(SELU_SCALE) * _elu_of(ops, x, SELU_ALPHA)


def _celu(ops: Ops, x: Any, act: Activation) -> Any:
    alpha = act.arg("alpha", 1.0)
    return _elu_of(ops, x, alpha, inner=alpha)


def _gelu(ops: Ops, x: Any, act: Activation) -> Any:
    half = ops.constant(0.5)
    if act.arg("approximate", False):
        inner = ops.constant(math.sqrt(2.0 / math.pi)) * (x + ops.constant(GELU_CUBIC) * x * x * x)
        return half * x * (ops.constant(1.0) + ops.tanh(inner))
    return half * x * (ops.constant(1.0) + ops.erf(x * ops.constant(1.0 / math.sqrt(2.0))))


def softplus(ops: Ops, x: Any) -> Any:
    """``log(1 + exp(x))``, computed stably."""
    magnitude = ops.abs(x)
    return ops.log1p(ops.exp(-magnitude)) + (x + magnitude) * ops.constant(0.5)


def hard_sigmoid(ops: Ops, x: Any) -> Any:
    """``relu6(x + 3) / 6``: 0 up to -3, 1 from 3."""
    return clip_at(ops, (x + ops.constant(3.0)) / ops.constant(6.0), 0.0, 1.0)


def _silu(ops: Ops, x: Any, act: Activation) -> Any:
    return x * ops.sigmoid(x)


def _hard_silu(ops: Ops, x: Any, act: Activation) -> Any:
    return x * hard_sigmoid(ops, x)


def _hard_shrink(ops: Ops, x: Any, act: Activation) -> Any:
    return ops.where(ops.abs(x) > ops.constant(act.arg("threshold", 0.5)), x, ops.constant(0.0))


def _soft_shrink(ops: Ops, x: Any, act: Activation) -> Any:
    t = ops.constant(act.arg("threshold", 0.5))
    return ops.where(x > t, x - t, ops.where(x < -t, x + t, ops.constant(0.0)))


def _sparse_plus(ops: Ops, x: Any, act: Activation) -> Any:
    one = ops.constant(1.0)
    inside = (x + one) * (x + one) * ops.constant(0.25)
    return ops.where(x < one, ops.where(x > -one, inside, ops.constant(0.0)), x)


def _sparse_sigmoid(ops: Ops, x: Any, act: Activation) -> Any:
    one = ops.constant(1.0)
    inside = (x + one) * ops.constant(0.5)
    return ops.where(x < one, ops.where(x > -one, inside, ops.constant(0.0)), one)


def _squareplus(ops: Ops, x: Any, act: Activation) -> Any:
    b = act.arg("b", 4.0)
    root = ops.abs(x) if b == 0.0 else ops.sqrt(x * x + ops.constant(b))
    return (x + root) * ops.constant(0.5)


def _threshold(ops: Ops, x: Any, act: Activation) -> Any:
    return ops.where(x > ops.constant(act.arg("threshold", 0.0)), x, ops.constant(act.arg("default_value", 0.0)))


ACTIVATIONS: dict[str, ActivationFn] = {
    "relu": _relu,
    "sigmoid": lambda ops, x, act: ops.sigmoid(x),
    "tanh": lambda ops, x, act: ops.tanh(x),
    "elu": _elu,
    "gelu": _gelu,
    "softplus": lambda ops, x, act: softplus(ops, x),
    "linear": lambda ops, x, act: x,
    "relu6": _relu6,
    "leaky_relu": _leaky_relu,
    "selu": _selu,
    "celu": _celu,
    "silu": _silu,
    "swish": _silu,
    "hard_sigmoid": lambda ops, x, act: hard_sigmoid(ops, x),
    "hard_silu": _hard_silu,
    "hard_swish": _hard_silu,
    "hard_tanh": lambda ops, x, act: clip_at(ops, x, -1.0, 1.0),
    "softsign": lambda ops, x, act: x / (ops.constant(1.0) + ops.abs(x)),
    "mish": lambda ops, x, act: x * ops.tanh(softplus(ops, x)),
    "exponential": lambda ops, x, act: ops.exp(x),
    "log_sigmoid": lambda ops, x, act: -softplus(ops, -x),
    "tanh_shrink": lambda ops, x, act: x - ops.tanh(x),
    "hard_shrink": _hard_shrink,
    "soft_shrink": _soft_shrink,
    "sparse_plus": _sparse_plus,
    "sparse_sigmoid": _sparse_sigmoid,
    "squareplus": _squareplus,
    "threshold": _threshold,
    "softmax": lambda ops, x, act: ops.softmax(x),
    "log_softmax": lambda ops, x, act: ops.log_softmax(x),
}


def activate(ops: Ops, act: Activation | str, x: Any) -> Any:
    """Apply activation ``act`` (an :class:`~nnspec.compiler.ir.Activation`, or a name) to ``x``."""
    if isinstance(act, str):
        act = Activation(act)
    return ACTIVATIONS[act.name](ops, x, act)
