"""``nnspec check SPEC...``: report every problem in each spec, or one ``ok`` line per valid spec.

Errors and warnings go to stderr in the compiler style; a valid spec whose training would not fit in
memory gets a ``W0801`` warning naming its biggest layers (estimated from shapes: nothing is allocated).
Exit status: 0 when every spec is valid (warnings alone leave a spec valid), 2 when any has an error.
Imports no engine.
"""

from __future__ import annotations

import argparse
import sys

from ..compiler.frontend import diagnose
from ..compiler.loader import printable
from ..compiler.memory import memory_diagnostic, memory_limit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``SPEC...`` and ``--set KEY=VALUE``."""
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="spec files to check")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. train.epochs=3 (repeatable)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only problems")


def run(args: argparse.Namespace) -> int:
    """Check each spec; diagnostics go to stderr, ``ok`` lines to stdout."""
    failed = False
    limit = None
    for path in args.specs:
        graph, diagnostics = diagnose(path, args.overrides)
        if graph is not None:
            limit = limit or memory_limit()
            warning = memory_diagnostic(graph, *limit)
            diagnostics = diagnostics + ([warning] if warning else [])
        for d in diagnostics:
            print(d.format(), file=sys.stderr)
        if graph is None:
            failed = True
        elif not args.quiet:
            warned = f"; {len(diagnostics)} warning{'' if len(diagnostics) == 1 else 's'}" if diagnostics else ""
            print(f"{printable(path)}: ok ({len(graph.nodes)} layers, {graph.num_params:,} parameters{warned})")
    return 2 if failed else 0
