"""The 1-D layers and ``dense`` on any rank through Keras export and import and ONNX export.

A sequence model with ``conv1d`` (same, causal, dilated, strided), both 1-D pools, ``dense`` on the steps and
both 1-D global pools: exported to Keras it loads in plain Keras (``Conv1D``, ``MaxPooling1D``, ...) and
predicts what nnspec's reference predicts; imported back it is the same spec with the same weights; exported
to ONNX (``Conv``/``MaxPool``/``AveragePool`` with 1-D kernels, ``MatMul`` for dense) ONNX Runtime predicts
the same. Keras models written with Keras's own 1-D layers import and run on every backend as in Keras.
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

SEQUENCE_SPEC = """\
nnspec: 1.2
name: interop-seq
input: {shape: [12, 3]}
layers:
  - conv1d: {filters: 4, kernel: 3, padding: causal, dilation: 2, activation: relu, name: causal}
  - max_pool1d: {size: 2}
  - conv1d: {filters: 5, kernel: 2, strides: 2, padding: same, activation: tanh, use_bias: false}
  - avg_pool1d: {size: 2, strides: 1, padding: same}
  - dense: {units: 6, activation: elu, name: per_step}
  - global_max_pool1d: {name: gmax}
  - global_avg_pool1d: {inputs: per_step, name: gavg}
  - concat: {inputs: [gmax, gavg]}
  - dense: {units: 4}
  - softmax
"""


def _x(shape: tuple[int, ...], n: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


@pytest.fixture()
def sequence(tmp_path) -> tuple[str, str, dict[str, np.ndarray]]:
    spec = tmp_path / "seq.yaml"
    spec.write_text(SEQUENCE_SPEC)
    graph = nnspec.load(str(spec))
    weights = {k: v + np.float32(0.05) for k, v in initial_weights(graph).items()}  # non-zero biases too
    save_weights(tmp_path / "w.safetensors", weights, graph)
    return str(spec), str(tmp_path / "w.safetensors"), weights


def test_keras_export_predicts_what_nnspec_predicts_and_imports_back(sequence, tmp_path) -> None:
    spec, weights_path, weights = sequence
    out = tmp_path / "seq.keras"
    assert main(["export", spec, str(out), "--to", "keras", "--weights", weights_path]) == 0
    with zipfile.ZipFile(out) as archive:
        classes = [layer["class_name"] for layer in json.loads(archive.read("config.json"))["config"]["layers"]]
    assert {"Conv1D", "MaxPooling1D", "AveragePooling1D", "GlobalMaxPooling1D", "GlobalAveragePooling1D"} <= set(
        classes
    )
    model = keras.saving.load_model(str(out), safe_mode=True)
    x = _x((12, 3))
    graph = nnspec.load(spec)
    want = reference_predict(graph, weights, x.astype(np.float64))
    assert np.max(np.abs(model.predict(x, verbose=0) - want)) < TOL

    back = tmp_path / "back.yaml"
    assert main(["import", str(out), "-o", str(back), "--weights-out", str(tmp_path / "back.safetensors")]) == 0
    second = nnspec.load(str(back))
    assert [(n.name, n.op, dict(n.attrs)) for n in graph.nodes] == [(n.name, n.op, dict(n.attrs)) for n in second.nodes]
    w1, w2 = load_weights(weights_path), load_weights(str(tmp_path / "back.safetensors"))
    assert set(w1) == set(w2) and all(np.array_equal(w1[k], w2[k]) for k in w1)


def test_keras_1d_layers_import_and_run_on_every_backend(tmp_path) -> None:
    model = keras.Sequential(
        [
            keras.Input((10, 2)),
            keras.layers.Conv1D(3, 3, padding="causal", dilation_rate=2, activation="relu", name="c1"),
            keras.layers.AveragePooling1D(2, padding="same", name="p1"),
            keras.layers.Conv1D(4, 2, strides=2, name="c2"),
            keras.layers.MaxPooling1D(1, name="p2"),
            keras.layers.Dense(3, activation="tanh", name="d1"),  # on every step: (steps, 3)
            keras.layers.GlobalAveragePooling1D(name="g"),
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
    assert [n.op for n in graph.nodes][:7] == [
        "conv1d",
        "avg_pool1d",
        "conv1d",
        "max_pool1d",
        "dense",
        "global_avg_pool1d",
        "dense",
    ]
    assert graph.nodes[0].attrs["padding"] == "causal" and graph.nodes[0].attrs["dilation"] == (2,)
    x = _x((10, 2), n=5)
    want = model.predict(x, verbose=0)
    for name in available_backends():
        got = nnspec.compile(graph, name, str(weights_path), device="cpu", dtype="float32").predict(x)
        assert np.max(np.abs(got - want)) < TOL, name


def test_onnx_export_of_1d_layers_and_dense_on_steps_runs_in_onnx_runtime(sequence) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    spec, _, weights = sequence
    graph = nnspec.load(spec)
    model = onnx.load_from_string(build_onnx_model(graph, weights).SerializeToString())
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert {"Conv", "MaxPool", "AveragePool", "MatMul", "ReduceMax", "ReduceMean"} <= set(ops)
    causal = next(n for n in model.graph.node if n.name == "causal")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in causal.attribute}
    assert attrs["pads"] == [4, 0] and attrs["dilations"] == [2] and attrs["kernel_shape"] == [3]
    x = _x((12, 3), n=9)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x})[0]
    assert np.max(np.abs(got - reference_predict(graph, weights, x.astype(np.float64)))) < TOL
