"""The benchmark harness: nnspec vs hand-written code on the same engine vs Keras 3 ``fit``, in one run.

    python -m benchmarks.run [--models mlp,cnn,resnet] [--engines jax,tensorflow,theano,keras] [--epochs 5]
                             [--limit N] [--batch 128] [--out results.csv] [--markdown [FILE]]

Everything but Keras ``fit`` runs in this process, one implementation after another; Keras ``fit`` runs
once per model and Keras backend in a child process (``python -m benchmarks.keras_fit``), because Keras
fixes its backend per process. The ``resnet`` has no hand-written engine baselines: it is compared with
Keras ``fit`` and across nnspec's engines only. See docs/benchmarks.md for what is measured and how.
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

from .result import Measurement, failed
from .settings import ENGINES, HAND_MODELS, MODELS, BenchConfig

REPO_ROOT = Path(__file__).resolve().parent.parent

Runner = Callable[[], Measurement]


def _keras_fit(model: str, keras_backend: str, config: BenchConfig, device: str, timeout: float) -> Measurement:
    """Run Keras ``fit`` on ``keras_backend`` in a child process and read its JSON result."""
    from .keras_fit import RESULT_PREFIX

    cmd = [sys.executable, "-m", "benchmarks.keras_fit", "--engine", keras_backend, "--model", model,
           "--epochs", str(config.epochs), "--batch", str(config.batch_size), "--seed", str(config.seed)]
    if config.limit is not None:
        cmd += ["--limit", str(config.limit)]
    if config.test_limit is not None:
        cmd += ["--test-limit", str(config.test_limit)]
    env = {**os.environ, "KERAS_BACKEND": keras_backend, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return Measurement.from_json(json.loads(line[len(RESULT_PREFIX):]))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    raise RuntimeError(f"keras_fit on {keras_backend} exited {proc.returncode} without a result: {' / '.join(tail)}")


def plan(model: str, engine: str, data: Any, config: BenchConfig, args: argparse.Namespace,
         keras_cache: dict[tuple[str, str], Measurement | BaseException]) -> list[tuple[str, Runner]]:
    """The implementations to run for (model, engine), nnspec first, as (name, runner) pairs."""
    from . import hand_jax, hand_pytensor, hand_tf, nnspec_impl

    def nnspec_runner() -> Measurement:
        return nnspec_impl.run(model, engine, data, config, device=args.device, warm_compile=engine == "theano")

    def keras_runner(keras_backend: str) -> Runner:
        def go() -> Measurement:
            key = (model, keras_backend)
            if key not in keras_cache:
                try:
                    keras_cache[key] = _keras_fit(model, keras_backend, config, args.device, args.keras_timeout)
                except Exception as exc:  # remembered, so a failing child is not run twice
                    keras_cache[key] = exc
            found = keras_cache[key]
            if isinstance(found, BaseException):
                raise found
            if engine == keras_backend:
                return found
            return Measurement(**{**found.to_json(), "engine": engine, "notes": found.notes + " (same run as engine " + keras_backend + ")"})
        return go

    hand = model in HAND_MODELS  # the resnet has no hand-written baselines
    steps: list[tuple[str, Runner]] = [("nnspec", nnspec_runner)]
    if engine == "jax":
        if hand:
            steps += [(f"hand: {v}", lambda v=v: hand_jax.run(model, v, data, config, device=args.device)) for v in hand_jax.VARIANTS]
        steps.append(("keras fit", keras_runner("jax")))
    elif engine == "tensorflow":
        if hand:
            steps += [(f"hand: {v}", lambda v=v: hand_tf.run(model, v, data, config)) for v in hand_tf.VARIANTS]
        steps.append(("keras fit", keras_runner("tensorflow")))
    elif engine == "theano":
        if hand:
            steps += [(f"hand: function+updates ({v})", lambda v=v: hand_pytensor.run(model, v, data, config)) for v in hand_pytensor.VARIANTS]
    elif engine == "keras":
        steps.append(("keras fit", keras_runner(os.environ["KERAS_BACKEND"])))
    return [(name, fn) for name, fn in steps if not any(pat in f"{engine}:{name}" for pat in args.skip)]


def run_benchmarks(args: argparse.Namespace) -> dict[str, Any]:
    """Run every (model, engine, implementation); returns the frames and the machine info."""
    from . import report
    from .data import load_fashion_mnist

    config = BenchConfig(epochs=args.epochs, batch_size=args.batch, seed=args.seed, limit=args.limit, test_limit=args.test_limit)
    extra: dict[str, Any] = {"device": args.device, "epochs": config.epochs, "batch_size": config.batch_size}
    start = time.perf_counter()
    data = load_fashion_mnist().limited(config.limit, config.test_limit)
    extra.update({"data": data.source, "train_examples": len(data.x_train), "test_examples": len(data.x_test)})
    rows: list[dict[str, Any]] = []
    keras_cache: dict[tuple[str, str], Measurement | BaseException] = {}
    for model in args.models:
        for engine in args.engines:
            for name, runner in plan(model, engine, data, config, args, keras_cache):
                began = time.perf_counter()
                try:
                    row = runner().row()
                except Exception as exc:  # one failing implementation must not lose the others' figures
                    row = failed(model, engine, name, exc)
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
    what = f"{row['model']:<6} {row['engine']:<11} {row['implementation']:<34}"
    if row["median_epoch_s"] is None:
        print(f"[bench] {what} {row['notes']}", file=sys.stderr, flush=True)
    else:
        print(f"[bench] {what} median epoch {row['median_epoch_s']:.4f} s, compile {row['compile_s']:.2f} s "
              f"(took {seconds:.0f} s)", file=sys.stderr, flush=True)


def _csv_list(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        aliases = {"tf": "tensorflow", "pytensor": "theano"}
        items = [aliases.get(t, t) for t in items]
        bad = [t for t in items if t not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; expected a comma-separated list of {', '.join(choices)}")
        return items
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description="nnspec vs hand-written engine code vs Keras 3 fit.")
    p.add_argument("--models", type=_csv_list(MODELS), default=list(MODELS), help="comma-separated: mlp,cnn,resnet (resnet: no hand-written baselines)")
    p.add_argument("--engines", type=_csv_list(ENGINES), default=list(ENGINES), help="comma-separated: jax,tensorflow,theano,keras")
    p.add_argument("--epochs", type=int, default=5, help="epochs per run; the median is over epochs 2..n (default 5)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training examples (smoke runs)")
    p.add_argument("--test-limit", type=int, default=None, help="use only the first N test examples")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="device for nnspec, hand-written JAX and Keras fit")
    p.add_argument("--keras-backend", choices=["jax", "tensorflow"], default=os.environ.get("KERAS_BACKEND", "jax"),
                   help="Keras backend of the 'keras' engine (nnspec's keras backend runs in this process)")
    p.add_argument("--skip", action="append", default=[], metavar="PATTERN",
                   help="skip implementations whose 'engine:implementation' contains PATTERN (repeatable), e.g. 'tensorflow:hand: tf.function step (XLA)'")
    p.add_argument("--pytensor-cold", action="store_true", help="compile PyTensor into a new, empty cache folder (cold compile times)")
    p.add_argument("--keras-timeout", type=float, default=3600.0, help="seconds before a Keras fit child process is stopped")
    p.add_argument("--out", type=Path, default=None, help="write the results CSV here (and .ratios.csv, .targets.csv, .machine.json beside it)")
    p.add_argument("--markdown", nargs="?", const="-", default=None, metavar="FILE", help="print (or write to FILE) the markdown report")
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
