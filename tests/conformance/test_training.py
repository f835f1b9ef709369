"""Training epochs, evaluation and determinism, through the device-resident API (put / run_epoch / evaluate_arrays)."""

from __future__ import annotations

import numpy as np
import pytest
from conformance_support import adam, compile_model, graph, random_batch, random_weights

from nnspec import reference

SMALL_CNN = [
    ("conv2d", {"filters": 4, "kernel": 3, "padding": "same", "activation": "relu"}),
    ("max_pool2d", {"size": 2}),
    "flatten",
    ("dropout", {"rate": 0.25}),
    ("dense", {"units": 10}),
    "softmax",
]
SMALL_MLP = [
    "flatten",
    ("dense", {"units": 16, "activation": "relu"}),
    ("dropout", {"rate": 0.2}),
    ("dense", {"units": 10}),
    "softmax",
]


def _digits_like(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1)), rng.integers(0, 10, size=n).astype(np.int32)


def test_run_epoch_equals_train_steps_on_the_same_batches(backend_name: str) -> None:
    g = graph((8, 8, 1), SMALL_CNN, optimizer=adam(learning_rate=0.01), batch_size=16, seed=2)
    weights = random_weights(g, scale=0.3)
    x, y = _digits_like(100)
    order = np.random.default_rng([g.train.seed, 0]).permutation(100)
    fused = compile_model(backend_name, g, weights)
    loss, accuracy = fused.run_epoch(fused.put(x), fused.put(y), order, 16)
    stepped = compile_model(backend_name, g, weights)
    losses = [stepped.train_step(x[order[i * 16 : (i + 1) * 16]], y[order[i * 16 : (i + 1) * 16]]) for i in range(6)]
    assert fused.step == stepped.step == 6, "an epoch visits n // batch_size full batches"
    assert loss == pytest.approx(np.mean(losses), rel=1e-10)
    assert 0.0 <= accuracy <= 1.0 and accuracy * 96 == pytest.approx(round(accuracy * 96))
    after, expected = fused.get_weights(), stepped.get_weights()
    for key in expected:
        np.testing.assert_allclose(after[key], expected[key], rtol=1e-9, atol=1e-12, err_msg=key)
    # the next epoch continues the step count (dropout masks and schedule follow it)
    fused.run_epoch(fused.put(x), fused.put(y), np.random.default_rng([g.train.seed, 1]).permutation(100), 16)
    assert fused.step == 12


def test_batch_larger_than_the_data_is_clipped(backend_name: str) -> None:
    g = graph((8, 8, 1), SMALL_MLP, batch_size=64)
    x, y = _digits_like(20)
    model = compile_model(backend_name, g)
    model.run_epoch(model.put(x), model.put(y), np.arange(20), 64)
    assert model.step == 1


@pytest.mark.parametrize("layers", [SMALL_MLP, SMALL_CNN], ids=["mlp", "cnn"])
def test_same_seed_gives_bit_identical_weights_after_an_epoch(backend_name: str, layers: list) -> None:
    g = graph((8, 8, 1), layers, batch_size=32, seed=7)
    x, y = _digits_like(1437, seed=1)
    order = np.random.default_rng([g.train.seed, 0]).permutation(len(x))
    results = []
    for _ in range(2):
        model = compile_model(backend_name, g, dtype="float32")
        metrics = model.run_epoch(model.put(x.astype("float32")), model.put(y), order, 32)
        results.append((metrics, model.get_weights()))
    assert results[0][0] == results[1][0]
    for key, value in results[0][1].items():
        np.testing.assert_array_equal(value, results[1][1][key], err_msg=key)
    assert any(
        not np.array_equal(results[0][1][k], v)
        for k, v in compile_model(backend_name, g, dtype="float32").get_weights().items()
    )


@pytest.mark.parametrize("layers", [SMALL_MLP, SMALL_CNN], ids=["mlp", "cnn"])
def test_evaluate_covers_every_example(backend_name: str, layers: list) -> None:
    g = graph((8, 8, 1), layers)
    weights = random_weights(g, seed=8, scale=0.3)
    model = compile_model(backend_name, g, weights)
    for n in (1, 37, 1100):
        x, y = _digits_like(n, seed=n)
        loss, accuracy = model.evaluate_arrays(model.put(x), model.put(y))
        ref_loss, ref_accuracy = reference.evaluate(g, weights, x, y)
        assert loss == pytest.approx(ref_loss, rel=1e-10), f"n={n}"
        assert accuracy == pytest.approx(ref_accuracy, abs=1e-12), f"n={n}"
    result = model.evaluate(x, y)
    assert result == pytest.approx({"loss": ref_loss, "accuracy": ref_accuracy}, rel=1e-10)


def test_mse_loss_is_taken_after_softmax(backend_name: str) -> None:
    g = graph((5,), [("dense", {"units": 3}), "softmax"], loss="mse")
    weights = random_weights(g)
    x, y = random_batch(g, 9)
    model = compile_model(backend_name, g, weights)
    loss, _ = model.evaluate_arrays(model.put(x), model.put(y))
    assert loss == pytest.approx(reference.evaluate(g, weights, x, y)[0], rel=1e-10)
    assert model.loss_and_gradients(x, y)[0] == pytest.approx(reference.loss(g, weights, x, y), rel=1e-10)
