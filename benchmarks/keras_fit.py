"""Keras 3 ``model.fit`` on one engine, run as its own process (Keras fixes its backend per process).

    python -m benchmarks.keras_fit --engine jax --model mlp --epochs 5 [--limit N] [--batch 128] [--seed 0]

prints one line ``RESULT {json}`` (a :class:`~benchmarks.result.Measurement`) on stdout. The model is
the idiomatic Keras one (``Sequential``, a softmax ``Dense`` output, ``sparse_categorical_crossentropy``,
``Adam(1e-3)``, ``fit(..., batch_size=128, shuffle=True)``, everything else at Keras's defaults),
started from the same initial weights as every other implementation. Keras shuffles with its own RNG
and also trains on the last, partial batch of each epoch; dropout uses Keras's RNG.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

RESULT_PREFIX = "RESULT "


def _build(model_name: str) -> Any:
    import keras
    from keras import layers

    from .settings import CNN_DROPOUT

    if model_name == "mlp":
        body = [layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dense(10, activation="softmax")]
    else:
        body = [
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(CNN_DROPOUT),
            layers.Dense(10, activation="softmax"),
        ]
    return keras.Sequential([keras.Input(shape=(28, 28, 1)), *body])


def run(engine: str, model_name: str, epochs: int, limit: int | None, batch_size: int, seed: int, test_limit: int | None = None) -> dict[str, Any]:
    """Train with Keras ``fit`` on the process's Keras backend (which must be ``engine``); a Measurement dict."""
    import keras

    from .data import load_fashion_mnist
    from .result import Measurement
    from .settings import ADAM, BenchConfig, weight_list

    if keras.backend.backend() != engine:
        raise RuntimeError(f"Keras runs on {keras.backend.backend()!r}, expected {engine!r}: set KERAS_BACKEND={engine} before starting")
    config = BenchConfig(epochs=epochs, batch_size=batch_size, seed=seed, limit=limit)
    data = load_fashion_mnist().limited(limit, test_limit)
    keras.utils.set_random_seed(seed)
    model = _build(model_name)
    model.set_weights(weight_list(model_name, config))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=ADAM["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    timer = EpochTimer()
    history = model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[timer])
    _, accuracy = model.evaluate(data.x_test, data.y_test, batch_size=1000, verbose=0)
    jit = getattr(model, "jit_compile", None)
    notes = f"Keras {keras.__version__} on {engine}, jit_compile={jit}"
    if model_name == "cnn":
        notes += "; dropout: Keras SeedGenerator"
    return Measurement(
        model=model_name,
        engine=engine,
        implementation="keras fit",
        epoch_seconds=timer.seconds,
        examples_per_epoch=len(data.x_train),
        final_train_loss=float(history.history["loss"][-1]),
        test_accuracy=float(accuracy),
        notes=notes,
    ).to_json()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True, choices=["jax", "tensorflow"])
    parser.add_argument("--model", required=True, choices=["mlp", "cnn"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", args.engine)
    result = run(args.engine, args.model, args.epochs, args.limit, args.batch, args.seed, args.test_limit)
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
