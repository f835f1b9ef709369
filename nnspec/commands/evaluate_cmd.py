"""``nnspec evaluate SPEC --weights FILE``: loss and accuracy of saved weights on the spec's test split.

The weights and the data are checked as they are read (see :mod:`nnspec.semantics.weights` and
:mod:`nnspec.data`). With ``--json`` a non-finite loss is written as ``null``: the output is always valid JSON.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from .model_options import add_spec_arguments, load_graph


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec evaluate``."""
    add_spec_arguments(parser)
    parser.add_argument(
        "--weights",
        "-w",
        required=True,
        metavar="FILE",
        help="weights file (.safetensors), e.g. a run directory's weights.safetensors",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def json_safe(result: dict) -> dict:
    """``result`` with every NaN or infinite number replaced by None (JSON has no token for them)."""
    safe = {}
    for key, value in result.items():
        if isinstance(value, (float, np.floating)):
            value = float(value) if math.isfinite(float(value)) else None
        safe[key] = value
    return safe


def run(args: argparse.Namespace) -> int:
    """Compile with the given weights and evaluate on the test split."""
    from ..backends import get_backend
    from ..data import load_dataset
    from ..semantics.weights import load_weights

    graph = load_graph(args)
    weights = load_weights(args.weights, graph)
    dataset = load_dataset(graph)
    model = get_backend(args.backend).compile(graph, weights, device=args.device, dtype=graph.dtype)
    result = model.evaluate(dataset.x_test, dataset.y_test)
    if args.json:
        print(json.dumps({**json_safe(result), "examples": len(dataset.x_test)}, allow_nan=False))
    else:
        print(f"test ({len(dataset.x_test)} examples): loss {result['loss']:.4f}  accuracy {result['accuracy']:.4f}")
    return 0
