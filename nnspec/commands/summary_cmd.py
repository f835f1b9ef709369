"""``nnspec summary SPEC``: the layer table (name, type, output shape, parameters, FLOPs) and totals."""

from __future__ import annotations

import argparse

from ..compiler.frontend import load_spec
from ..compiler.summary import format_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``SPEC`` and ``--set KEY=VALUE``."""
    parser.add_argument("spec", metavar="SPEC", help="spec file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a setting, e.g. layers.1.dense.units=64 (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Print the summary table; a spec error propagates to the CLI, which prints it and exits 2."""
    graph = load_spec(args.spec, args.overrides)
    print(format_summary(graph))
    return 0
