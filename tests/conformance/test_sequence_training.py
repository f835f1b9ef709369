"""A short training trajectory of a sequence model on every backend against the NumPy reference.

``conv1d`` (causal and dilated, same and strided), both 1-D pools, ``dense`` on every step, the 1-D global
pools and dropout, trained ten Adam steps: losses and weights within 1e-10 of the reference's trajectory
in float64 and 1e-4 in float32.
"""

from __future__ import annotations

import numpy as np
import pytest
from conformance_support import adam, compile_model, graph, random_batch, random_weights

from nnspec.reference.train import reference_trajectory

SEQUENCE = [
    ("conv1d", {"name": "c1", "filters": 4, "kernel": 3, "padding": "causal", "dilation": 2, "activation": "tanh"}),
    ("max_pool1d", {"size": 2, "padding": "same"}),
    ("conv1d", {"filters": 4, "kernel": 2, "strides": 2, "padding": "same", "activation": "elu"}),
    ("avg_pool1d", {"size": 2, "strides": 1, "padding": "same"}),
    ("dense", {"name": "steps", "units": 3, "activation": "softplus"}),
    ("global_max_pool1d", {"name": "gmax"}),
    ("global_avg_pool1d", {"name": "gavg", "inputs": ["steps"]}),
    ("concat", {"inputs": ["gmax", "gavg"]}),
    ("dropout", {"rate": 0.25}),
    ("dense", {"units": 3}),
    "softmax",
]
STEPS = 10


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ten_steps_of_a_sequence_model_match_reference(backend_name: str, dtype: str) -> None:
    g = graph((9, 2), SEQUENCE, optimizer=adam(learning_rate=0.01), seed=6)
    weights = {k: v.astype(dtype) for k, v in random_weights(g, seed=7, scale=0.4).items()}
    batches = [random_batch(g, 8, seed=40 + k) for k in range(STEPS)]
    model = compile_model(backend_name, g, weights, dtype=dtype)
    losses = [model.train_step(bx.astype(dtype), by) for bx, by in batches]
    traj = reference_trajectory(g, {k: v.astype(np.float64) for k, v in weights.items()}, batches)
    tol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(losses, traj.losses, rtol=tol)
    got, expected = model.get_weights(), traj.weights[-1]
    assert set(got) == set(expected) == set(g.weight_keys())
    for key in expected:
        scale = max(float(np.max(np.abs(expected[key]))), 1e-3)
        np.testing.assert_allclose(got[key], expected[key], rtol=tol, atol=tol * scale, err_msg=f"{key} after 10 steps")
        assert not np.allclose(expected[key], weights[key]), f"{key} did not move"
