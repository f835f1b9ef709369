"""nnspec's activations as Keras sees them: a Keras name, a standard Keras layer, or the shared definition.

While training, the activations nnspec had from the start (``relu``, ``sigmoid``, ``tanh``, ``elu``, ``gelu``,
``softplus``, ``linear``) are Keras's own, by name (exact gelu in float64, see :func:`exact_gelu`); every
other activation is the shared definition (:mod:`nnspec.semantics.activations`) over ``keras.ops``, so that
its derivative at a kink is the one every other engine takes. For export, an activation is a Keras name
(``Dense(activation="hard_silu")``) or, with arguments, Keras's ``ReLU``, ``LeakyReLU`` or ``ELU`` layer after
the layer; one Keras cannot write without custom code (``gelu`` with ``approximate``, ``celu`` with
``alpha``, ...) is refused with a reason.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ...compiler.ir import Activation
from ...errors import BackendError
from ...semantics.activations import activate
from .ops import KerasOps

#: Activations that are Keras's own by name while training (the rest use the shared definition).
KERAS_NATIVE: frozenset[str] = frozenset({"relu", "sigmoid", "tanh", "elu", "gelu", "softplus", "linear"})


@keras.saving.register_keras_serializable(package="nnspec", name="exact_gelu")
def exact_gelu(x: Any) -> Any:
    """``0.5 x (1 + erf(x / sqrt 2))`` through ``keras.ops.erf``, exact in float64 on every engine.

    Keras's ``gelu`` is the same function, but on TensorFlow it goes through ``tf.math.erfc``, which is only
    accurate to about 5e-9 in float64; float64 models use this one so that they meet float64 tolerances.
    """
    return 0.5 * x * (1.0 + keras.ops.erf(x * (1.0 / np.sqrt(2.0))))


class SharedActivation:
    """A Keras activation callable computing nnspec's shared definition of ``act`` in the input's dtype."""

    def __init__(self, act: Activation):
        self.act = act
        self.__name__ = act.name

    def __call__(self, x: Any) -> Any:
        return activate(KerasOps(keras.backend.standardize_dtype(x.dtype)), self.act, x)


def training_activation(act: Activation, dtype: str) -> Any:
    """The ``activation`` argument of a Keras layer that trains like every other engine."""
    if act.name in KERAS_NATIVE and not act.args:
        return exact_gelu if act.name == "gelu" and dtype == "float64" else act.name
    return SharedActivation(act)


def needs_own_layer(act: Activation) -> bool:
    """Whether an exported layer's activation is a Keras layer after it (it has arguments)."""
    return bool(act.args)


def export_activation_layer(act: Activation, name: str, dtype: str, where: str) -> keras.layers.Layer:
    """The standard Keras layer of ``act`` in an exported model (``where`` names the nnspec layer)."""
    if not act.args:
        return keras.layers.Activation(act.name, name=name, dtype=dtype)
    args = dict(act.args)
    if act.name == "relu":
        return keras.layers.ReLU(
            max_value=args.get("max_value"),
            negative_slope=args.get("negative_slope", 0.0),
            threshold=args.get("threshold", 0.0),
            name=name,
            dtype=dtype,
        )
    if act.name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=args["negative_slope"], name=name, dtype=dtype)
    if act.name == "elu":
        return keras.layers.ELU(alpha=args["alpha"], name=name, dtype=dtype)
    raise BackendError(
        f"{where}: activation {act} has no standard Keras layer (Keras takes {act.name} only with its default "
        "arguments without custom code); export a spec that uses the default arguments"
    )
