"""Graph models and the layers with state, on every backend, against the NumPy reference.

The merge layers (``add``, ``concat``, a merge that reads the graph's input), ``batch_norm`` (batch statistics
and the moving-average update in training, moving statistics in inference), ``layer_norm`` (before and after
a global pool), the global pools and Keras 3's convolutions (grouped and dilated ``conv2d``, ``depthwise_conv2d``,
``separable_conv2d``, ``conv2d_transpose``): forward per layer in both modes, loss and gradients (summed where a value
fans out), a 10-step trajectory whose running statistics, optimiser slots and evaluation after training are
compared too, one ``fit`` epoch, and a training state that continues bit for bit. float64 to 1e-10, float32 to
the suite's float32 tolerance (forward) and 1e-4 after 10 steps. Convolutions right before a batch norm have
no bias, as in real residual networks: its gradient is zero up to rounding, which Adam would scale up to
full-size steps in float32.

The reference side of each check is computed once per (case, dtype) and shared by every engine.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np
import pytest
from conformance_support import adam, assert_close, compile_model, random_batch

from nnspec import reference
from nnspec.compiler.init import initial_weights
from nnspec.compiler.ir import ACTIVATIONS, Graph, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.data.dataset import Dataset
from nnspec.reference.backward import loss_and_gradients as reference_loss_and_gradients
from nnspec.reference.train import ReferenceTrainer
from nnspec.runtime.loop import epoch_order
from nnspec.semantics.training_state import from_tensors, to_tensors


def _conv(name: str, filters: int, **extra):
    return ("conv2d", {"name": name, "filters": filters, "kernel": 3, "padding": "same", **extra})


_SAME_SIGMOID = {"padding": "same", "activation": "sigmoid"}
_SAME_TANH_PADDED = {"padding": "same", "output_padding": 1, "activation": "tanh"}

#: Every activation once as a layer, and with arguments also inside a dense layer; each reads the same mix.
ACTIVATION_VARIANTS: list = [name for name in ACTIVATIONS if name != "threshold"] + [
    {"threshold": {"threshold": 0.3, "default_value": -0.5}},
    {"relu": {"max_value": 1.0}},
    {"relu": {"negative_slope": 0.1, "threshold": 0.4}},
    {"relu": {"max_value": 1.5, "negative_slope": 0.2, "threshold": -0.3}},
    {"leaky_relu": {"negative_slope": 0.3}},
    {"elu": {"alpha": 0.5}},
    {"celu": {"alpha": 2.0}},
    {"gelu": {"approximate": True}},
    {"hard_shrink": {"threshold": 0.2}},
    {"soft_shrink": {"threshold": 0.7}},
    {"squareplus": {"b": 0.5}},
]


def _every_activation() -> list:
    layers: list = [("dense", {"name": "mix", "units": 6})]
    branches = []
    for i, act in enumerate(ACTIVATION_VARIANTS):
        layers.append(("activation", {"name": f"act{i}", "activation": act, "inputs": ["mix"]}))
        branches.append(f"act{i}")
        if isinstance(act, dict):
            layers.append(("dense", {"name": f"dense{i}", "units": 2, "activation": act, "inputs": ["input"]}))
            branches.append(f"dense{i}")
    return [*layers, ("concat", {"name": "all", "inputs": branches}), ("dense", {"name": "logits", "units": 3}), "softmax"]


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
            ("batch_norm", {"name": "bn2", "center": False, "epsilon": 1e-2}),
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
    # a concat along the width that reads the graph's input, layer norm right before a global max pool,
    # a skip connection concatenated on features, a layer norm without scale
    "concat-width-norm-then-max": (
        (5, 6, 3),
        [
            _conv("a", 3, activation="tanh"),
            ("conv2d", {"name": "b", "filters": 3, "kernel": 1, "inputs": ["input"]}),
            ("concat", {"name": "wide", "axis": 1, "inputs": ["a", "b", "input"]}),
            ("layer_norm", {"name": "ln1"}),
            ("global_max_pool2d", {"name": "gmp"}),
            ("dense", {"name": "hidden", "units": 5, "activation": "tanh"}),
            ("concat", {"name": "skip", "inputs": ["gmp", "hidden"]}),
            ("layer_norm", {"name": "ln2", "scale": False, "epsilon": 1e-2}),
            ("dropout", {"name": "drop", "rate": 0.2}),
            ("dense", {"name": "logits", "units": 3}),
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
            ("batch_norm", {"name": "bn", "scale": False, "momentum": 0.5}),
            ("concat", {"name": "c", "inputs": ["bn", "h"], "axis": 0}),
            ("dense", {"name": "out", "units": 3}),
        ],
        None,
    ),
    "every-activation": ((5,), _every_activation(), None),
    # Keras 3's convolutions: grouped and dilated, depthwise (multiplier, strides), separable (dilated, a
    # non-square kernel), transposed (same with output_padding, valid with strides below the kernel)
    "conv-family": (
        (6, 6, 4),
        [
            _conv("grouped", 6, groups=2, dilation=2, activation="tanh"),
            ("depthwise_conv2d", {"name": "dw", "kernel": 3, "depth_multiplier": 2, "strides": 2, "padding": "same"}),
            ("activation", {"name": "dw_act", "activation": "tanh"}),
            ("separable_conv2d", {"name": "sep", "filters": 5, "kernel": [3, 2], "dilation": [1, 2], **_SAME_SIGMOID}),
            ("conv2d_transpose", {"name": "up", "filters": 3, "kernel": 3, "strides": 2, **_SAME_TANH_PADDED}),
            ("conv2d_transpose", {"name": "up2", "filters": 2, "kernel": [2, 3], "strides": [3, 2], "use_bias": False}),
            ("depthwise_conv2d", {"name": "dw2", "kernel": 2, "dilation": 2, "use_bias": False, "inputs": ["grouped"]}),
            ("global_avg_pool2d", {"name": "gap", "inputs": ["up2"]}),
            ("global_max_pool2d", {"name": "gmp", "inputs": ["dw2"]}),
            ("concat", {"name": "both", "inputs": ["gap", "gmp"]}),
            ("dense", {"name": "logits", "units": 3}),
            "softmax",
        ],
        None,
    ),
    # language 1.3's element-wise merges with broadcasting (a squeeze-and-excite gate (1, 1, C) times a feature
    # map, a (C,) vector against (H, W, C)), rescaling by a number and per channel, layer_scale, keepdims pools
    "elementwise-merges": (
        (4, 4, 3),
        [
            _conv("f", 3, activation="tanh"),
            ("global_avg_pool2d", {"name": "gap", "keepdims": True}),
            ("dense", {"name": "gate", "units": 3, "activation": "sigmoid"}),
            ("multiply", {"name": "se", "inputs": ["f", "gate"]}),
            ("global_max_pool2d", {"name": "gmp", "inputs": ["f"]}),
            ("subtract", {"name": "sub", "inputs": ["se", "gmp"]}),
            ("conv2d", {"name": "g", "filters": 3, "kernel": 1, "inputs": ["input"]}),
            ("maximum", {"name": "mx", "inputs": ["sub", "g", "f"]}),
            ("minimum", {"name": "mn", "inputs": ["g", "sub"]}),
            ("average", {"name": "avg", "inputs": ["mx", "mn", "gate"]}),
            ("add", {"name": "sum", "inputs": ["avg", "gmp"]}),
            ("rescaling", {"name": "half", "scale": 0.5}),
            ("rescaling", {"name": "rs", "scale": [0.5, -1.0, 2.0], "offset": 0.1}),
            ("layer_scale", {"name": "ls", "init_values": 0.1}),
            ("reshape", {"name": "steps", "shape": [16, 3]}),
            ("global_avg_pool1d", {"name": "gap1", "keepdims": True}),
            ("global_max_pool1d", {"name": "gmp1", "keepdims": True, "inputs": ["steps"]}),
            ("multiply", {"name": "both", "inputs": ["gap1", "gmp1", "gmp"]}),
            ("flatten", {"name": "flat"}),
            ("dense", {"name": "logits", "units": 4}),
            "softmax",
        ],
        None,
    ),
    # language 1.3's padding, cropping, upsampling (bilinear, nearest, a 1x1 image) and shaped dropout masks
    "resample-dropout": (
        (5, 4, 3),
        [
            _conv("c", 4, activation="tanh"),
            ("zero_pad2d", {"name": "pad", "padding": [[1, 0], [2, 1]]}),
            ("crop2d", {"name": "crop", "cropping": [[0, 1], [1, 2]]}),
            ("upsample2d", {"name": "bil", "size": [2, 3], "interpolation": "bilinear"}),
            ("spatial_dropout2d", {"name": "sdrop", "rate": 0.4}),
            ("conv2d", {"name": "c2", "filters": 3, "kernel": 3, "strides": 2, "activation": "tanh"}),
            ("zero_pad2d", {"name": "pad1", "padding": 1}),
            ("upsample2d", {"name": "near", "size": 2}),
            ("dropout", {"name": "drop", "rate": 0.3, "noise_shape": [1, None, 1]}),
            ("crop2d", {"name": "crop1", "cropping": [3, 2]}),
            ("global_avg_pool2d", {"name": "gap", "keepdims": True}),
            ("upsample2d", {"name": "one", "size": [3, 2], "interpolation": "bilinear"}),
            ("flatten", {"name": "flat"}),
            ("dense", {"name": "logits", "units": 3}),
            "softmax",
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
#: The cases trained for ten steps (those with running statistics or a layer norm).
TRAINED = ["concat-width-norm-then-max", "fan-out-dense", "inception-concat", "residual-bn"]
#: (case, dtype) of the ten-step checks: the trained cases in both dtypes; every activation in float64 only (in
#: float32 ten Adam steps through fifty kinked branches amplify rounding beyond float32's tolerance).
TRAJECTORIES = [(case, dtype) for case in TRAINED for dtype in ("float64", "float32")] + [
    ("every-activation", "float64"),
    ("conv-family", "float64"),
    ("elementwise-merges", "float64"),
    ("resample-dropout", "float64"),
]
STEPS = 10


def _graph(case: str, **train) -> Graph:
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


def _frozen(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` made read-only: the cached reference is shared by every engine's test."""
    for value in arrays.values():
        value.flags.writeable = False
    return arrays


@functools.lru_cache(maxsize=None)
def _forward_reference(case: str, training: bool, dtype: str) -> tuple[Graph, dict, np.ndarray, list, np.ndarray]:
    """(graph, weights, inputs, per-layer reference outputs, reference prediction) of one forward check."""
    g = _graph(case)
    weights = _frozen(_weights(g, dtype))
    x, _ = random_batch(g, 6)
    x = x.astype(dtype)
    expected = reference.layer_outputs(g, weights, x, training=training, step=3)
    return g, weights, x, expected, reference.predict(g, weights, x)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_graph_forward_matches_reference(backend_name: str, case: str, training: bool, dtype: str) -> None:
    g, weights, x, expected, predicted = _forward_reference(case, training, dtype)
    model = compile_model(backend_name, g, weights, dtype=dtype)
    outputs = model.layer_outputs(x, training=training, step=3)
    assert len(outputs) == len(g.nodes)
    for node, out, ref in zip(g.nodes, outputs, expected):
        assert out.shape == (6, *node.output_shape), (
            f"{node.name}: engine shape {out.shape}, inferred {node.output_shape}"
        )
        assert np.asarray(out).dtype == np.dtype(dtype), f"{node.name}: computed in {out.dtype}, asked for {dtype}"
        assert_close(out, ref, dtype, f"{case} ({'training' if training else 'inference'}): layer '{node.name}'")
    assert_close(model.predict(x), predicted, dtype, f"{case}: predict")


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


@dataclass(frozen=True)
class _Trained:
    """A reference training run shared by every engine: its start, its batches and where it ended."""

    graph: Graph
    start: dict[str, np.ndarray]
    batches: list[tuple[np.ndarray, np.ndarray]]
    losses: list[float]
    end: ReferenceTrainer


@functools.lru_cache(maxsize=None)
def _ten_steps(case: str, dtype: str) -> _Trained:
    g = _graph(case, optimizer=adam(learning_rate=0.01))
    start = _frozen(_weights(g, dtype, seed=2))
    batches = [tuple(random_batch(g, 8, seed=10 + k)) for k in range(STEPS)]
    batches = [(bx.astype(dtype), by) for bx, by in batches]
    trainer = ReferenceTrainer.start(g, start)
    losses = [trainer.train_step(bx.astype(np.float64), by) for bx, by in batches]
    return _Trained(g, start, batches, losses, trainer)


def _assert_arrays_close(got: dict, expected: dict, tol: float, what: str) -> None:
    assert set(got) == set(expected), what
    for key in expected:
        scale = max(float(np.max(np.abs(expected[key]))), 1e-3)
        np.testing.assert_allclose(got[key], expected[key], rtol=tol, atol=tol * scale, err_msg=f"{what}: {key}")


@pytest.mark.parametrize(("case", "dtype"), TRAJECTORIES)
def test_ten_steps_with_running_statistics_match_reference(backend_name: str, case: str, dtype: str) -> None:
    run = _ten_steps(case, dtype)
    g = run.graph
    model = compile_model(backend_name, g, run.start, dtype=dtype)
    losses = [model.train_step(bx, by) for bx, by in run.batches]
    tol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(losses, run.losses, rtol=tol)
    assert model.step == STEPS
    assert set(run.end.weights) == set(g.weight_keys())
    _assert_arrays_close(model.get_weights(), run.end.weights, tol, f"{case}: after {STEPS} steps")
    if dtype == "float64":  # float32 slots hold gradient sums that cancel: compared where rounding cannot hide
        _assert_arrays_close(model.optimizer_state(), run.end.slots, tol, f"{case}: optimiser slot after {STEPS} steps")
    moved = [k for k, _, _ in g.state_specs() if not np.allclose(run.end.state[k], run.start[k])]
    assert moved == [k for k, _, _ in g.state_specs()], "every running statistic moved in training"
    # inference after training reads the moved statistics
    x = np.concatenate([bx for bx, _ in run.batches])
    y = np.concatenate([by for _, by in run.batches])
    loss, accuracy = model.evaluate_arrays(model.put(x), model.put(y))
    ref_loss, ref_accuracy = reference.evaluate(g, run.end.weights, x.astype(np.float64), y)
    assert loss == pytest.approx(ref_loss, rel=tol)
    if dtype == "float64":
        assert accuracy == ref_accuracy
    assert_close(model.predict(x), reference.predict(g, run.end.weights, x.astype(np.float64)), dtype, "predict")


def test_training_state_round_trip_continues_bit_identically(backend_name: str) -> None:
    """A training state taken after two steps, through the checkpoint's tensors and JSON, into a model
    compiled from other weights: two more steps and an epoch give what the uninterrupted model gives."""
    g = _graph("residual-bn", optimizer=adam(learning_rate=0.01))
    weights = _weights(g, "float32", seed=3)
    batches = [tuple(random_batch(g, 8, seed=20 + k)) for k in range(4)]
    batches = [(bx.astype("float32"), by) for bx, by in batches]
    x = np.concatenate([bx for bx, _ in batches])
    y = np.concatenate([by for _, by in batches])
    order = np.random.default_rng(0).permutation(len(x))
    straight = compile_model(backend_name, g, weights, dtype="float32")
    for bx, by in batches[:2]:
        straight.train_step(bx, by)
    arrays, meta = to_tensors(straight.get_training_state())
    saved = from_tensors(arrays, json.loads(json.dumps(meta)))
    assert saved.step == 2 and set(saved.state) == {k for k, _, _ in g.state_specs()}
    assert all(key.count(".") == 2 for key in saved.slots), "slots are keyed <layer>.<param>.<slot>"
    resumed = compile_model(backend_name, g, initial_weights(g, dtype="float32"), dtype="float32")
    resumed.set_training_state(saved)
    assert resumed.step == 2
    back, _ = to_tensors(resumed.get_training_state())
    assert set(back) == set(arrays) and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    for bx, by in batches[2:]:
        assert resumed.train_step(bx, by) == straight.train_step(bx, by)
    for model in (straight, resumed):
        model.run_epoch(model.put(x), model.put(y), order, 8)
    assert resumed.step == straight.step == 8
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


def test_fit_trains_like_the_reference_and_moves_the_statistics(backend_name: str) -> None:
    """One ``fit`` epoch (the run loop: device data, chunks, validation) against the reference's steps in the
    epoch's order: weights and moving statistics, the training loss and the validation metrics."""
    g = _graph("residual-bn", optimizer=adam(learning_rate=0.01), batch_size=8)
    weights = _weights(g, "float64", seed=6)
    x, y = random_batch(g, 44, seed=40)
    data = Dataset("random", x[:36], y[:36], x[36:], y[36:], x[36:], y[36:], g.output_shape[-1])
    model = compile_model(backend_name, g, weights)
    history = model.fit(data, epochs=1, progress=False)
    trainer = ReferenceTrainer.start(g, weights)
    order = epoch_order(g.train.seed, 0, 36)
    losses = [trainer.train_step(x[order[i * 8 : (i + 1) * 8]], y[order[i * 8 : (i + 1) * 8]]) for i in range(4)]
    assert model.step == 36 // 8 and len(history) == 1
    _assert_arrays_close(model.get_weights(), trainer.weights, 1e-9, "after fit")
    for key, _, _ in g.state_specs():
        assert not np.allclose(trainer.weights[key], weights[key]), f"{key} did not move"
    assert float(history["loss"].iloc[0]) == pytest.approx(np.mean(losses), rel=1e-9)
    val_loss, val_accuracy = reference.evaluate(g, trainer.weights, x[36:], y[36:])
    assert float(history["val_loss"].iloc[0]) == pytest.approx(val_loss, rel=1e-9)
    assert float(history["val_accuracy"].iloc[0]) == val_accuracy
