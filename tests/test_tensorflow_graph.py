"""TensorFlow on graph models with state: a residual block with batch norm, and a concat with layer norm.

In float64, TensorFlow's per-layer outputs, loss, gradients and the weights, moving statistics and
optimiser slots after three steps equal the JAX backend's (both run the shared recipe; only the lowerings,
autodiff and compilation differ); a training state moved to a fresh model continues bit for bit; ``fit``
runs in every execution plan and moves the batch-norm statistics.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnspec.backends import get_backend
from nnspec.compiler.init import initial_weights
from nnspec.compiler.ir import OptimizerConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.data.dataset import Dataset

ADAM = OptimizerConfig("adam", {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7})
TOL = 1e-10
BATCH = 8
#: conv -> bn -> relu -> conv -> bn -> + shortcut -> relu -> global avg pool -> dropout -> dense -> softmax.
#: The convolutions before batch norm have no bias: its gradient would be rounding noise around 0, which
#: Adam turns into full-size steps in arbitrary directions (and which no engine can be asked to agree on).
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
#: Two branches from the input, concatenated on channels, global max pooled, layer-normalised.
#: (layer_norm -> global_max_pool2d is checked against finite differences below: jitted JAX gets the
#: gradient of that chain wrong, see test_layer_norm_then_global_max_pool_gradient_is_exact.)
CONCAT = [
    ("conv2d", {"name": "wide", "filters": 3, "kernel": 3, "padding": "same", "activation": "tanh"}),
    ("conv2d", {"name": "point", "filters": 2, "kernel": 1, "inputs": ["input"]}),
    ("concat", {"name": "cat", "inputs": ["wide", "point"], "axis": -1}),
    ("global_max_pool2d", {"name": "gmp"}),
    ("layer_norm", {"name": "ln"}),
    ("dense", {"name": "fc", "units": 5}),
    ("softmax", {"name": "probs"}),
]
#: Layer norm over the concatenated channels, then the global max pool.
NORM_THEN_MAX = [*CONCAT[:3], ("layer_norm", {"name": "ln"}), ("global_max_pool2d", {"name": "gmp"}), *CONCAT[5:]]
GRAPHS = {"residual": RESIDUAL, "concat": CONCAT}


def _graph(layers: list, dtype: str = "float64"):
    return make_graph((6, 6, 2), layers, train=TrainConfig(batch_size=BATCH, optimizer=ADAM, seed=5), dtype=dtype)


def _data(n: int, seed: int = 0, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 2)).astype(dtype), rng.integers(0, 5, n).astype(np.int32)


def _assert_close(ours: np.ndarray, theirs: np.ndarray, what: str, tol: float = TOL) -> None:
    """``max |a - b| <= tol * max |b|`` (the comparison's relative measure)."""
    assert ours.shape == theirs.shape, what
    scale = float(np.abs(theirs).max()) if theirs.size else 0.0
    error = float(np.abs(ours - theirs).max()) if theirs.size else 0.0
    assert error <= tol * max(scale, np.finfo(np.float64).tiny), (
        f"{what}: max abs error {error:.3g}, max abs value {scale:.3g}"
    )


def _models(layers: list) -> tuple:
    graph = _graph(layers)
    weights = initial_weights(graph, dtype="float64")
    return (
        graph,
        get_backend("tensorflow").compile(graph, weights, dtype="float64"),
        get_backend("jax").compile(graph, weights, dtype="float64"),
    )


def test_registry_adds_only_tensorflow_forms_to_the_shared_lowerings() -> None:
    from nnspec.backends.tensorflow.layers import LOWERINGS
    from nnspec.semantics.shared_lowerings import SHARED

    own = {op for op, fn in LOWERINGS.items() if SHARED.get(op) is not fn}
    assert own == {"conv2d", "max_pool2d", "avg_pool2d", "dense", "activation", "dropout"}
    caps = get_backend("tensorflow").capabilities()
    assert caps.layers == frozenset(LOWERINGS)
    assert {"batch_norm", "layer_norm", "add", "concat", "global_avg_pool2d", "global_max_pool2d"} <= caps.layers


@pytest.mark.parametrize("name", GRAPHS)
def test_outputs_loss_and_gradients_match_jax(name: str) -> None:
    graph, tf_model, jax_model = _models(GRAPHS[name])
    x, y = _data(BATCH, seed=1)
    for training in (False, True):
        ours = tf_model.layer_outputs(x, training=training, step=3)
        theirs = jax_model.layer_outputs(x, training=training, step=3)
        assert len(ours) == len(graph.nodes)
        for node, a, b in zip(graph.nodes, ours, theirs):
            assert a.dtype == np.float64
            _assert_close(a, b, f"{node.name} (training={training})")
    loss, grads = tf_model.loss_and_gradients(x, y, step=2)
    ref_loss, ref_grads = jax_model.loss_and_gradients(x, y, step=2)
    assert loss == pytest.approx(ref_loss, rel=TOL)
    assert set(grads) == set(ref_grads) == {k for k, _, _ in graph.param_specs()}
    for key, value in grads.items():
        _assert_close(value, ref_grads[key], f"gradient of {key}")


@pytest.mark.parametrize("name", GRAPHS)
def test_three_steps_match_jax_weights_state_and_slots(name: str) -> None:
    graph, tf_model, jax_model = _models(GRAPHS[name])
    x, y = _data(3 * BATCH, seed=2)
    start = tf_model.get_weights()
    for i in range(3):
        batch = slice(i * BATCH, (i + 1) * BATCH)
        loss = tf_model.train_step(x[batch], y[batch])
        assert loss == pytest.approx(jax_model.train_step(x[batch], y[batch]), rel=TOL)
    assert tf_model.step == 3
    ours, theirs = tf_model.get_weights(), jax_model.get_weights()
    assert set(ours) == set(theirs) == set(graph.weight_keys())
    for key, value in ours.items():
        _assert_close(value, theirs[key], key)
    state_keys = {k for k, _, _ in graph.state_specs()}
    if name == "residual":
        assert state_keys == {"bn1.moving_mean", "bn1.moving_variance", "bn2.moving_mean", "bn2.moving_variance"}
        assert all(not np.array_equal(ours[k], start[k]) for k in state_keys)  # the statistics moved
    slots, ref_slots = tf_model.optimizer_state(), jax_model.optimizer_state()
    assert set(slots) == set(ref_slots)
    for key, value in slots.items():
        _assert_close(value, ref_slots[key], f"slot {key}")
    # inference mode uses the moving statistics: evaluation and prediction agree as well
    result, ref_result = tf_model.evaluate(x, y), jax_model.evaluate(x, y)
    assert result["loss"] == pytest.approx(ref_result["loss"], rel=TOL)
    assert result["accuracy"] == ref_result["accuracy"]
    _assert_close(tf_model.predict(x), jax_model.predict(x), "predict")


def test_layer_norm_then_global_max_pool_gradient_is_exact() -> None:
    """Against central differences of TensorFlow's own loss, and against JAX's forward values.

    Not against JAX's gradient: under ``jax.jit`` (JAX 0.10.2, CPU, float64) the gradient of ``jnp.max``
    over a layer-norm output comes out wrong (tens of percent on the convolution's weights), while JAX
    op by op, TensorFlow with and without XLA, and finite differences agree.
    """
    graph, tf_model, jax_model = _models(NORM_THEN_MAX)
    x, y = _data(BATCH, seed=1)
    for a, b in zip(tf_model.layer_outputs(x, training=True), jax_model.layer_outputs(x, training=True)):
        _assert_close(a, b, "forward")
    loss, grads = tf_model.loss_and_gradients(x, y)
    weights, eps = tf_model.get_weights(), 1e-6
    rng = np.random.default_rng(0)
    for key in ("wide.kernel", "wide.bias", "point.kernel", "point.bias", "ln.gamma"):
        for flat in rng.choice(weights[key].size, min(3, weights[key].size), replace=False):
            index = np.unravel_index(flat, weights[key].shape)
            sides = []
            for sign in (1.0, -1.0):
                moved = {k: v.copy() for k, v in weights.items()}
                moved[key][index] += sign * eps
                tf_model.set_weights(moved)
                sides.append(tf_model.loss_and_gradients(x, y)[0])
            numeric = (sides[0] - sides[1]) / (2 * eps)
            assert grads[key][index] == pytest.approx(numeric, rel=1e-6, abs=1e-9), f"{key}{index}"
    tf_model.set_weights(weights)


def test_training_state_continues_bit_for_bit_on_a_fresh_model() -> None:
    graph = _graph(RESIDUAL)
    x, y = _data(4 * BATCH, seed=3)
    backend = get_backend("tensorflow")
    uninterrupted = backend.compile(graph, dtype="float64")
    for i in range(2):
        uninterrupted.train_step(x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH])
    ts = uninterrupted.get_training_state()
    assert set(ts.state) == {k for k, _, _ in graph.state_specs()} and ts.step == 2
    resumed = backend.compile(
        graph, {k: np.zeros_like(v) for k, v in initial_weights(graph, dtype="float64").items()}, dtype="float64"
    )
    resumed.set_training_state(ts)
    for model in (uninterrupted, resumed):
        model.train_step(x[2 * BATCH : 3 * BATCH], y[2 * BATCH : 3 * BATCH])
        model.run_epoch(model.put(x), model.put(y), np.random.default_rng(0).permutation(len(x)), BATCH)
    assert resumed.step == uninterrupted.step == 7
    for got, want in (
        (resumed.get_weights(), uninterrupted.get_weights()),
        (resumed.optimizer_state(), uninterrupted.optimizer_state()),
    ):
        assert set(got) == set(want)
        for key, value in want.items():
            np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_fit_runs_in_every_plan_and_moves_the_batch_statistics() -> None:
    from nnspec.backends.tensorflow.model import ExecutionPlan

    graph = _graph(RESIDUAL, dtype="float32")
    x, y = _data(80, seed=4, dtype="float32")
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
        assert model.step == 64 // BATCH
        assert model.trace_counts[("epoch" if plan.fused else "step")] == 1
        weights = model.get_weights()
        for key, _, _ in graph.state_specs():
            assert not np.allclose(weights[key], start[key]), f"{key} did not move under {plan}"
        results[plan] = weights
    first, *others = results.values()
    for other in others:
        for key, value in first.items():
            np.testing.assert_allclose(other[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
