"""``nnspec plot RUN_DIR... -o FILE.png``: overlay the loss and accuracy curves of several runs."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec plot``."""
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by nnspec run")
    parser.add_argument("--output", "-o", required=True, metavar="FILE.png", help="image to write")
    parser.add_argument("--title", default=None, help="figure title (default: the runs' labels)")


def run(args: argparse.Namespace) -> int:
    """Read each run's metrics and draw them in one figure."""
    from ..outputs import check_output_file
    from ..runtime.plots import plot_runs
    from ..runtime.rundir import read_run

    check_output_file(args.output, "figure", example="runs.png")
    records = [read_run(d) for d in args.runs]
    plain = [r.label for r in records]
    # the same spec and backend twice: tell the runs apart by their folder names
    labels = [f"{r.label} {r.directory.name}" if plain.count(r.label) > 1 else r.label for r in records]
    plot_runs(list(zip(labels, (r.history for r in records))), args.output, args.title or " vs ".join(labels))
    for label, r in zip(labels, records):
        accuracy = (r.test or {}).get("accuracy")
        test = f"  test accuracy {accuracy:.4f}" if isinstance(accuracy, (int, float)) else ""
        state = "" if r.complete else f"  (not complete: {r.status}; its metrics so far)"
        print(f"{label}: {len(r.history)} epochs{test}{state}")
    print(f"wrote {args.output}")
    return 0
