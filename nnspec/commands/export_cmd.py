"""``nnspec export SPEC [--weights FILE] [--to keras|onnx] OUT``: a spec and its weights as a Keras 3 or ONNX file.

``--to`` defaults from OUT's suffix: ``.onnx`` writes ONNX, anything else Keras (which needs ``.keras``).

* Keras: standard Keras layers only, loadable in plain Keras with
  ``keras.saving.load_model(path, safe_mode=True)``; dropout becomes ``keras.layers.Dropout``.
* ONNX: opset :data:`~nnspec.interop.onnx_export.ONNX_OPSET`, checked with ``onnx.checker``; input
  ``input`` (channels last, batch dynamic), output ``output`` (probabilities when the spec ends in
  ``softmax``); always float32.

Without ``--weights`` the spec's seeded initial weights are exported. The output path is checked before
anything is loaded, and the file is written whole or not at all.
"""

from __future__ import annotations

import argparse

FORMATS = ("keras", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec export``."""
    parser.add_argument("spec", metavar="SPEC", help="spec file (YAML)")
    parser.add_argument("out", metavar="OUT", help="file to write: model.keras or model.onnx")
    parser.add_argument(
        "--to", choices=FORMATS, default=None, help="format to write (default: onnx for an .onnx file, else keras)"
    )
    parser.add_argument(
        "--weights",
        "-w",
        default=None,
        metavar="FILE",
        help="weights file (.safetensors); default: the spec's seeded initial weights",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. --set train.seed=1 (repeatable)",
    )


def output_format(out: str, to: str | None) -> str:
    """The format to write: ``to`` when given, else ``onnx`` for an ``.onnx`` file and ``keras`` otherwise."""
    if to is not None:
        return to
    return "onnx" if out.endswith(".onnx") else "keras"


def run(args: argparse.Namespace) -> int:
    """Load the spec and weights, write the file, and say what was written."""
    from .. import load
    from ..compiler.init import initial_weights
    from ..semantics.weights import load_weights

    fmt = output_format(args.out, args.to)
    if fmt == "onnx":
        from ..interop.onnx_export import check_onnx_path as check_path
    else:
        from ..interop.keras_export import check_export_path as check_path
    check_path(args.out)
    graph = load(args.spec, overrides=args.overrides)
    weights = load_weights(args.weights, graph) if args.weights else initial_weights(graph)
    source = args.weights or f"initial weights (seed {graph.train.seed})"

    if fmt == "onnx":
        from ..interop.onnx_export import EXPORT_DTYPE, ONNX_OPSET, export_onnx

        export_onnx(graph, weights, args.out)
        cast = f": the spec's {graph.dtype} weights rounded" if graph.dtype != EXPORT_DTYPE else ""
        what = f"ONNX model '{graph.name}' (opset {ONNX_OPSET}, {EXPORT_DTYPE}{cast})"
    else:
        from ..interop.keras_export import export_keras

        export_keras(graph, weights, args.out)
        what = f"Keras 3 model '{graph.name}'"
    print(f"wrote {args.out}: {what}, {len(graph.nodes)} layers, {graph.num_params} parameters from {source}")
    return 0
