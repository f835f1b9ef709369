"""Keras 3's convolutions through Keras export and import and ONNX export.

A model with a grouped dilated ``conv2d``, ``depthwise_conv2d``, ``separable_conv2d`` and ``conv2d_transpose``
(same with ``output_padding``, valid with strides above the kernel): exported to Keras it loads in plain Keras
(``Conv2D(groups, dilation_rate)``, ``DepthwiseConv2D``, ``SeparableConv2D``, ``Conv2DTranspose``) and
predicts what nnspec's reference predicts, and imported back it is the same spec with the same weights;
exported to ONNX (``Conv`` with ``group``, ``ConvTranspose``) ONNX Runtime predicts the same. A Keras model
written with these layers imports and predicts as Keras does on every backend.
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

SPEC = """\
nnspec: 1.3
name: conv-family
input: {shape: [7, 6, 4]}
layers:
  - conv2d: {filters: 6, kernel: 3, padding: same, groups: 2, dilation: 2, activation: relu, name: grouped}
  - depthwise_conv2d: {kernel: 3, strides: 2, padding: same, depth_multiplier: 2, name: dw}
  - separable_conv2d: {filters: 5, kernel: [3, 2], padding: same, dilation: [1, 2], activation: tanh, name: sep}
  - conv2d_transpose: {filters: 3, kernel: 3, strides: 2, padding: same, output_padding: 1, name: up}
  - conv2d_transpose: {filters: 2, kernel: 2, strides: 3, activation: sigmoid, use_bias: false, name: up2}
  - flatten
  - dense: {units: 4}
  - softmax
"""


def _x(shape: tuple[int, ...], n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


@pytest.fixture()
def family(tmp_path) -> tuple[str, str, dict[str, np.ndarray]]:
    spec = tmp_path / "family.yaml"
    spec.write_text(SPEC)
    graph = nnspec.load(str(spec))
    weights = {k: v + np.float32(0.05) for k, v in initial_weights(graph).items()}  # non-zero biases too
    save_weights(tmp_path / "w.safetensors", weights, graph)
    return str(spec), str(tmp_path / "w.safetensors"), weights


def test_keras_export_predicts_like_the_reference_and_imports_back(family, tmp_path) -> None:
    spec, weights_path, weights = family
    graph = nnspec.load(spec)
    assert [n.output_shape for n in graph.nodes[:5]] == [(7, 6, 6), (4, 3, 12), (4, 3, 5), (8, 6, 3), (24, 18, 2)]
    out = tmp_path / "family.keras"
    assert main(["export", spec, str(out), "--to", "keras", "--weights", weights_path]) == 0
    with zipfile.ZipFile(out) as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    classes = {layer["config"]["name"]: layer["class_name"] for layer in layers}
    assert [classes[n] for n in ("grouped", "dw", "sep", "up")] == [
        "Conv2D",
        "DepthwiseConv2D",
        "SeparableConv2D",
        "Conv2DTranspose",
    ]
    model = keras.saving.load_model(str(out), safe_mode=True)
    x = _x((7, 6, 4))
    want = reference_predict(graph, weights, x.astype(np.float64))
    assert np.max(np.abs(model.predict(x, verbose=0) - want)) < TOL

    back = tmp_path / "back.yaml"
    assert main(["import", str(out), "-o", str(back), "--weights-out", str(tmp_path / "back.safetensors")]) == 0
    second = nnspec.load(str(back))
    assert [(n.name, n.op, dict(n.attrs)) for n in graph.nodes] == [(n.name, n.op, dict(n.attrs)) for n in second.nodes]
    w1, w2 = load_weights(weights_path), load_weights(str(tmp_path / "back.safetensors"))
    assert set(w1) == set(w2) and all(np.array_equal(w1[k], w2[k]) for k in w1)


def test_keras_convolutions_import_and_predict_like_keras_on_every_backend(tmp_path) -> None:
    model = keras.Sequential(
        [
            keras.Input((6, 5, 4)),
            keras.layers.Conv2D(4, 2, groups=4, dilation_rate=(2, 1), padding="same", name="g"),
            keras.layers.DepthwiseConv2D(3, depth_multiplier=3, activation="relu", name="dw"),
            keras.layers.SeparableConv2D(3, 2, strides=(1, 2), padding="same", name="sep"),
            keras.layers.Conv2DTranspose(2, (3, 2), strides=(2, 3), output_padding=(1, 0), name="up"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(2, activation="softmax", name="out"),
        ]
    )
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in model.get_weights()])
    path = tmp_path / "m.keras"
    model.save(path)
    spec_path, weights_path = tmp_path / "m.yaml", tmp_path / "m.safetensors"
    assert main(["import", str(path), "-o", str(spec_path), "--weights-out", str(weights_path)]) == 0
    graph = nnspec.load(str(spec_path))
    ops = [n.op for n in graph.nodes][:4]
    assert ops == ["conv2d", "depthwise_conv2d", "separable_conv2d", "conv2d_transpose"]
    assert graph.nodes[0].attrs["groups"] == 4 and graph.nodes[1].attrs["depth_multiplier"] == 3
    assert graph.nodes[3].attrs["output_padding"] == (1, 0)
    x = _x((6, 5, 4))
    want = model.predict(x, verbose=0)
    for name in available_backends():
        got = nnspec.compile(graph, name, str(weights_path), device="cpu", dtype="float32").predict(x)
        assert np.max(np.abs(got - want)) < TOL, name


def test_onnx_export_of_the_convolutions_runs_in_onnx_runtime(family) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    spec, _, weights = family
    graph = nnspec.load(spec)
    model = onnx.load_from_string(build_onnx_model(graph, weights).SerializeToString())
    onnx.checker.check_model(model, full_check=True)
    groups = {n.name: a.i for n in model.graph.node for a in n.attribute if a.name == "group"}
    assert groups["grouped"] == 2 and groups["dw"] == 6
    assert [n.op_type for n in model.graph.node].count("ConvTranspose") == 2
    x = _x((7, 6, 4), n=6)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x})[0]
    assert np.max(np.abs(got - reference_predict(graph, weights, x.astype(np.float64)))) < TOL
