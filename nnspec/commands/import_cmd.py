"""``nnspec import MODEL.keras|CONFIG.json -o SPEC.yaml [--weights-out W.safetensors]``: a Keras model as a spec.

The model must be a Sequential model, or a functional model with one input and one output (it may branch
and merge), made of layers nnspec knows (Dense, Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Reshape,
Dropout, Activation, ReLU, Softmax, Add, Concatenate, BatchNormalization, LayerNormalization on the last
axis, GlobalAveragePooling2D, GlobalMaxPooling2D). A functional model becomes a graph spec (``inputs:``
lists, ``output:`` when needed). Anything else (a Lambda, an unknown layer, dilation, groups,
channels_first, an activation nnspec lacks, several inputs or outputs, a shared layer) is an error naming
the Keras layer. The file's description is checked before Keras sees it; weights
are then checked (sizes, dtypes, shapes, NaN and infinity) and read with
``keras.saving.load_model(..., safe_mode=True)``. The spec must pass ``nnspec check`` before anything is
written; the spec and weights files are written whole or not at all (a failed import leaves neither).
Size caps: ``$NNSPEC_MAX_KERAS_CONFIG_BYTES`` (config.json, 16 MiB) and ``$NNSPEC_MAX_KERAS_WEIGHTS_BYTES``
(any other member, the members together and the model's weights, 2 GiB).
"""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec import``."""
    parser.add_argument("model", metavar="MODEL", help="a Keras 3 .keras file, or a model config .json (no weights)")
    parser.add_argument("--output", "-o", required=True, metavar="SPEC.yaml", help="spec file to write")
    parser.add_argument(
        "--weights-out",
        default=None,
        metavar="W.safetensors",
        help="also write the model's weights (from a .keras file)",
    )


def run(args: argparse.Namespace) -> int:
    """Import, write the spec (and weights), print notes."""
    from ..interop.keras_import import import_keras
    from ..interop.keras_import_output import check_outputs, write_spec

    check_outputs(args.output, args.weights_out, args.model)
    imported = import_keras(args.model)
    write_spec(imported, args.output, args.weights_out)
    for note in imported.notes:
        print(f"note: {note}")
    what = f" and {args.weights_out}" if args.weights_out else ""
    print(
        f"wrote {args.output}{what}: spec '{imported.graph.name}', {len(imported.graph.nodes)} layers, "
        f"{imported.graph.num_params} parameters"
    )
    if imported.weights is not None and not args.weights_out:
        print(f"hint: add --weights-out {os.path.splitext(args.output)[0]}.safetensors to keep the model's weights")
    return 0
