"""The benchmark harness: nnspec vs hand-written code on the same engine vs Keras 3 ``fit``, in one run.

    python -m benchmarks.run [--models mlp,cnn,resnet] [--engines jax,tensorflow,theano,keras] [--epochs 5]
                             [--device cpu|gpu] [--precision float32,tf32,mixed_bfloat16,...]
                             [--limit N] [--batch 128] [--out results.csv] [--markdown [FILE]]

Everything but Keras ``fit`` runs in this process, one implementation after another; Keras ``fit`` runs
once per model, Keras backend and precision in a child process (``python -m benchmarks.keras_fit``), because
Keras fixes its backend per process. nnspec's cold and warm compile times (time to the first finished step)
come from one more child per nnspec row (``python -m benchmarks.nnspec_impl``). Each nnspec engine runs at
every ``--precision`` (the graph's ``train.precision``); an engine that declines one shows a refused row.
The ``resnet`` has no hand-written engine baselines: it is compared with Keras ``fit`` and across nnspec's
engines only. See docs/benchmarks.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .result import Measurement, Refused, failed
from .settings import ENGINES, HAND_MODELS, MODELS, PRECISIONS, BenchConfig

REPO_ROOT = Path(__file__).resolve().parent.parent

Runner = Callable[[], Measurement]


#: Variants left out by default (``--slow-variants`` runs them): (model, device, "engine:implementation") -> why.
SLOW_VARIANTS: dict[tuple[str, str, str], str] = {
    ("cnn", "cpu", "tensorflow:hand: tf.function epoch (XLA)"): (
        "XLA's CPU backend runs a convolution inside a loop slowly (1.25 s a step vs 0.07 s for "
        "'tf.function epoch', 10-step run on 2 shared cores); --slow-variants runs it"
    ),
}

#: Hand-written variants that run on the CPU only (PyTensor's C and Numba linkers).
CPU_ONLY = ("hand: function+updates (C)", "hand: function+updates (Numba)")


def baseline_precisions(supported: tuple[str, ...], requested: list[str]) -> list[str]:
    """The precisions a baseline runs: those requested that it supports, else float32 alone (the reference)."""
    return [p for p in requested if p in supported] or ["float32"]


def _keras_fit(model: str, keras_backend: str, config: BenchConfig, device: str, timeout: float) -> Measurement:
    """Run Keras ``fit`` on ``keras_backend`` in a child process and read its JSON result."""
    from .keras_fit import RESULT_PREFIX

    cmd = [
        sys.executable,
        "-m",
        "benchmarks.keras_fit",
        "--engine",
        keras_backend,
        "--model",
        model,
        "--epochs",
        str(config.epochs),
        "--batch",
        str(config.batch_size),
        "--seed",
        str(config.seed),
        "--device",
        device,
        "--precision",
        config.precision,
    ]
    if config.limit is not None:
        cmd += ["--limit", str(config.limit)]
    if config.test_limit is not None:
        cmd += ["--test-limit", str(config.test_limit)]
    env = {
        **os.environ,
        "KERAS_BACKEND": keras_backend,
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return Measurement.from_json(json.loads(line[len(RESULT_PREFIX) :]))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    raise RuntimeError(f"keras_fit on {keras_backend} exited {proc.returncode} without a result: {' / '.join(tail)}")


#: One planned measurement: (implementation, precision, runner).
Step = tuple[str, str, Runner]


def plan(
    model: str,
    engine: str,
    data: Any,
    config: BenchConfig,
    args: argparse.Namespace,
    keras_cache: dict[tuple[str, str, str], Measurement | BaseException],
) -> list[Step]:
    """The implementations to run for (model, engine), nnspec first (once per ``--precision``), as
    (implementation, precision, runner); hand-written code and Keras ``fit`` at the precisions they support."""
    from dataclasses import replace

    from . import hand_jax, hand_pytensor, hand_tf, nnspec_impl
    from .keras_fit import KERAS_PRECISIONS

    def at(precision: str) -> BenchConfig:
        return replace(config, precision=precision)

    def nnspec_runner(precision: str) -> Runner:
        def go() -> Measurement:
            measured = nnspec_impl.run(model, engine, data, at(precision), device=args.device)
            if args.compile_times:
                try:
                    times = nnspec_impl.compile_times(model, engine, at(precision), args.device, args.keras_timeout)
                    measured.compile_cold_seconds, measured.compile_warm_seconds = times["cold"], times["warm"]
                    measured.notes += f", engine import {times['import']:.1f} s (not in compile_cold_s)"
                except Exception as exc:  # the epoch figures stand without the compile times
                    measured.notes += f"; compile times not measured: {type(exc).__name__}: {str(exc)[:200]}"
            return measured

        return go

    def keras_runner(keras_backend: str, precision: str) -> Runner:
        def go() -> Measurement:
            key = (model, keras_backend, precision)
            if key not in keras_cache:
                try:
                    keras_cache[key] = _keras_fit(model, keras_backend, at(precision), args.device, args.keras_timeout)
                except Exception as exc:  # remembered, so a failing child is not run twice
                    keras_cache[key] = exc
            found = keras_cache[key]
            if isinstance(found, BaseException):
                raise found
            if engine == keras_backend:
                return found
            return Measurement(
                **{
                    **found.to_json(),
                    "engine": engine,
                    "notes": found.notes + " (same run as engine " + keras_backend + ")",
                }
            )

        return go

    def refuse(reason: str) -> Runner:
        def go() -> Measurement:
            raise Refused(reason)

        return go

    def keras_steps(keras_backend: str) -> list[Step]:
        return [
            ("keras fit", p, keras_runner(keras_backend, p))
            for p in baseline_precisions(KERAS_PRECISIONS, args.precision)
        ]

    hand = model in HAND_MODELS  # the resnet has no hand-written baselines
    steps: list[Step] = [("nnspec", p, nnspec_runner(p)) for p in args.precision]
    if engine == "jax":
        if hand:
            steps += [
                (f"hand: {v}", p, lambda v=v, p=p: hand_jax.run(model, v, data, at(p), device=args.device))
                for p in baseline_precisions(hand_jax.PRECISIONS, args.precision)
                for v in hand_jax.VARIANTS
            ]
        steps += keras_steps("jax")
    elif engine == "tensorflow":
        if hand:
            steps += [
                (f"hand: {v}", p, lambda v=v, p=p: hand_tf.run(model, v, data, at(p), device=args.device))
                for p in baseline_precisions(hand_tf.PRECISIONS, args.precision)
                for v in hand_tf.VARIANTS
            ]
        steps += keras_steps("tensorflow")
    elif engine == "theano":
        if hand:
            for v in hand_pytensor.VARIANTS:
                name = f"hand: function+updates ({v})"
                if args.device == "gpu" and name in CPU_ONLY:
                    steps.append(
                        (
                            name,
                            "float32",
                            refuse("PyTensor's C and Numba linkers run on the CPU only; not run with --device gpu"),
                        )
                    )
                else:
                    steps.append((name, "float32", lambda v=v: hand_pytensor.run(model, v, data, at("float32"))))
    elif engine == "keras":
        steps += keras_steps(os.environ["KERAS_BACKEND"])
    kept: list[Step] = []
    for name, precision, fn in steps:
        label = f"{engine}:{name}"
        if any(pat in label for pat in args.skip):
            continue
        slow = SLOW_VARIANTS.get((model, args.device, label))
        if slow and not args.slow_variants:
            fn = refuse(f"skipped by default: {slow}")
        kept.append((name, precision, fn))
    return kept


def run_benchmarks(args: argparse.Namespace) -> dict[str, Any]:
    """Run every (model, engine, implementation, precision); returns the frames and the machine info."""
    from . import report
    from .data import load_fashion_mnist

    config = BenchConfig(
        epochs=args.epochs, batch_size=args.batch, seed=args.seed, limit=args.limit, test_limit=args.test_limit
    )
    extra: dict[str, Any] = {
        "device": args.device,
        "precisions": ",".join(args.precision),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
    }
    start = time.perf_counter()
    data = load_fashion_mnist().limited(config.limit, config.test_limit)
    extra.update({"data": data.source, "train_examples": len(data.x_train), "test_examples": len(data.x_test)})
    rows: list[dict[str, Any]] = []
    keras_cache: dict[tuple[str, str, str], Measurement | BaseException] = {}
    for model in args.models:
        for engine in args.engines:
            for name, precision, runner in plan(model, engine, data, config, args, keras_cache):
                began = time.perf_counter()
                try:
                    row = runner().row()
                except Exception as exc:  # one failing implementation must not lose the others' figures
                    row = failed(model, engine, name, exc, precision)
                rows.append(row)
                _progress(row, time.perf_counter() - began)
    extra["harness_seconds"] = round(time.perf_counter() - start, 1)
    if "theano" in args.engines and "pytensor" in sys.modules:
        import pytensor

        extra["pytensor_blas_ldflags"] = pytensor.config.blas__ldflags or "(none)"
        extra["pytensor_compiledir"] = str(pytensor.config.compiledir)
    if "jax" in sys.modules:
        import jax

        extra["jax_devices"] = ", ".join(str(d) for d in jax.devices())
    results = report.results_frame(rows)
    return {
        "info": report.machine_info(extra),
        "results": results,
        "ratios": report.ratios_frame(results),
        "targets": report.targets_frame(results, args.device),
    }


def _progress(row: dict[str, Any], seconds: float) -> None:
    what = f"{row['model']:<6} {row['engine']:<11} {row['implementation']:<34} {row['precision']:<14}"
    if row["median_epoch_s"] is None:
        print(f"[bench] {what} {row['notes']}", file=sys.stderr, flush=True)
    else:
        print(
            f"[bench] {what} median epoch {row['median_epoch_s']:.4f} s, compile {row['compile_s']:.2f} s "
            f"(took {seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )


def _csv_list(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        aliases = {"tf": "tensorflow", "pytensor": "theano"}
        items = [aliases.get(t, t) for t in items]
        bad = [t for t in items if t not in choices]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(bad)}; expected a comma-separated list of {', '.join(choices)}"
            )
        return items

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description="nnspec vs hand-written engine code vs Keras 3 fit."
    )
    p.add_argument(
        "--models",
        type=_csv_list(MODELS),
        default=list(MODELS),
        help="comma-separated: mlp,cnn,resnet (resnet: no hand-written baselines)",
    )
    p.add_argument(
        "--engines", type=_csv_list(ENGINES), default=list(ENGINES), help="comma-separated: jax,tensorflow,theano,keras"
    )
    p.add_argument("--epochs", type=int, default=5, help="epochs per run; the median is over epochs 2..n (default 5)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training examples (smoke runs)")
    p.add_argument("--test-limit", type=int, default=None, help="use only the first N test examples")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device",
        choices=["cpu", "gpu"],
        default="cpu",
        help="device of every implementation: nnspec (theano: PyTensor's JAX linker on gpu), "
        "hand-written JAX and TensorFlow, Keras fit",
    )
    p.add_argument(
        "--precision",
        type=_csv_list(PRECISIONS),
        default=["float32"],
        help="comma-separated train.precision list, each nnspec engine measured at each: "
        "float32,tf32,mixed_bfloat16,mixed_float16,float64 "
        "(baselines run those they support: hand-written JAX/TF float32,tf32; "
        "Keras fit float32,tf32,mixed_*; else float32)",
    )
    p.add_argument(
        "--keras-backend",
        choices=["jax", "tensorflow"],
        default=os.environ.get("KERAS_BACKEND", "jax"),
        help="Keras backend of the 'keras' engine (nnspec's keras backend runs in this process)",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="PATTERN",
        help="skip implementations whose 'engine:implementation' contains PATTERN (repeatable), "
        "e.g. 'tensorflow:hand: tf.function step (XLA)'",
    )
    p.add_argument(
        "--pytensor-cold",
        action="store_true",
        help="compile PyTensor into a new, empty cache folder (cold compile_s in the run itself)",
    )
    p.add_argument(
        "--no-compile-times",
        dest="compile_times",
        action="store_false",
        help="skip the child processes that measure nnspec's cold and warm time to the first step "
        "(compile_cold_s, compile_warm_s)",
    )
    p.add_argument(
        "--slow-variants",
        action="store_true",
        help="also run the variants left out by default (SLOW_VARIANTS: the convnet's XLA epoch on the CPU)",
    )
    p.add_argument(
        "--keras-timeout",
        type=float,
        default=3600.0,
        help="seconds before a child process (Keras fit, compile times) is stopped",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the results CSV here (and .ratios.csv, .targets.csv, .machine.json beside it)",
    )
    p.add_argument(
        "--markdown",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="print (or write to FILE) the markdown report",
    )
    return p.parse_args(argv)


def prepare_environment(args: argparse.Namespace) -> None:
    """Process-wide engine settings, made before any engine is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["KERAS_BACKEND"] = args.keras_backend
    if "theano" in args.engines:
        from .hand_pytensor import configure_env

        configure_env(cold_compiledir=args.pytensor_cold)


def write_outputs(out: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the tables; write the CSV files and the markdown report where asked."""
    import pandas as pd

    from . import report

    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 60):
        print("\n".join(f"{k}: {v}" for k, v in out["info"].items()))
        print("\nResults\n" + out["results"].to_string(index=False))
        print("\nRatios (median epoch)\n" + out["ratios"].to_string(index=False))
        print("\nTargets\n" + out["targets"].to_string(index=False))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        out["results"].to_csv(args.out, index=False)
        stem = args.out.with_suffix("")
        out["ratios"].to_csv(f"{stem}.ratios.csv", index=False)
        out["targets"].to_csv(f"{stem}.targets.csv", index=False)
        Path(f"{stem}.machine.json").write_text(json.dumps(out["info"], indent=2) + "\n")
    if args.markdown is not None:
        text = report.markdown_report(out["info"], out["results"], out["ratios"], out["targets"])
        if args.markdown == "-":
            print("\n" + text)
        else:
            Path(args.markdown).write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.run``."""
    args = parse_args(argv)
    prepare_environment(args)
    out = run_benchmarks(args)
    write_outputs(out, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
