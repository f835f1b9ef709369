"""Epoch time of each nnspec engine at each ``train.precision`` on one device, as a markdown table.

    python -m benchmarks.gpu_precision [--device gpu] [--models mlp,cnn,resnet] [--engines jax,keras,theano]
                                       [--precisions float32,tf32,mixed_bfloat16,mixed_float16] [--epochs 4]

Each (model, engine, precision) is compiled once, trained ``--epochs`` epochs on the benchmark's
Fashion-MNIST data (batch 128, the harness's models and settings); the table gives the compile time, the
first epoch (with any lazy compilation), the median of the later epochs and the last epoch's training
loss. A precision an engine refuses shows as a row with the reason. Part of ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np

from .data import load_fashion_mnist
from .settings import BenchConfig, make_model_graph


def measure(
    model: str, engine: str, precision: str, device: str, epochs: int, data: object, guard: bool = True
) -> dict[str, object]:
    """One row: compile seconds, first and median later epoch seconds, last loss (or the refusal).

    ``guard`` False turns the divergence guard off (``train.on_divergence: continue``), to show its cost."""
    from nnspec.backends import get_backend
    from nnspec.errors import BackendError

    config = BenchConfig(epochs=epochs)
    graph = make_model_graph(model, config)
    graph = graph.replace(train=dataclasses.replace(graph.train, precision=precision))
    if not guard:
        graph = graph.replace(train=dataclasses.replace(graph.train, on_divergence="continue"))
    row: dict[str, object] = {
        "model": model,
        "engine": engine,
        "precision": precision + ("" if guard else " (guard off)"),
    }
    try:
        start = time.perf_counter()
        compiled = get_backend(engine).compile(graph, device=device)
        row["compile_s"] = time.perf_counter() - start
    except BackendError as exc:
        row["note"] = "refused: " + str(exc).splitlines()[0]
        return row
    x, y = compiled.put(data.x_train), compiled.put(data.y_train)  # type: ignore[attr-defined]
    times, loss = [], float("nan")
    for epoch in range(epochs):
        order = config.order(len(data.y_train), epoch)  # type: ignore[attr-defined]
        start = time.perf_counter()
        loss, _ = compiled.run_epoch(x, y, order, config.batch_size)
        times.append(time.perf_counter() - start)
    row.update(
        first_epoch_s=times[0],
        epoch_s=statistics.median(times[1:]) if len(times) > 1 else times[0],
        loss=loss,
        note=compiled.precision.name,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    """Measure every combination and print the markdown table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_precision", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="gpu")
    parser.add_argument("--models", default="mlp,cnn,resnet")
    parser.add_argument("--engines", default="jax,keras,theano")
    parser.add_argument("--precisions", default="float32,tf32,mixed_bfloat16,mixed_float16")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--guard-off-row", action="store_true", help="also measure float32 with the divergence guard off"
    )
    args = parser.parse_args(argv)
    data = load_fashion_mnist()
    print(f"data: {data.source}, {len(data.y_train)} training examples, batch 128, device {args.device}\n")
    print("| model | engine | precision | compile s | first epoch s | median epoch s | last loss | note |")
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        for engine in args.engines.split(","):
            variants = [(p, True) for p in args.precisions.split(",")] + (
                [("float32", False)] if args.guard_off_row else []
            )
            for precision, guard in variants:
                try:
                    r = measure(model, engine, precision, args.device, args.epochs, data, guard)
                except Exception as exc:  # one failing combination must not lose the others
                    r = {
                        "model": model,
                        "engine": engine,
                        "precision": precision,
                        "note": f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                    }

                def cell(key: str, fmt: str = "{:.4f}", r: dict[str, object] = r) -> str:
                    value = r.get(key)
                    return (
                        fmt.format(value)
                        if isinstance(value, float) and np.isfinite(value)
                        else ("-" if value is None else str(value))
                    )

                print(
                    f"| {model} | {engine} | {precision} | {cell('compile_s', '{:.2f}')} | {cell('first_epoch_s')} | "
                    f"{cell('epoch_s')} | {cell('loss')} | {r.get('note', '')} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
