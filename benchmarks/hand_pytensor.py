"""Hand-written PyTensor (Theano's maintained successor), in the classic Theano style.

Training data, weights and Adam slots are ``shared`` variables; one ``pytensor.function([i], loss,
updates=..., givens=...)`` runs batch ``i`` of the epoch, the batch taken by index from the shared data
through ``givens``; Python loops over the batches. PyTensor has no fast convolution or pooling op any
more, so the convnet's convolutions are written as im2col (nine shifted slices concatenated) plus one
``dot``, and max pooling as reshape + max. Three compile modes:

* ``C``: the C virtual machine (mode ``CVM``; PyTensor 3's default ``FAST_RUN`` is Numba), whose ``dot``
  calls the BLAS named by ``blas__ldflags`` (the harness sets ``-lopenblas`` where Debian's OpenBLAS is
  installed, see :func:`configure_env`);
* ``Numba``: PyTensor's Numba linker;
* ``JAX``: PyTensor's JAX linker (the graph run by XLA), the fastest of the three in float32 on the CPU
  (measured; see nnspec/backends/theano/config.py). The shared data and each epoch's order are held as
  JAX arrays (else every call copies the whole NumPy data set into JAX), the batch is a gather of
  ``b`` indices (JAX needs static slice sizes), and losses are read back once per epoch, since the
  linker's calls are asynchronous.

Dropout in the convnet uses PyTensor's own RNG (a shared generator, ``pt.random.shared_rng``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import chunks, time_epochs
from .data import BenchData
from .result import Measurement
from .settings import ADAM, CNN_DROPOUT, BenchConfig, weight_list

VARIANTS: tuple[str, ...] = ("C", "Numba", "JAX")
#: PyTensor compile mode per variant.
MODES = {"C": "CVM", "Numba": "NUMBA", "JAX": "JAX"}

#: Debian's OpenBLAS (package libopenblas-dev); linked into PyTensor's C code when present.
OPENBLAS_PATHS: tuple[str, ...] = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so",
)


def configure_env(cold_compiledir: bool = False) -> str:
    """Set ``PYTENSOR_FLAGS`` before PyTensor is imported; returns a description of what was set.

    Adds ``blas__ldflags=-lopenblas`` when OpenBLAS is installed and no BLAS flag was given, and, with
    ``cold_compiledir``, points ``base_compiledir`` at a new empty folder so that compile times are cold.
    """
    flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f]
    notes = []
    if not any(f.startswith("blas__ldflags") or f.startswith("blas.ldflags") for f in flags):
        lib = next((p for p in OPENBLAS_PATHS if Path(p).exists()), None)
        if lib:
            flags.append(f"blas__ldflags=-L{Path(lib).parent} -lopenblas")
            notes.append("blas__ldflags=-lopenblas")
    if cold_compiledir:
        folder = tempfile.mkdtemp(prefix="nnspec-bench-pytensor-")
        flags.append(f"base_compiledir={folder}")
        notes.append(f"base_compiledir={folder} (cold)")
    os.environ["PYTENSOR_FLAGS"] = ",".join(flags)
    return "; ".join(notes)


def _conv_relu(
    x: Any, kernel: Any, bias: Any, shape: tuple[int, int, int], kernel_shape: tuple[int, int, int, int]
) -> Any:
    """Valid 2-D convolution + bias + relu as im2col and one matrix product (channels last)."""
    import pytensor.tensor as pt

    h, w, c = shape
    kh, kw, _, f = kernel_shape
    oh, ow = h - kh + 1, w - kw + 1
    # Patch feature order (i, j, channel) matches the kernel's [kh, kw, in, out] layout flattened.
    patches = pt.concatenate([x[:, i : i + oh, j : j + ow, :] for i in range(kh) for j in range(kw)], axis=3)
    out = pt.dot(patches.reshape((-1, kh * kw * c)), kernel.reshape((kh * kw * c, f))) + bias
    return pt.maximum(out, 0.0).reshape((-1, oh, ow, f))


def _max_pool2(x: Any, shape: tuple[int, int, int]) -> Any:
    """2x2 max pooling, stride 2, valid (odd rows and columns dropped)."""
    h, w, c = shape
    ph, pw = h // 2, w // 2
    return x[:, : 2 * ph, : 2 * pw, :].reshape((-1, ph, 2, pw, 2, c)).max(axis=(2, 4))


def _logits(
    model: str, params: list[Any], x: Any, dropout_rng: Any | None = None, updates: list[Any] | None = None
) -> Any:
    """The model's logits; with ``dropout_rng`` (a shared generator) dropout is on and the generator's
    update is appended to ``updates``."""
    import pytensor.tensor as pt

    if model == "mlp":
        w1, b1, w2, b2 = params
        h = pt.maximum(pt.dot(x.reshape((-1, 784)), w1) + b1, 0.0)
        return pt.dot(h, w2) + b2
    k1, c1, k2, c2, w, b = params
    h = _max_pool2(_conv_relu(x, k1, c1, (28, 28, 1), (3, 3, 1, 32)), (26, 26, 32))
    h = _max_pool2(_conv_relu(h, k2, c2, (13, 13, 32), (3, 3, 32, 64)), (11, 11, 64))
    h = h.reshape((-1, 5 * 5 * 64))
    if dropout_rng is not None:
        next_rng, u = dropout_rng.uniform(size=h.shape, dtype="float32")
        updates.append((dropout_rng, next_rng))
        keep = u >= CNN_DROPOUT
        h = pt.switch(keep, h * np.float32(1.0 / (1.0 - CNN_DROPOUT)), np.float32(0.0))
    return pt.dot(h, w) + b


def _build(
    model: str, variant: str, data: BenchData, config: BenchConfig, with_predict: bool = True
) -> tuple[Any, Any, Any, Any, float]:
    """Graph and compiled functions; returns (train_fn, perm_shared, predict_fn, params, seconds to compile
    train_fn)."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.tensor.special import log_softmax

    b = min(config.batch_size, len(data.x_train))
    floatx = np.float32
    x_shared = pytensor.shared(data.x_train, name="x_train", borrow=True)
    y_shared = pytensor.shared(data.y_train, name="y_train", borrow=True)
    perm = pytensor.shared(np.zeros(len(data.x_train), np.int32), name="perm")
    params = [
        pytensor.shared(w, name=f"p{i}", shape=w.shape) for i, w in enumerate(weight_list(model, config))
    ]  # fixed shapes: in-place updates
    ms = [pytensor.shared(np.zeros_like(w), shape=w.shape) for w in (p.get_value() for p in params)]
    vs = [pytensor.shared(np.zeros_like(w), shape=w.shape) for w in (p.get_value() for p in params)]
    t = pytensor.shared(floatx(0.0), name="t")

    # Static batch shapes (every batch is full) let PyTensor specialise the graph.
    x = pt.tensor("x", dtype="float32", shape=(b, 28, 28, 1))
    y = pt.tensor("y", dtype="int32", shape=(b,))
    i = pt.iscalar("i")
    rng = pt.random.shared_rng(seed=config.seed, name="dropout_rng") if model == "cnn" else None
    rng_updates: list[Any] = []
    logp = log_softmax(_logits(model, params, x, rng, rng_updates), axis=-1)
    loss = -pt.mean(logp[pt.arange(y.shape[0]), y])
    grads = pytensor.grad(loss, params)

    b1, b2, eps, lr = (floatx(ADAM[k]) for k in ("beta_1", "beta_2", "epsilon", "learning_rate"))
    t_next = t + floatx(1.0)
    lr_t = lr * pt.sqrt(floatx(1.0) - b2**t_next) / (floatx(1.0) - b1**t_next)
    updates = [(t, t_next), *rng_updates]
    for p, m, v, g in zip(params, ms, vs, grads):
        m_next = m + (g - m) * (floatx(1.0) - b1)
        v_next = v + (g * g - v) * (floatx(1.0) - b2)
        updates += [(m, m_next), (v, v_next), (p, p - lr_t * m_next / (pt.sqrt(v_next) + eps))]

    batch = perm[i * b : (i + 1) * b]
    mode = MODES[variant]
    if variant == "JAX":
        batch = perm[i * b + pt.arange(b)]  # JAX wants static slice sizes: a gather of b indices
        _import_jax_dispatch()
        _to_jax_device(x_shared, y_shared)
    start = time.perf_counter()
    train = pytensor.function(
        [i],
        loss,
        updates=updates,
        givens={x: pt.specify_shape(x_shared[batch], x.type.shape), y: pt.specify_shape(y_shared[batch], (b,))},
        mode=mode,
    )
    seconds = time.perf_counter() - start
    predict = None
    if with_predict:
        x_eval = pt.tensor4("x_eval", dtype="float32")
        predict = pytensor.function([x_eval], pt.argmax(_logits(model, params, x_eval, None), axis=-1), mode=mode)
    return train, perm, predict, params, seconds


def _import_jax_dispatch() -> None:
    """Import PyTensor's JAX dispatch, which sets JAX's global ``jax_enable_x64`` from floatX, and put the
    setting back: JAX code in the same process (the harness's JAX rows) keeps its float32."""
    import jax

    before = bool(jax.config.jax_enable_x64)
    import pytensor.link.jax.dispatch  # noqa: F401

    jax.config.update("jax_enable_x64", before)


def _to_jax_device(*variables: Any) -> None:
    """Hold the shared data as JAX arrays: the JAX linker would otherwise copy the whole NumPy data set
    into JAX on every call."""
    import jax

    for var in variables:
        var.container.storage[0] = jax.device_put(var.get_value(borrow=True))


def _warm_compile_seconds(model: str, variant: str, data: BenchData, config: BenchConfig) -> float:
    """Build and compile the training function again and run it once (PyTensor's cache is warm by now)."""
    start = time.perf_counter()
    train, perm, _, _, _ = _build(model, variant, data, config, with_predict=False)
    perm.set_value(config.order(len(data.x_train), 0), borrow=True)
    train(0)
    return time.perf_counter() - start


def run(model: str, variant: str, data: BenchData, config: BenchConfig, *, warm_compile: bool = True) -> Measurement:
    """Train ``model`` with the hand-written PyTensor ``variant`` and measure it.

    With ``warm_compile`` the same graph is built, compiled and run for one batch a second time, which
    PyTensor serves from its compile cache: that time is reported as ``compile_warm_s``.
    """
    import pytensor

    if variant not in VARIANTS:
        raise ValueError(f"unknown PyTensor variant {variant!r}; expected one of {VARIANTS}")
    n = len(data.x_train)
    steps = config.steps_per_epoch(n)
    train, perm, predict, _, compile_seconds = _build(model, variant, data, config)

    def run_epoch(order: np.ndarray) -> float:
        perm.set_value(order, borrow=True)
        if variant == "JAX":
            _to_jax_device(perm)
        losses = [train(i) for i in range(steps)]  # read back once: the JAX linker's calls are asynchronous
        return sum(float(v) for v in losses) / steps

    seconds, last_loss = time_epochs(config, n, run_epoch)
    correct = sum(int(np.sum(predict(data.x_test[s:e]) == data.y_test[s:e])) for s, e in chunks(len(data.x_test)))
    warm = _warm_compile_seconds(model, variant, data, config) if warm_compile else None
    blas = pytensor.config.blas__ldflags or "none (NumPy C-API fallback)"
    notes = f"mode {MODES[variant]}{' (C linker)' if variant == 'C' else ''}, BLAS: {blas if variant == 'C' else 'n/a'}"
    if model == "cnn":
        notes += "; conv as im2col + dot; dropout: pt.random.shared_rng"
    return Measurement(
        model=model,
        engine="theano",
        implementation=f"hand: function+updates ({variant})",
        epoch_seconds=seconds,
        examples_per_epoch=steps * min(config.batch_size, n),
        final_train_loss=last_loss,
        test_accuracy=correct / max(len(data.x_test), 1),
        compile_seconds=compile_seconds,
        compile_warm_seconds=warm,
        notes=notes,
    )
