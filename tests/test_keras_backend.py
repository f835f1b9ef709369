"""The Keras 3 backend: lazy import, masks bit for bit, forward, gradients and training against the NumPy reference.

Keras runs on the engine KERAS_BACKEND names (tests/conftest.py sets tensorflow, Keras's own default, when unset);
one test (slow tier) runs the same checks in a subprocess on the other trainable engine, so CI covers both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nnspec import reference
from nnspec.backends import get_backend
from nnspec.backends.keras.backend import KerasBackend, configured_engine
from nnspec.compiler.ir import OptimizerConfig, ScheduleConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.errors import BackendError
from nnspec.reference.backward import loss_and_gradients as reference_loss_and_gradients
from nnspec.reference.train import ReferenceTrainer
from nnspec.semantics.dropout import keep_mask, numpy_keep_mask

keras = pytest.importorskip("keras")
ENGINE = configured_engine()
OTHER_ENGINE = {"jax": "tensorflow", "tensorflow": "jax"}[ENGINE]


def _cnn(
    optimizer: OptimizerConfig | None = None,
    schedule: ScheduleConfig | None = None,
    weight_decay: float = 0.0,
    seed: int = 3,
):
    train = TrainConfig(
        optimizer=optimizer
        or OptimizerConfig("adam", {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
        schedule=schedule or ScheduleConfig(),
        weight_decay=weight_decay,
        batch_size=8,
        seed=seed,
    )
    layers = [
        ("conv2d", {"filters": 3, "kernel": 3, "padding": "same", "activation": "relu"}),
        ("avg_pool2d", {"size": 2, "padding": "same"}),
        ("conv2d", {"filters": 4, "kernel": [2, 3], "strides": 2, "activation": "tanh"}),
        ("max_pool2d", {"size": 1}),
        "flatten",
        ("dropout", {"rate": 0.4}),
        ("dense", {"units": 6, "activation": "gelu"}),
        ("reshape", {"shape": [2, 3]}),
        "flatten",
        ("activation", {"activation": "elu"}),
        ("dropout", {"rate": 0.25}),
        ("dense", {"units": 5}),
        "softmax",
    ]
    return make_graph((7, 7, 2), layers, train=train)


def _batch(g, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *g.input_shape)).astype(np.float32), rng.integers(0, g.output_shape[-1], n).astype(
        np.int32
    )


def _compile(g, weights=None):
    return get_backend("keras").compile(g, weights, device="cpu", dtype="float32")


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / max(float(np.max(np.abs(b))), 1e-3))


def test_importing_the_backend_module_imports_no_keras() -> None:
    code = (
        "import sys, nnspec.backends.keras.backend as b; ok, why = b.KerasBackend.availability(); "
        "print(ok, 'keras' in sys.modules, 'jax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ))
    assert out.stdout.split() == ["True", "False", "False"]


def test_engine_version_names_keras_and_engine() -> None:
    version = get_backend("keras").engine_version()
    assert version.startswith(f"keras {keras.__version__} on {ENGINE} ")


def test_unsupported_keras_engine_is_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nnspec.backends.keras.backend.configured_engine", lambda: "torch")
    ok, why = KerasBackend.availability()
    assert not ok and "torch" in why and "jax or tensorflow" in why


@pytest.mark.parametrize(
    "shape, rate, step",
    [((3, 5), 0.5, 0), ((2, 4, 4, 3), 0.1, 7), ((1, 1000), 0.9, 123456), ((4, 33), 0.25, 2**31 + 5)],
)
def test_mask_is_bit_identical_to_numpy(shape: tuple[int, ...], rate: float, step: int) -> None:
    from keras import ops as K

    from nnspec.backends.keras.ops import KerasOps

    ops = KerasOps("float32")
    want = numpy_keep_mask(11, 2, step, shape, rate)
    eager = K.convert_to_numpy(keep_mask(ops, 11, 2, step, shape, rate))
    np.testing.assert_array_equal(eager, want)
    traced_step = K.convert_to_tensor(np.uint32(step & 0xFFFFFFFF))  # a device scalar, as in the training step
    np.testing.assert_array_equal(K.convert_to_numpy(keep_mask(ops, 11, 2, traced_step, shape, rate)), want)


def test_counter_dropout_applies_the_shared_mask() -> None:
    g = _cnn()
    model = _compile(g)
    x, _ = _batch(g, 4)
    for step in (0, 5):
        outs = model.layer_outputs(x, training=True, step=step)
        for node in g.nodes:
            if node.op == "dropout":
                before, after = outs[node.index - 1], outs[node.index]
                keep = numpy_keep_mask(g.train.seed, node.index, step, before.shape, node.attrs["rate"])
                np.testing.assert_array_equal(
                    after, np.where(keep, before * np.float32(1.0 / (1.0 - node.attrs["rate"])), 0.0)
                )
    off = model.layer_outputs(x)
    drop = [n.index for n in g.nodes if n.op == "dropout"][0]
    np.testing.assert_array_equal(off[drop], off[drop - 1])


def test_forward_matches_reference() -> None:
    g = _cnn()
    model = _compile(g)
    x, _ = _batch(g, 6)
    w = model.get_weights()
    for training in (False, True):
        outs = model.layer_outputs(x, training=training, step=3)
        refs = reference.layer_outputs(g, w, x, training=training, step=3)
        for node, out, ref in zip(g.nodes, outs, refs):
            assert out.shape == (6, *node.output_shape) and out.dtype == np.float32
            assert _max_rel(out, ref) < 1e-5, node.name
    np.testing.assert_allclose(model.predict(x), reference.predict(g, w, x), atol=1e-6)


def test_loss_and_gradients_match_reference() -> None:
    g = _cnn()
    model = _compile(g)
    x, y = _batch(g, 8)
    loss, grads = model.loss_and_gradients(x, y, step=4)
    ref_loss, ref_grads = reference_loss_and_gradients(g, model.get_weights(), x, y, step=4)
    assert abs(loss - ref_loss) < 1e-5 * max(1.0, abs(ref_loss))
    assert set(grads) == set(ref_grads)
    for key in grads:
        assert grads[key].shape == ref_grads[key].shape
        assert _max_rel(grads[key], ref_grads[key]) < 1e-4, key


@pytest.mark.parametrize(
    "optimizer, schedule, weight_decay",
    [
        (
            OptimizerConfig("sgd", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
            ScheduleConfig("step", {"every": 2, "factor": 0.5}),
            0.0,
        ),
        (
            OptimizerConfig("adam", {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
            ScheduleConfig("cosine", {"decay_steps": 5, "alpha": 0.1}),
            0.01,
        ),
        (
            OptimizerConfig("rmsprop", {"learning_rate": 0.005, "rho": 0.9, "momentum": 0.5, "epsilon": 1e-7}),
            ScheduleConfig(),
            0.0,
        ),
    ],
)
def test_training_steps_follow_the_reference(
    optimizer: OptimizerConfig, schedule: ScheduleConfig, weight_decay: float
) -> None:
    g = _cnn(optimizer, schedule, weight_decay)
    model = _compile(g)
    trainer = ReferenceTrainer.start(g, model.get_weights())
    x, y = _batch(g, 8 * 3, seed=2)
    for step in range(3):
        xb, yb = x[8 * step : 8 * step + 8], y[8 * step : 8 * step + 8]
        loss = model.train_step(xb, yb)
        ref = trainer.train_step(xb, yb)
        assert abs(loss - ref) < 1e-5 * max(1.0, abs(ref))
    assert model.step == 3
    for key, value in model.get_weights().items():
        assert _max_rel(value, trainer.weights[key]) < 1e-4, key


def test_run_epoch_uses_the_given_order_and_steps() -> None:
    g = _cnn()
    x, y = _batch(g, 27, seed=5)
    order = np.random.default_rng([0, 0]).permutation(27)
    model = _compile(g)
    trainer = ReferenceTrainer.start(g, model.get_weights())
    loss, accuracy = model.run_epoch(model.put(x), model.put(y), order, 8)
    losses = [trainer.train_step(x[order[i * 8 : i * 8 + 8]], y[order[i * 8 : i * 8 + 8]]) for i in range(3)]
    assert model.step == 3 and 0.0 <= accuracy <= 1.0
    assert abs(loss - np.mean(losses)) < 1e-5
    for key, value in model.get_weights().items():
        assert _max_rel(value, trainer.weights[key]) < 1e-4, key
    eval_loss, eval_acc = model.evaluate_arrays(model.put(x), model.put(y))
    assert abs(eval_loss - reference.evaluate(g, trainer.weights, x, y)[0]) < 1e-4


def test_weights_round_trip_and_to_keras() -> None:
    g = _cnn()
    model = _compile(g)
    w = {k: v + 0.5 for k, v in model.get_weights().items()}
    model.set_weights(w)
    got = model.get_weights()
    assert all(np.array_equal(got[k], w[k].astype(np.float32)) for k in w)
    x, _ = _batch(g, 3)
    np.testing.assert_allclose(model.to_keras().predict(x, verbose=0), model.predict(x), atol=1e-6)


def test_counter_dropout_model_saves_and_loads_in_safe_mode(tmp_path) -> None:
    from nnspec.backends.keras.layers import CounterDropout

    g = _cnn()
    model = _compile(g).to_keras()
    path = tmp_path / "with_counter.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert any(isinstance(layer, CounterDropout) for layer in loaded.layers)
    x, _ = _batch(g, 2)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    from nnspec.interop.keras_import import import_keras

    imported = import_keras(str(path))  # nnspec's own dropout layer imports back as dropout
    assert [(n.op, dict(n.attrs)) for n in imported.graph.nodes] == [(n.op, dict(n.attrs)) for n in g.nodes]


def test_float64_is_refused_with_its_reason_on_jax() -> None:
    g = _cnn()
    backend = get_backend("keras")
    if ENGINE == "jax":
        assert "float64" not in backend.capabilities().dtypes
        with pytest.raises(BackendError, match="float64.*KERAS_BACKEND=tensorflow"):
            backend.compile(g, dtype="float64")
    else:
        assert get_backend("keras").compile(g, dtype="float64").get_weights()["dense_1.kernel"].dtype == np.float64


_OTHER_ENGINE_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import keras
    from nnspec import reference
    from nnspec.backends import get_backend
    from nnspec.reference.train import ReferenceTrainer
    from tests.test_keras_backend import _batch, _cnn, _max_rel

    assert keras.backend.backend() == "{engine}"
    g = _cnn()
    dtypes = get_backend("keras").capabilities().dtypes
    for dtype in dtypes:
        model = get_backend("keras").compile(g, device="cpu", dtype=dtype)
        x, y = _batch(g, 8)
        x = x.astype(dtype)
        tol = 1e-5 if dtype == "float32" else 1e-10
        expected = reference.layer_outputs(g, model.get_weights(), x, training=True, step=2)
        for out, ref in zip(model.layer_outputs(x, training=True, step=2), expected):
            assert out.dtype == np.dtype(dtype) and _max_rel(out, ref) < tol
        trainer = ReferenceTrainer.start(g, model.get_weights())
        for _ in range(2):
            assert abs(model.train_step(x, y) - trainer.train_step(x, y)) < tol * 10
        for key, value in model.get_weights().items():
            assert _max_rel(value, trainer.weights[key]) < tol * 10, key
    print("ok", ",".join(dtypes))
    """
)


@pytest.mark.slow
def test_the_other_keras_engine_matches_the_reference() -> None:
    pytest.importorskip(OTHER_ENGINE)
    env = {**os.environ, "KERAS_BACKEND": OTHER_ENGINE, "TF_CPP_MIN_LOG_LEVEL": "3"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", _OTHER_ENGINE_SCRIPT.format(engine=OTHER_ENGINE)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().startswith("ok")
