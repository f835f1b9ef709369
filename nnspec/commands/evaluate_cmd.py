"""``nnspec evaluate SPEC --weights FILE``: loss and accuracy of saved weights on the spec's test split."""

from __future__ import annotations

import argparse
import json

from .model_options import add_spec_arguments, load_graph


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec evaluate``."""
    add_spec_arguments(parser)
    parser.add_argument("--weights", "-w", required=True, metavar="FILE", help="weights file (.safetensors), e.g. a run directory's weights.safetensors")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    """Compile with the given weights and evaluate on the test split."""
    from ..backends import get_backend
    from ..data import load_dataset
    from ..runtime.weights import load_weights

    graph = load_graph(args)
    weights = load_weights(args.weights, graph)
    dataset = load_dataset(graph)
    model = get_backend(args.backend).compile(graph, weights, device=args.device, dtype=graph.dtype)
    result = model.evaluate(dataset.x_test, dataset.y_test)
    if args.json:
        print(json.dumps({**result, "examples": len(dataset.x_test)}))
    else:
        print(f"test ({len(dataset.x_test)} examples): loss {result['loss']:.4f}  accuracy {result['accuracy']:.4f}")
    return 0
