"""The NumPy reference backward pass against central finite differences, one case per op and option,
and the reference optimiser step built from the shared definitions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nnspec.compiler.init import initial_weights
from nnspec.compiler.ir import ACTIVATIONS, Graph, OptimizerConfig, ScheduleConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.reference.backward import activation_derivative, loss_and_gradients
from nnspec.reference.forward import forward_trace, loss
from nnspec.reference.train import ReferenceTrainer, reference_trajectory

STEP = 3  # a step whose dropout masks are not step 0's


def _graph(input_shape: tuple[int, ...], layers: list[Any], loss_name: str = "cross_entropy", **train: Any) -> Graph:
    return make_graph(input_shape, layers, train=TrainConfig(loss=loss_name, **train), dtype="float64")


def _weights(graph: Graph, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        k: v + rng.normal(0.0, 0.2, v.shape) for k, v in initial_weights(graph, dtype="float64").items()
    }  # non-zero biases


def _batch(graph: Graph, n: int = 4, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *graph.input_shape)), rng.integers(0, graph.output_shape[-1], n)


def _finite_difference_check(graph: Graph, *, training: bool = True, eps: float = 1e-6, rtol: float = 1e-6) -> None:
    w = _weights(graph)
    x, y = _batch(graph)
    _, grads = loss_and_gradients(graph, w, x, y, step=STEP, training=training)
    assert set(grads) == {k for k, _, _ in graph.param_specs()}
    for key, value in w.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            shifted = {k: v.copy() for k, v in w.items()}
            shifted[key][idx] += eps
            plus = loss(graph, shifted, x, y, training=training, step=STEP)
            shifted[key][idx] -= 2 * eps
            minus = loss(graph, shifted, x, y, training=training, step=STEP)
            numeric[idx] = (plus - minus) / (2 * eps)
        scale = max(np.abs(numeric).max(), 1e-8)
        assert grads[key].shape == value.shape
        assert np.abs(grads[key] - numeric).max() / scale < rtol, key


CONV = ("conv2d", {"filters": 2, "kernel": (3, 2), "activation": "tanh"})


CASES: dict[str, tuple[tuple[int, ...], list[Any], str]] = {
    "dense_cross_entropy_fused": (
        (5,),
        [("dense", {"units": 4, "activation": "tanh"}), ("dense", {"units": 3}), "softmax"],
        "cross_entropy",
    ),
    "dense_logits_cross_entropy": ((5,), [("dense", {"units": 3})], "cross_entropy"),
    "dense_mse": ((5,), [("dense", {"units": 4, "activation": "sigmoid"}), ("dense", {"units": 3})], "mse"),
    "softmax_mse_not_fused": ((5,), [("dense", {"units": 3}), "softmax"], "mse"),
    "dense_no_bias": ((5,), [("dense", {"units": 3, "use_bias": False})], "cross_entropy"),
    "conv_valid": (
        (6, 5, 2),
        [("conv2d", {"filters": 3, "kernel": 3, "activation": "relu"}), "flatten", ("dense", {"units": 3})],
        "cross_entropy",
    ),
    "conv_same_strided": (
        (7, 6, 2),
        [
            ("conv2d", {"filters": 2, "kernel": (3, 2), "strides": (2, 3), "padding": "same"}),
            "flatten",
            ("dense", {"units": 3}),
        ],
        "cross_entropy",
    ),
    "conv_valid_strided_no_bias": (
        (7, 7, 1),
        [
            ("conv2d", {"filters": 2, "kernel": 2, "strides": 2, "use_bias": False, "activation": "elu"}),
            "flatten",
            ("dense", {"units": 3}),
        ],
        "mse",
    ),
    "conv_same_even_kernel": (
        (5, 5, 1),
        [
            ("conv2d", {"filters": 2, "kernel": 4, "padding": "same", "activation": "softplus"}),
            "flatten",
            ("dense", {"units": 3}),
        ],
        "cross_entropy",
    ),
    "max_pool_valid": (
        (6, 6, 1),
        [CONV, ("max_pool2d", {"size": 2}), "flatten", ("dense", {"units": 3})],
        "cross_entropy",
    ),
    "max_pool_same_overlapping": (
        (7, 6, 1),
        [CONV, ("max_pool2d", {"size": 3, "strides": 2, "padding": "same"}), "flatten", ("dense", {"units": 3})],
        "cross_entropy",
    ),
    "avg_pool_valid": (
        (6, 6, 1),
        [CONV, ("avg_pool2d", {"size": 2}), "flatten", ("dense", {"units": 3})],
        "cross_entropy",
    ),
    "avg_pool_same_odd": (
        (7, 5, 1),
        [
            CONV,
            ("avg_pool2d", {"size": (2, 3), "strides": (2, 2), "padding": "same"}),
            "flatten",
            ("dense", {"units": 3}),
        ],
        "mse",
    ),
    "reshape_then_conv": (
        (12,),
        [
            ("dense", {"units": 18}),
            ("reshape", {"shape": (3, 3, 2)}),
            ("conv2d", {"filters": 2, "kernel": 2}),
            "flatten",
            ("dense", {"units": 3}),
        ],
        "cross_entropy",
    ),
    "dropout": (
        (6,),
        [("dense", {"units": 8, "activation": "tanh"}), ("dropout", {"rate": 0.5}), ("dense", {"units": 3}), "softmax"],
        "cross_entropy",
    ),
    "dropout_after_conv": (
        (5, 5, 1),
        [CONV, ("dropout", {"rate": 0.3}), "flatten", ("dense", {"units": 3}), "softmax"],
        "cross_entropy",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_match_finite_differences(case: str) -> None:
    shape, layers, loss_name = CASES[case]
    _finite_difference_check(_graph(shape, layers, loss_name))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_gradients(activation: str) -> None:
    graph = _graph(
        (4,),
        [
            ("dense", {"units": 5, "activation": activation}),
            ("activation", {"activation": activation}),
            ("dense", {"units": 3}),
        ],
    )
    _finite_difference_check(graph)


def test_dropout_off_in_inference() -> None:
    graph = _graph((6,), [("dense", {"units": 8}), ("dropout", {"rate": 0.5}), ("dense", {"units": 3})])
    _finite_difference_check(graph, training=False)
    w = _weights(graph)
    x, y = _batch(graph)
    _, on = loss_and_gradients(graph, w, x, y, step=0)
    _, off = loss_and_gradients(graph, w, x, y, step=0, training=False)
    assert not np.allclose(on["dense_1.kernel"], off["dense_1.kernel"])


def test_relu_derivative_is_zero_at_zero() -> None:
    z = np.array([-1.0, 0.0, 2.0])
    assert activation_derivative("relu", z, np.maximum(z, 0)).tolist() == [0.0, 0.0, 1.0]


def test_max_pool_tie_goes_to_first_element() -> None:
    graph = _graph((2, 2, 1), [("max_pool2d", {"size": 2}), "flatten", ("dense", {"units": 2})])
    from nnspec.reference.backward import backward

    x = np.ones((1, 2, 2, 1))
    w = {"dense_1.kernel": np.array([[1.0, 0.0]]), "dense_1.bias": np.zeros(2)}
    records = forward_trace(graph, w, x)
    from nnspec.reference.backward import _RULES

    dx, _ = _RULES["max_pool2d"](records[0], w, np.ones((1, 1, 1, 1)))
    assert dx[0, :, :, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert set(backward(graph, w, records, np.ones((1, 2)))) == {"dense_1.kernel", "dense_1.bias"}


@pytest.mark.parametrize(
    "optimizer",
    [
        OptimizerConfig("sgd", {"learning_rate": 0.1, "momentum": 0.0, "nesterov": False}),
        OptimizerConfig("sgd", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
        OptimizerConfig("adam", {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
        OptimizerConfig("rmsprop", {"learning_rate": 0.01, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7}),
    ],
    ids=["sgd", "sgd_nesterov", "adam", "rmsprop"],
)
def test_reference_trainer_steps(optimizer: OptimizerConfig) -> None:
    graph = _graph((5,), [("dense", {"units": 3}), "softmax"], optimizer=optimizer, weight_decay=0.01)
    w0 = _weights(graph)
    x, y = _batch(graph, n=16)
    trainer = ReferenceTrainer.start(graph, w0)
    first = trainer.train_step(x, y)
    assert trainer.step == 1
    assert first == pytest.approx(loss_and_gradients(graph, w0, x, y)[0])
    if optimizer.name == "sgd" and not optimizer.params["momentum"]:
        _, g = loss_and_gradients(graph, w0, x, y)
        for k in w0:
            expected = w0[k] - w0[k] * 0.01 * 0.1 - 0.1 * g[k]  # decoupled weight decay, then the step
            np.testing.assert_allclose(trainer.weights[k], expected, rtol=1e-12)
    losses = [trainer.train_step(x, y) for _ in range(30)]
    assert losses[-1] < first  # same batch again and again: the loss goes down


def test_trajectory_uses_schedule_and_records_every_step() -> None:
    train = {
        "optimizer": OptimizerConfig("sgd", {"learning_rate": 0.5}),
        "schedule": ScheduleConfig("step", {"every": 1.0, "factor": 0.0}),
    }
    graph = _graph((5,), [("dense", {"units": 3})], **train)
    w0 = _weights(graph)
    x, y = _batch(graph)
    traj = reference_trajectory(graph, w0, [(x, y)] * 3)
    assert len(traj.losses) == len(traj.weights) == 3
    assert not np.allclose(traj.weights[0]["dense_1.kernel"], w0["dense_1.kernel"])  # step 0: lr 0.5
    np.testing.assert_array_equal(traj.weights[1]["dense_1.kernel"], traj.weights[0]["dense_1.kernel"])  # lr 0 after
