"""The float64 reference derivatives of every activation (:mod:`nnspec.semantics.activations`).

At a kink the derivative is that of the branch the shared definition's ``where`` takes there (``relu'(0) = 0``,
``relu6'(6) = 1``, ``hard_sigmoid'(-3) = 1/6``): the engines' automatic differentiation of the shared
definitions gives the same values. ``softmax`` and ``log_softmax`` are not elementwise: their rule is a
product with the Jacobian over the last axis.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..compiler.ir import Activation
from ..semantics.activations import GELU_CUBIC, SELU_ALPHA, SELU_SCALE

Derivative = Callable[[Activation, np.ndarray, np.ndarray], np.ndarray]
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _is(condition: np.ndarray) -> np.ndarray:
    return condition.astype(np.float64)


def _relu(act: Activation, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    slope, max_value, threshold = act.arg("negative_slope", 0.0), act.arg("max_value", None), act.arg("threshold", 0.0)
    d = _is(z > threshold)
    if max_value is not None:
        d = d * _is(z >= 0.0) * _is(z <= max_value)
    return d + slope * _is(z < threshold)


def _elu_like(z: np.ndarray, alpha: float, inner: float = 1.0) -> np.ndarray:
    return np.where(z > 0, 1.0, alpha / inner * np.exp(np.minimum(z, 0.0) / inner))


def _gelu(act: Activation, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    if act.arg("approximate", False):
        c = math.sqrt(2.0 / math.pi)
        t = np.tanh(c * (z + GELU_CUBIC * z**3))
        return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * c * (1.0 + 3.0 * GELU_CUBIC * z * z)
    return 0.5 * (1.0 + _erf(z / math.sqrt(2.0))) + z * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def _hard_sigmoid_parts(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = (z + 3.0) / 6.0
    return np.clip(y, 0.0, 1.0), _is(y >= 0.0) * _is(y <= 1.0) / 6.0


def _hard_silu(act: Activation, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    value, slope = _hard_sigmoid_parts(z)
    return value + z * slope


def _mish(act: Activation, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    t = np.tanh(np.logaddexp(0.0, z))
    return t + z * (1.0 - t * t) * _sigmoid(z)


def _silu(act: Activation, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    s = _sigmoid(z)
    return s + z * s * (1.0 - s)


def _squareplus(act: Activation, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    b = act.arg("b", 4.0)
    ratio = np.sign(z) if b == 0.0 else z / np.sqrt(z * z + b)
    return 0.5 * (1.0 + ratio)


DERIVATIVES: dict[str, Derivative] = {
    "linear": lambda act, z, a: np.ones_like(z),
    "relu": _relu,
    "sigmoid": lambda act, z, a: a * (1.0 - a),
    "tanh": lambda act, z, a: 1.0 - a * a,
    "elu": lambda act, z, a: _elu_like(z, act.arg("alpha", 1.0)),
    "selu": lambda act, z, a: SELU_SCALE * _elu_like(z, SELU_ALPHA),
    "celu": lambda act, z, a: _elu_like(z, act.arg("alpha", 1.0), inner=act.arg("alpha", 1.0)),
    "gelu": _gelu,
    "softplus": lambda act, z, a: _sigmoid(z),
    "relu6": lambda act, z, a: _is(z > 0.0) * _is(z <= 6.0),
    "leaky_relu": lambda act, z, a: np.where(z > 0, 1.0, act.arg("negative_slope", 0.2)),
    "silu": _silu,
    "swish": _silu,
    "hard_sigmoid": lambda act, z, a: _hard_sigmoid_parts(z)[1],
    "hard_silu": _hard_silu,
    "hard_swish": _hard_silu,
    "hard_tanh": lambda act, z, a: _is(z >= -1.0) * _is(z <= 1.0),
    "softsign": lambda act, z, a: 1.0 / (1.0 + np.abs(z)) ** 2,
    "mish": _mish,
    "exponential": lambda act, z, a: a,
    "log_sigmoid": lambda act, z, a: _sigmoid(-z),
    "tanh_shrink": lambda act, z, a: np.tanh(z) ** 2,
    "hard_shrink": lambda act, z, a: _is(np.abs(z) > act.arg("threshold", 0.5)),
    "soft_shrink": lambda act, z, a: _is(np.abs(z) > act.arg("threshold", 0.5)),
    "sparse_plus": lambda act, z, a: np.where(z >= 1.0, 1.0, np.where(z > -1.0, 0.5 * (z + 1.0), 0.0)),
    "sparse_sigmoid": lambda act, z, a: np.where((z > -1.0) & (z < 1.0), 0.5, 0.0),
    "squareplus": _squareplus,
    "threshold": lambda act, z, a: _is(z > act.arg("threshold", 0.0)),
}


def activation_derivative(act: Activation | str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """d activation(z) / dz of an elementwise activation, given the pre-activation ``z`` and the activation ``a``."""
    act = Activation(act) if isinstance(act, str) else act
    if act.name not in DERIVATIVES:
        raise ValueError(f"activation {act.name!r} is not elementwise (or unknown)")
    return DERIVATIVES[act.name](act, z, a)


def activation_backward(act: Activation | str, z: np.ndarray, a: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The gradient with respect to the pre-activation ``z``, given the output gradient ``dy``."""
    act = Activation(act) if isinstance(act, str) else act
    if act.name == "softmax":
        return a * (dy - np.sum(dy * a, axis=-1, keepdims=True))
    if act.name == "log_softmax":
        return dy - np.exp(a) * np.sum(dy, axis=-1, keepdims=True)
    return dy * activation_derivative(act, z, a)
