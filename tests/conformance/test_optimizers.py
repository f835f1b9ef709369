"""Optimiser steps against the update computed with NumpyOps from the same gradients (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from conformance_support import compile_model, graph, random_batch, random_weights

from nnspec.compiler.ir import OptimizerConfig, ScheduleConfig
from nnspec.compiler.training_defaults import OPTIMIZER_DEFAULTS
from nnspec.semantics.numpy_ops import NumpyOps
from nnspec.semantics.optimizers import apply_updates, init_state
from nnspec.semantics.schedules import learning_rate


def _opt(name: str, **params: float | bool) -> OptimizerConfig:
    return OptimizerConfig(name, {**OPTIMIZER_DEFAULTS[name], **params})


#: id -> (optimizer, schedule, weight decay)
CONFIGS: dict[str, tuple[OptimizerConfig, ScheduleConfig, float]] = {
    "sgd": (_opt("sgd", learning_rate=0.1), ScheduleConfig(), 0.0),
    "momentum": (_opt("sgd", learning_rate=0.05, momentum=0.9), ScheduleConfig(), 0.0),
    "nesterov": (_opt("sgd", learning_rate=0.05, momentum=0.8, nesterov=True), ScheduleConfig(), 0.0),
    "adam": (_opt("adam", learning_rate=0.01), ScheduleConfig(), 0.0),
    "adam-betas": (_opt("adam", learning_rate=0.02, beta_1=0.5, beta_2=0.9, epsilon=1e-3), ScheduleConfig(), 0.0),
    "rmsprop": (_opt("rmsprop", learning_rate=0.01), ScheduleConfig(), 0.0),
    "rmsprop-momentum": (_opt("rmsprop", learning_rate=0.01, momentum=0.5, rho=0.8), ScheduleConfig(), 0.0),
    "adam-weight-decay": (_opt("adam", learning_rate=0.01), ScheduleConfig(), 0.05),
    "sgd-weight-decay": (_opt("sgd", learning_rate=0.1, momentum=0.5), ScheduleConfig(), 0.1),
    "sgd-step-schedule": (_opt("sgd", learning_rate=0.1), ScheduleConfig("step", {"factor": 0.5, "every": 1}), 0.0),
    "adam-exponential": (
        _opt("adam", learning_rate=0.01),
        ScheduleConfig("exponential", {"decay_steps": 2, "decay_rate": 0.5}),
        0.0,
    ),
    "rmsprop-cosine": (
        _opt("rmsprop", learning_rate=0.01),
        ScheduleConfig("cosine", {"decay_steps": 3, "alpha": 0.1}),
        0.0,
    ),
}
STEPS = 3


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_optimizer_steps_match_numpy(backend_name: str, name: str) -> None:
    optimizer, schedule, decay = CONFIGS[name]
    layers = [
        ("dense", {"units": 5, "activation": "tanh"}),
        ("dropout", {"rate": 0.25}),
        ("dense", {"units": 3}),
        "softmax",
    ]
    g = graph((4,), layers, optimizer=optimizer, schedule=schedule, weight_decay=decay, seed=9)
    weights = random_weights(g, seed=6)
    model = compile_model(backend_name, g, weights)
    ops = NumpyOps("float64")
    params, state = dict(weights), init_state(optimizer, weights)
    for step in range(STEPS):
        x, y = random_batch(g, 6, seed=20 + step)
        assert model.step == step
        loss, grads = model.loss_and_gradients(x, y, step=step)
        lr = learning_rate(ops, schedule, optimizer.learning_rate, step)
        params, state = apply_updates(ops, optimizer, lr, step, params, grads, state, decay)
        assert model.train_step(x, y) == pytest.approx(loss, rel=1e-12)
        got = model.get_weights()
        for key in params:
            np.testing.assert_allclose(
                got[key], params[key], rtol=1e-10, atol=1e-13, err_msg=f"{name}, step {step}: {key}"
            )
    assert model.step == STEPS
