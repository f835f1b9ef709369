"""``nnspec sweep SPEC --grid KEY=V1,V2 ...``: every combination (or a seeded sample) on each backend,
each an ordinary run directory trained by ``nnspec run`` in a worker process, J at a time; a restart
skips finished runs; a results table (CSV, Markdown) and a validation-accuracy plot at the end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec sweep``."""
    parser.add_argument("spec", metavar="SPEC", help="spec file (YAML)")
    parser.add_argument(
        "--grid",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=V1,V2",
        help="a --set path and the values to try, e.g. train.optimizer.adam.learning_rate=1e-3,1e-2",
    )
    parser.add_argument(
        "--random", type=int, default=None, metavar="N", help="run a random sample of N combinations instead of all"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of the --random sample (default 0; train.seed is a grid key like any other)",
    )
    parser.add_argument(
        "--backends", default="jax", metavar="B1,B2", help="backends to run every combination on (default: jax)"
    )
    parser.add_argument(
        "--jobs", "-j", type=int, default=1, metavar="J", help="runs at a time, each in its own process (default 1)"
    )
    parser.add_argument(
        "--out",
        "-o",
        default=None,
        metavar="DIR",
        help="sweep folder (default: sweeps/<spec file name>); one run directory per run in it",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, metavar="N", help="epochs of every run (same as --set train.epochs=N)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting every run gets (repeatable)",
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "gpu"), default="auto", help="device of every run (default: auto)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines; only the summary")


def _sweep(args: argparse.Namespace):
    """The :class:`~nnspec.tools.sweep_record.Sweep` the arguments describe (checked, ``extends`` values
    included)."""
    from ..backends import canonical_name
    from ..errors import NnspecError
    from ..tools.sweep_plan import default_out, parse_grid
    from ..tools.sweep_record import Sweep

    for flag, value in (("--jobs", args.jobs), ("--random", args.random), ("--epochs", args.epochs)):
        if value is not None and value < 1:
            raise NnspecError(f"{flag} must be a positive integer; got {value}")
    spec = Path(args.spec)
    if not spec.is_file():
        raise NnspecError(f"{spec}: no such spec file")
    names = [b for b in (s.strip() for s in args.backends.split(",")) if b]
    if not names:
        raise NnspecError("--backends needs at least one backend, e.g. --backends jax,tensorflow")
    backends = tuple(dict.fromkeys(canonical_name(b) for b in names))
    out = Path(args.out) if args.out else default_out(spec)
    sweep = Sweep(
        spec=spec.resolve(),
        out=out.resolve(),
        axes=parse_grid(args.grid),
        backends=backends,
        sample=args.random,
        seed=args.seed,
        epochs=args.epochs,
        overrides=tuple(args.overrides),
        device=args.device,
        jobs=args.jobs,
    )
    sweep.check_extends()
    return sweep


def run(args: argparse.Namespace) -> int:
    """Plan, check, run what is not finished, write the results; 0 when every run completed, 1 when
    one did not, 130 / 143 when a signal stopped the sweep."""
    from ..errors import NnspecError
    from ..outputs import check_output_folder, write_output
    from ..strict_json import json_text
    from ..tables import print_tables
    from ..tools.sweep_record import RECORD_FILE, check_same_sweep, read_record, spec_fingerprint
    from ..tools.sweep_results import (
        PLOT_FILE,
        RESULTS_CSV,
        RESULTS_MD,
        check_result_files,
        results_table,
        write_results,
    )
    from ..tools.sweep_runner import SweepRunner, check_runs

    sweep = _sweep(args)
    check_output_folder(sweep.out, "sweep folder (--out)", error=NnspecError)
    check_result_files(sweep.out)

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    runs = sweep.runs()
    invalid, graph = check_runs(sweep, runs)
    record = sweep.record(spec_fingerprint(graph))
    old = read_record(sweep.out)
    if old is not None:
        check_same_sweep(old, record, sweep.out)
    elif sweep.out.is_dir() and any(sweep.out.iterdir()):
        raise NnspecError(f"{sweep.out}: holds files but no {RECORD_FILE}; choose a new or empty folder for --out")
    sweep.out.mkdir(parents=True, exist_ok=True)
    if old is None:
        write_output(sweep.out / RECORD_FILE, json_text(record), "sweep record", error=NnspecError)
    say(
        f"nnspec sweep: {len(runs)} runs of {sweep.spec.name} ({len(invalid)} invalid) in {sweep.out}, {sweep.jobs} at "
        "a time"
    )
    results, signal_code = SweepRunner(sweep, say).run(runs, invalid)
    frame = write_results(sweep, results)
    print_tables([results_table(sweep, frame)])
    print(f"results: {sweep.out / RESULTS_CSV}, {sweep.out / RESULTS_MD}, {sweep.out / PLOT_FILE}")
    if signal_code:
        print(
            f"nnspec sweep: stopped; the interrupted runs saved their state. Continue with: {sweep.command()}",
            file=sys.stderr,
        )
        return signal_code
    unfinished = [r for r in results if r.status != "complete"]
    if unfinished:
        print(
            f"nnspec sweep: {len(unfinished)} of {len(results)} runs did not complete "
            f"({', '.join(sorted({r.status for r in unfinished}))}); see the status and error columns",
            file=sys.stderr,
        )
        return 1
    return 0
