"""Hand-written TensorFlow: ``tf.Variable`` weights, ``tf.GradientTape`` and ``tf.function``.

The data live in tensors on the device; the batch is gathered inside the compiled function from the
epoch's permutation. Three versions:

* ``tf.function step``: one graph-mode training step per batch, called from Python;
* ``tf.function step (XLA)``: the same step with ``jit_compile=True``;
* ``tf.function epoch``: the whole epoch as one ``tf.function`` whose loop over ``tf.range`` becomes
  a ``tf.while_loop``;
* ``tf.function epoch (XLA)``: the same epoch with ``jit_compile=True``: the whole epoch is one XLA
  program (the fastest idiomatic form for small models; on the CPU XLA runs a convolution inside a loop
  slowly, so for the convnet there the plain ``tf.function`` forms win).

The data set and the epoch's batch indices (a ``(steps, batch)`` tensor, static shapes as XLA needs) are
arguments of the compiled functions, never captured constants.

Adam is written out (Keras's formula and defaults). Dropout in the convnet uses TensorFlow's own RNG
(a ``tf.random.Generator``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import chunks, time_epochs
from .data import BenchData
from .result import Measurement, Refused
from .settings import ADAM, CNN_DROPOUT, BenchConfig, weight_list

VARIANTS: tuple[str, ...] = (
    "tf.function step",
    "tf.function step (XLA)",
    "tf.function epoch",
    "tf.function epoch (XLA)",
)
#: The precisions this baseline runs (TF32 off or on); the harness shows the others as refused rows.
PRECISIONS: tuple[str, ...] = ("float32", "tf32")


class _Trainer:
    """Weights, Adam slots and the forward pass of one model, as TensorFlow variables and ops."""

    def __init__(self, model: str, config: BenchConfig):
        import tensorflow as tf

        self.model = model
        self.params = [tf.Variable(w) for w in weight_list(model, config)]
        self.m = [tf.Variable(tf.zeros_like(p)) for p in self.params]
        self.v = [tf.Variable(tf.zeros_like(p)) for p in self.params]
        self.t = tf.Variable(0.0, dtype=tf.float32)
        self.rng = tf.random.Generator.from_seed(config.seed)

    def logits(self, x: Any, training: bool) -> Any:
        """The model's logits for batch ``x`` (dropout on when ``training``)."""
        import tensorflow as tf

        if self.model == "mlp":
            w1, b1, w2, b2 = self.params
            h = tf.nn.relu(tf.matmul(tf.reshape(x, (tf.shape(x)[0], -1)), w1) + b1)
            return tf.matmul(h, w2) + b2
        k1, c1, k2, c2, w, b = self.params
        h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(x, k1, 1, "VALID") + c1), 2, 2, "VALID")
        h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(h, k2, 1, "VALID") + c2), 2, 2, "VALID")
        h = tf.reshape(h, (tf.shape(h)[0], -1))
        if training:
            keep = self.rng.uniform(tf.shape(h)) >= CNN_DROPOUT
            h = tf.where(keep, h / (1.0 - CNN_DROPOUT), tf.zeros_like(h))
        return tf.matmul(h, w) + b

    def step(self, x: Any, y: Any) -> Any:
        """One Adam step on batch ``(x, y)``; returns its loss."""
        import tensorflow as tf

        with tf.GradientTape() as tape:
            logits = self.logits(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, self.params)
        b1, b2, eps, lr = ADAM["beta_1"], ADAM["beta_2"], ADAM["epsilon"], ADAM["learning_rate"]
        t = self.t.assign_add(1.0)
        lr_t = lr * tf.sqrt(1.0 - tf.pow(b2, t)) / (1.0 - tf.pow(b1, t))
        for p, m, v, g in zip(self.params, self.m, self.v, grads):
            m.assign_add((g - m) * (1.0 - b1))
            v.assign_add((g * g - v) * (1.0 - b2))
            p.assign_sub(lr_t * m / (tf.sqrt(v) + eps))
        return loss


def run(model: str, variant: str, data: BenchData, config: BenchConfig, *, device: str = "cpu") -> Measurement:
    """Train ``model`` with the hand-written TensorFlow ``variant`` on ``device`` at ``config.precision`` and
    measure it.

    ``float32`` turns TensorFlow's TF32 off (its default allows TF32 on a GPU that has it), ``tf32`` turns
    it on; the switch is process-wide, so it is restored afterwards. Other precisions are refused.
    """
    import tensorflow as tf

    if config.precision not in PRECISIONS:
        raise Refused(f"the hand-written TensorFlow baseline runs {' and '.join(PRECISIONS)} only")
    if variant not in VARIANTS:
        raise ValueError(f"unknown TensorFlow variant {variant!r}; expected one of {VARIANTS}")
    if device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise Refused("--device gpu: TensorFlow sees no GPU")
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(config.precision == "tf32")
    try:
        with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
            return _run(model, variant, data, config)
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before)


def _run(model: str, variant: str, data: BenchData, config: BenchConfig) -> Measurement:
    import tensorflow as tf

    b = min(config.batch_size, len(data.x_train))
    n = len(data.x_train)
    steps = config.steps_per_epoch(n)
    x_all, y_all = tf.constant(data.x_train), tf.constant(data.y_train)
    trainer = _Trainer(model, config)
    jit = variant.endswith("(XLA)")

    def batches(order: np.ndarray) -> Any:
        """The epoch's batch indices, (steps, b): row i is batch i (a static shape, as XLA needs)."""
        return tf.constant(order[: steps * b].reshape(steps, b))

    if variant.startswith("tf.function step"):

        @tf.function(jit_compile=jit)
        def step(x: Any, y: Any, idx: Any, i: Any) -> Any:
            rows = tf.gather(
                idx, i
            )  # not idx[i]: XLA would take a slice start as a compile-time constant (one compile per step)
            return trainer.step(tf.gather(x, rows), tf.gather(y, rows))

        def run_epoch(order: np.ndarray) -> float:
            idx = batches(order)
            loss_sum = tf.zeros((), tf.float32)
            for i in tf.range(steps):
                loss_sum += step(x_all, y_all, idx, i)
            return float(loss_sum) / steps

    else:

        @tf.function(jit_compile=jit)
        def epoch(x: Any, y: Any, idx: Any) -> Any:
            loss_sum = tf.zeros((), tf.float32)
            for i in tf.range(steps):
                rows = tf.gather(idx, i)
                loss_sum += trainer.step(tf.gather(x, rows), tf.gather(y, rows))
            return loss_sum / steps

        def run_epoch(order: np.ndarray) -> float:
            return float(epoch(x_all, y_all, batches(order)))

    seconds, last_loss = time_epochs(config, n, run_epoch)

    def predict(x: Any) -> Any:
        return tf.argmax(trainer.logits(tf.constant(x), training=False), axis=-1, output_type=tf.int32)

    correct = sum(
        int(tf.reduce_sum(tf.cast(predict(data.x_test[s:e]) == data.y_test[s:e], tf.int32)))
        for s, e in chunks(len(data.x_test))
    )
    return Measurement(
        model=model,
        engine="tensorflow",
        implementation=f"hand: {variant}",
        epoch_seconds=seconds,
        examples_per_epoch=steps * b,
        final_train_loss=last_loss,
        test_accuracy=correct / max(len(data.x_test), 1),
        notes="dropout: tf.random.Generator" if model == "cnn" else "",
        precision=config.precision,
    )
