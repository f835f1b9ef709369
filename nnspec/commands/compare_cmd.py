"""``nnspec compare SPEC``: run one spec on several backends from the same weights, batches and dropout masks,
check each against the NumPy float64 reference (forward per layer, loss and gradients, a K-step training
trajectory) and time them. Exit code 0 when every engine agrees within tolerance, 3 when one does not."""

from __future__ import annotations

import argparse
import sys


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; got {text}")
    return value


def _tolerance(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec compare``."""
    parser.add_argument("spec", metavar="SPEC", help="spec file (YAML)")
    parser.add_argument(
        "--backends", "-b", default=None, metavar="LIST", help="comma-separated backends (default: every available one)"
    )
    parser.add_argument(
        "--steps",
        type=_non_negative,
        default=10,
        metavar="K",
        help="training steps to compare (default: 10; 0 skips the trajectory)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="float type the engines compute in (default: float32)",
    )
    parser.add_argument(
        "--batch",
        type=_positive,
        default=32,
        metavar="N",
        help="examples per compared batch (default: 32, or the data's size if smaller)",
    )
    parser.add_argument(
        "--tolerance",
        type=_tolerance,
        default=None,
        metavar="X",
        help="one relative tolerance for every part (default: per dtype, see docs/backends.md)",
    )
    parser.add_argument(
        "--out",
        "-o",
        default=None,
        metavar="DIR",
        help="where compare.csv, compare.md and trajectory.png go (default: runs/<name>/compare-<timestamp>/)",
    )
    parser.add_argument(
        "--repeats", type=_positive, default=3, metavar="R", help="timing repeats; medians are reported (default: 3)"
    )
    parser.add_argument("--no-timing", dest="timing", action="store_false", help="skip the timing part")
    parser.add_argument(
        "--epoch-examples",
        type=_positive,
        default=1024,
        metavar="N",
        help="training examples in a timed epoch (default: 1024)",
    )
    parser.add_argument(
        "--random-data", action="store_true", help="compare on seeded random inputs instead of the spec's data set"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="device (default: auto, the GPU when an engine sees one)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. --set train.seed=1 (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    """Compare, print the report, write the files; return 0 when all agree, 3 otherwise."""
    from .. import load
    from ..compare import compare, load_data, render, write_report
    from ..compare.report import check_report_folder
    from ..runtime.rundir import default_run_dir

    graph = load(args.spec, overrides=args.overrides)
    out_dir = args.out or default_run_dir(graph, "compare")
    check_report_folder(out_dir)
    backends = [b for b in args.backends.split(",") if b.strip()] if args.backends else None
    data = load_data(graph, random=args.random_data)
    if data.detail:
        print(f"nnspec compare: note: comparing on random data: {data.detail}", file=sys.stderr)
    result = compare(
        graph,
        backends,
        dtype=args.dtype,
        steps=args.steps,
        batch=args.batch,
        tolerance=args.tolerance,
        repeats=args.repeats,
        timing=args.timing,
        device=args.device,
        data=data,
        epoch_examples=args.epoch_examples,
    )
    print(render(result), end="")
    out = write_report(result, out_dir)
    print(f"report: {out['compare.md'].parent}/ ({', '.join(sorted(out))})")
    for row in result.summary.itertuples():
        if getattr(row, "traceback", None) and isinstance(row.traceback, str):
            print(f"\n{row.backend} failed:\n{row.traceback}", file=sys.stderr)
    return result.exit_code
