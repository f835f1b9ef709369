"""The Keras backend on graph models: residual and concatenating graphs with batch and layer norm.

Their numbers on the suite's Keras engine are checked against the NumPy reference by the conformance suite
(tests/conformance/test_graph_ops.py, cases of the same shape); here: the capabilities, graph models to Keras
files and back, Keras functional models imported, the other Keras engine following the JAX backend (a fresh
process, slow tier), and the graph configs the importer refuses.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import nnspec
from nnspec.backends import get_backend
from nnspec.backends.keras.backend import configured_engine
from nnspec.cli import main
from nnspec.compiler.init import initial_weights
from nnspec.compiler.ir import OptimizerConfig, TrainConfig
from nnspec.compiler.opset import LAYER_TYPES
from nnspec.compiler.shapes import make_graph
from nnspec.interop import KerasImportError
from nnspec.interop.keras_export import export_keras
from nnspec.interop.keras_import import import_keras, spec_text

keras = pytest.importorskip("keras")


def _train(seed: int = 1) -> TrainConfig:
    adam = OptimizerConfig("adam", {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7})
    return TrainConfig(optimizer=adam, batch_size=8, seed=seed)


def residual_graph(dtype: str = "float64"):
    """Conv/batch-norm pairs with a residual add, dropout, global average pooling, a dense batch norm."""
    layers = [
        ("conv2d", {"name": "stem", "filters": 4, "kernel": 3, "padding": "same", "use_bias": False}),
        ("batch_norm", {"name": "bn1", "momentum": 0.9}),
        ("activation", {"name": "relu1", "activation": "relu"}),
        ("conv2d", {"name": "conv2", "filters": 4, "kernel": 3, "padding": "same", "use_bias": False}),
        ("batch_norm", {"name": "bn2", "center": False, "epsilon": 1e-2}),
        ("add", {"name": "res", "inputs": ["bn2", "relu1"]}),
        ("dropout", {"name": "drop", "rate": 0.3}),
        ("global_avg_pool2d", {"name": "gap"}),
        ("dense", {"name": "hidden", "units": 6, "use_bias": False}),
        ("batch_norm", {"name": "bn3", "scale": False, "momentum": 0.5}),
        ("activation", {"name": "act", "activation": "tanh"}),
        ("dense", {"name": "out", "units": 3}),
        "softmax",
    ]
    return make_graph((6, 6, 2), layers, train=_train(), dtype=dtype)


def concat_graph(dtype: str = "float64"):
    """Two branches joined along the width, layer norm, global max pooling, a skip concatenated on features."""
    layers = [
        ("conv2d", {"name": "a", "filters": 4, "kernel": 3, "padding": "same", "activation": "tanh"}),
        ("conv2d", {"name": "b", "filters": 4, "kernel": 1, "inputs": ["input"]}),
        ("concat", {"name": "wide", "axis": 1, "inputs": ["a", "b"]}),
        ("layer_norm", {"name": "ln1"}),
        ("global_max_pool2d", {"name": "gmp"}),
        ("dense", {"name": "hidden", "units": 5, "activation": "tanh"}),
        ("concat", {"name": "skip", "inputs": ["gmp", "hidden"]}),
        ("layer_norm", {"name": "ln2", "scale": False, "epsilon": 1e-2}),
        ("dropout", {"name": "drop", "rate": 0.2}),
        ("dense", {"name": "out", "units": 3}),
        "softmax",
    ]
    return make_graph((5, 6, 3), layers, train=_train(2), dtype=dtype)


GRAPHS = {"residual": residual_graph, "concat": concat_graph}


def _batch(g, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *g.input_shape)).astype(g.dtype), rng.integers(0, g.output_shape[-1], n).astype(np.int32)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference relative to the largest magnitude of the reference."""
    return float(np.max(np.abs(np.asarray(a) - b)) / max(float(np.max(np.abs(b))), 1e-300))


def test_capabilities_come_from_the_layer_registry() -> None:
    from nnspec.backends.keras.layers import supported_ops

    caps = get_backend("keras").capabilities()
    assert caps.layers == supported_ops() == frozenset(LAYER_TYPES)


def test_exported_residual_model_loads_in_plain_keras_and_predicts_the_same(tmp_path) -> None:
    g = residual_graph("float32")
    model = get_backend("keras").compile(g, device="cpu", dtype="float32")
    x, y = _batch(g, 24, seed=4)
    for step in range(3):  # moving statistics away from 0 and 1
        model.train_step(x[8 * step : 8 * step + 8], y[8 * step : 8 * step + 8])
    path = tmp_path / "residual.keras"
    export_keras(g, model.get_weights(), path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    classes = {layer["class_name"] for layer in config["config"]["layers"]}
    assert {layer["module"] for layer in config["config"]["layers"]} == {
        "keras.layers"
    } and "nnspec>" not in json.dumps(config)
    assert {"Add", "BatchNormalization", "GlobalAveragePooling2D", "Dropout"} <= classes
    loaded = keras.saving.load_model(path, safe_mode=True)
    bn = loaded.get_layer("bn1")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn.moving_mean), model.get_weights()["bn1.moving_mean"])
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x), rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.to_keras().predict(x, verbose=0), model.predict(x), rtol=0, atol=1e-6)


def test_exported_graph_imports_back_to_the_same_graph(tmp_path) -> None:
    for g in (residual_graph("float32"), concat_graph("float32")):
        path = tmp_path / f"{g.name}_{len(g.nodes)}.keras"
        weights = {k: v + np.float32(0.25) for k, v in initial_weights(g).items()}
        export_keras(g, weights, path)
        imported = import_keras(str(path))
        assert [(n.name, n.op, n.inputs if n.op in ("add", "concat") else None) for n in imported.graph.nodes] == [
            (n.name, n.op, n.inputs if n.op in ("add", "concat") else None) for n in g.nodes
        ]
        for a, b in zip(imported.graph.nodes, g.nodes):
            assert {k: v for k, v in a.attrs.items() if not k.endswith("_init")} == {
                k: v for k, v in b.attrs.items() if not k.endswith("_init")
            }, a.name
        assert set(imported.weights) == set(weights) and all(
            np.array_equal(imported.weights[k], weights[k]) for k in weights
        )


def _keras_residual() -> "keras.Model":
    layers = keras.layers
    inputs = keras.Input((7, 7, 2), name="image")
    x = layers.Conv2D(6, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(momentum=0.8, epsilon=1e-4, name="stem_bn")(x)
    stem = layers.Activation("relu", name="stem_relu")(x)
    x = layers.Conv2D(6, 3, padding="same", use_bias=False, name="conv")(stem)
    x = layers.BatchNormalization(center=False, name="bn")(x)
    x = layers.Add(name="residual")([stem, x])
    side = layers.Conv2D(2, 1, activation="tanh", name="side")(inputs)
    x = layers.Concatenate(name="join")([x, side])
    x = layers.LayerNormalization(epsilon=1e-5, name="ln")(x)
    pooled = layers.GlobalAveragePooling2D(name="gap")(x)
    peak = layers.GlobalMaxPooling2D(name="gmp")(x)
    x = layers.Concatenate(axis=1, name="both")([pooled, peak])
    x = layers.Dropout(0.25, name="drop")(x)
    outputs = layers.Dense(4, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs, name="keras_resnet")


def test_imported_functional_residual_model_predicts_what_keras_predicts(tmp_path) -> None:
    model = _keras_residual()
    rng = np.random.default_rng(9)
    for layer in model.layers:  # non-trivial gammas, betas and moving statistics
        values = layer.get_weights()
        if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization)):
            layer.set_weights([rng.uniform(0.5, 1.5, v.shape).astype(np.float32) for v in values])
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="sparse_categorical_crossentropy")
    path = tmp_path / "resnet.keras"
    model.save(path)
    spec, weights = tmp_path / "resnet.yaml", tmp_path / "resnet.safetensors"
    assert main(["import", str(path), "-o", str(spec), "--weights-out", str(weights)]) == 0
    text = spec.read_text()
    assert "inputs: [stem_relu, bn]" in text and "inputs: [input]" in text and "nnspec: 1.1" in text
    graph = nnspec.load(str(spec))
    assert graph.node("join").inputs == ("residual", "side") and graph.node("both").attrs["axis"] == 0
    assert graph.node("stem_bn").attrs["momentum"] == 0.8 and graph.node("bn").attrs["center"] is False
    x = rng.normal(size=(5, 7, 7, 2)).astype(np.float32)
    want = model.predict(x, verbose=0)
    for name in ("keras", "jax"):
        got = nnspec.compile(graph, name, str(weights), device="cpu", dtype="float32").predict(x)
        assert np.max(np.abs(got - want)) < 1e-5, name


_OTHER_ENGINE_SCRIPT = textwrap.dedent(
    """
    import keras
    from nnspec.backends import get_backend
    from tests.test_keras_graph import GRAPHS, _batch, _rel

    assert keras.backend.backend() == "{engine}"
    for kind, make in sorted(GRAPHS.items()):
        g = make("float32")
        km, jm = get_backend("keras").compile(g, device="cpu"), get_backend("jax").compile(g, device="cpu")
        x, y = _batch(g, 24, seed=3)
        outs = km.layer_outputs(x[:8], training=True, step=1)
        for out, ref in zip(outs, jm.layer_outputs(x[:8], training=True, step=1)):
            assert _rel(out, ref) < 1e-5, kind
        for step in range(3):
            xb, yb = x[8 * step : 8 * step + 8], y[8 * step : 8 * step + 8]
            assert abs(km.train_step(xb, yb) - jm.train_step(xb, yb)) < 1e-5, kind
        got, want = km.get_weights(), jm.get_weights()
        assert all(_rel(got[k], want[k]) < 1e-4 for k in want), kind
    print("ok")
    """
)


@pytest.mark.slow
def test_graphs_on_the_other_keras_engine_follow_jax() -> None:
    other = {"jax": "tensorflow", "tensorflow": "jax"}[configured_engine()]
    pytest.importorskip(other)
    env = {**os.environ, "KERAS_BACKEND": other, "TF_CPP_MIN_LOG_LEVEL": "3"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", _OTHER_ENGINE_SCRIPT.format(engine=other)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


# ---- refusals ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph_config() -> dict:
    inputs = keras.Input((4, 4, 3), name="x")
    a = keras.layers.Conv2D(3, 1, name="a")(inputs)
    b = keras.layers.BatchNormalization(name="bn")(a)
    c = keras.layers.Add(name="sum")([a, b])
    d = keras.layers.LayerNormalization(name="ln")(c)
    e = keras.layers.Concatenate(name="cat")([d, a])
    out = keras.layers.GlobalMaxPooling2D(name="pool")(e)
    return json.loads(keras.Model(inputs, out).to_json())


def _entry(config: dict, name: str) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["config"]["name"] == name)


def _set(name: str, **changes):
    def change(config: dict) -> dict:
        _entry(config, name)["config"].update(changes)
        return config

    return change


def _cycle(config: dict) -> dict:
    a = _entry(config, "a")
    a["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["ln", 0, 0]
    return config


def _second_output(config: dict) -> dict:
    config["config"]["output_layers"] = [["pool", 0, 0], ["a", 0, 0]]
    return config


def _undefined_parent(config: dict) -> dict:
    _entry(config, "ln")["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["ghost", 0, 0]
    return config


def _garbage_layers(config: dict) -> dict:
    config["config"]["layers"][2] = ["not", "an", "object"]
    return config


@pytest.mark.parametrize(
    "change, expected",
    [
        (_set("bn", axis=1), r"'bn' \(BatchNormalization\): axis=1 is not supported .*last axis"),
        (_set("bn", renorm=True), r"'bn' \(BatchNormalization\): renorm=True is not supported"),
        (_set("ln", axis=[1, 2, 3]), r"'ln' \(LayerNormalization\): axis=\[1, 2, 3\] is not supported"),
        (_set("ln", rms_scaling=True), r"'ln' \(LayerNormalization\): rms_scaling=True"),
        (_set("cat", axis=0), r"'cat' \(Concatenate\): axis=0 is the batch axis"),
        (_set("pool", data_format="channels_first"), r"'pool' \(GlobalMaxPooling2D\): data_format='channels_first'"),
        (_cycle, r"form a cycle"),
        (_second_output, r"has 2 outputs \(pool, a\); nnspec models have one output"),
        (
            _undefined_parent,
            r"'ln' \(LayerNormalization\) reads a layer 'ghost' that the model's config does not define",
        ),
        (_garbage_layers, r"a layer entry of the model config is not an object"),
    ],
)
def test_unsupported_graph_models_are_clear_errors(graph_config, tmp_path, change, expected) -> None:
    import re

    path = tmp_path / "config.json"
    path.write_text(json.dumps(change(copy.deepcopy(graph_config))))
    with pytest.raises(KerasImportError) as info:
        import_keras(str(path))
    assert re.search(expected, str(info.value)), str(info.value)


def test_a_graph_config_imports_to_graph_spec_text(graph_config, tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(graph_config))
    imported = import_keras(str(path))
    text = spec_text(imported)
    assert "inputs: [a, bn]" in text and "inputs: [ln, a]" in text and "nnspec: 1.1" in text
    assert imported.weights is None and [n.op for n in imported.graph.nodes] == [
        "conv2d",
        "batch_norm",
        "add",
        "layer_norm",
        "concat",
        "global_max_pool2d",
    ]
