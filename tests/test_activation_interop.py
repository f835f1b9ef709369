"""Keras 3's activations through nnspec's front end, Keras export and import, and ONNX export.

The spec language takes every Keras activation by name and the parametrised ones as ``{name: {args}}``. A
spec using them exports to a Keras file that plain Keras loads (names, and ``ReLU``/``LeakyReLU``/``ELU`` layers
for arguments) and that predicts what nnspec's reference predicts; one Keras cannot write without custom code
is refused with a reason. Keras models written with Keras's activation names and layers import and predict
as Keras does on every backend; the ONNX export predicts the reference's values in ONNX Runtime.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import nnspec
from nnspec.backends import available_backends
from nnspec.cli import main
from nnspec.compiler.frontend import analyse_text
from nnspec.compiler.init import initial_weights
from nnspec.compiler.ir import ACTIVATIONS
from nnspec.interop.onnx_export import build_onnx_model
from nnspec.reference import predict as reference_predict
from nnspec.semantics.weights import save_weights

keras = pytest.importorskip("keras")

TOL = 1e-5
#: Activations Keras can name with their default arguments (``threshold`` needs two).
NAMED = [name for name in ACTIVATIONS if name != "threshold"]
#: Parametrised activations Keras writes as a standard layer.
EXPORTABLE_ARGS = [
    "{relu: {max_value: 6}}",
    "{relu: {negative_slope: 0.1, threshold: 0.2, max_value: 1.5}}",
    "{leaky_relu: {negative_slope: 0.3}}",
    "{elu: {alpha: 0.5}}",
]
#: Parametrised activations with no standard Keras layer.
NOT_EXPORTABLE = [
    "{gelu: {approximate: true}}",
    "{celu: {alpha: 2.0}}",
    "{hard_shrink: {threshold: 0.2}}",
    "{threshold: {threshold: 0.1, default_value: -1}}",
]


def _spec(activations: list[str]) -> str:
    layers = ["  - dense: {units: 6, name: mix}"]
    branches = []
    for i, act in enumerate(activations):
        layers.append(f"  - activation: {{activation: {act}, inputs: mix, name: a{i}}}")
        layers.append(f"  - dense: {{units: 2, activation: {act}, inputs: input, name: d{i}}}")
        branches += [f"a{i}", f"d{i}"]
    layers += [f"  - concat: {{inputs: [{', '.join(branches)}]}}", "  - dense: {units: 3}", "  - softmax"]
    return "nnspec: 1\nname: acts\ninput: {shape: [5]}\nlayers:\n" + "\n".join(layers) + "\n"


def _write(tmp_path, activations: list[str]) -> tuple[str, str, dict[str, np.ndarray]]:
    spec = tmp_path / "acts.yaml"
    spec.write_text(_spec(activations))
    graph = nnspec.load(str(spec))
    rng = np.random.default_rng(0)
    weights = {k: rng.normal(scale=0.7, size=v.shape).astype(np.float32) for k, v in initial_weights(graph).items()}
    save_weights(tmp_path / "w.safetensors", weights, graph)
    return str(spec), str(tmp_path / "w.safetensors"), weights


def _x(n: int = 9) -> np.ndarray:
    return np.random.default_rng(1).normal(scale=2.0, size=(n, 5)).astype(np.float32)


def test_activation_arguments_are_checked_with_positions() -> None:
    text = "nnspec: 1\ninput: {shape: [4]}\nlayers:\n  - dense: {units: 3, activation: {relu: {max_valu: 6}}}\n"
    graph, report = analyse_text(text)
    assert graph is None
    problem = report[0]
    assert problem.code == "E0206" and "unknown argument 'max_valu' of activation relu" in problem.message
    assert "did you mean 'max_value'" in problem.message and (problem.line, problem.column) == (4, 43)
    graph, report = analyse_text(text.replace("{relu: {max_valu: 6}}", "threshold"))
    assert graph is None and "activation threshold needs threshold and default_value" in report[0].message
    graph, _ = analyse_text(text.replace("max_valu: 6", "max_value: 6, negative_slope: 0.0"))
    assert graph is not None and str(graph.nodes[0].attrs["activation"]) == "relu(max_value=6)"  # defaults dropped


def test_keras_export_of_every_activation_loads_in_keras_and_predicts_like_the_reference(tmp_path) -> None:
    spec, weights_path, weights = _write(tmp_path, NAMED + EXPORTABLE_ARGS)
    out = tmp_path / "acts.keras"
    assert main(["export", spec, str(out), "--to", "keras", "--weights", weights_path]) == 0
    with zipfile.ZipFile(out) as archive:
        classes = [layer["class_name"] for layer in json.loads(archive.read("config.json"))["config"]["layers"]]
    assert {"ReLU", "LeakyReLU", "ELU", "Activation"} <= set(classes)
    model = keras.saving.load_model(str(out), safe_mode=True)
    x = _x()
    want = reference_predict(nnspec.load(spec), weights, x.astype(np.float64))
    assert np.max(np.abs(model.predict(x, verbose=0) - want)) < TOL

    back = tmp_path / "back.yaml"
    assert main(["import", str(out), "-o", str(back), "--weights-out", str(tmp_path / "back.safetensors")]) == 0
    again = nnspec.compile(nnspec.load(str(back)), "jax", str(tmp_path / "back.safetensors"), device="cpu")
    assert np.max(np.abs(again.predict(x) - want)) < TOL


@pytest.mark.parametrize("act", NOT_EXPORTABLE)
def test_keras_export_refuses_an_activation_keras_cannot_write(tmp_path, act, capsys) -> None:
    spec, weights_path, _ = _write(tmp_path, [act])
    assert main(["export", spec, str(tmp_path / "a.keras"), "--to", "keras", "--weights", weights_path]) == 1
    assert "has no standard Keras layer" in capsys.readouterr().err
    assert not (tmp_path / "a.keras").exists()


def test_keras_activations_import_and_predict_as_keras_on_every_backend(tmp_path) -> None:
    inputs = keras.Input((5,))
    mix = keras.layers.Dense(6, name="mix")(inputs)
    branches = [keras.layers.Dense(2, activation=name, name=f"d_{name}")(mix) for name in NAMED]
    branches += [
        keras.layers.ReLU(max_value=6.0, name="relu6_layer")(mix),
        keras.layers.ReLU(negative_slope=0.1, threshold=0.3, name="relu_args")(mix),
        keras.layers.LeakyReLU(name="leaky_default")(mix),  # the layer's default slope is 0.3, not 0.2
        keras.layers.ELU(alpha=0.4, name="elu_args")(mix),
        keras.layers.Activation("hard_swish", name="hs")(mix),
    ]
    merged = keras.layers.Concatenate()(branches)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(merged))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(scale=0.6, size=w.shape).astype("float32") for w in model.get_weights()])
    path = tmp_path / "m.keras"
    model.save(path)
    spec_path, weights_path = tmp_path / "m.yaml", tmp_path / "m.safetensors"
    assert main(["import", str(path), "-o", str(spec_path), "--weights-out", str(weights_path)]) == 0
    graph = nnspec.load(str(spec_path))
    acts = {n.name: str(n.attrs["activation"]) for n in graph.nodes if "activation" in n.attrs}
    assert acts["leaky_default"] == "leaky_relu(negative_slope=0.3)" and acts["relu6_layer"] == "relu(max_value=6)"
    x = _x(6)
    want = model.predict(x, verbose=0)
    for name in available_backends():
        got = nnspec.compile(graph, name, str(weights_path), device="cpu", dtype="float32").predict(x)
        assert np.max(np.abs(got - want)) < TOL, name


def test_onnx_export_of_every_activation_runs_in_onnx_runtime(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    spec, _, weights = _write(tmp_path, NAMED + EXPORTABLE_ARGS + NOT_EXPORTABLE + ["{squareplus: {b: 0}}"])
    graph = nnspec.load(spec)
    model = onnx.load_from_string(build_onnx_model(graph, weights).SerializeToString())
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"Gelu", "Mish", "HardSwish", "Shrink", "Celu", "LogSoftmax", "Selu", "Where"} <= ops
    x = _x()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x})[0]
    assert np.max(np.abs(got - reference_predict(graph, weights, x.astype(np.float64)))) < TOL
