"""``nnspec summary SPEC``: the layer table (name, type, output shape, parameters, FLOPs, inputs), totals,
and the memory training needs for one batch (a ``W0801`` warning on stderr when it does not fit)."""

from __future__ import annotations

import argparse
import sys

from ..compiler.frontend import diagnose
from ..compiler.memory import estimate, memory_diagnostic
from ..compiler.summary import format_summary
from ..errors import SpecError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``SPEC`` and ``--set KEY=VALUE``."""
    parser.add_argument("spec", metavar="SPEC", help="spec file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. layers.1.dense.units=64 (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the summary table and the memory line (warnings to stderr); a spec error propagates to the CLI, which
    prints it and exits 2."""
    graph, diagnostics = diagnose(args.spec, args.overrides)
    if graph is None:
        raise SpecError(diagnostics)
    warning = memory_diagnostic(graph)
    for d in [*diagnostics, *([warning] if warning else [])]:
        print(d.format(), file=sys.stderr)
    print(format_summary(graph))
    print(f"memory: {estimate(graph).describe()}")
    return 0
