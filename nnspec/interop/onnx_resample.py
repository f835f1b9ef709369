"""ONNX lowerings of padding, cropping, upsampling and the shaped dropouts (registered in :mod:`.onnx_ops`).

* ``zero_pad2d``: ``Pad`` (constant zeros) on the value's own layout; ``crop2d``: ``Slice`` of the two spatial axes.
* ``upsample2d``: ``Resize`` on channels-first data with scales ``[1, 1, sh, sw]``: ``nearest`` with the
  ``asymmetric`` coordinates and ``floor`` (output ``o`` reads ``floor(o / s)``, Keras's repeat); ``bilinear`` is
  ``linear`` with ``half_pixel`` coordinates (Keras 3's resize without antialiasing; edges clamped).
* ``spatial_dropout2d`` (and ``dropout`` with a ``noise_shape``, in :mod:`.onnx_ops`): ``Identity``.
"""

from __future__ import annotations

import numpy as np

from ..compiler.ir import Node
from .onnx_graph import GraphBuilder, Value
from .onnx_ops import Weights, converter


def _spatial_axes(x: Value) -> tuple[int, int]:
    """The batched axes of height and width in ``x``'s layout."""
    return x.batch_axis(0), x.batch_axis(1)


@converter("zero_pad2d")
def _zero_pad2d(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = inputs[0]
    (top, bottom), (left, right) = node.attrs["padding"]
    begin, end = [0] * 4, [0] * 4
    h, w = _spatial_axes(x)
    begin[h], end[h], begin[w], end[w] = top, bottom, left, right
    pads = builder.constant(builder.fresh(node, "pads"), np.array(begin + end), dtype=np.int64)
    out = builder.emit("Pad", [x.name, pads], builder.tensor_name(node), name=node.name, mode="constant")
    return Value(out, x.rank, x.channels_first)


@converter("crop2d")
def _crop2d(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = inputs[0]
    (top, bottom), (left, right) = node.attrs["cropping"]
    height, width = node.input_shape[0], node.input_shape[1]
    starts = builder.constant(builder.fresh(node, "starts"), np.array([top, left]), dtype=np.int64)
    ends = builder.constant(builder.fresh(node, "ends"), np.array([height - bottom, width - right]), dtype=np.int64)
    axes = builder.constant(builder.fresh(node, "axes"), np.array(_spatial_axes(x)), dtype=np.int64)
    out = builder.emit("Slice", [x.name, starts, ends, axes], builder.tensor_name(node), name=node.name)
    return Value(out, x.rank, x.channels_first)


@converter("upsample2d")
def _upsample2d(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = builder.in_layout(inputs[0], True)
    sh, sw = node.attrs["size"]
    scales = builder.constant(builder.fresh(node, "scales"), np.array([1.0, 1.0, sh, sw]), dtype=np.float32)
    if node.attrs["interpolation"] == "nearest":
        modes = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        modes = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    out = builder.emit("Resize", [x.name, "", scales], builder.tensor_name(node), name=node.name, **modes)
    return Value(out, x.rank, True)


@converter("spatial_dropout2d")
def _spatial_dropout2d(builder: GraphBuilder, node: Node, inputs: list[Value], weights: Weights) -> Value:
    x = inputs[0]
    return Value(
        builder.emit("Identity", [x.name], builder.tensor_name(node), name=node.name), x.rank, x.channels_first
    )
