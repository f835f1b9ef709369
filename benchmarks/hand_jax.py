"""Hand-written JAX: what a competent JAX user writes without a framework.

Two versions, both with the data resident on the device and the batch gathered inside the compiled
function from the epoch's permutation:

* ``jit step``: one ``jax.jit`` training step (state donated), called once per batch from Python;
* ``scan epoch``: the whole epoch as one ``lax.scan`` inside one ``jax.jit`` call.

Adam is written out (Keras's formula and defaults, as every implementation here). Dropout in the
convnet uses JAX's own RNG (``jax.random.bernoulli`` with a key folded with the step number).

Precision: the code is traced under ``jax.default_matmul_precision``: ``highest`` for ``float32`` (JAX's
default would let a GPU use TF32 for float32 products and convolutions) and ``tensorfloat32`` for ``tf32``;
other precisions are refused. On the CPU both compute in float32.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from .common import chunks, time_epochs
from .data import BenchData
from .result import Measurement, Refused
from .settings import ADAM, CNN_DROPOUT, BenchConfig, weight_list

VARIANTS: tuple[str, ...] = ("jit step", "scan epoch")
#: The precisions this baseline runs; the harness shows the others as refused rows.
PRECISIONS: tuple[str, ...] = ("float32", "tf32")
#: ``jax.default_matmul_precision`` per precision.
MATMUL_PRECISION = {"float32": "highest", "tf32": "tensorfloat32"}


def _logits(model: str, params: list[Any], x: Any, key: Any | None) -> Any:
    import jax
    from jax import lax

    if model == "mlp":
        w1, b1, w2, b2 = params
        h = jax.nn.relu(x.reshape(x.shape[0], -1) @ w1 + b1)
        return h @ w2 + b2
    k1, c1, k2, c2, w, b = params
    dn = ("NHWC", "HWIO", "NHWC")

    def conv_relu(h: Any, k: Any, c: Any) -> Any:
        return jax.nn.relu(lax.conv_general_dilated(h, k, (1, 1), "VALID", dimension_numbers=dn) + c)

    def pool(h: Any) -> Any:
        return lax.reduce_window(h, -np.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    h = pool(conv_relu(pool(conv_relu(x, k1, c1)), k2, c2))
    h = h.reshape(h.shape[0], -1)
    if key is not None:
        keep = jax.random.bernoulli(key, 1.0 - CNN_DROPOUT, h.shape)
        h = jax.numpy.where(keep, h / (1.0 - CNN_DROPOUT), 0.0)
    return h @ w + b


def _loss(model: str, params: list[Any], x: Any, y: Any, key: Any | None) -> Any:
    import jax

    logp = jax.nn.log_softmax(_logits(model, params, x, key))
    return -jax.numpy.mean(jax.numpy.take_along_axis(logp, y[:, None], axis=1))


def _adam(
    params: list[Any], grads: list[Any], m: list[Any], v: list[Any], t: Any
) -> tuple[list[Any], list[Any], list[Any]]:
    import jax.numpy as jnp

    b1, b2, eps, lr = ADAM["beta_1"], ADAM["beta_2"], ADAM["epsilon"], ADAM["learning_rate"]
    tf = (t + 1).astype(jnp.float32)
    lr_t = lr * jnp.sqrt(1.0 - b2**tf) / (1.0 - b1**tf)
    m = [mi + (g - mi) * (1.0 - b1) for mi, g in zip(m, grads)]
    v = [vi + (g * g - vi) * (1.0 - b2) for vi, g in zip(v, grads)]
    params = [p - lr_t * mi / (jnp.sqrt(vi) + eps) for p, mi, vi in zip(params, m, v)]
    return params, m, v


def _train_step(model: str, seed: int, state: tuple, xb: Any, yb: Any) -> tuple[tuple, Any]:
    import jax

    params, m, v, t = state
    key = jax.random.fold_in(jax.random.key(seed), t) if model == "cnn" else None
    loss, grads = jax.value_and_grad(partial(_loss, model))(params, xb, yb, key)
    params, m, v = _adam(params, grads, m, v, t)
    return (params, m, v, t + 1), loss


def run(model: str, variant: str, data: BenchData, config: BenchConfig, *, device: str = "cpu") -> Measurement:
    """Train ``model`` with the hand-written JAX ``variant`` on ``device`` (``cpu`` or ``gpu``) at
    ``config.precision``."""
    import jax

    if config.precision not in PRECISIONS:
        raise Refused(f"the hand-written JAX baseline runs {' and '.join(PRECISIONS)} only")
    if device == "gpu" and not any(d.platform == "gpu" for d in jax.devices()):
        raise Refused("--device gpu: JAX sees no GPU")
    with jax.default_matmul_precision(MATMUL_PRECISION[config.precision]):
        return _run(model, variant, data, config, device)


def _run(model: str, variant: str, data: BenchData, config: BenchConfig, device: str) -> Measurement:
    import jax
    import jax.numpy as jnp
    from jax import lax

    b = min(config.batch_size, len(data.x_train))
    n = len(data.x_train)
    steps = config.steps_per_epoch(n)
    dev = jax.devices(device)[0]
    x_all, y_all = jax.device_put(data.x_train, dev), jax.device_put(data.y_train, dev)
    params = [jax.device_put(w, dev) for w in weight_list(model, config)]
    zeros = [np.zeros_like(w) for w in weight_list(model, config)]
    # Everything committed to ``dev`` from the start, so the second call does not recompile for new placements.
    state: Any = jax.device_put((params, zeros, zeros, np.int32(0)), dev)

    if variant == "jit step":

        @partial(jax.jit, donate_argnums=(0, 1))
        def step(state: tuple, loss_sum: Any, x: Any, y: Any, perm: Any, i: Any) -> tuple[tuple, Any]:
            idx = lax.dynamic_slice_in_dim(perm, i * b, b)
            state, loss = _train_step(model, config.seed, state, x[idx], y[idx])
            return state, loss_sum + loss

        def run_epoch(order: np.ndarray) -> float:
            nonlocal state
            perm = jax.device_put(order, dev)
            loss_sum = jax.device_put(np.float32(0.0), dev)
            for i in range(steps):
                state, loss_sum = step(state, loss_sum, x_all, y_all, perm, i)
            return float(loss_sum) / steps

    elif variant == "scan epoch":

        @partial(jax.jit, donate_argnums=(0,))
        def epoch(state: tuple, x: Any, y: Any, perm: Any) -> tuple[tuple, Any]:
            def body(state: tuple, idx: Any) -> tuple[tuple, Any]:
                return _train_step(model, config.seed, state, x[idx], y[idx])

            state, losses = lax.scan(body, state, perm[: steps * b].reshape(steps, b))
            return state, jnp.mean(losses)

        def run_epoch(order: np.ndarray) -> float:
            nonlocal state
            state, loss = epoch(state, x_all, y_all, jax.device_put(order, dev))
            return float(loss)

    else:
        raise ValueError(f"unknown JAX variant {variant!r}; expected one of {VARIANTS}")

    seconds, last_loss = time_epochs(config, n, run_epoch)

    predict = jax.jit(lambda p, x: jnp.argmax(_logits(model, p, x, None), axis=-1))
    x_test = jax.device_put(data.x_test, dev)
    correct = sum(int(jnp.sum(predict(state[0], x_test[s:e]) == data.y_test[s:e])) for s, e in chunks(len(data.x_test)))
    return Measurement(
        model=model,
        engine="jax",
        implementation=f"hand: {variant}",
        epoch_seconds=seconds,
        examples_per_epoch=steps * b,
        final_train_loss=last_loss,
        test_accuracy=correct / max(len(data.x_test), 1),
        notes="dropout: jax.random" if model == "cnn" else "",
        extra={"device": str(dev)},
        precision=config.precision,
    )
