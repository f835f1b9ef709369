"""Options shared by the commands that load a spec and compile it (run, evaluate, predict)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from ..compiler.ir import Graph


def add_spec_arguments(
    parser: argparse.ArgumentParser,
    *,
    backend_help: str = "backend to run on (default: jax)",
    spec_optional: bool = False,
    backend_default: str | None = "jax",
) -> None:
    """SPEC, --backend, --device, --set and --dtype (SPEC may be optional, --backend may default to None)."""
    parser.add_argument("spec", metavar="SPEC", nargs="?" if spec_optional else None, help="spec file (YAML)")
    parser.add_argument("--backend", "-b", default=backend_default, help=backend_help)
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="device (default: auto, the GPU when the engine sees one)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. --set train.epochs=3 (repeatable)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="float type of weights and data (default: the spec's, float32)",
    )


def load_graph(args: argparse.Namespace, extra: Sequence[str] = ()) -> "Graph":
    """Load and check the spec with the command line's overrides and dtype."""
    from .. import load

    graph = load(args.spec, overrides=[*args.overrides, *extra])
    if getattr(args, "dtype", None):
        graph = graph.replace(dtype=args.dtype)
    return graph
