"""Every nnspec activation in ONNX (opset 21): one ONNX operator where ONNX has it, a few otherwise.

One operator: ``Relu``, ``Sigmoid``, ``Tanh``, ``Elu``, ``Selu``, ``Celu``, ``Gelu`` (erf or tanh form),
``Softplus``, ``LeakyRelu``, ``HardSigmoid`` (alpha 1/6, beta 1/2), ``HardSwish``, ``Softsign``, ``Mish``,
``Exp``, ``Shrink`` (hard and soft shrink), ``Clip`` (``relu6``, ``hard_tanh``), ``Softmax`` and
``LogSoftmax`` (over the channel axis of the tensor's layout), ``Identity`` (``linear``). Composed:
``relu`` with arguments (``Where``/``Clip``/``Relu`` as Keras's ``ReLU``), ``silu`` (``x * Sigmoid(x)``),
``log_sigmoid``, ``tanh_shrink``, ``sparse_plus``, ``sparse_sigmoid``, ``squareplus`` and ``threshold``.
"""

from __future__ import annotations

import numpy as np

from ..compiler.ir import Activation, Node
from ..semantics.activations import SELU_ALPHA, SELU_SCALE
from .onnx_graph import GraphBuilder, Value

#: Activations that are one ONNX operator with fixed attributes.
SINGLE_OPS: dict[str, tuple[str, dict[str, object]]] = {
    "linear": ("Identity", {}),
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "softplus": ("Softplus", {}),
    "selu": ("Selu", {"alpha": SELU_ALPHA, "gamma": SELU_SCALE}),
    "hard_sigmoid": ("HardSigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5}),
    "hard_silu": ("HardSwish", {}),
    "hard_swish": ("HardSwish", {}),
    "softsign": ("Softsign", {}),
    "mish": ("Mish", {}),
    "exponential": ("Exp", {}),
}


class _Emitter:
    """Emits the ONNX nodes of one activation: helper tensors are named after the layer."""

    def __init__(self, builder: GraphBuilder, node: Node, output: str, node_name: str):
        self.builder, self.node, self.output, self.node_name = builder, node, output, node_name

    def op(self, op_type: str, *inputs: str, last: bool = False, **attrs: object) -> str:
        """One ONNX node; the ``last`` one writes the activation's output tensor."""
        out = self.output if last else self.builder.fresh(self.node, op_type.lower())
        name = self.node_name if last else self.builder.fresh(self.node, f"{op_type.lower()}_node")
        return self.builder.emit(op_type, list(inputs), out, name=name, **attrs)

    def const(self, value: float) -> str:
        """A scalar constant of the model's float dtype."""
        return self.builder.constant(self.builder.fresh(self.node, "const"), np.asarray(value))


def _relu(e: _Emitter, x: str, act: Activation) -> str:
    slope, max_value, threshold = act.arg("negative_slope", 0.0), act.arg("max_value", None), act.arg("threshold", 0.0)
    done_after = "slope" if slope else "max" if max_value is not None else "kept"
    if threshold == 0.0:
        kept = e.op("Relu", x, last=done_after == "kept")
    else:
        above = e.op("Greater", x, e.const(threshold))
        kept = e.op("Where", above, x, e.const(0.0), last=done_after == "kept")
    if max_value is not None:
        kept = e.op("Clip", kept, e.const(0.0), e.const(max_value), last=done_after == "max")
    if slope:
        below = e.op("Relu", e.op("Sub", e.const(threshold), x))
        kept = e.op("Sub", kept, e.op("Mul", e.const(slope), below), last=True)
    return kept


def _two_sided(e: _Emitter, x: str, inside: str, low: str, high: str) -> str:
    """``inside`` on (-1, 1), ``low`` up to -1, ``high`` from 1."""
    one = e.const(1.0)
    middle = e.op("Where", e.op("Greater", x, e.const(-1.0)), inside, low)
    return e.op("Where", e.op("Less", x, one), middle, high, last=True)


def _composed(e: _Emitter, x: str, act: Activation) -> str:
    name = act.name
    if name == "relu":
        return _relu(e, x, act)
    if name in ("silu", "swish"):
        return e.op("Mul", x, e.op("Sigmoid", x), last=True)
    if name == "log_sigmoid":
        return e.op("Neg", e.op("Softplus", e.op("Neg", x)), last=True)
    if name == "tanh_shrink":
        return e.op("Sub", x, e.op("Tanh", x), last=True)
    if name == "sparse_plus":
        shifted = e.op("Add", x, e.const(1.0))
        inside = e.op("Mul", e.op("Mul", shifted, shifted), e.const(0.25))
        return _two_sided(e, x, inside, e.const(0.0), x)
    if name == "sparse_sigmoid":
        inside = e.op("Mul", e.op("Add", x, e.const(1.0)), e.const(0.5))
        return _two_sided(e, x, inside, e.const(0.0), e.const(1.0))
    if name == "squareplus":
        b = act.arg("b", 4.0)
        root = e.op("Abs", x) if b == 0.0 else e.op("Sqrt", e.op("Add", e.op("Mul", x, x), e.const(b)))
        return e.op("Mul", e.op("Add", x, root), e.const(0.5), last=True)
    if name == "threshold":
        above = e.op("Greater", x, e.const(act.arg("threshold", 0.0)))
        return e.op("Where", above, x, e.const(act.arg("default_value", 0.0)), last=True)
    raise KeyError(name)


def _parametrised(e: _Emitter, x: Value, act: Activation) -> str:
    name = act.name
    if name == "relu" and not act.args:
        return e.op("Relu", x.name, last=True)
    if name == "elu":
        return e.op("Elu", x.name, last=True, alpha=float(act.arg("alpha", 1.0)))
    if name == "celu":
        return e.op("Celu", x.name, last=True, alpha=float(act.arg("alpha", 1.0)))
    if name == "leaky_relu":
        return e.op("LeakyRelu", x.name, last=True, alpha=float(act.arg("negative_slope", 0.2)))
    if name == "gelu":
        return e.op("Gelu", x.name, last=True, approximate="tanh" if act.arg("approximate", False) else "none")
    if name in ("relu6", "hard_tanh"):
        low, high = (0.0, 6.0) if name == "relu6" else (-1.0, 1.0)
        return e.op("Clip", x.name, e.const(low), e.const(high), last=True)
    if name in ("hard_shrink", "soft_shrink"):
        t = float(act.arg("threshold", 0.5))
        return e.op("Shrink", x.name, last=True, lambd=t, bias=t if name == "soft_shrink" else 0.0)
    if name in ("softmax", "log_softmax"):
        op_type = "Softmax" if name == "softmax" else "LogSoftmax"
        return e.op(op_type, x.name, last=True, axis=x.channel_axis)
    return _composed(e, x.name, act)


def emit_activation(builder: GraphBuilder, node: Node, x: Value, act: Activation, output: str, node_name: str) -> Value:
    """Apply ``act`` to ``x`` as the tensor ``output``; the last ONNX node is named ``node_name``."""
    e = _Emitter(builder, node, output, node_name)
    if act.name in SINGLE_OPS:
        op_type, attrs = SINGLE_OPS[act.name]
        e.op(op_type, x.name, last=True, **attrs)
    else:
        _parametrised(e, x, act)
    return Value(output, x.rank, x.channels_first)
