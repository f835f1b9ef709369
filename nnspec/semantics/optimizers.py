"""Optimiser definitions (Keras 3 semantics and defaults), written once against :class:`Ops`.

Parameters, gradients and optimiser slots are dicts keyed by weight name; slot keys are
``'<weight>/<slot>'``. ``step`` is the number of updates done before this one.

* ``sgd`` (learning_rate 0.01, momentum 0, nesterov false): ``v = momentum*v - lr*g``; ``p += v``, or with
  nesterov ``p += momentum*v - lr*g``; without momentum ``p -= lr*g``.
* ``adam`` (0.001, beta_1 0.9, beta_2 0.999, epsilon 1e-7): ``m += (g - m)(1 - b1)``,
  ``v += (g*g - v)(1 - b2)``, ``p -= lr * sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps)``, t = step + 1.
* ``rmsprop`` (0.001, rho 0.9, momentum 0, epsilon 1e-7): ``a = rho*a + (1 - rho)*g*g``;
  ``p -= lr * g / (sqrt(a) + eps)`` (with momentum: ``v = momentum*v + lr*g/(sqrt(a)+eps)``, ``p -= v``).
* ``weight_decay`` w (decoupled, as Keras): before the update, ``p -= p * w * lr``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..compiler.ir import OptimizerConfig
from ..compiler.training_defaults import OPTIMIZER_DEFAULTS, slot_names
from .ops import Ops


def init_state(config: OptimizerConfig, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Zero-initialised optimiser slots for ``weights``, as NumPy arrays keyed ``'<weight>/<slot>'``."""
    return {f"{k}/{s}": np.zeros_like(w) for k, w in weights.items() for s in slot_names(config)}


def apply_updates(
    ops: Ops,
    config: OptimizerConfig,
    lr: Any,
    step: Any,
    params: Mapping[str, Any],
    grads: Mapping[str, Any],
    state: Mapping[str, Any],
    weight_decay: float = 0.0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One optimiser update: returns the new ``(params, state)``. ``lr`` is the scheduled learning rate."""
    new_params: dict[str, Any] = {}
    new_state: dict[str, Any] = dict(state)
    hp = {**OPTIMIZER_DEFAULTS[config.name], **dict(config.params)}
    c = ops.constant
    t = ops.to_float(step) + c(1.0)
    for key, p in params.items():
        g = grads[key]
        if weight_decay:
            p = p - p * c(weight_decay) * lr
        if config.name == "sgd":
            momentum = float(hp["momentum"])
            if momentum:
                v = c(momentum) * state[f"{key}/momentum"] - lr * g
                new_state[f"{key}/momentum"] = v
                p = p + (c(momentum) * v - lr * g if hp["nesterov"] else v)
            else:
                p = p - lr * g
        elif config.name == "adam":
            b1, b2 = float(hp["beta_1"]), float(hp["beta_2"])
            m = state[f"{key}/m"] + (g - state[f"{key}/m"]) * c(1.0 - b1)
            v = state[f"{key}/v"] + (g * g - state[f"{key}/v"]) * c(1.0 - b2)
            new_state[f"{key}/m"], new_state[f"{key}/v"] = m, v
            lr_t = lr * ops.sqrt(c(1.0) - ops.power(c(b2), t)) / (c(1.0) - ops.power(c(b1), t))
            p = p - lr_t * m / (ops.sqrt(v) + c(float(hp["epsilon"])))
        elif config.name == "rmsprop":
            rho, momentum = float(hp["rho"]), float(hp["momentum"])
            a = c(rho) * state[f"{key}/velocity"] + c(1.0 - rho) * g * g
            new_state[f"{key}/velocity"] = a
            increment = lr * g / (ops.sqrt(a) + c(float(hp["epsilon"])))
            if momentum:
                v = c(momentum) * state[f"{key}/momentum"] + increment
                new_state[f"{key}/momentum"] = v
                p = p - v
            else:
                p = p - increment
        else:
            raise ValueError(f"unknown optimizer {config.name!r}")
        new_params[key] = p
    return new_params, new_state
