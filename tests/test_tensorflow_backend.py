"""TensorFlow-specific tests: quiet lazy import, dropout masks bit for bit, no retracing, exact evaluation,
the execution plans agreeing with each other and with the NumPy reference (a graph with running statistics
included), the registry's own lowerings, and parity with JAX."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from nnspec.backends import get_backend
from nnspec.compiler.init import initial_weights
from nnspec.compiler.ir import OptimizerConfig, ScheduleConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.errors import BackendError
from nnspec.reference import forward as reference
from nnspec.reference.train import ReferenceTrainer
from nnspec.semantics.dropout import numpy_keep_mask

ADAM = OptimizerConfig("adam", {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7})
CONVNET = [
    ("conv2d", {"filters": 4, "kernel": 3, "activation": "relu"}),
    ("max_pool2d", {"size": 2}),
    "flatten",
    ("dropout", {"rate": 0.5}),
    ("dense", {"units": 10}),
    "softmax",
]
MLP = [
    "flatten",
    ("dense", {"units": 32, "activation": "relu"}),
    ("dropout", {"rate": 0.25}),
    ("dense", {"units": 10}),
    "softmax",
]
#: Every v1 op, with odd sizes, strides and 'same' padding where TensorFlow's rule matters.
EVERY_OP = [
    ("conv2d", {"filters": 3, "kernel": (3, 2), "strides": 2, "padding": "same", "activation": "elu"}),
    ("avg_pool2d", {"size": 3, "strides": 2, "padding": "same"}),
    ("conv2d", {"filters": 4, "kernel": 2, "padding": "same", "activation": "gelu"}),
    ("max_pool2d", {"size": 2, "strides": 1, "padding": "same"}),
    "flatten",
    ("dropout", {"rate": 0.3}),
    ("dense", {"units": 12, "activation": "softplus"}),
    ("reshape", {"shape": (3, 4)}),
    ("activation", {"activation": "tanh"}),
    "flatten",
    ("dense", {"units": 5, "activation": "sigmoid"}),
    ("dense", {"units": 4}),
    "softmax",
]


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def _data(n: int, shape: tuple[int, ...], classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape)).astype(np.float32), rng.integers(0, classes, n).astype(np.int32)


def _every_op_graph(dtype: str = "float64"):
    train = TrainConfig(
        batch_size=8, optimizer=ADAM, schedule=ScheduleConfig("cosine", {"decay_steps": 10}), weight_decay=0.01, seed=3
    )
    return make_graph((9, 11, 2), EVERY_OP, train=train, dtype=dtype)


def test_import_nnspec_does_not_import_tensorflow() -> None:
    result = _run_python(
        "import sys, nnspec\n"
        "from nnspec.backends import backend_class, available_backends\n"
        "cls = backend_class('tf'); assert cls.availability()[0]; available_backends()\n"
        "import nnspec.backends.tensorflow.backend\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_tensorflow_start_up_is_quiet() -> None:
    result = _run_python(
        "import numpy as np, nnspec\n"
        "from nnspec.compiler.shapes import make_graph\n"
        "g = make_graph((4,), [('dense', {'units': 3}), ('dropout', {'rate': 0.5})])\n"
        "m = nnspec.compile(g, backend='tensorflow')\n"
        "assert m.plan.jit  # the XLA path must be quiet as well\n"
        "x, y = np.ones((32, 4), np.float32), np.zeros(32, np.int32)\n"
        "m.run_epoch(m.put(x), m.put(y), np.arange(32), 8)\n"
        "print(m.predict(x[:2]).shape)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 3)"
    assert result.stderr == ""


def test_real_import_errors_still_reach_the_user() -> None:
    result = _run_python(
        "import sys; sys.modules['tensorflow'] = None\n"
        "from nnspec.backends.tensorflow.engine import load_tensorflow\n"
        "try:\n    load_tensorflow()\nexcept ImportError as e:\n    print('ImportError', e)\n"
    )
    assert "ImportError" in result.stdout


@pytest.mark.parametrize("jit", [False, True])
def test_dropout_mask_is_bit_identical_to_numpy(jit: bool) -> None:
    import tensorflow as tf

    from nnspec.backends.tensorflow.ops import TensorFlowOps
    from nnspec.semantics.dropout import keep_mask

    ops = TensorFlowOps("float32")
    shape = (7, 5, 3)

    @tf.function(jit_compile=jit, input_signature=[tf.TensorSpec((), tf.int64)])
    def mask(step):
        return keep_mask(ops, 123456789, 4, step, shape, 0.37)

    for step in (0, 1, 2**31 + 5, 2**40 + 3):
        np.testing.assert_array_equal(
            mask(tf.constant(step, tf.int64)).numpy(), numpy_keep_mask(123456789, 4, step, shape, 0.37)
        )
    np.testing.assert_array_equal(
        keep_mask(ops, 2**33 + 1, 0, 9, shape, 0.5).numpy(), numpy_keep_mask(2**33 + 1, 0, 9, shape, 0.5)
    )


def test_native_relu_matches_the_shared_definition_with_ties_at_zero() -> None:
    """relu is lowered to tf.nn.relu: same values, and derivative 0 at exactly 0 (zero patches, zero bias)."""
    from nnspec.backends.tensorflow.layers import compiled_keep_mask
    from nnspec.reference.backward import loss_and_gradients as reference_gradients

    layers = [
        ("conv2d", {"filters": 4, "kernel": 3, "activation": "relu"}),
        "flatten",
        ("dropout", {"rate": 0.5}),
        ("dense", {"units": 6, "activation": "relu"}),
        ("activation", {"activation": "relu"}),
        ("dense", {"units": 3}),
        "softmax",
    ]
    graph = make_graph((6, 6, 1), layers, train=TrainConfig(batch_size=8, optimizer=ADAM, seed=3))
    weights = initial_weights(graph, dtype="float64")
    weights = {k: (np.zeros_like(v) if k.endswith("bias") else v) for k, v in weights.items()}
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 6, 6, 1))
    x[:, :3] = 0.0  # exact-zero pre-activations in the convolution's output
    y = rng.integers(0, 3, 8)
    model = get_backend("tensorflow").compile(graph, weights, dtype="float64")
    outputs = model.layer_outputs(x, training=True, step=11)
    for ours, theirs in zip(outputs, reference.layer_outputs(graph, weights, x, training=True, step=11)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
    assert (outputs[0] == 0).any() and (outputs[0] > 0).any()
    loss, grads = model.loss_and_gradients(x, y, step=11)
    ref_loss, ref_grads = reference_gradients(graph, weights, x, y, step=11)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for key, value in grads.items():
        np.testing.assert_allclose(value, ref_grads[key], rtol=1e-10, atol=1e-13)
    mask = compiled_keep_mask(3, 2, (8, 144), 0.5)
    for step in (0, 11, 2**32 + 7):
        np.testing.assert_array_equal(mask(np.int64(step)).numpy(), numpy_keep_mask(3, 2, step, (8, 144), 0.5))


@pytest.mark.parametrize(("fused", "jit"), [(True, False), (False, False), (True, True)])
def test_no_retracing_across_epochs_batches_and_calls(fused: bool, jit: bool) -> None:
    from nnspec.backends.tensorflow.model import ExecutionPlan

    graph = make_graph((8, 8, 1), CONVNET, train=TrainConfig(batch_size=16, optimizer=ADAM))
    model = get_backend("tensorflow").compile(graph, device="cpu")
    model.set_plan(ExecutionPlan(fused=fused, jit=jit))
    x, y = _data(100, (8, 8, 1), 10)
    xd, yd = model.put(x), model.put(y)
    for epoch in range(3):
        model.run_epoch(xd, yd, np.random.default_rng([0, epoch]).permutation(100), 16)
        model.evaluate_arrays(xd[:37], yd[:37])
        model.evaluate_arrays(xd, yd)
        model.predict(x[: 10 + epoch])
    key = "epoch" if fused else "step"
    assert model.trace_counts == {key: 1, "evaluate": 1, "predict": 1}
    assert model.step == 3 * (100 // 16)


def test_float64_epoch_matches_the_numpy_reference() -> None:
    graph = _every_op_graph("float64")
    weights = initial_weights(graph, dtype="float64")
    model = get_backend("tensorflow").compile(graph, weights, dtype="float64")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 9, 11, 2)), rng.integers(0, 4, 40)
    for training in (False, True):
        ours = model.layer_outputs(x[:8], training=training, step=5)
        theirs = reference.layer_outputs(graph, weights, x[:8], training=training, step=5)
        for a, b in zip(ours, theirs):
            assert a.dtype == np.float64
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    order = np.random.default_rng([3, 0]).permutation(40)
    loss, _ = model.run_epoch(model.put(x), model.put(y), order, 8)
    trainer = ReferenceTrainer.start(graph, weights)
    losses = [trainer.train_step(x[order[i : i + 8]], y[order[i : i + 8]]) for i in range(0, 40, 8)]
    assert loss == pytest.approx(np.mean(losses), rel=1e-10)
    for key, value in model.get_weights().items():
        np.testing.assert_allclose(value, trainer.weights[key], rtol=1e-9, atol=1e-12)


def test_plans_agree_and_train_step_matches_an_epoch() -> None:
    from nnspec.backends.tensorflow.model import ExecutionPlan

    graph = _every_op_graph("float64")
    x, y = _data(48, (9, 11, 2), 4)
    order = np.random.default_rng([3, 0]).permutation(48)
    results = []
    for plan in (
        ExecutionPlan(True, False),
        ExecutionPlan(False, False),
        ExecutionPlan(True, True),
        ExecutionPlan(False, True),
    ):
        model = get_backend("tensorflow").compile(graph, dtype="float64")
        model.set_plan(plan)
        model.run_epoch(model.put(x), model.put(y), order, 16)
        results.append(model.get_weights())
    stepped = get_backend("tensorflow").compile(graph, dtype="float64")
    for i in range(0, 48, 16):
        stepped.train_step(x[order[i : i + 16]], y[order[i : i + 16]])
    assert stepped.step == 3 and stepped.trace_counts["train_step"] == 1
    results.append(stepped.get_weights())
    for other in results[1:]:
        for key, value in results[0].items():
            np.testing.assert_allclose(other[key], value, rtol=1e-9, atol=1e-12)


def test_evaluate_counts_every_example_once() -> None:
    from nnspec.backends.tensorflow.model import EVAL_BATCH

    graph = make_graph(
        (6,), [("dense", {"units": 5, "activation": "tanh"}), ("dense", {"units": 3}), "softmax"], dtype="float64"
    )
    weights = initial_weights(graph, dtype="float64")
    model = get_backend("tensorflow").compile(graph, weights, dtype="float64")
    n = 2 * EVAL_BATCH + 37
    x, y = _data(n, (6,), 3)
    loss, accuracy = model.evaluate_arrays(model.put(x.astype(np.float64)), model.put(y))
    ref_loss, ref_accuracy = reference.evaluate(graph, weights, x, y)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    assert accuracy == ref_accuracy
    np.testing.assert_allclose(model.predict(x), reference.predict(graph, weights, x), rtol=1e-10)


def test_weights_are_variables_in_contract_layouts_and_round_trip(tmp_path) -> None:
    import tensorflow as tf

    graph = make_graph((8, 8, 1), CONVNET)
    model = get_backend("tf").compile(graph, dtype="float64")
    assert all(isinstance(v, tf.Variable) and v.dtype == tf.float64 for v in model._params.values())
    shapes = {k: v.shape for k, v in model.get_weights().items()}
    assert shapes == {
        "conv2d_1.kernel": (3, 3, 1, 4),
        "conv2d_1.bias": (4,),
        "dense_1.kernel": (36, 10),
        "dense_1.bias": (10,),
    }
    new = {k: np.full(v.shape, 0.25) for k, v in model.get_weights().items()}
    model.set_weights(new)
    model.save(str(tmp_path / "w.safetensors"))
    other = get_backend("tf").compile(graph, dtype="float64")
    other.load(str(tmp_path / "w.safetensors"))
    for k, v in other.get_weights().items():
        np.testing.assert_array_equal(v, new[k])


def test_refuses_what_it_lacks() -> None:
    graph = make_graph((4,), [("dense", {"units": 3})])
    backend = get_backend("tensorflow")
    with pytest.raises(BackendError, match="float16"):
        backend.compile(graph, dtype="float16")
    if "gpu" not in backend.devices():
        with pytest.raises(BackendError, match="no GPU"):
            backend.compile(graph, device="gpu")


def test_default_plan_follows_the_measured_rule() -> None:
    from nnspec.backends.tensorflow.model import ExecutionPlan, default_plan

    assert default_plan(make_graph((8, 8, 1), CONVNET), "cpu") == ExecutionPlan(fused=True, jit=False)
    assert default_plan(make_graph((8, 8, 1), MLP), "cpu") == ExecutionPlan(fused=True, jit=True)
    assert default_plan(make_graph((8, 8, 1), CONVNET), "gpu") == ExecutionPlan(fused=True, jit=True)


@pytest.mark.parametrize("layers", [CONVNET, MLP], ids=["convnet", "mlp"])
def test_one_epoch_matches_jax_in_float32_with_dropout(layers: list) -> None:
    jax_backend = get_backend("jax")  # the JAX backend is a required part of nnspec: no skip
    graph = make_graph((8, 8, 1), layers, train=TrainConfig(batch_size=32, optimizer=ADAM, seed=7))
    x, y = _data(320, (8, 8, 1), 10, seed=2)
    order = np.random.default_rng([7, 0]).permutation(320)
    weights = {}
    for name, backend in (("tensorflow", get_backend("tensorflow")), ("jax", jax_backend)):
        model = backend.compile(graph, device="cpu", dtype="float32")
        model.run_epoch(model.put(x), model.put(y), order, 32)
        weights[name] = model.get_weights()
    start = initial_weights(graph, dtype="float32")
    for key, value in weights["tensorflow"].items():
        assert np.abs(value - start[key]).max() > 1e-3  # it really trained
        np.testing.assert_allclose(value, weights["jax"][key], rtol=0, atol=1e-4)


def test_registry_adds_only_tensorflow_forms_to_the_shared_lowerings() -> None:
    from nnspec.backends.tensorflow.layers import LOWERINGS
    from nnspec.semantics.shared_lowerings import SHARED

    own = {op for op, fn in LOWERINGS.items() if SHARED.get(op) is not fn}
    # convolution, pools, dense and activations are shared lowerings over Ops; the dropouts draw XLA-compiled masks
    assert own == {"dropout", "spatial_dropout2d"}
    caps = get_backend("tensorflow").capabilities()
    assert caps.layers == frozenset(LOWERINGS)
    assert {"batch_norm", "layer_norm", "add", "concat", "global_avg_pool2d", "global_max_pool2d"} <= caps.layers


#: conv -> bn -> relu -> conv -> bn -> + shortcut -> relu -> global avg pool -> dropout -> dense -> softmax.
RESIDUAL = [
    ("conv2d", {"name": "conv1", "filters": 4, "kernel": 3, "padding": "same", "use_bias": False}),
    ("batch_norm", {"name": "bn1"}),
    ("activation", {"name": "relu1", "activation": "relu"}),
    ("conv2d", {"name": "conv2", "filters": 4, "kernel": 3, "padding": "same", "use_bias": False}),
    ("batch_norm", {"name": "bn2", "momentum": 0.9}),
    ("add", {"name": "residual", "inputs": ["bn2", "relu1"]}),
    ("activation", {"name": "relu2", "activation": "relu"}),
    ("global_avg_pool2d", {"name": "gap"}),
    ("dropout", {"name": "drop", "rate": 0.25}),
    ("dense", {"name": "fc", "units": 5}),
    ("softmax", {"name": "probs"}),
]


def test_fit_runs_in_every_plan_and_moves_the_batch_statistics() -> None:
    """A graph with running statistics trains in every execution plan (one trace each) and the plans agree."""
    from nnspec.backends.tensorflow.model import ExecutionPlan
    from nnspec.data.dataset import Dataset

    graph = make_graph((6, 6, 2), RESIDUAL, train=TrainConfig(batch_size=8, optimizer=ADAM, seed=5), dtype="float32")
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(80, 6, 6, 2)).astype(np.float32), rng.integers(0, 5, 80).astype(np.int32)
    dataset = Dataset("random", x[:64], y[:64], x[64:], y[64:], x[64:], y[64:], 5)
    start = initial_weights(graph, dtype="float32")
    results = {}
    for plan in (
        ExecutionPlan(fused=True, jit=False),
        ExecutionPlan(fused=False, jit=False),
        ExecutionPlan(fused=True, jit=True),
    ):
        model = get_backend("tensorflow").compile(graph, start, device="cpu", dtype="float32")
        model.set_plan(plan)
        history = model.fit(dataset, epochs=1, progress=False)
        assert len(history) == 1 and np.isfinite(history[["loss", "val_loss"]].to_numpy()).all()
        assert model.step == 64 // 8
        assert model.trace_counts[("epoch" if plan.fused else "step")] == 1
        weights = model.get_weights()
        for key, _, _ in graph.state_specs():
            assert not np.allclose(weights[key], start[key]), f"{key} did not move under {plan}"
        results[plan] = weights
    first, *others = results.values()
    for other in others:
        for key, value in first.items():
            np.testing.assert_allclose(other[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
