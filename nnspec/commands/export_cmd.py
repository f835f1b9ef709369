"""``nnspec export SPEC [--weights FILE] --to keras OUT.keras``: a spec and its weights as a Keras 3 file.

The file holds standard Keras layers only and loads in plain Keras with
``keras.saving.load_model(path, safe_mode=True)``; dropout becomes ``keras.layers.Dropout`` (the identity
at inference). Without ``--weights`` the spec's seeded initial weights are exported. The output path is
checked before anything is loaded, and the file is written whole or not at all.
"""

from __future__ import annotations

import argparse

FORMATS = ("keras",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec export``."""
    parser.add_argument("spec", metavar="SPEC", help="spec file (YAML)")
    parser.add_argument("out", metavar="OUT", help="file to write, e.g. model.keras")
    parser.add_argument("--to", choices=FORMATS, default="keras", help="format to write (default: keras, a Keras 3 .keras file)")
    parser.add_argument("--weights", "-w", default=None, metavar="FILE", help="weights file (.safetensors); default: the spec's seeded initial weights")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a spec value, e.g. --set train.seed=1 (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Load the spec and weights, write the file, and say what was written."""
    from .. import load
    from ..compiler.init import initial_weights
    from ..interop.keras_export import check_export_path, export_keras
    from ..runtime.weights import load_weights

    check_export_path(args.out)
    graph = load(args.spec, overrides=args.overrides)
    weights = load_weights(args.weights, graph) if args.weights else initial_weights(graph)

    export_keras(graph, weights, args.out)
    source = args.weights or f"initial weights (seed {graph.train.seed})"
    print(f"wrote {args.out}: Keras 3 model '{graph.name}', {len(graph.nodes)} layers, {graph.num_params} parameters from {source}")
    return 0
