"""``nnspec diff A B``: compare two specs, or two run directories (their specs, metrics per epoch,
test scores and environment); text on a terminal, ``--format md`` or ``csv`` for reports."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec diff``."""
    parser.add_argument("a", metavar="A", help="spec file, or run directory written by nnspec run")
    parser.add_argument("b", metavar="B", help="spec file, or run directory written by nnspec run")
    parser.add_argument(
        "--format",
        "-f",
        choices=("text", "md", "csv"),
        default="text",
        help="text (default; tables on a terminal), md (Markdown tables) or csv (one table of differences)",
    )
    parser.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 1 when A and B differ, 0 when they do not (as git diff --exit-code)",
    )


def run(args: argparse.Namespace) -> int:
    """Compare A and B and print the report; 0 unless --exit-code and they differ."""
    from ..tables import print_tables
    from ..tools.diff_report import blocks, compare, csv_report, markdown_report, notes

    diff = compare(args.a, args.b)
    for line in notes(diff):
        print(line, file=sys.stderr)
    if args.format == "csv":
        sys.stdout.write(csv_report(diff))
    elif args.format == "md":
        sys.stdout.write(markdown_report(diff))
    else:
        print_tables(blocks(diff))
    return 1 if args.exit_code and diff.changed else 0
