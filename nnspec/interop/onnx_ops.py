"""One ONNX lowering per nnspec op (the semantics of docs/spec.md, at inference).

Each converter takes the :class:`GraphBuilder`, the layer, its input values and the layer's weights, emits
ONNX nodes and returns the layer's output value. Every nnspec op has an exact ONNX counterpart:

* ``dense``: ``Gemm`` (kernel ``[in, out]`` as is) on a rank-1 input, ``MatMul`` (and ``Add`` for the bias) on
  the last axis of a channels-last input of higher rank; then the activation.
* ``conv1d`` and ``conv2d``: ``Conv`` on channels-first data, kernel transposed to ``[out, in, *k]``;
  ``same`` and ``causal`` padding become explicit pads (``same``: TensorFlow's rule, the odd element at the
  end; ``causal``: all of it before), a dilation becomes ``dilations``, ``groups`` ``group``; the depthwise,
  separable and transposed convolutions: :mod:`.onnx_conv_ops`.
* max pools: ``MaxPool`` (padding takes no part); average pools: ``AveragePool`` with
  ``count_include_pad=0`` (nnspec averages over the in-image elements only).
* ``flatten`` and ``reshape``: on channels-last data, so that the order is nnspec's row-major (H, W, C).
* ``dropout`` and the ``linear`` activation: ``Identity`` (dropout is the identity at inference).
* activations: one ONNX operator each where ONNX has one, a few where it has not
  (:mod:`.onnx_activations`).
* ``softmax``: ``Softmax`` over the channel axis; ``concat``: ``Concat`` on the batched axis of the per-example
  axis; the element-wise merges (``add`` included), ``rescaling`` and ``layer_scale``: :mod:`.onnx_merges`.
* ``batch_norm``: ``BatchNormalization`` in inference mode with the moving statistics (ones and zeros
  stand in for ``gamma`` and ``beta`` when ``scale`` or ``center`` is false).
* ``layer_norm``: ``LayerNormalization`` over the last axis.
* global pools (1-D and 2-D): ``ReduceMean`` / ``ReduceMax`` over the spatial axes (kept with ``keepdims``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ..compiler.ir import Activation, Node
from ..compiler.shapes import dilation_of, padding_pairs, window_of
from ..errors import NnspecError
from .onnx_activations import emit_activation
from .onnx_graph import GraphBuilder, Value

Weights = Mapping[str, np.ndarray]
Converter = Callable[[GraphBuilder, Node, list[Value], Weights], Value]


class OnnxExportError(NnspecError, ValueError):
    """A spec cannot be written as an ``.onnx`` file (a layer ONNX cannot express, a bad path)."""


def layer_label(node: Node) -> str:
    """How messages name a layer: ``layers[3] 'conv1' (conv2d)``."""
    return f"layers[{node.index}] '{node.name}' ({node.op})"


CONVERTERS: dict[str, Converter] = {}


def converter(*ops: str) -> Callable[[Converter], Converter]:
    """Register a converter for ``ops``."""

    def register(fn: Converter) -> Converter:
        for op in ops:
            CONVERTERS[op] = fn
        return fn

    return register


def convert(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    """Emit ``node``'s ONNX nodes; raise :class:`OnnxExportError` naming the layer when it has no ONNX form."""
    if node.op not in CONVERTERS:
        raise OnnxExportError(f"{layer_label(node)}: ONNX export has no exact form for layer type '{node.op}'")
    return CONVERTERS[node.op](builder, node, inputs, weights)


def activation(builder: GraphBuilder, node: Node, x: Value, act: Activation, output: str, node_name: str) -> Value:
    """Apply activation ``act`` to ``x`` as the tensor ``output``, the last ONNX node named ``node_name``."""
    return emit_activation(builder, node, x, act, output, node_name)


def _then_activation(
    builder: GraphBuilder, node: Node, op: str, inputs: list[str], rank: int, channels_first: bool, **attrs: object
) -> Value:
    """``op`` followed by the layer's activation (none emitted for ``linear``)."""
    out = builder.tensor_name(node)
    if node.attrs["activation"] == "linear":
        return Value(builder.emit(op, inputs, out, name=node.name, **attrs), rank, channels_first)
    linear = builder.emit(op, inputs, builder.fresh(node, "linear"), name=node.name, **attrs)
    act = node.attrs["activation"]
    return activation(builder, node, Value(linear, rank, channels_first), act, out, f"{node.name}/{act.name}")


def _bias(builder: GraphBuilder, node: Node, weights: Weights) -> list[str]:
    return [builder.constant(node.key("bias"), weights[node.key("bias")])] if node.attrs["use_bias"] else []


def _pads(node: Node) -> list[int]:
    """ONNX's pads: every axis's padding before, then every axis's padding after."""
    pairs = padding_pairs(node)
    return [before for before, _ in pairs] + [after for _, after in pairs]


def _window_attrs(node: Node) -> dict[str, object]:
    attrs: dict[str, object] = {
        "kernel_shape": list(window_of(node)),
        "strides": list(node.attrs["strides"]),
        "pads": _pads(node),
    }
    if any(d != 1 for d in dilation_of(node)):
        attrs["dilations"] = list(dilation_of(node))
    return attrs


@converter("dense")
def _dense(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    kernel = builder.constant(node.key("kernel"), weights[node.key("kernel")])
    if len(node.input_shape) == 1:
        return _then_activation(
            builder, node, "Gemm", [inputs[0].name, kernel, *_bias(builder, node, weights)], 1, False
        )
    x = builder.in_layout(inputs[0], False)  # the last axis is the feature axis
    rank = len(node.output_shape)
    bias = _bias(builder, node, weights)
    if not bias:
        return _then_activation(builder, node, "MatMul", [x.name, kernel], rank, False)
    product = builder.fresh(node, "matmul")
    builder.emit("MatMul", [x.name, kernel], product, name=product)
    return _then_activation(builder, node, "Add", [product, *bias], rank, False)


@converter("conv1d", "conv2d")
def _conv(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = builder.in_layout(inputs[0], True)
    n = len(window_of(node))
    to_onnx = (n + 1, n, *range(n))  # [*k, in, out] -> [out, in, *k]
    kernel = builder.constant(node.key("kernel"), np.transpose(weights[node.key("kernel")], to_onnx))
    rank = len(node.output_shape)
    ins = [x.name, kernel, *_bias(builder, node, weights)]
    groups = int(node.attrs.get("groups", 1))
    extra = {"group": groups} if groups != 1 else {}
    return _then_activation(builder, node, "Conv", ins, rank, True, **_window_attrs(node), **extra)


@converter("max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d")
def _pool(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = builder.in_layout(inputs[0], True)
    attrs = _window_attrs(node)
    average = node.op.startswith("avg_")
    if average:
        attrs["count_include_pad"] = 0
    op = "AveragePool" if average else "MaxPool"
    rank = len(node.output_shape)
    return Value(builder.emit(op, [x.name], builder.tensor_name(node), name=node.name, **attrs), rank, True)


@converter("flatten")
def _flatten(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = builder.in_layout(inputs[0], False)
    return Value(builder.emit("Flatten", [x.name], builder.tensor_name(node), name=node.name, axis=1), 1)


@converter("reshape")
def _reshape(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = builder.in_layout(inputs[0], False)
    shape = builder.constant(builder.fresh(node, "shape"), np.array([0, *node.attrs["shape"]]), dtype=np.int64)
    return Value(
        builder.emit("Reshape", [x.name, shape], builder.tensor_name(node), name=node.name), len(node.output_shape)
    )


@converter("dropout")
def _dropout(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = inputs[0]
    return Value(
        builder.emit("Identity", [x.name], builder.tensor_name(node), name=node.name), x.rank, x.channels_first
    )


@converter("activation")
def _activation(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    return activation(builder, node, inputs[0], node.attrs["activation"], builder.tensor_name(node), node.name)


@converter("softmax")
def _softmax(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = inputs[0]
    out = builder.emit("Softmax", [x.name], builder.tensor_name(node), name=node.name, axis=x.channel_axis)
    return Value(out, x.rank, x.channels_first)


@converter("concat")
def _concat(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    values = builder.same_layout(inputs)
    axis = values[0].batch_axis(int(node.attrs["axis"]))
    out = builder.emit("Concat", [v.name for v in values], builder.tensor_name(node), name=node.name, axis=axis)
    return Value(out, values[0].rank, values[0].channels_first)


def _scale_and_shift(
    builder: GraphBuilder, node: Node, weights: Weights, required: bool
) -> tuple[str | None, str | None]:
    """The names of gamma and beta; ones and zeros in their place when ``required`` and absent."""
    channels = node.output_shape[-1]
    names: list[str | None] = []
    for key, filler in (("gamma", np.ones), ("beta", np.zeros)):
        if node.key(key) in weights:
            names.append(builder.constant(node.key(key), weights[node.key(key)]))
        elif required:
            names.append(builder.constant(builder.fresh(node, f"no_{key}"), filler(channels)))
        else:
            names.append(None)
    return names[0], names[1]


@converter("batch_norm")
def _batch_norm(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = builder.in_layout(inputs[0], True)
    gamma, beta = _scale_and_shift(builder, node, weights, required=True)
    mean = builder.constant(node.key("moving_mean"), weights[node.key("moving_mean")])
    var = builder.constant(node.key("moving_variance"), weights[node.key("moving_variance")])
    ins = [x.name, str(gamma), str(beta), mean, var]
    out = builder.emit(
        "BatchNormalization", ins, builder.tensor_name(node), name=node.name, epsilon=float(node.attrs["epsilon"])
    )
    return Value(out, x.rank, x.channels_first)


@converter("layer_norm")
def _layer_norm(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = builder.in_layout(inputs[0], False)
    gamma, beta = _scale_and_shift(builder, node, weights, required=False)
    if gamma is None:
        gamma = builder.constant(builder.fresh(node, "no_gamma"), np.ones(node.output_shape[-1]))
    ins = [x.name, gamma] + ([beta] if beta is not None else [])
    out = builder.emit(
        "LayerNormalization",
        ins,
        builder.tensor_name(node),
        name=node.name,
        axis=-1,
        epsilon=float(node.attrs["epsilon"]),
    )
    return Value(out, x.rank, False)


@converter("global_avg_pool1d", "global_max_pool1d", "global_avg_pool2d", "global_max_pool2d")
def _global_pool(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = inputs[0]
    spatial = list(range(2, x.rank + 1)) if x.channels_first else list(range(1, x.rank))
    axes = builder.constant(builder.fresh(node, "axes"), np.array(spatial), dtype=np.int64)
    op = "ReduceMean" if node.op.startswith("global_avg") else "ReduceMax"
    keep = bool(node.attrs.get("keepdims"))
    out = builder.emit(op, [x.name, axes], builder.tensor_name(node), name=node.name, keepdims=int(keep))
    return Value(out, x.rank, x.channels_first) if keep else Value(out, 1)
