"""Epoch time against device count (``train.devices``), per engine: the cost of data parallelism.

    python -m benchmarks.devices [--engines jax,tensorflow] [--counts 1,2,4] [--spec specs/digits_mlp.yaml]
                                 [--device cpu|gpu] [--epochs 4] [--batch 128]

Each (engine, count) runs in a fresh process (JAX's virtual CPU devices and TensorFlow's logical CPU
devices must be configured before the engine starts) and trains ``--epochs`` epochs; the figure is the
median of the epochs' ``seconds`` after the first (compilation excluded, as in the run's history).

On a CPU the devices are virtual: they share the same cores, so this measures the overhead of splitting
each batch (collectives, copies, smaller kernels), not a speed-up. On a machine with several GPUs run
the command printed at the end (``--device gpu``), where each device is a real GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(engine: str, count: int, spec: str, device: str, epochs: int, batch: int) -> dict[str, float]:
    """Train in this (fresh) process on ``count`` devices; ``{'median_s', 'replicas'}``."""
    if device == "cpu" and engine in ("jax", "keras"):
        os.environ["XLA_FLAGS"] = (
            f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
        )
    if device == "cpu" and engine == "tensorflow":
        from nnspec.backends.tensorflow.engine import load_tensorflow

        tf = load_tensorflow()
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    import nnspec
    from nnspec.backends import get_backend

    graph = nnspec.load(
        spec, overrides=[f"train.devices={count}", f"train.batch_size={batch}", f"train.epochs={epochs}"]
    )
    model = get_backend(engine).compile(graph, device=device)
    history = model.fit(progress=False)
    seconds = list(history["seconds"])[1:] or list(history["seconds"])
    return {"median_s": statistics.median(seconds), "replicas": float(model.replicas)}


def main(argv: list[str] | None = None) -> int:
    """Run every (engine, count) in a child process and print a table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.devices", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="jax,tensorflow")
    parser.add_argument("--counts", default="1,2,4")
    parser.add_argument("--spec", default=str(ROOT / "specs" / "digits_mlp.yaml"))
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.spec, args.device, args.epochs, args.batch)))
        return 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.device == "cpu":
        env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    print(
        f"spec {args.spec}, device {args.device}, batch {args.batch}, median epoch seconds of epochs 2..{args.epochs}"
    )
    if args.device == "cpu":
        print(
            "CPU: the devices are virtual and share the same cores; this is the overhead of splitting, not a speed-up"
        )
    print(f"{'engine':<12}{'devices':>8}{'epoch s':>10}{'vs 1':>8}")
    for engine in args.engines.split(","):
        base = None
        for count in (int(c) for c in args.counts.split(",")):
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.devices",
                "--child",
                engine,
                str(count),
                "--spec",
                args.spec,
                "--device",
                args.device,
                "--epochs",
                str(args.epochs),
                "--batch",
                str(args.batch),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            if proc.returncode != 0:
                print(
                    f"{engine:<12}{count:>8}  failed: "
                    f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
                )
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            base = base or result["median_s"]
            print(f"{engine:<12}{count:>8}{result['median_s']:>10.3f}{result['median_s'] / base:>8.2f}")
    print(
        "\nOn a machine with several GPUs: python -m benchmarks.devices --device gpu --counts 1,2,4,8 "
        f"--engines {args.engines}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
