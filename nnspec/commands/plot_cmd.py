"""``nnspec plot RUN_DIR... -o FILE.png``: overlay the loss and accuracy curves of several runs.

``-o`` names the image: its suffix picks the format (``.png``, ``.pdf``, ``.svg``, ...; PNG when it has
none), and an existing folder means ``runs.png`` in it. It is checked before any run is read and written
whole or not at all, never through a link or over a device (:mod:`nnspec.outputs`).
"""

from __future__ import annotations

import argparse

#: The file written when ``-o`` names a folder.
DEFAULT_NAME = "runs.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec plot``."""
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by nnspec run")
    parser.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="FILE.png",
        help=f"image to write; its suffix picks the format (.png, .pdf, .svg, ...); a folder means {DEFAULT_NAME} in it",
    )
    parser.add_argument("--title", default=None, help="figure title (default: the runs' labels)")


def run(args: argparse.Namespace) -> int:
    """Read each run's metrics and draw them in one figure."""
    import sys

    from ..outputs import write_outputs
    from ..runtime.plots import figure_target, plot_runs
    from ..tools.run_diff import read_run_checked as read_run

    target = figure_target(args.output, "figure", DEFAULT_NAME)
    if target.note:
        print(f"nnspec plot: {target.note}", file=sys.stderr)
    records = [read_run(d) for d in args.runs]
    plain = [r.label for r in records]
    # the same spec and backend twice: tell the runs apart by their folder names
    labels = [f"{r.label} {r.directory.name}" if plain.count(r.label) > 1 else r.label for r in records]
    runs = list(zip(labels, (r.history for r in records)))
    title = args.title or " vs ".join(labels)
    write_outputs([(target.path, lambda tmp: plot_runs(runs, tmp, title, target.format))], "figure")
    for label, r in zip(labels, records):
        accuracy = (r.test or {}).get("accuracy")
        test = f"  test accuracy {accuracy:.4f}" if isinstance(accuracy, (int, float)) else ""
        state = "" if r.complete else f"  (not complete: {r.status}; its metrics so far)"
        print(f"{label}: {len(r.history)} epochs{test}{state}")
    print(f"wrote {target.path} ({target.format.upper()})")
    return 0
