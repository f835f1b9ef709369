"""Keras layers of the element-wise merges, ``rescaling`` and ``layer_scale`` (imports Keras).

Each is a standard Keras 3 layer: ``Add``, ``Multiply``, ``Subtract``, ``Average``, ``Maximum``, ``Minimum``
(which broadcast as nnspec's merges do: a lower-rank input gets axes after the batch axis), ``Rescaling`` and
ConvNeXt's ``LayerScale`` (``keras.src.applications.convnext``, its weight ``gamma``). The one exception is
``maximum`` / ``minimum`` while training: :class:`FirstExtreme` computes the shared definition (a chain of
``where``) so that at a tie the first input takes the gradient, as on every other engine; Keras's own layers
route a tie's gradient as the engine under Keras does; and ``rescaling`` while training, :class:`ExactRescaling`
(Keras's ``Rescaling`` rounds its numbers to float32). For export they are Keras's own layers.
"""

from __future__ import annotations

from typing import Any

import keras
from keras.src.applications.convnext import LayerScale

from ...compiler.ir import Node
from ...compiler.merge_rules import broadcast_shapes
from ...semantics import merges
from .ops import KerasOps

_STANDARD = {
    "add": keras.layers.Add,
    "multiply": keras.layers.Multiply,
    "subtract": keras.layers.Subtract,
    "average": keras.layers.Average,
    "maximum": keras.layers.Maximum,
    "minimum": keras.layers.Minimum,
}


@keras.saving.register_keras_serializable(package="nnspec", name="FirstExtreme")
class FirstExtreme(keras.layers.Layer):
    """The elementwise maximum or minimum of its inputs (``op``), the first input winning a tie (and its gradient)."""

    def __init__(self, op: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.op = op

    def call(self, inputs: list) -> Any:
        ops = KerasOps(keras.backend.standardize_dtype(inputs[0].dtype))
        rank = max(len(x.shape) for x in inputs) - 1
        return merges.merge(ops, self.op, [merges.to_rank(ops, x, tuple(x.shape[1:]), rank) for x in inputs])

    def compute_output_shape(self, input_shapes: Any) -> Any:
        out = broadcast_shapes(tuple(tuple(shape[1:]) for shape in input_shapes))
        return (input_shapes[0][0], *(out or ()))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "op": self.op}


def merge_layer(node: Node, dtype: str, export: bool) -> keras.layers.Layer:
    """The Keras layer of an element-wise merge node."""
    if node.op in merges.EXTREMES and not export:
        return FirstExtreme(node.op, name=node.name, dtype=dtype)
    return _STANDARD[node.op](name=node.name, dtype=dtype)


def _number(value: Any) -> Any:
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else float(value)


@keras.saving.register_keras_serializable(package="nnspec", name="ExactRescaling")
class ExactRescaling(keras.layers.Layer):
    """``x * scale + offset`` with the numbers in the compute type: Keras's ``Rescaling`` converts them through
    float32 first (an offset of 0.1 is 1.5e-9 off in float64)."""

    def __init__(self, scale: Any, offset: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.scale, self.offset = scale, offset

    def call(self, inputs: Any) -> Any:
        ops = KerasOps(keras.backend.standardize_dtype(inputs.dtype))
        return merges.rescale(ops, inputs, self.scale, self.offset)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


def rescaling_layer(node: Node, dtype: str, export: bool) -> keras.layers.Layer:
    """``keras.layers.Rescaling(scale, offset)`` for export; :class:`ExactRescaling` while training."""
    scale, offset = _number(node.attrs["scale"]), _number(node.attrs["offset"])
    if not export:
        return ExactRescaling(scale, offset, name=node.name, dtype=dtype)
    return keras.layers.Rescaling(scale, offset, name=node.name, dtype=dtype)


def layer_scale_layer(node: Node, dtype: str) -> keras.layers.Layer:
    """ConvNeXt's ``LayerScale(init_values, projection_dim)``: ``x * gamma``."""
    return LayerScale(float(node.attrs["init_values"]), int(node.output_shape[-1]), name=node.name, dtype=dtype)
