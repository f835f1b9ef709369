"""``nnspec check SPEC...``: report every problem in each spec, or one ``ok`` line per valid spec.

Exit status: 0 when every spec is valid, 2 when any has a problem. Imports no engine.
"""

from __future__ import annotations

import argparse
import sys

from ..compiler.frontend import diagnose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``SPEC...`` and ``--set KEY=VALUE``."""
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="spec files to check")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a setting, e.g. train.epochs=3 (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only problems")


def run(args: argparse.Namespace) -> int:
    """Check each spec; diagnostics go to stderr, ``ok`` lines to stdout."""
    failed = False
    for path in args.specs:
        graph, diagnostics = diagnose(path, args.overrides)
        if graph is None:
            failed = True
            for d in diagnostics:
                print(d.format(), file=sys.stderr)
        elif not args.quiet:
            print(f"{path}: ok ({len(graph.nodes)} layers, {graph.num_params:,} parameters)")
    return 2 if failed else 0
