"""The training state: one object every engine gives and takes, flattened to safetensors and back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from nnspec.backends import get_backend
from nnspec.compiler.ir import OptimizerConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.semantics.training_state import from_tensors, to_tensors

GRAPH = make_graph(
    (6,),
    [
        ("dense", {"name": "h", "units": 8, "use_bias": False}),
        ("batch_norm", {"name": "bn"}),
        ("activation", {"name": "r", "activation": "tanh"}),
        ("dense", {"name": "skip", "units": 8, "inputs": ["input"]}),
        ("add", {"name": "s", "inputs": ["r", "skip"]}),
        ("dropout", {"rate": 0.2}),
        ("dense", {"name": "out", "units": 3}),
        "softmax",
    ],
    train=TrainConfig(
        optimizer=OptimizerConfig("adam", {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
        batch_size=8,
        seed=4,
    ),
)


def _batches(k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(9)
    return [(rng.normal(size=(8, 6)), rng.integers(0, 3, size=8).astype(np.int32)) for _ in range(k)]


def test_state_written_to_safetensors_resumes_on_another_engine(tmp_path: Path) -> None:
    batches = _batches(6)
    straight = get_backend("jax").compile(GRAPH, device="cpu", dtype="float64")
    for x, y in batches:
        straight.train_step(x, y)
    first = get_backend("jax").compile(GRAPH, device="cpu", dtype="float64")
    for x, y in batches[:3]:
        first.train_step(x, y)
    arrays, meta = to_tensors(first.get_training_state())
    assert {"weights/h.kernel", "state/bn.moving_mean", "state/bn.moving_variance", "slots/bn.gamma.m"} <= set(arrays)
    save_file(arrays, str(tmp_path / "state.safetensors"))
    (tmp_path / "state.json").write_text(json.dumps(meta))
    restored = from_tensors(
        load_file(str(tmp_path / "state.safetensors")), json.loads((tmp_path / "state.json").read_text())
    )
    assert restored.step == 3
    other = get_backend("tensorflow").compile(GRAPH, device="cpu", dtype="float64")
    other.set_training_state(restored)
    assert other.step == 3
    for x, y in batches[3:]:
        other.train_step(x, y)
    expected = straight.get_weights()
    assert set(other.get_weights()) == set(expected) == set(GRAPH.weight_keys())
    for key, value in other.get_weights().items():
        np.testing.assert_allclose(value, expected[key], rtol=1e-10, atol=1e-12, err_msg=key)


def test_slots_that_do_not_fit_are_refused() -> None:
    model = get_backend("jax").compile(GRAPH, device="cpu")
    state = model.get_training_state()
    state.slots.pop("out.kernel.m")
    with pytest.raises(Exception, match="optimiser slots"):
        model.set_training_state(state)


def test_history_travels_with_the_state() -> None:
    from nnspec.semantics.history import make_history

    model = get_backend("jax").compile(GRAPH, device="cpu")
    model.history = make_history(
        [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4, "seconds": 0.1}]
    )
    arrays, meta = to_tensors(model.get_training_state())
    back = from_tensors(arrays, json.loads(json.dumps(meta)))
    assert back.epochs_done == 1 and back.history["loss"].tolist() == [1.0]
