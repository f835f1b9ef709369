"""What per-epoch checkpoints cost: the same training with and without them, on one engine.

    python -m benchmarks.checkpoint_overhead [--spec specs/fashion_mnist_mlp.yaml] [--backends jax,tensorflow]
                                             [--epochs 6] [--units 512]

Runs the spec through :func:`nnspec.runtime.training_run.train_in_directory` (the code ``nnspec run``
uses) twice per engine: ``train.checkpoint.every: 1`` and ``every: 0``. Reports the median epoch time
(the ``seconds`` column), the median time of the per-epoch work of a run (``metrics.csv`` and
``run.json`` rewritten, and with checkpoints on: state to the host, safetensors, fsync, rename, prune),
and the whole training wall time of both runs; the overhead is that per-epoch work over the epoch time.
The first epoch (compilation) is left out of the medians. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def measure(spec: str, backend_name: str, epochs: int, units: int | None) -> dict[str, float]:
    """Median epoch and checkpoint seconds, and training wall time with and without checkpoints."""
    import nnspec
    from nnspec.backends import get_backend
    from nnspec.data import load_dataset
    from nnspec.runtime import training_run
    from nnspec.runtime.run_status import claim

    overrides = [f"train.epochs={epochs}"] + ([f"layers[1].dense.units={units}"] if units else [])
    results: dict[str, float] = {}
    for every in (1, 0):
        graph = nnspec.load(spec, overrides=[*overrides, f"train.checkpoint.every={every}"])
        dataset = load_dataset(graph)
        model = get_backend(backend_name).compile(graph, device="cpu")
        writes: list[float] = []
        original = training_run._EpochHook.__call__

        def timed(hook: training_run._EpochHook, row: dict) -> bool:
            start = time.perf_counter()
            result = original(hook, row)
            writes.append(time.perf_counter() - start)
            return result

        training_run._EpochHook.__call__ = timed  # type: ignore[method-assign]
        try:
            with tempfile.TemporaryDirectory() as tmp, claim(Path(tmp) / "run") as run:
                start = time.perf_counter()
                training_run.train_in_directory(model, dataset, run, progress=False)
                wall = time.perf_counter() - start
        finally:
            training_run._EpochHook.__call__ = original  # type: ignore[method-assign]
        epoch_seconds = model.history["seconds"].tolist()[1:]
        results[f"epoch_s_every{every}"] = statistics.median(epoch_seconds)
        results[f"wall_s_every{every}"] = wall
        results[f"hook_s_every{every}"] = statistics.median(writes[1:] or writes)
    results["overhead"] = results["hook_s_every1"] / results["epoch_s_every1"]
    return results


def main() -> None:
    """Print one line per engine."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/fashion_mnist_mlp.yaml")
    parser.add_argument("--backends", default="jax,tensorflow")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument(
        "--units", type=int, default=512, help="hidden units (512: the 784-512-10 MLP); 0 keeps the spec's"
    )
    args = parser.parse_args()
    print(
        "| engine | epoch (median) | per-epoch work with checkpoint (median) | without | overhead | "
        "training wall, every 1 | training wall, every 0 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.backends.split(","):
        r = measure(args.spec, name, args.epochs, args.units or None)
        print(
            f"| {name} | {r['epoch_s_every1']:.3f} s | {r['hook_s_every1'] * 1000:.1f} ms | "
            f"{r['hook_s_every0'] * 1000:.1f} ms | {100 * r['overhead']:.1f} % | "
            f"{r['wall_s_every1']:.2f} s | {r['wall_s_every0']:.2f} s |"
        )


if __name__ == "__main__":
    main()
