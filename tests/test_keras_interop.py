"""``nnspec export --to keras`` and ``nnspec import``: the door to Keras 3, both ways.

Exported files load in plain Keras (safe mode, no nnspec) and predict what every nnspec backend predicts;
imported Keras models become specs that every nnspec backend runs to Keras's predictions; what nnspec
cannot map is an error naming the Keras layer.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import nnspec
from nnspec.backends import available_backends
from nnspec.cli import main
from nnspec.compiler.init import initial_weights
from nnspec.interop import KerasImportError
from nnspec.interop.keras_import import import_keras
from nnspec.semantics.weights import load_weights, save_weights

keras = pytest.importorskip("keras")

BACKENDS = available_backends()
TOL = 1e-5

CNN_SPEC = """\
nnspec: 1
name: interop-cnn
input: {shape: [9, 9, 2]}
layers:
  - conv2d: {filters: 4, kernel: 3, padding: same, activation: relu, name: conv1}
  - avg_pool2d: {size: 2, padding: same}
  - conv2d: {filters: 3, kernel: [2, 3], strides: [1, 2], activation: tanh, use_bias: false}
  - max_pool2d: {size: 2, strides: 1}
  - flatten
  - dropout: {rate: 0.5}
  - dense: {units: 12, activation: gelu, kernel_init: he_normal}
  - reshape: {shape: [3, 4]}
  - activation: sigmoid
  - flatten
  - dense: {units: 5}
  - softmax
train:
  optimizer: {sgd: {learning_rate: 0.05, momentum: 0.9}}
  schedule: {exponential: {decay_steps: 10, decay_rate: 0.5}}
  seed: 4
"""


def _x(shape: tuple[int, ...], n: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def _predict_all(spec_path: str, weights_path: str, x: np.ndarray) -> dict[str, np.ndarray]:
    graph = nnspec.load(spec_path)
    return {
        name: nnspec.compile(graph, name, weights_path, device="cpu", dtype="float32").predict(x) for name in BACKENDS
    }


@pytest.fixture()
def exported(tmp_path) -> tuple[str, str, str]:
    spec = tmp_path / "cnn.yaml"
    spec.write_text(CNN_SPEC)
    graph = nnspec.load(str(spec))
    weights = {k: v + np.float32(0.05) for k, v in initial_weights(graph).items()}  # non-zero biases too
    save_weights(tmp_path / "w.safetensors", weights, graph)
    out = tmp_path / "cnn.keras"
    assert main(["export", str(spec), str(out), "--to", "keras", "--weights", str(tmp_path / "w.safetensors")]) == 0
    return str(spec), str(tmp_path / "w.safetensors"), str(out)


# ---- export -------------------------------------------------------------------------------------------
def test_exported_file_predicts_what_every_backend_predicts(exported) -> None:
    spec, weights, out = exported
    model = keras.saving.load_model(out, safe_mode=True)
    x = _x((9, 9, 2))
    want = model.predict(x, verbose=0)
    for name, got in _predict_all(spec, weights, x).items():
        assert np.max(np.abs(got - want)) < TOL, name


def test_exported_file_holds_only_standard_keras_layers(exported) -> None:
    _, _, out = exported
    with zipfile.ZipFile(out) as archive:
        config = json.loads(archive.read("config.json"))
    layers = config["config"]["layers"]
    assert {layer["module"] for layer in layers} == {"keras.layers"}
    assert "Lambda" not in json.dumps(config) and "nnspec>" not in json.dumps(config)
    assert [layer["class_name"] for layer in layers if layer["class_name"] == "Dropout"] == ["Dropout"]
    optimizer = config["compile_config"]["optimizer"]
    assert optimizer["class_name"] == "SGD" and optimizer["config"]["learning_rate"]["class_name"] == "ExponentialDecay"


@pytest.mark.slow
def test_exported_file_loads_in_plain_keras_without_nnspec(exported) -> None:
    _, _, out = exported
    code = (
        "import sys, numpy as np, keras\n"
        f"m = keras.saving.load_model({out!r}, safe_mode=True)\n"
        "print(m.predict(np.zeros((1, 9, 9, 2), 'float32'), verbose=0).shape, any(k.startswith('nnspec') for k in "
        "sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["(1,", "5)", "False"]


def test_export_then_import_gives_back_the_spec_and_weights(exported, tmp_path) -> None:
    spec, weights, out = exported
    back = tmp_path / "back.yaml"
    assert main(["import", out, "-o", str(back), "--weights-out", str(tmp_path / "back.safetensors")]) == 0
    first, second = nnspec.load(spec), nnspec.load(str(back))
    assert [(n.name, n.op, dict(n.attrs)) for n in first.nodes] == [(n.name, n.op, dict(n.attrs)) for n in second.nodes]
    assert second.train.optimizer == first.train.optimizer and second.train.schedule == first.train.schedule
    w1, w2 = load_weights(weights), load_weights(str(tmp_path / "back.safetensors"))
    assert set(w1) == set(w2) and all(np.array_equal(w1[k], w2[k]) for k in w1)


def test_export_refuses_a_path_without_keras_suffix(exported, tmp_path, capsys) -> None:
    spec, weights, _ = exported
    assert main(["export", spec, str(tmp_path / "model.h5"), "--weights", weights]) == 1
    assert "must end in .keras" in capsys.readouterr().err


# ---- import -------------------------------------------------------------------------------------------
def _sequential() -> "keras.Model":
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((10, 10, 1)),
            layers.Conv2D(5, 3, strides=1, padding="valid", activation="elu", bias_initializer="ones"),
            layers.MaxPooling2D((2, 2), padding="same"),
            layers.Conv2D(4, (3, 2), padding="same", use_bias=False),
            layers.ReLU(),
            layers.AveragePooling2D(2, strides=1),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(16, activation="softplus", kernel_initializer=keras.initializers.RandomNormal(stddev=0.2)),
            layers.Reshape((4, 4)),
            layers.Activation("tanh"),
            layers.Flatten(),
            layers.Dense(6, activation="softmax"),
        ],
        name="keras_seq",
    )


def _functional() -> "keras.Model":
    inputs = keras.Input((12,), name="features")
    x = keras.layers.Dense(8, activation="sigmoid", name="hidden")(inputs)
    x = keras.layers.Dropout(0.2, name="drop")(x)
    x = keras.layers.Dense(3, name="logits")(x)
    outputs = keras.layers.Softmax(name="probs")(x)
    return keras.Model(inputs, outputs, name="keras_fn")


@pytest.mark.parametrize("make", [_sequential, _functional])
def test_imported_model_runs_on_every_backend_as_in_keras(make, tmp_path) -> None:
    model = make()
    model.compile(optimizer=keras.optimizers.Adam(0.002), loss="sparse_categorical_crossentropy")
    path = tmp_path / "model.keras"
    model.save(path)
    spec, weights = tmp_path / "spec.yaml", tmp_path / "w.safetensors"
    assert main(["import", str(path), "-o", str(spec), "--weights-out", str(weights)]) == 0
    graph = nnspec.load(str(spec))
    assert graph.train.optimizer.name == "adam" and graph.train.optimizer.learning_rate == 0.002
    x = _x(tuple(model.input_shape[1:]))
    want = model.predict(x, verbose=0)
    for name, got in _predict_all(str(spec), str(weights), x).items():
        assert np.max(np.abs(got - want)) < TOL, name


def test_import_of_a_config_json_writes_a_spec_without_weights(tmp_path, capsys) -> None:
    config = tmp_path / "config.json"
    config.write_text(_sequential().to_json())
    spec = tmp_path / "spec.yaml"
    assert main(["import", str(config), "-o", str(spec)]) == 0
    graph = nnspec.load(str(spec))
    assert graph.nodes[-1].op == "softmax" and graph.nodes[-2].attrs["units"] == 6
    assert main(["import", str(config), "-o", str(spec), "--weights-out", str(tmp_path / "w.safetensors")]) == 1
    assert "holds no weights" in capsys.readouterr().err


# ---- import errors -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_config() -> dict:
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(2, name="out"),
        ]
    )
    return json.loads(model.to_json())


def _layer(config: dict, name: str) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["config"]["name"] == name)


def _with(base: dict, name: str, **changes) -> dict:
    config = copy.deepcopy(base)
    _layer(config, name)["config"].update(changes)
    return config


def _replace(base: dict, name: str, class_name: str, config: dict) -> dict:
    out = copy.deepcopy(base)
    layer = _layer(out, name)
    layer["class_name"], layer["config"] = class_name, {"name": name, **config}
    return out


def _import_error(config: dict, tmp_path) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(KerasImportError) as info:
        import_keras(str(path))
    return str(info.value)


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda b: _with(b, "conv", kernel_constraint={"class_name": "MaxNorm", "config": {"max_value": 2}}),
            r"'conv' \(Conv2D\): kernel_constraint",
        ),
        (
            lambda b: _with(b, "conv", data_format="channels_first"),
            r"'conv' \(Conv2D\): data_format='channels_first'.*channels-last",
        ),
        (lambda b: _with(b, "out", activation="glu"), r"'out' \(Dense\): activation 'glu' has no nnspec equivalent"),
        (
            lambda b: _with(b, "out", kernel_regularizer={"class_name": "L2", "config": {"l2": 0.01}}),
            r"'out' \(Dense\): kernel_regularizer",
        ),
        (
            lambda b: _replace(b, "flat", "Lambda", {"function": "lambda x: x"}),
            r"'flat' \(Lambda\): Lambda layers hold Python code",
        ),
        (
            lambda b: _replace(b, "flat", "GroupNormalization", {}),
            r"'flat' \(GroupNormalization\) has no nnspec equivalent",
        ),
        (lambda b: _replace(b, "flat", "Softmax", {"axis": 1}), r"'flat' \(Softmax\): axis=1 is not supported"),
        (
            lambda b: _replace(b, "flat", "Dropout", {"rate": 0.5, "noise_shape": [1, 1, 1, 4]}),
            r"'flat' \(Dropout\): noise_shape",
        ),
        (
            lambda b: _replace(b, "flat", "Activation", {"activation": "linear"}),
            r"'out' \(dense\): the model's output must be rank-1.*got \(6, 6, 2\)",
        ),
    ],
)
def test_import_errors_name_the_keras_layer(base_config, tmp_path, change, expected) -> None:
    import re

    message = _import_error(change(base_config), tmp_path)
    assert re.search(expected, message), message


def test_import_reports_every_layer_it_cannot_import_in_one_pass(base_config, tmp_path, capsys) -> None:
    config = _with(base_config, "out", activation="glu")
    config = _replace(config, "flat", "GroupNormalization", {})
    config = _with(config, "conv", kernel_regularizer={"class_name": "L2", "config": {"l2": 0.01}})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert main(["import", str(path), "-o", str(tmp_path / "m.yaml")]) == 2
    err = capsys.readouterr().err
    assert "3 of " in err and "layers cannot be imported (3 problems)" in err, err
    lines = [line.strip() for line in err.splitlines()]
    assert any(line.startswith("config.layers[") and "'conv' (Conv2D): kernel_regularizer" in line for line in lines)
    assert any(line.endswith(".class_name: Keras layer 'flat' (GroupNormalization) has no nnspec equivalent") for line in lines)
    assert any("'out' (Dense): activation 'glu' has no nnspec equivalent" in line for line in lines)
    assert any(line.startswith("hint: nnspec imports ") and "Conv2D" in line for line in lines)
    assert not (tmp_path / "m.yaml").exists()


def test_lambda_in_a_keras_archive_is_refused_before_keras_loads_it(tmp_path, monkeypatch) -> None:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2.0, name="double"), keras.layers.Dense(2)]
    )
    path = tmp_path / "lambda.keras"
    model.save(path)
    monkeypatch.setattr(keras.saving, "load_model", lambda *a, **k: pytest.fail("Keras was asked to load the file"))
    with pytest.raises(KerasImportError, match=r"'double' \(Lambda\): Lambda layers hold Python code"):
        import_keras(str(path))


def test_a_multi_input_functional_model_is_refused(tmp_path) -> None:
    first, second = keras.Input((4,), name="first"), keras.Input((4,), name="second")
    model = keras.Model([first, second], keras.layers.Add(name="sum")([first, second]))
    path = tmp_path / "two_inputs.json"
    path.write_text(model.to_json())
    with pytest.raises(KerasImportError, match=r"has 2 inputs \(first, second\); nnspec models have one input"):
        import_keras(str(path))


def test_unreadable_files_are_clear_errors(tmp_path, capsys) -> None:
    assert main(["import", str(tmp_path / "missing.keras"), "-o", str(tmp_path / "s.yaml")]) == 1
    assert "no such file" in capsys.readouterr().err
    legacy = tmp_path / "old.h5"
    legacy.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    assert main(["import", str(legacy), "-o", str(tmp_path / "s.yaml")]) == 1
    assert "legacy HDF5" in capsys.readouterr().err
    garbage = tmp_path / "garbage.json"
    garbage.write_text("[1, 2")
    assert main(["import", str(garbage), "-o", str(tmp_path / "s.yaml")]) == 1
    assert "not a JSON model config" in capsys.readouterr().err
