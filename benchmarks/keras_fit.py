"""Keras 3 ``model.fit`` on one engine, run as its own process (Keras fixes its backend per process).

    python -m benchmarks.keras_fit --engine jax --model mlp --epochs 5 [--limit N] [--batch 128] [--seed 0]
                                   [--device cpu|gpu] [--precision float32|tf32|mixed_bfloat16|mixed_float16]

prints one line ``RESULT {json}`` (a :class:`~benchmarks.result.Measurement`) on stdout. The model is
the idiomatic Keras one (``Sequential``, a softmax ``Dense`` output, ``sparse_categorical_crossentropy``,
``Adam(1e-3)``, ``fit(..., batch_size=128, shuffle=True)``, everything else at Keras's defaults),
started from the same initial weights as every other implementation. Keras shuffles with its own RNG
and also trains on the last, partial batch of each epoch; dropout uses Keras's RNG.

The ``resnet`` is a functional ``keras.Model`` (``Conv2D``, ``BatchNormalization``, ``ReLU``,
``MaxPooling2D``, ``Add``, ``GlobalAveragePooling2D``, ``Dropout``, ``Dense``, ``Softmax``) written here,
not nnspec's Keras exporter, so that this baseline is plain Keras code. Its layers carry the names of the
nodes of ``specs/fashion_mnist_resnet.yaml``, and nnspec's initial arrays (``<layer>.<weight>``: kernels,
biases, batch-norm gamma and beta, and the moving mean and variance) are assigned to the Keras variables
of the same layer and name; every array must find its variable and every variable its array.

Device: ``--device gpu`` checks that the engine sees a GPU (and fails otherwise); the parent hides the GPUs
(``CUDA_VISIBLE_DEVICES=''``) for ``cpu``. Precision (:data:`KERAS_PRECISIONS`), set before the model is
built: ``float32`` is full float32 matrix products and convolutions (JAX's default matmul precision
``highest``; TensorFlow's TF32 off: both engines' defaults would allow TF32 on a GPU that has it),
``tf32`` allows TF32 (``tensorfloat32``; TF32 on), and ``mixed_bfloat16`` / ``mixed_float16`` are
Keras's own ``keras.mixed_precision.set_global_policy`` (``fit`` then scales the loss for float16 itself).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from .settings import MODELS

RESULT_PREFIX = "RESULT "
#: The precisions this baseline can run (the harness shows the others as refused rows).
KERAS_PRECISIONS: tuple[str, ...] = ("float32", "tf32", "mixed_bfloat16", "mixed_float16")


def set_precision(engine: str, precision: str) -> str:
    """Make Keras (on ``engine``) compute at ``precision`` (see the module docstring); returns a note."""
    import keras

    if precision not in KERAS_PRECISIONS:
        raise ValueError(f"keras fit runs {', '.join(KERAS_PRECISIONS)}, not {precision!r}")
    tf32 = precision == "tf32"
    if engine == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if tf32 else "highest")
    else:
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(tf32)
    if precision.startswith("mixed_"):
        keras.mixed_precision.set_global_policy(precision)
        return f"policy {precision}"
    return "TF32 allowed" if tf32 else "TF32 off"


def check_device(engine: str, device: str) -> str:
    """The device Keras computes on, as a note; raises when ``device`` is ``gpu`` and the engine sees none."""
    if engine == "jax":
        import jax

        platform = jax.devices()[0].platform
    else:
        import tensorflow as tf

        platform = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if device == "gpu" and platform != "gpu":
        raise RuntimeError(f"--device gpu: Keras on {engine} sees no GPU (its default device is {platform})")
    return f"device {platform}"


def _resnet(dropout_rate: float) -> Any:
    """The functional Keras model of ``specs/fashion_mnist_resnet.yaml``, its layers named as the spec's nodes."""
    import keras
    from keras import layers

    def conv(filters: int, kernel: int, name: str, strides: int = 1, padding: str = "same") -> Any:
        return layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False, name=name)

    def conv_bn(x: Any, filters: int, name: str, bn: str, strides: int = 1) -> Any:
        return layers.BatchNormalization(name=bn)(conv(filters, 3, name, strides)(x))

    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.ReLU(name="stem_relu")(conv_bn(inputs, 32, "stem", "stem_bn"))
    stem = layers.MaxPooling2D(2, name="stem_pool")(x)  # 14 x 14 x 32
    # stage 1: identity shortcut
    y = layers.ReLU(name="s1_relu1")(conv_bn(stem, 32, "s1_conv1", "s1_bn1"))
    y = conv_bn(y, 32, "s1_conv2", "s1_bn2")
    s1 = layers.ReLU(name="s1_out")(layers.Add(name="s1_add")([y, stem]))
    # stage 2: strided convolution, 1x1 projection on the shortcut
    y = layers.ReLU(name="s2_relu1")(conv_bn(s1, 64, "s2_conv1", "s2_bn1", strides=2))  # 7 x 7 x 64
    y = conv_bn(y, 64, "s2_conv2", "s2_bn2")
    shortcut = layers.BatchNormalization(name="s2_proj_bn")(conv(64, 1, "s2_proj", strides=2, padding="valid")(s1))
    x = layers.ReLU(name="s2_out")(layers.Add(name="s2_add")([y, shortcut]))
    x = layers.GlobalAveragePooling2D(name="global_avg_pool2d_1")(x)
    x = layers.Dropout(dropout_rate, name="dropout_1")(x)
    x = layers.Dense(10, name="dense_1")(x)
    outputs = layers.Softmax(name="softmax_1")(x)
    return keras.Model(inputs, outputs, name="fashion_mnist_resnet")


def assign_by_name(model: Any, weights: dict[str, Any]) -> None:
    """Set each variable of ``model`` to ``weights['<layer name>.<variable name>']``; every key must be used once."""
    variables = {f"{layer.name}.{v.name}": v for layer in model.layers for v in layer.weights}
    if set(variables) != set(weights):
        raise ValueError(
            "Keras variables and nnspec weights do not match by name: "
            f"only in Keras {sorted(set(variables) - set(weights))}, "
            f"only in nnspec {sorted(set(weights) - set(variables))}"
        )
    for key, variable in variables.items():
        if tuple(variable.shape) != tuple(weights[key].shape):
            raise ValueError(f"{key}: Keras shape {tuple(variable.shape)}, nnspec shape {tuple(weights[key].shape)}")
        variable.assign(weights[key])


def _build(model_name: str) -> Any:
    import keras
    from keras import layers

    from .settings import CNN_DROPOUT, BenchConfig, make_model_graph

    if model_name == "resnet":
        rate = next(n.attrs["rate"] for n in make_model_graph("resnet", BenchConfig()).nodes if n.op == "dropout")
        return _resnet(float(rate))
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


def run(
    engine: str,
    model_name: str,
    epochs: int,
    limit: int | None,
    batch_size: int,
    seed: int,
    test_limit: int | None = None,
    device: str = "cpu",
    precision: str = "float32",
) -> dict[str, Any]:
    """Train with Keras ``fit`` on the process's Keras backend (which must be ``engine``); a Measurement dict."""
    import keras

    from .data import load_fashion_mnist
    from .result import Measurement
    from .settings import ADAM, BenchConfig, initial_weights, weight_list

    if keras.backend.backend() != engine:
        raise RuntimeError(
            f"Keras runs on {keras.backend.backend()!r}, expected {engine!r}: "
            f"set KERAS_BACKEND={engine} before starting"
        )
    config = BenchConfig(epochs=epochs, batch_size=batch_size, seed=seed, limit=limit)
    data = load_fashion_mnist().limited(limit, test_limit)
    setting_notes = [check_device(engine, device), set_precision(engine, precision)]
    keras.utils.set_random_seed(seed)
    model = _build(model_name)
    if model_name == "resnet":
        assign_by_name(model, initial_weights(model_name, config))
    else:
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
    history = model.fit(
        data.x_train, data.y_train, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[timer]
    )
    _, accuracy = model.evaluate(data.x_test, data.y_test, batch_size=1000, verbose=0)
    jit = getattr(model, "jit_compile", None)
    notes = f"Keras {keras.__version__} on {engine}, jit_compile={jit}, {', '.join(setting_notes)}"
    if model_name in ("cnn", "resnet"):
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
        precision=precision,
    ).to_json()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True, choices=["jax", "tensorflow"])
    parser.add_argument("--model", required=True, choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--precision", choices=list(KERAS_PRECISIONS), default="float32")
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", args.engine)
    result = run(
        args.engine,
        args.model,
        args.epochs,
        args.limit,
        args.batch,
        args.seed,
        args.test_limit,
        args.device,
        args.precision,
    )
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
