"""Hand-written TensorFlow: ``tf.Variable`` weights, ``tf.GradientTape`` and ``tf.function``.

The data live in tensors on the device; the batch is gathered inside the compiled function from the
epoch's permutation. Three versions:

* ``tf.function step``: one graph-mode training step per batch, called from Python;
* ``tf.function step (XLA)``: the same step with ``jit_compile=True``;
* ``tf.function epoch``: the whole epoch as one ``tf.function`` whose loop over ``tf.range`` becomes
  a ``tf.while_loop``.

Adam is written out (Keras's formula and defaults). Dropout in the convnet uses TensorFlow's own RNG
(a ``tf.random.Generator``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import chunks, time_epochs
from .data import BenchData
from .result import Measurement
from .settings import ADAM, CNN_DROPOUT, BenchConfig, weight_list

VARIANTS: tuple[str, ...] = ("tf.function step", "tf.function step (XLA)", "tf.function epoch")


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


def run(model: str, variant: str, data: BenchData, config: BenchConfig) -> Measurement:
    """Train ``model`` with the hand-written TensorFlow ``variant`` and measure it."""
    import tensorflow as tf

    b = min(config.batch_size, len(data.x_train))
    n = len(data.x_train)
    steps = config.steps_per_epoch(n)
    x_all, y_all = tf.constant(data.x_train), tf.constant(data.y_train)
    trainer = _Trainer(model, config)

    if variant in ("tf.function step", "tf.function step (XLA)"):

        @tf.function(jit_compile=variant.endswith("(XLA)"))
        def step(perm: Any, i: Any) -> Any:
            idx = perm[i * b : (i + 1) * b]
            return trainer.step(tf.gather(x_all, idx), tf.gather(y_all, idx))

        def run_epoch(order: np.ndarray) -> float:
            perm = tf.constant(order)
            loss_sum = tf.zeros((), tf.float32)
            for i in tf.range(steps):
                loss_sum += step(perm, i)
            return float(loss_sum) / steps

    elif variant == "tf.function epoch":

        @tf.function
        def epoch(perm: Any) -> Any:
            loss_sum = tf.zeros((), tf.float32)
            for i in tf.range(steps):
                idx = perm[i * b : (i + 1) * b]
                loss_sum += trainer.step(tf.gather(x_all, idx), tf.gather(y_all, idx))
            return loss_sum / steps

        def run_epoch(order: np.ndarray) -> float:
            return float(epoch(tf.constant(order)))

    else:
        raise ValueError(f"unknown TensorFlow variant {variant!r}; expected one of {VARIANTS}")

    seconds, last_loss = time_epochs(config, n, run_epoch)

    def predict(x: Any) -> Any:
        return tf.argmax(trainer.logits(tf.constant(x), training=False), axis=-1, output_type=tf.int32)

    correct = sum(int(tf.reduce_sum(tf.cast(predict(data.x_test[s:e]) == data.y_test[s:e], tf.int32))) for s, e in chunks(len(data.x_test)))
    return Measurement(
        model=model,
        engine="tensorflow",
        implementation=f"hand: {variant}",
        epoch_seconds=seconds,
        examples_per_epoch=steps * b,
        final_train_loss=last_loss,
        test_accuracy=correct / max(len(data.x_test), 1),
        notes="dropout: tf.random.Generator" if model == "cnn" else "",
    )
