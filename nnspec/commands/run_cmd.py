"""``nnspec run SPEC``: train a spec on one backend and write a run directory (see docs/cli.md)."""

from __future__ import annotations

import argparse
import sys
import time

from .model_options import add_spec_arguments, load_graph


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec run``."""
    add_spec_arguments(parser)
    parser.add_argument("--epochs", type=int, default=None, metavar="N", help="number of epochs (same as --set train.epochs=N)")
    parser.add_argument("--out", "-o", default=None, metavar="DIR", help="run directory (default: runs/<name>/<backend>-<timestamp>/)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output; print only the result")


def run(args: argparse.Namespace) -> int:
    """Load, compile, train, evaluate on the test split, and write the run directory."""
    from ..backends import canonical_name, get_backend
    from ..data import load_dataset
    from ..errors import NnspecError
    from ..runtime.env import environment
    from ..runtime.rundir import default_run_dir, write_run

    if args.epochs is not None and args.epochs < 1:
        raise NnspecError(f"--epochs must be a positive integer; got {args.epochs}")
    graph = load_graph(args, [f"train.epochs={args.epochs}"] if args.epochs is not None else [])
    backend_name = canonical_name(args.backend)
    dataset = load_dataset(graph)  # before the engine is imported: data problems show at once
    backend = get_backend(backend_name)
    start = time.perf_counter()
    model = backend.compile(graph, device=args.device, dtype=graph.dtype)
    setup_seconds = time.perf_counter() - start
    if not args.quiet:
        print(
            f"nnspec run: {graph.name} on {backend.name} ({model.device}, {model.dtype}): "
            f"{len(dataset.x_train)} train / {len(dataset.x_val)} validation / {len(dataset.x_test)} test examples",
            file=sys.stderr,
        )
    history = model.fit(dataset, progress=False if args.quiet else None)
    test = model.evaluate(dataset.x_test, dataset.y_test)
    env = environment(model)
    env["setup_seconds"] = setup_seconds
    env["train_seconds"] = float(history["seconds"].sum())
    env["data"] = {"dataset": dataset.name, "train": len(dataset.x_train), "validation": len(dataset.x_val), "test": len(dataset.x_test)}
    out = write_run(args.out or default_run_dir(graph, backend.name), model, history, test, env)
    print(f"run directory: {out}")
    print(f"test: loss {test['loss']:.4f}  accuracy {test['accuracy']:.4f}")
    return 0
