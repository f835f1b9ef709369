"""The NumPy reference on graph models: merges, normalisation, global pools and state.

Gradients of every trainable weight are checked against float64 central finite differences of the
reference loss (training mode, dropout masks of a fixed step, batch statistics); batch-norm state and
inference are checked against NumPy written out here; chain models keep their v1 results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nnspec.compiler.init import initial_weights
from nnspec.compiler.ir import Graph, OptimizerConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.reference import forward as ref
from nnspec.reference.backward import _RULES, loss_and_gradients, loss_gradients_and_state
from nnspec.reference.train import ReferenceTrainer, reference_trajectory
from nnspec.semantics.dropout import numpy_keep_mask

STEP = 3
SGD = OptimizerConfig("sgd", {"learning_rate": 0.1, "momentum": 0.0, "nesterov": False})


def _graph(
    input_shape: tuple[int, ...],
    layers: list[Any],
    loss_name: str = "cross_entropy",
    output: str | None = None,
    **train: Any,
) -> Graph:
    return make_graph(input_shape, layers, train=TrainConfig(loss=loss_name, **train), dtype="float64", output=output)


def _weights(graph: Graph, seed: int = 1) -> dict[str, np.ndarray]:
    """Initial weights with noise (non-zero biases, gamma away from 1), and state away from its start."""
    rng = np.random.default_rng(seed)
    w = {k: v + rng.normal(0.0, 0.2, v.shape) for k, v in initial_weights(graph, dtype="float64").items()}
    for key, _, _ in graph.state_specs():
        if key.endswith("moving_variance"):
            w[key] = rng.uniform(0.5, 2.0, w[key].shape)
    return w


def _batch(graph: Graph, n: int = 4, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *graph.input_shape)), rng.integers(0, graph.output_shape[-1], n)


def _finite_difference_check(
    graph: Graph, *, training: bool = True, eps: float = 1e-6, rtol: float = 1e-6
) -> dict[str, np.ndarray]:
    w = _weights(graph)
    x, y = _batch(graph)
    _, grads = loss_and_gradients(graph, w, x, y, step=STEP, training=training)
    trainable = [k for k, _, _ in graph.param_specs()]
    assert list(grads) == trainable
    for key in trainable:
        value = w[key]
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            saved = value[idx]
            value[idx] = saved + eps
            plus = ref.loss(graph, w, x, y, training=training, step=STEP)
            value[idx] = saved - eps
            minus = ref.loss(graph, w, x, y, training=training, step=STEP)
            value[idx] = saved
            numeric[idx] = (plus - minus) / (2 * eps)
        scale = np.abs(numeric).max()
        assert grads[key].shape == value.shape
        # the absolute floor covers gradients that are exactly zero (a bias before batch_norm), where the
        # differences hold only rounding: about 1e-16 / eps
        assert np.abs(grads[key] - numeric).max() < rtol * scale + 1e-9, key
    return grads


def _conv(
    name: str, filters: int, kernel: Any = 3, activation: str = "linear", inputs: list[str] | None = None, **more: Any
) -> tuple[str, dict]:
    attrs = {"name": name, "filters": filters, "kernel": kernel, "padding": "same", "activation": activation, **more}
    if inputs is not None:
        attrs["inputs"] = inputs
    return ("conv2d", attrs)


RESIDUAL = (
    (5, 5, 2),
    [
        _conv("stem", 3, activation="tanh"),
        _conv("conv1", 3),
        ("batch_norm", {"name": "bn1", "momentum": 0.9}),
        ("activation", {"name": "relu1", "activation": "relu"}),
        _conv("conv2", 3),
        ("batch_norm", {"name": "bn2"}),
        ("add", {"name": "sum", "inputs": ["bn2", "stem"]}),
        ("activation", {"name": "relu2", "activation": "relu"}),
        ("global_avg_pool2d", {"name": "gap"}),
        ("dense", {"name": "logits", "units": 3}),
        ("softmax", {"name": "probs"}),
    ],
)

GRAPHS: dict[str, tuple[tuple[int, ...], list[Any]]] = {
    "residual_block": RESIDUAL,
    "concat_channels_global_max": (
        (6, 6, 2),
        [
            _conv("a", 2, activation="tanh", inputs=["input"]),
            _conv("b", 3, kernel=2, activation="sigmoid", inputs=["input"]),
            ("concat", {"name": "cat", "inputs": ["a", "b"]}),
            ("global_max_pool2d", {"name": "gmp"}),
            ("dense", {"name": "out", "units": 3}),
        ],
    ),
    "concat_height_then_flatten": (
        (4, 3, 1),
        [
            _conv("a", 2, kernel=2, activation="tanh", inputs=["input"]),
            ("conv2d", {"name": "b", "filters": 2, "kernel": (2, 1), "activation": "elu", "inputs": ["input"]}),
            ("concat", {"name": "cat", "axis": 0, "inputs": ["a", "b"]}),
            "flatten",
            ("dense", {"units": 3}),
            "softmax",
        ],
    ),
    "layer_norm_after_dense": (
        (5,),
        [("dense", {"units": 6, "activation": "tanh"}), ("layer_norm", {}), ("dense", {"units": 3}), "softmax"],
    ),
    "layer_norm_variants_after_conv": (
        (4, 4, 2),
        [
            _conv("c", 3),
            ("layer_norm", {"center": False}),
            ("layer_norm", {"scale": False}),
            ("global_avg_pool2d", {}),
            ("dense", {"units": 3}),
        ],
    ),
    "batch_norm_after_dense_variants": (
        (5,),
        [
            ("dense", {"units": 6}),
            ("batch_norm", {"center": False}),
            ("activation", {"activation": "tanh"}),
            ("dense", {"units": 4}),
            ("batch_norm", {"scale": False}),
            ("dense", {"units": 3}),
            "softmax",
        ],
    ),
    "fan_out_to_three_layers": (
        (5,),
        [
            ("dense", {"name": "shared", "units": 4, "activation": "tanh"}),
            ("dense", {"name": "a", "units": 4, "inputs": ["shared"]}),
            ("dense", {"name": "b", "units": 4, "activation": "sigmoid", "inputs": ["shared"]}),
            ("activation", {"name": "c", "activation": "softplus", "inputs": ["shared"]}),
            ("add", {"name": "sum", "inputs": ["a", "b", "c"]}),
            ("dense", {"name": "out", "units": 3}),
            "softmax",
        ],
    ),
    "dropout_in_a_branch": (
        (6,),
        [
            ("dense", {"name": "h", "units": 8, "activation": "tanh"}),
            ("dropout", {"name": "drop", "rate": 0.5, "inputs": ["h"]}),
            ("dense", {"name": "a", "units": 5, "inputs": ["drop"]}),
            ("dense", {"name": "b", "units": 5, "activation": "relu", "inputs": ["h"]}),
            ("add", {"name": "sum", "inputs": ["a", "b"]}),
            ("dense", {"name": "out", "units": 3}),
            "softmax",
        ],
    ),
    "mse_through_normalisation": (
        (3, 3, 1),
        [_conv("c", 2, activation="tanh"), ("batch_norm", {}), "flatten", ("dense", {"units": 3}), "softmax"],
    ),
}


@pytest.mark.parametrize("case", sorted(GRAPHS))
def test_graph_gradients_match_finite_differences(case: str) -> None:
    shape, layers = GRAPHS[case]
    graph = _graph(shape, layers, "mse" if case.startswith("mse") else "cross_entropy")
    _finite_difference_check(graph)


def test_a_bias_before_training_batch_norm_gets_no_gradient() -> None:
    shape, layers = GRAPHS["residual_block"]
    graph = _graph(shape, layers)
    x, y = _batch(graph)
    _, grads = loss_and_gradients(graph, _weights(graph), x, y, step=STEP)
    assert np.abs(grads["conv2.bias"]).max() < 1e-14 * np.abs(grads["conv2.kernel"]).max()


def test_batch_norm_inference_gradients_are_those_of_an_affine_map() -> None:
    shape, layers = GRAPHS["residual_block"]
    _finite_difference_check(_graph(shape, layers), training=False)


def test_fan_out_gradients_are_summed() -> None:
    """The shared value's gradient is the sum over its three readers: dropping any one changes it."""
    shape, layers = GRAPHS["fan_out_to_three_layers"]
    graph = _graph(shape, layers)
    grads = _finite_difference_check(graph)
    w = _weights(graph)
    x, y = _batch(graph)
    trace = ref.run_trace(graph, w, x, training=True, step=STEP)
    from nnspec.reference.backward import backward, loss_and_head_gradient

    _, d_head = loss_and_head_gradient(graph, trace.head, y)
    records = list(trace.records.values())
    assert np.allclose(backward(graph, w, records, d_head)["shared.kernel"], grads["shared.kernel"])
    only_first = dict(_RULES)
    try:  # a walk that kept only the last gradient would get this instead: a different number
        _RULES["add"] = lambda rec, w_, dy: ([dy, np.zeros_like(dy), np.zeros_like(dy)], {})
        partial = backward(graph, w, records, d_head)["shared.kernel"]
    finally:
        _RULES.clear()
        _RULES.update(only_first)
    assert not np.allclose(partial, grads["shared.kernel"])


def test_dropout_in_a_branch_uses_the_shared_mask_of_its_layer_index() -> None:
    shape, layers = GRAPHS["dropout_in_a_branch"]
    graph = _graph(shape, layers)
    w = _weights(graph)
    x, _ = _batch(graph)
    trace = ref.run_trace(graph, w, x, training=True, step=STEP)
    drop = graph.node("drop")
    keep = numpy_keep_mask(graph.train.seed, drop.index, STEP, (4, 8), 0.5)
    h = np.tanh(x @ w["h.kernel"] + w["h.bias"])
    np.testing.assert_allclose(trace.values["drop"], np.where(keep, 2.0 * h, 0.0), rtol=1e-14)
    np.testing.assert_array_equal(ref.run_trace(graph, w, x).values["drop"], trace.values["h"])


def _bn_graph(momentum: float = 0.9) -> Graph:
    layers = [
        ("dense", {"name": "d", "units": 5}),
        ("batch_norm", {"name": "bn", "momentum": momentum, "epsilon": 1e-3}),
        ("dense", {"name": "out", "units": 3}),
        "softmax",
    ]
    return _graph((4,), layers, optimizer=SGD)


def test_batch_norm_state_after_one_step_is_the_moving_average_of_batch_statistics() -> None:
    graph = _bn_graph(momentum=0.8)
    w = _weights(graph)
    x, y = _batch(graph, n=7)
    h = x @ w["d.kernel"] + w["d.bias"]  # the batch norm's input, written out
    trainer = ReferenceTrainer.start(graph, w)
    assert set(trainer.params) == {"d.kernel", "d.bias", "bn.gamma", "bn.beta", "out.kernel", "out.bias"}
    assert set(trainer.state) == {"bn.moving_mean", "bn.moving_variance"}
    assert all(k.split("/")[0] in trainer.params for k in trainer.slots)
    trainer.train_step(x, y)
    np.testing.assert_allclose(
        trainer.state["bn.moving_mean"], 0.8 * w["bn.moving_mean"] + 0.2 * h.mean(axis=0), rtol=1e-13
    )
    np.testing.assert_allclose(
        trainer.state["bn.moving_variance"], 0.8 * w["bn.moving_variance"] + 0.2 * h.var(axis=0), rtol=1e-13
    )
    assert set(trainer.weights) == set(graph.weight_keys())
    np.testing.assert_array_equal(trainer.weights["bn.moving_mean"], trainer.state["bn.moving_mean"])


def test_batch_norm_state_on_images_and_in_the_trajectory() -> None:
    graph = _graph(
        (3, 4, 2),
        [("batch_norm", {"name": "bn", "momentum": 0.5}), ("global_avg_pool2d", {}), ("dense", {"units": 3})],
        optimizer=SGD,
    )
    w = _weights(graph)
    batches = [_batch(graph, n=5, seed=s) for s in (3, 4)]
    traj = reference_trajectory(graph, w, batches)
    mean, var = w["bn.moving_mean"], w["bn.moving_variance"]
    for (x, _), after in zip(batches, traj.weights):
        mean = 0.5 * mean + 0.5 * x.mean(axis=(0, 1, 2))
        var = 0.5 * var + 0.5 * x.var(axis=(0, 1, 2))
        np.testing.assert_allclose(after["bn.moving_mean"], mean, rtol=1e-13)
        np.testing.assert_allclose(after["bn.moving_variance"], var, rtol=1e-13)


def test_state_is_not_trained_and_gradients_cover_trainable_weights_only() -> None:
    graph = _bn_graph()
    w = _weights(graph)
    x, y = _batch(graph)
    loss, grads, state = loss_gradients_and_state(graph, w, x, y, step=0)
    assert set(grads) == {k for k, _, _ in graph.param_specs()}
    assert set(state) == {"bn.moving_mean", "bn.moving_variance"}
    assert not np.allclose(state["bn.moving_mean"], w["bn.moving_mean"])
    _, _, same = loss_gradients_and_state(graph, w, x, y, step=0, training=False)
    np.testing.assert_array_equal(same["bn.moving_mean"], w["bn.moving_mean"])
    assert loss == pytest.approx(ref.loss(graph, w, x, y))


def test_inference_uses_the_moving_statistics_and_training_the_batch_statistics() -> None:
    graph = _bn_graph()
    w = _weights(graph)
    x, _ = _batch(graph, n=6)
    h = x @ w["d.kernel"] + w["d.bias"]
    gamma, beta = w["bn.gamma"], w["bn.beta"]
    inferred = (h - w["bn.moving_mean"]) / np.sqrt(w["bn.moving_variance"] + 1e-3) * gamma + beta
    trained = (h - h.mean(axis=0)) / np.sqrt(h.var(axis=0) + 1e-3) * gamma + beta
    np.testing.assert_allclose(ref.layer_outputs(graph, w, x)[1], inferred, rtol=1e-12)
    np.testing.assert_allclose(ref.layer_outputs(graph, w, x, training=True)[1], trained, rtol=1e-12)
    logits = inferred @ w["out.kernel"] + w["out.bias"]
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(ref.predict(graph, w, x), expected / expected.sum(axis=1, keepdims=True), rtol=1e-12)


def test_state_argument_overrides_and_missing_state_starts_from_initial() -> None:
    graph = _bn_graph()
    w = _weights(graph)
    x, _ = _batch(graph)
    params = {k: w[k] for k, _, _ in graph.param_specs()}
    state = {k: w[k] for k, _, _ in graph.state_specs()}
    np.testing.assert_array_equal(ref.predict(graph, params, x, state=state), ref.predict(graph, w, x))
    fresh = {"bn.moving_mean": np.zeros(5), "bn.moving_variance": np.ones(5)}
    np.testing.assert_array_equal(ref.predict(graph, params, x), ref.predict(graph, {**params, **fresh}, x))
    assert ref.initial_state(graph).keys() == fresh.keys()


def test_global_max_pool_gradient_goes_to_the_first_maximum() -> None:
    graph = _graph((2, 3, 2), [("global_max_pool2d", {}), ("dense", {"units": 2})])
    x = np.ones((1, 2, 3, 2))
    x[0, 1, 2, 1] = 5.0
    x[0, 0, 1, 1] = 5.0  # channel 1: maxima at (0, 1) and (1, 2); (0, 1) comes first
    record = ref.forward_trace(graph, initial_weights(graph, dtype="float64"), x)[0]
    dx, grads = _RULES["global_max_pool2d"](record, {}, np.array([[2.0, 3.0]]))
    assert grads == {}
    expected = np.zeros((1, 2, 3, 2))
    expected[0, 0, 0, 0] = 2.0
    expected[0, 0, 1, 1] = 3.0
    np.testing.assert_array_equal(dx, expected)


def test_global_avg_pool_and_concat_rules() -> None:
    graph = _graph((2, 2, 1), [("global_avg_pool2d", {}), ("dense", {"units": 2})])
    record = ref.forward_trace(graph, initial_weights(graph, dtype="float64"), np.zeros((1, 2, 2, 1)))[0]
    dx, _ = _RULES["global_avg_pool2d"](record, {}, np.array([[4.0]]))
    np.testing.assert_array_equal(dx, np.ones((1, 2, 2, 1)))
    shape, layers = GRAPHS["concat_height_then_flatten"]
    graph = _graph(shape, layers)
    trace = ref.run_trace(graph, _weights(graph), np.zeros((2, *shape)))
    dy = np.arange(2 * 7 * 3 * 2, dtype=float).reshape(2, 7, 3, 2)
    parts, _ = _RULES["concat"](trace.records["cat"], {}, dy)
    assert [p.shape for p in parts] == [(2, 4, 3, 2), (2, 3, 3, 2)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), dy)


def test_records_and_outputs_follow_declaration_order() -> None:
    shape, layers = RESIDUAL
    graph = _graph(shape, layers)
    w = _weights(graph)
    x, _ = _batch(graph)
    records = ref.forward_trace(graph, w, x, training=True, step=1)
    assert [r.node.name for r in records] == [n.name for n in graph.nodes]
    add = records[[n.name for n in graph.nodes].index("sum")]
    assert len(add.inputs) == 2 and add.input is add.inputs[0]
    outputs = ref.layer_outputs(graph, w, x, training=True, step=1)
    np.testing.assert_array_equal(outputs[6], outputs[5] + outputs[0])
    assert ref.head_of(graph, outputs) is outputs[ref.head_index(graph)]
    assert graph.nodes[ref.head_index(graph)].name == "logits"


def test_output_that_is_not_the_last_node() -> None:
    layers = [
        ("dense", {"name": "h", "units": 4, "activation": "tanh"}),
        ("dense", {"name": "logits", "units": 3}),
        ("softmax", {"name": "probs"}),
        ("dense", {"name": "aux", "units": 2, "inputs": ["h"]}),
    ]
    graph = _graph((5,), layers, output="probs")
    w = _weights(graph)
    x, y = _batch(graph)
    outputs = ref.layer_outputs(graph, w, x)
    np.testing.assert_array_equal(ref.predict(graph, w, x), outputs[2])
    _, grads = loss_and_gradients(graph, w, x, y)
    np.testing.assert_array_equal(grads["aux.kernel"], np.zeros((4, 2)))
    assert np.abs(grads["h.kernel"]).max() > 0


def test_chain_results_match_a_hand_written_mlp() -> None:
    """v1 chains: forward, loss and gradients are those of the textbook MLP, written out in NumPy."""
    graph = _graph((5,), [("dense", {"units": 4, "activation": "tanh"}), ("dense", {"units": 3}), "softmax"])
    w = _weights(graph)
    x, y = _batch(graph, n=6)
    k1, b1, k2, b2 = w["dense_1.kernel"], w["dense_1.bias"], w["dense_2.kernel"], w["dense_2.bias"]
    h = np.tanh(x @ k1 + b1)
    z = h @ k2 + b2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(3)[y]
    dz = (p - onehot) / len(y)
    dh = dz @ k2.T * (1 - h * h)
    loss, grads = loss_and_gradients(graph, w, x, y)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])), rel=1e-12)
    expected = {
        "dense_1.kernel": x.T @ dh,
        "dense_1.bias": dh.sum(0),
        "dense_2.kernel": h.T @ dz,
        "dense_2.bias": dz.sum(0),
    }
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-12, atol=1e-15)
    outputs = ref.layer_outputs(graph, w, x)
    np.testing.assert_allclose(outputs[1], z, rtol=1e-13)
    np.testing.assert_allclose(ref.predict(graph, w, x), p, rtol=1e-12)
    assert ref.evaluate(graph, w, x, y) == pytest.approx((loss, float(np.mean(p.argmax(1) == y))))
    trainer = ReferenceTrainer.start(graph, w)
    trainer.train_step(x, y)
    assert trainer.state == {} and set(trainer.weights) == set(expected)
