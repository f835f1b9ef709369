"""``nnspec profile SPEC``: forward and backward time of each layer on each engine, at the spec's batch size
(median of repeats after a warm-up), as a table (text, Markdown or CSV) and optionally a bar chart.
How each time is taken is in :mod:`nnspec.runtime.profiling`."""

from __future__ import annotations

import argparse
import sys

from ..errors import BackendError

#: The chart written when ``--plot`` names a folder.
DEFAULT_CHART = "profile.png"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """SPEC, --backends, --repeats, --warmup, --batch, --plot, --format, --device, --set and --dtype."""
    add = parser.add_argument
    add("spec", metavar="SPEC", help="spec file (YAML)")
    add(
        "--backends",
        "-b",
        default=None,
        metavar="B1,B2",
        help="backends to profile, comma-separated (default: every built-in one; those not installed are skipped "
        "with a note)",
    )
    add(
        "--repeats",
        type=_positive,
        default=20,
        metavar="N",
        help="timed calls per program; the median is reported (default: 20)",
    )
    add(
        "--warmup",
        type=_non_negative,
        default=3,
        metavar="N",
        help="untimed calls before timing, after the first one (default: 3)",
    )
    add("--batch", type=_positive, default=None, metavar="N", help="batch size (default: the spec's train.batch_size)")
    add(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="also draw the bar chart (forward and backward per layer per engine) to this image; its suffix picks "
        f"the format (.png, .pdf, .svg, ...); a folder means {DEFAULT_CHART} in it",
    )
    add("--format", choices=("text", "md", "csv"), default="text", help="table format on stdout (default: text)")
    add(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="device (default: auto, the GPU when the engine sees one)",
    )
    add(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. --set train.batch_size=64 (repeatable)",
    )
    add(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="float type of weights and data (default: the spec's, float32)",
    )


def backend_list(text: str | None) -> list[str]:
    """Canonical backend names from ``--backends`` (every built-in one when not given), each once, in order.
    An unknown name is a :class:`BackendError` naming the known ones."""
    from ..backends import backend_names, canonical_name

    if text is None:
        return backend_names()
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise BackendError("--backends: no backend named (expected for example --backends jax,tensorflow)")
    return list(dict.fromkeys(canonical_name(name) for name in names))


def run(args: argparse.Namespace) -> int:
    """Profile, print the table (engine progress on stderr, and the notes too for CSV) and draw the chart when asked.

    The chart's path and the memory one batch needs are checked before any engine is started."""
    from ..outputs import write_outputs
    from ..runtime.plots import figure_target
    from ..runtime.profiling import EngineProfile, check_memory, notes, plot_profile, profile_spec, render
    from .model_options import load_graph

    backends = backend_list(args.backends)
    chart = figure_target(args.plot, "chart", DEFAULT_CHART) if args.plot is not None else None
    if chart is not None and chart.note:
        print(f"profile: {chart.note}", file=sys.stderr)
    graph = load_graph(args)
    check_memory(graph, args.batch)

    def report(engine: EngineProfile) -> None:
        done = (
            f"skipped ({engine.skipped})"
            if engine.skipped
            else f"{len(engine.layers)} layers in {engine.seconds:.1f} s"
        )
        print(f"profile: {engine.backend}: {done}", file=sys.stderr)

    profile = profile_spec(
        graph,
        backends,
        spec=args.spec,
        batch=args.batch,
        warmup=args.warmup,
        repeats=args.repeats,
        device=args.device,
        on_engine=report,
    )
    if not profile.profiled:
        raise BackendError(
            "no engine could be profiled: " + "; ".join(f"{e.backend}: {e.skipped}" for e in profile.engines)
        )
    sys.stdout.write(render(profile, args.format))
    if args.format == "csv":  # the text and Markdown tables carry their notes; CSV stays a bare table
        for line in notes(profile):
            print(f"profile: note: {line}", file=sys.stderr)
    if chart is not None:
        write_outputs([(chart.path, lambda tmp: plot_profile(profile, tmp, chart.format))], "chart")
        print(f"profile: chart written to {chart.path} ({chart.format.upper()})", file=sys.stderr)
    return 0
