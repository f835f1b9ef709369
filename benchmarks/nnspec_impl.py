"""nnspec on one engine, driven through the ``CompiledModel`` contract exactly as its own loop drives it.

``nnspec.compile(graph, backend=engine)``, ``model.put`` for the data (once), then ``model.run_epoch``
per epoch with nnspec's permutation. Backends that compile lazily (on the first ``run_epoch``) add that
time to ``model.compile_seconds``; it is taken out of the epoch's time and reported as compile time.

The graph's ``train.precision`` is the run's precision (``BenchConfig.precision``); ``float64`` compiles
the model in float64. An engine that declines the precision raises nnspec's ``BackendError`` at compile
time, which the harness shows as a refused row.

Cold and warm compile times (:func:`compile_times`) are measured in a child process of their own,

    python -m benchmarks.nnspec_impl --engine jax --model cnn [--device cpu] [--precision float32] [--cold-pytensor]

which prints one line ``RESULT {"cold": s, "warm": s, "import": s}``. The child first imports the engine
(``import``: timed apart, since it is the same for any model); ``cold`` is then the wall time to the first
finished training step (``nnspec.compile``, the first batch put on the device, one ``run_epoch`` of one
batch with its loss read back) with nothing compiled yet in the process (JAX's persistent compilation
cache off; PyTensor compiling into an empty compile folder, see :func:`child_env`); ``warm`` is the same for
a second compile of the same graph in that process (PyTensor's compile cache now full; JAX's and
TensorFlow's in-memory caches are per program, so they trace and compile again, without the first
compile's one-time set-up).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .data import BenchData
from .result import Measurement
from .settings import MODELS, PRECISIONS, BenchConfig, initial_weights, make_model_graph

if TYPE_CHECKING:
    from nnspec.backends.base import CompiledModel

RESULT_PREFIX = "RESULT "
REPO_ROOT = Path(__file__).resolve().parent.parent


def _compile(model: str, engine: str, config: BenchConfig, device: str) -> tuple["CompiledModel", float]:
    import nnspec

    dtype = "float64" if config.precision == "float64" else None
    start = time.perf_counter()
    compiled = nnspec.compile(
        make_model_graph(model, config),
        backend=engine,
        weights=initial_weights(model, config),
        device=device,
        dtype=dtype,
    )
    return compiled, time.perf_counter() - start


def run(model: str, engine: str, data: BenchData, config: BenchConfig, *, device: str = "cpu") -> Measurement:
    """Train ``model`` with nnspec's ``engine`` backend at ``config.precision`` and measure it."""
    compiled, compile_wall = _compile(model, engine, config, device)
    compile_total = compile_wall
    x, y = compiled.put(data.x_train), compiled.put(data.y_train)
    n = len(data.x_train)
    seconds: list[float] = []
    loss = float("nan")
    for epoch in range(config.epochs):
        order = config.order(n, epoch)
        before = compiled.compile_seconds
        start = time.perf_counter()
        loss, _ = compiled.run_epoch(x, y, order, config.batch_size)
        wall = time.perf_counter() - start
        lazy = max(compiled.compile_seconds - before, 0.0)
        compile_total += lazy
        seconds.append(wall - lazy)
    _, accuracy = compiled.evaluate_arrays(compiled.put(data.x_test), compiled.put(data.y_test))

    notes = [f"device {compiled.device}"]
    mode = getattr(compiled, "mode", None) or getattr(compiled, "epoch_mode", None)
    if mode:
        notes.append(f"mode {mode}")
    return Measurement(
        model=model,
        engine=engine,
        implementation="nnspec",
        epoch_seconds=seconds,
        examples_per_epoch=config.steps_per_epoch(n) * min(config.batch_size, n),
        final_train_loss=float(loss),
        test_accuracy=float(accuracy),
        compile_seconds=compile_total,
        notes=", ".join(notes),
        extra={"engine_version": compiled.backend.engine_version()},
        precision=config.precision,
    )


def first_step_seconds(model: str, engine: str, data: BenchData, config: BenchConfig, device: str) -> float:
    """Wall seconds from ``nnspec.compile`` to the first finished training step (one batch, loss read back)."""
    import numpy as np

    b = min(config.batch_size, len(data.x_train))
    start = time.perf_counter()
    compiled, _ = _compile(model, engine, config, device)
    loss, _ = compiled.run_epoch(
        compiled.put(data.x_train[:b]), compiled.put(data.y_train[:b]), np.arange(b, dtype=np.int32), b
    )
    seconds = time.perf_counter() - start
    if not np.isfinite(loss):
        raise RuntimeError(f"the first step's loss is {loss}")
    return seconds


def child_env(engine: str, device: str, cold_pytensor: bool) -> tuple[dict[str, str], str | None]:
    """The child's environment (and the temporary PyTensor compile folder to remove afterwards, if any)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # cold means no persistent cache
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    folder = None
    if engine == "theano" and cold_pytensor:
        folder = tempfile.mkdtemp(prefix="nnspec-bench-cold-")
        flags = [
            f
            for f in env.get("PYTENSOR_FLAGS", "").split(",")
            if f and not f.startswith(("base_compiledir", "compiledir"))
        ]
        env["PYTENSOR_FLAGS"] = ",".join([*flags, f"base_compiledir={folder}"])
    return env, folder


def compile_times(
    model: str, engine: str, config: BenchConfig, device: str, timeout: float, cold_pytensor: bool = True
) -> dict[str, Any]:
    """``{"cold": s, "warm": s}``: time to the first finished step in a fresh child process, then again in it.

    PyTensor compiles into an empty compile folder (removed afterwards) unless ``cold_pytensor`` is false.
    """
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.nnspec_impl",
        "--engine",
        engine,
        "--model",
        model,
        "--device",
        device,
        "--precision",
        config.precision,
        "--batch",
        str(config.batch_size),
        "--seed",
        str(config.seed),
    ]
    env, folder = child_env(engine, device, cold_pytensor)
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line[len(RESULT_PREFIX) :]))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    raise RuntimeError(f"compile-time child for {engine} exited {proc.returncode} without a result: {' / '.join(tail)}")


#: The package each engine imports (timed apart from the compile).
ENGINE_PACKAGES = {"jax": "jax", "tensorflow": "tensorflow", "theano": "pytensor", "keras": "keras"}


def main(argv: list[str] | None = None) -> int:
    """Child entry point: print ``RESULT {"cold": s, "warm": s}`` for one model, engine, device and precision."""
    from .data import load_fashion_mnist

    parser = argparse.ArgumentParser(description="nnspec's cold and warm time to the first finished training step")
    parser.add_argument("--engine", required=True)
    parser.add_argument("--model", required=True, choices=list(MODELS))
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--precision", default="float32", choices=list(PRECISIONS))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = BenchConfig(batch_size=args.batch, seed=args.seed, precision=args.precision)
    data = load_fashion_mnist().limited(args.batch, 1)
    engines_before = sorted(m for m in ENGINE_PACKAGES.values() if m in sys.modules)
    start = time.perf_counter()
    importlib.import_module(ENGINE_PACKAGES.get(args.engine, args.engine))
    imported = time.perf_counter() - start
    cold = first_step_seconds(args.model, args.engine, data, config, args.device)
    warm = first_step_seconds(args.model, args.engine, data, config, args.device)
    result = {"cold": cold, "warm": warm, "import": imported, "engines_imported_before": engines_before}
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
