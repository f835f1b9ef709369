"""nnspec on one engine, driven through the ``CompiledModel`` contract exactly as its own loop drives it.

``nnspec.compile(graph, backend=engine)``, ``model.put`` for the data (once), then ``model.run_epoch``
per epoch with nnspec's permutation. Backends that compile lazily (on the first ``run_epoch``) add that
time to ``model.compile_seconds``; it is taken out of the epoch's time and reported as compile time.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .data import BenchData
from .result import Measurement
from .settings import BenchConfig, initial_weights, make_model_graph

if TYPE_CHECKING:
    from nnspec.backends.base import CompiledModel


def _compile(model: str, engine: str, config: BenchConfig, device: str) -> tuple["CompiledModel", float]:
    import nnspec

    start = time.perf_counter()
    compiled = nnspec.compile(make_model_graph(model, config), backend=engine, weights=initial_weights(model, config), device=device)
    return compiled, time.perf_counter() - start


def run(model: str, engine: str, data: BenchData, config: BenchConfig, *, device: str = "cpu", warm_compile: bool = False) -> Measurement:
    """Train ``model`` with nnspec's ``engine`` backend and measure it.

    With ``warm_compile`` the model is compiled a second time in the same process (and run for one
    batch, so that lazily compiled programs are built too); that time is reported as ``compile_warm_s``
    (for PyTensor: its compile cache is warm by then).
    """
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

    warm = None
    if warm_compile:
        second, warm = _compile(model, engine, config, device)
        before = second.compile_seconds
        second.run_epoch(second.put(data.x_train), second.put(data.y_train), config.order(n, 0)[: config.batch_size], config.batch_size)
        warm += max(second.compile_seconds - before, 0.0)

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
        compile_warm_seconds=warm,
        notes=", ".join(notes),
        extra={"engine_version": compiled.backend.engine_version()},
    )
