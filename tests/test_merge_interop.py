"""The element-wise merges, ``rescaling``, ``layer_scale`` and keepdims pools through Keras and ONNX.

A squeeze-and-excite block (a ``(1, 1, C)`` gate times the feature map), a ``(C,)`` vector subtracted from a
map, maximum/minimum/average, rescaling by a number and per channel and a layer scale: exported to Keras it
loads in plain Keras (``Multiply``, ``Subtract``, ``Maximum``, ``Rescaling``, ConvNeXt's ``LayerScale``, ...)
and predicts what the reference predicts, and imports back to the same spec and weights; exported to ONNX,
ONNX Runtime predicts the same. A Keras model written with these layers imports and runs on every backend as
in Keras.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import nnspec
from nnspec.backends import available_backends
from nnspec.cli import main
from nnspec.compiler.init import initial_weights
from nnspec.interop.onnx_export import build_onnx_model
from nnspec.reference import predict as reference_predict
from nnspec.semantics.weights import load_weights, save_weights

keras = pytest.importorskip("keras")

TOL = 1e-5

MERGE_SPEC = """\
nnspec: 1.3
name: interop-merges
input: {shape: [5, 5, 3]}
layers:
  - rescaling: {scale: 0.5, offset: -0.25, name: pre}
  - conv2d: {filters: 4, kernel: 3, padding: same, activation: tanh, name: f}
  - global_avg_pool2d: {keepdims: true, name: squeeze}
  - dense: {units: 4, activation: sigmoid, name: gate}
  - multiply: {inputs: [f, gate], name: se}
  - global_max_pool2d: {inputs: f, name: peak}
  - subtract: {inputs: [se, peak], name: centred}
  - maximum: {inputs: [centred, f], name: hi}
  - minimum: {inputs: [f, centred], name: lo}
  - average: {inputs: [hi, lo, gate], name: mid}
  - add: {inputs: [mid, peak], name: plus}
  - rescaling: {scale: [1.0, -0.5, 2.0, 0.25], name: per_channel}
  - layer_scale: {init_values: 0.5, name: ls}
  - global_avg_pool2d: {name: gap}
  - dense: {units: 3}
  - softmax
"""


def _x(shape: tuple[int, ...], n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


@pytest.fixture()
def merges(tmp_path) -> tuple[str, str, dict[str, np.ndarray]]:
    spec = tmp_path / "merges.yaml"
    spec.write_text(MERGE_SPEC)
    graph = nnspec.load(str(spec))
    rng = np.random.default_rng(1)
    weights = {k: v + rng.normal(scale=0.1, size=v.shape).astype(np.float32) for k, v in initial_weights(graph).items()}
    save_weights(tmp_path / "w.safetensors", weights, graph)
    return str(spec), str(tmp_path / "w.safetensors"), weights


def test_keras_export_predicts_like_the_reference_and_imports_back(merges, tmp_path) -> None:
    spec, weights_path, weights = merges
    out = tmp_path / "merges.keras"
    assert main(["export", spec, str(out), "--to", "keras", "--weights", weights_path]) == 0
    with zipfile.ZipFile(out) as archive:
        classes = {layer["class_name"] for layer in json.loads(archive.read("config.json"))["config"]["layers"]}
    assert {"Multiply", "Subtract", "Maximum", "Minimum", "Average", "Add", "Rescaling", "LayerScale"} <= classes
    model = keras.saving.load_model(str(out), safe_mode=True)
    x = _x((5, 5, 3))
    graph = nnspec.load(spec)
    want = reference_predict(graph, weights, x.astype(np.float64))
    assert np.max(np.abs(model.predict(x, verbose=0) - want)) < TOL

    back = tmp_path / "back.yaml"
    assert main(["import", str(out), "-o", str(back), "--weights-out", str(tmp_path / "back.safetensors")]) == 0
    second = nnspec.load(str(back))
    assert [(n.name, n.op, dict(n.attrs)) for n in graph.nodes] == [(n.name, n.op, dict(n.attrs)) for n in second.nodes]
    w1, w2 = load_weights(weights_path), load_weights(str(tmp_path / "back.safetensors"))
    assert set(w1) == set(w2) and all(np.array_equal(w1[k], w2[k]) for k in w1)


def test_keras_merge_layers_import_and_run_on_every_backend(tmp_path) -> None:
    from keras.src.applications.convnext import LayerScale

    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    x = keras.layers.Conv2D(3, 1, activation="relu", name="c")(x)
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    gate = keras.layers.Conv2D(3, 1, activation="sigmoid", name="excite")(gate)
    x = keras.layers.Multiply(name="se")([x, gate])
    vec = keras.layers.GlobalMaxPooling2D(name="peak")(x)
    x = keras.layers.Subtract(name="sub")([x, vec])
    x = keras.layers.Maximum(name="mx")([x, keras.layers.Minimum(name="mn")([gate, x])])
    x = LayerScale(0.1, 3, name="ls")(x)
    x = keras.layers.Average(name="avg")([x, gate])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in model.get_weights()])
    path = tmp_path / "m.keras"
    model.save(path)
    spec_path, weights_path = tmp_path / "m.yaml", tmp_path / "m.safetensors"
    assert main(["import", str(path), "-o", str(spec_path), "--weights-out", str(weights_path)]) == 0
    graph = nnspec.load(str(spec_path))
    ops = {n.name: n.op for n in graph.nodes}
    assert ops["se"] == "multiply" and ops["ls"] == "layer_scale" and ops["scale"] == "rescaling"
    assert graph.node("squeeze").output_shape == (1, 1, 3)
    x = _x((4, 4, 2), n=5) * 255.0
    want = model.predict(x, verbose=0)
    for name in available_backends():
        got = nnspec.compile(graph, name, str(weights_path), device="cpu", dtype="float32").predict(x)
        assert np.max(np.abs(got - want)) < TOL, name


def test_onnx_export_of_merges_runs_in_onnx_runtime(merges) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    spec, _, weights = merges
    graph = nnspec.load(spec)
    model = onnx.load_from_string(build_onnx_model(graph, weights).SerializeToString())
    onnx.checker.check_model(model, full_check=True)
    assert {"Mul", "Sub", "Max", "Min", "Mean", "Sum"} <= {n.op_type for n in model.graph.node}
    x = _x((5, 5, 3), n=9)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x})[0]
    assert np.max(np.abs(got - reference_predict(graph, weights, x.astype(np.float64)))) < TOL
