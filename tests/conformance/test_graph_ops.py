"""Graph models and the layers with state, on every backend, against the NumPy reference.

The merge layers (``add``, ``concat``), ``batch_norm`` (batch statistics and the moving-average update in
training, moving statistics in inference), ``layer_norm`` and the global pools: forward per layer in both
modes, loss and gradients (summed where a value fans out), and a 10-step trajectory whose running
statistics are compared too. float64 to 1e-10, float32 to the suite's float32 tolerance (forward) and
1e-4 after 10 steps. Convolutions right before a batch norm have no bias, as in real residual networks: its
gradient is zero up to rounding, which Adam would scale up to full-size steps in float32.
"""

from __future__ import annotations

import numpy as np
import pytest
from conformance_support import adam, assert_close, compile_model, graph, random_batch

from nnspec import reference
from nnspec.compiler.init import initial_weights
from nnspec.compiler.ir import Graph
from nnspec.reference.backward import loss_and_gradients as reference_loss_and_gradients
from nnspec.reference.train import reference_trajectory


def _conv(name: str, filters: int, **extra):
    return ("conv2d", {"name": name, "filters": filters, "kernel": 3, "padding": "same", **extra})


#: id -> (input shape, layers, output name or None).
CASES: dict[str, tuple[tuple[int, ...], list, str | None]] = {
    "residual-bn": (
        (6, 6, 2),
        [
            _conv("stem", 4, use_bias=False),
            ("batch_norm", {"name": "bn0"}),
            ("activation", {"name": "r0", "activation": "relu"}),
            _conv("c1", 4, use_bias=False),
            ("batch_norm", {"name": "bn1", "momentum": 0.9}),
            ("activation", {"name": "r1", "activation": "tanh"}),
            _conv("c2", 4, use_bias=False),
            ("batch_norm", {"name": "bn2", "center": False}),
            ("add", {"name": "sum", "inputs": ["bn2", "r0"]}),
            ("activation", {"name": "out", "activation": "elu"}),
            ("global_avg_pool2d", {"name": "gap"}),
            ("dropout", {"name": "drop", "rate": 0.25}),
            ("dense", {"name": "logits", "units": 5}),
            "softmax",
        ],
        None,
    ),
    "inception-concat": (
        (5, 5, 3),
        [
            _conv("a", 3, activation="tanh"),
            ("conv2d", {"name": "b", "filters": 2, "kernel": 1, "use_bias": False, "inputs": ["input"]}),
            ("avg_pool2d", {"name": "p", "size": 3, "strides": 1, "padding": "same", "inputs": ["input"]}),
            ("concat", {"name": "cat", "inputs": ["a", "b", "p"]}),
            ("batch_norm", {"name": "bn", "scale": False}),
            ("global_max_pool2d", {"name": "gmp"}),
            ("layer_norm", {"name": "ln"}),
            ("dense", {"name": "logits", "units": 4}),
            "softmax",
        ],
        None,
    ),
    "fan-out-dense": (
        (7,),
        [
            ("dense", {"name": "h", "units": 6, "activation": "sigmoid"}),
            ("dense", {"name": "u", "units": 6, "inputs": ["h"]}),
            ("dense", {"name": "v", "units": 6, "inputs": ["h"]}),
            ("add", {"name": "s", "inputs": ["u", "v", "h"]}),
            ("layer_norm", {"name": "ln", "center": False}),
            ("batch_norm", {"name": "bn"}),
            ("concat", {"name": "c", "inputs": ["bn", "h"], "axis": 0}),
            ("dense", {"name": "out", "units": 3}),
        ],
        None,
    ),
    "output-in-the-middle": (
        (4, 4, 1),
        [
            _conv("c", 3),
            ("batch_norm", {"name": "bn"}),
            ("global_avg_pool2d", {"name": "g"}),
            ("dense", {"name": "d", "units": 3}),
        ],
        "d",
    ),
}


def _graph(case: str, **train) -> Graph:
    from nnspec.compiler.ir import TrainConfig
    from nnspec.compiler.shapes import make_graph

    shape, layers, output = CASES[case]
    return make_graph(shape, layers, train=TrainConfig(**{"seed": 5, **train}), output=output)


def _weights(g: Graph, dtype: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Initial weights with the trainable ones (gamma and beta included) and the moving statistics moved off
    their initial values, so that every array matters."""
    rng = np.random.default_rng(seed)
    weights = initial_weights(g, dtype="float64")
    for key, _, spec in g.param_specs():
        weights[key] = rng.normal(scale=0.5, size=spec.shape) + (1.0 if key.endswith(".gamma") else 0.0)
    for key, _, spec in g.state_specs():
        weights[key] = rng.normal(scale=0.2, size=spec.shape) + (1.5 if key.endswith("variance") else 0.0)
    return {k: v.astype(dtype) for k, v in weights.items()}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_graph_forward_matches_reference(backend_name: str, case: str, training: bool, dtype: str) -> None:
    g = _graph(case)
    weights = _weights(g, dtype)
    x, _ = random_batch(g, 6)
    x = x.astype(dtype)
    model = compile_model(backend_name, g, weights, dtype=dtype)
    outputs = model.layer_outputs(x, training=training, step=3)
    expected = reference.layer_outputs(g, weights, x, training=training, step=3)
    assert len(outputs) == len(g.nodes)
    for node, out, ref in zip(g.nodes, outputs, expected):
        assert out.shape == (6, *node.output_shape), (
            f"{node.name}: engine shape {out.shape}, inferred {node.output_shape}"
        )
        assert_close(out, ref, dtype, f"{case} ({'training' if training else 'inference'}): layer '{node.name}'")
    assert_close(model.predict(x), reference.predict(g, weights, x), dtype, f"{case}: predict")


@pytest.mark.parametrize("case", sorted(CASES))
def test_graph_gradients_match_reference(backend_name: str, case: str) -> None:
    g = _graph(case)
    weights = _weights(g, "float64", seed=1)
    x, y = random_batch(g, 8)
    model = compile_model(backend_name, g, weights)
    loss, grads = model.loss_and_gradients(x, y, step=2)
    ref_loss, ref_grads = reference_loss_and_gradients(g, weights, x, y, step=2)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    assert set(grads) == {k for k, _, _ in g.param_specs()}, "gradients are for trainable weights only"
    for key, ref in ref_grads.items():
        assert_close(grads[key], ref, "float64", f"{case}: gradient of {key}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", ["residual-bn", "inception-concat", "fan-out-dense"])
def test_ten_steps_with_running_statistics_match_reference(backend_name: str, case: str, dtype: str) -> None:
    g = _graph(case, optimizer=adam(learning_rate=0.01))
    weights = _weights(g, dtype, seed=2)
    batches = [tuple(random_batch(g, 8, seed=10 + k)) for k in range(10)]
    batches = [(bx.astype(dtype), by) for bx, by in batches]
    model = compile_model(backend_name, g, weights, dtype=dtype)
    losses = [model.train_step(bx, by) for bx, by in batches]
    traj = reference_trajectory(
        g, {k: v.astype(np.float64) for k, v in weights.items()}, [(bx.astype(np.float64), by) for bx, by in batches]
    )
    tol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(losses, traj.losses, rtol=tol)
    got, expected = model.get_weights(), traj.weights[-1]
    assert set(got) == set(expected) == set(g.weight_keys())
    for key in expected:
        scale = max(float(np.max(np.abs(expected[key]))), 1e-3)
        np.testing.assert_allclose(
            got[key], expected[key], rtol=tol, atol=tol * scale, err_msg=f"{case}: {key} after 10 steps"
        )
    moved = [k for k, _, _ in g.state_specs() if not np.allclose(expected[k], weights[k])]
    assert moved == [k for k, _, _ in g.state_specs()], "every running statistic moved in training"


def test_training_state_round_trip_continues_bit_identically(backend_name: str) -> None:
    g = _graph("residual-bn", optimizer=adam(learning_rate=0.01))
    weights = _weights(g, "float32", seed=3)
    batches = [tuple(random_batch(g, 8, seed=20 + k)) for k in range(4)]
    batches = [(bx.astype("float32"), by) for bx, by in batches]
    straight = compile_model(backend_name, g, weights, dtype="float32")
    for bx, by in batches:
        straight.train_step(bx, by)
    first = compile_model(backend_name, g, weights, dtype="float32")
    for bx, by in batches[:2]:
        first.train_step(bx, by)
    saved = first.get_training_state()
    assert saved.step == 2 and set(saved.state) == {k for k, _, _ in g.state_specs()}
    assert all(key.count(".") == 2 for key in saved.slots), "slots are keyed <layer>.<param>.<slot>"
    resumed = compile_model(backend_name, g, initial_weights(g, dtype="float32"), dtype="float32")
    resumed.set_training_state(saved)
    for bx, by in batches[2:]:
        resumed.train_step(bx, by)
    for key, value in straight.get_weights().items():
        np.testing.assert_array_equal(resumed.get_weights()[key], value, err_msg=key)
    for key, value in straight.optimizer_state().items():
        np.testing.assert_array_equal(resumed.optimizer_state()[key], value, err_msg=key)


def test_epoch_updates_running_statistics_like_the_steps(backend_name: str) -> None:
    g = _graph("residual-bn", optimizer=adam(learning_rate=0.01), batch_size=8)
    weights = _weights(g, "float64", seed=4)
    x, y = random_batch(g, 40, seed=30)
    order = np.random.default_rng([g.train.seed, 0]).permutation(40)
    fused = compile_model(backend_name, g, weights)
    fused.run_epoch(fused.put(x), fused.put(y), order, 8)
    stepped = compile_model(backend_name, g, weights)
    for i in range(5):
        batch = order[i * 8 : (i + 1) * 8]
        stepped.train_step(x[batch], y[batch])
    for key, value in stepped.get_weights().items():
        np.testing.assert_allclose(fused.get_weights()[key], value, rtol=1e-9, atol=1e-12, err_msg=key)
