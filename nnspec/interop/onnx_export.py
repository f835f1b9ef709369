"""A spec and its weights -> a standard ONNX model file (imports ``onnx``, never an engine).

The model is built from the IR with ``onnx.helper`` (one lowering per op: :mod:`.onnx_ops`), in opset
:data:`ONNX_OPSET`, and passes ``onnx.checker.check_model(full_check=True)`` before it is written. It
computes what ``nnspec predict`` computes, at inference:

* input ``input``: float32 ``[batch, *input.shape]``, channels last as in nnspec, the batch dynamic;
  output ``output``: float32 ``[batch, *output shape]``: probabilities when the spec ends in ``softmax``.
* convolutions and pools run channels first inside the model (a ``Transpose`` only where the layout
  changes); ``flatten`` and ``reshape`` see channels-last data, so their order is nnspec's.
* ``dropout`` is ``Identity``; ``batch_norm`` is ``BatchNormalization`` in inference mode holding the
  moving statistics (not folded into the convolution: the file keeps one node per layer, and ONNX
  Runtime folds it itself when it optimises the graph).
* a ``float64`` spec is exported in float32 (its weights rounded to float32): ONNX Runtime's CPU
  convolutions and pools exist in float32 only, and float32 is what deployments run.

Initialisers carry the weights' names (``conv1.kernel``, ``bn1.moving_mean``); conv kernels are stored
transposed to ONNX's ``[filters, in_channels, kh, kw]``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..compiler.ir import Graph
from ..outputs import check_output_file, write_outputs
from ..semantics.weights import check_weights
from . import (
    onnx_conv_ops,  # noqa: F401  (registers the converters of the depthwise and transposed convolutions)
    onnx_merges,  # noqa: F401  (registers the converters of the element-wise merges)
    onnx_resample,  # noqa: F401  (registers the converters of padding, cropping and upsampling)
)
from .onnx_graph import GraphBuilder
from .onnx_ops import OnnxExportError, convert

#: The ONNX operator set the exported models use (ONNX 1.16+, ONNX Runtime 1.18+; ``Gelu`` needs 20).
ONNX_OPSET = 21
#: The dtype of every exported model.
EXPORT_DTYPE = "float32"

__all__ = ["EXPORT_DTYPE", "ONNX_OPSET", "OnnxExportError", "build_onnx_model", "check_onnx_path", "export_onnx"]


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise OnnxExportError("ONNX export needs the onnx package: pip install 'nnspec[onnx]'") from None
    return onnx


def build_onnx_model(graph: Graph, weights: Mapping[str, np.ndarray]) -> Any:
    """The checked ``onnx.ModelProto`` of ``graph`` holding ``weights`` (moving statistics included)."""
    onnx = _import_onnx()
    from onnx import TensorProto, helper

    check_weights(graph, weights)
    out = graph.output_node
    if out is None:
        raise OnnxExportError(f"spec '{graph.name}' has no layers to export")
    builder = GraphBuilder(output=out.name, input_rank=len(graph.input_shape))
    for node in graph.nodes:
        inputs = [builder.values[name] for name in graph.inputs_of(node)]
        builder.values[node.name] = convert(builder, node, inputs, weights)
    result = builder.in_layout(builder.values[out.name], False)
    if result.name != "output":
        builder.emit("Identity", [result.name], "output", name="output")

    batch = ["batch"]
    onnx_graph = helper.make_graph(
        builder.nodes,
        graph.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, batch + list(graph.input_shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, batch + list(graph.output_shape))],
        initializer=builder.initializers,
    )
    opset = helper.make_opsetid("", ONNX_OPSET)
    model = helper.make_model(
        onnx_graph,
        opset_imports=[opset],
        ir_version=helper.find_min_ir_version_for([opset]),
        producer_name="nnspec",
        doc_string=graph.description,
    )
    helper.set_model_props(
        model, {"nnspec.spec": graph.name, "nnspec.dtype": graph.dtype, "nnspec.layout": "channels_last"}
    )
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxExportError(f"spec '{graph.name}': the ONNX model built from it is not valid ({exc})") from None
    return model


def check_onnx_path(path: str | os.PathLike[str]) -> str:
    """Refuse a path ``export`` cannot write an ONNX file to (no ``.onnx`` suffix, NUL byte, missing or
    read-only folder, an existing folder); returns it as a string."""
    return check_output_file(path, "ONNX model file", error=OnnxExportError, suffix=".onnx", example="model.onnx")


def export_onnx(graph: Graph, weights: Mapping[str, np.ndarray], path: str | os.PathLike[str]) -> Any:
    """Write ``graph`` with ``weights`` to the ``.onnx`` file ``path``, whole or not at all; returns the
    ``onnx.ModelProto``."""
    path = check_onnx_path(path)
    model = build_onnx_model(graph, weights)
    try:
        data = model.SerializeToString()
    except ValueError as exc:  # protobuf refuses messages over 2 GiB
        raise OnnxExportError(f"{path}: the model is too large for one ONNX file ({exc})") from None
    write_outputs([(path, data)], "ONNX model file", error=OnnxExportError)
    return model
