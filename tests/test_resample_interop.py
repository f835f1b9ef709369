"""``zero_pad2d``, ``crop2d``, ``upsample2d`` and the shaped dropouts through Keras and ONNX.

Exported to Keras, a spec with them loads in plain Keras (``ZeroPadding2D``, ``Cropping2D``, ``UpSampling2D``
nearest and bilinear, ``Dropout(noise_shape=...)``, ``SpatialDropout2D``), predicts what the reference predicts
and imports back to the same spec; exported to ONNX (``Pad``, ``Slice``, ``Resize``), ONNX Runtime predicts the
same. A Keras model written with these layers imports and predicts as Keras does on every backend.
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
from nnspec.reference.resample import interpolation_matrix
from nnspec.semantics.numpy_ops import NumpyOps
from nnspec.semantics.resample import upsample2d
from nnspec.semantics.weights import save_weights

keras = pytest.importorskip("keras")

TOL = 1e-5

SPEC = """\
nnspec: 1.3
name: interop-resample
input: {shape: [5, 4, 2]}
layers:
  - conv2d: {filters: 3, kernel: 3, padding: same, activation: tanh, name: c}
  - zero_pad2d: {padding: [[1, 0], [2, 1]], name: pad}
  - crop2d: {cropping: [[0, 1], [1, 1]], name: crop}
  - upsample2d: {size: [2, 3], interpolation: bilinear, name: bil}
  - spatial_dropout2d: {rate: 0.3, name: sdrop}
  - zero_pad2d: {padding: 1, name: pad1}
  - upsample2d: {size: 2, name: near}
  - dropout: {rate: 0.2, noise_shape: [1, null, 1], name: drop}
  - global_avg_pool2d: {name: gap}
  - dense: {units: 3}
  - softmax
"""


def _x(shape: tuple[int, ...], n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


@pytest.fixture()
def resample(tmp_path) -> tuple[str, str, dict[str, np.ndarray]]:
    spec = tmp_path / "resample.yaml"
    spec.write_text(SPEC)
    graph = nnspec.load(str(spec))
    rng = np.random.default_rng(1)
    weights = {k: v + rng.normal(scale=0.1, size=v.shape).astype(np.float32) for k, v in initial_weights(graph).items()}
    save_weights(tmp_path / "w.safetensors", weights, graph)
    return str(spec), str(tmp_path / "w.safetensors"), weights


def test_shared_upsampling_is_the_reference_interpolation() -> None:
    """The engines' form (shifted copies blended and interleaved) equals the reference's matrices to rounding."""
    x = np.random.default_rng(2).normal(size=(2, 3, 1, 2))
    for size in [(2, 3), (4, 1), (3, 5)]:
        got = upsample2d(NumpyOps(), x, (3, 1, 2), size, "bilinear")
        a, b = interpolation_matrix(3, size[0], "bilinear"), interpolation_matrix(1, size[1], "bilinear")
        want = np.einsum("qw,bpwc->bpqc", b, np.einsum("ph,bhwc->bpwc", a, x))
        assert np.max(np.abs(got - want)) < 1e-15
        assert np.allclose(interpolation_matrix(3, size[0], "bilinear").sum(axis=1), 1.0)


def test_keras_export_predicts_like_the_reference_and_imports_back(resample, tmp_path) -> None:
    spec, weights_path, weights = resample
    out = tmp_path / "resample.keras"
    assert main(["export", spec, str(out), "--to", "keras", "--weights", weights_path]) == 0
    with zipfile.ZipFile(out) as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    by_name = {layer["config"]["name"]: layer for layer in layers}
    assert by_name["pad"]["class_name"] == "ZeroPadding2D" and by_name["crop"]["class_name"] == "Cropping2D"
    assert by_name["bil"]["config"]["interpolation"] == "bilinear" and by_name["near"]["class_name"] == "UpSampling2D"
    assert by_name["sdrop"]["class_name"] == "SpatialDropout2D"
    assert by_name["drop"]["config"]["noise_shape"] == [None, 1, None, 1]
    model = keras.saving.load_model(str(out), safe_mode=True)
    x = _x((5, 4, 2))
    graph = nnspec.load(spec)
    want = reference_predict(graph, weights, x.astype(np.float64))
    assert np.max(np.abs(model.predict(x, verbose=0) - want)) < TOL

    back = tmp_path / "back.yaml"
    assert main(["import", str(out), "-o", str(back), "--weights-out", str(tmp_path / "back.safetensors")]) == 0
    second = nnspec.load(str(back))
    assert [(n.name, n.op, dict(n.attrs)) for n in graph.nodes] == [(n.name, n.op, dict(n.attrs)) for n in second.nodes]


def test_keras_resample_layers_import_and_run_on_every_backend(tmp_path) -> None:
    inputs = keras.Input((5, 6, 2))
    x = keras.layers.ZeroPadding2D(((0, 1), (2, 1)), name="pad")(inputs)
    x = keras.layers.Conv2D(3, 3, activation="relu", name="c")(x)
    x = keras.layers.Dropout(0.2, noise_shape=(None, 1, 1, 3), name="drop")(x)
    x = keras.layers.Cropping2D(((1, 1), (0, 1)), name="crop")(x)
    x = keras.layers.UpSampling2D((2, 3), interpolation="bilinear", name="bil")(x)
    x = keras.layers.SpatialDropout2D(0.3, name="sdrop")(x)
    x = keras.layers.UpSampling2D(2, name="near")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in model.get_weights()])
    path = tmp_path / "m.keras"
    model.save(path)
    spec_path, weights_path = tmp_path / "m.yaml", tmp_path / "m.safetensors"
    assert main(["import", str(path), "-o", str(spec_path), "--weights-out", str(weights_path)]) == 0
    graph = nnspec.load(str(spec_path))
    ops = {n.name: (n.op, dict(n.attrs)) for n in graph.nodes}
    assert ops["pad"] == ("zero_pad2d", {"padding": ((0, 1), (2, 1))})
    assert ops["crop"] == ("crop2d", {"cropping": ((1, 1), (0, 1))})
    assert ops["drop"] == ("dropout", {"rate": 0.2, "noise_shape": (1, 1, 3)})
    assert ops["bil"][1]["interpolation"] == "bilinear" and ops["sdrop"][0] == "spatial_dropout2d"
    x = _x((5, 6, 2), n=5)
    want = model.predict(x, verbose=0)
    for name in available_backends():
        got = nnspec.compile(graph, name, str(weights_path), device="cpu", dtype="float32").predict(x)
        assert np.max(np.abs(got - want)) < TOL, name


def test_a_keras_noise_shape_over_the_batch_is_refused(tmp_path) -> None:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dropout(0.5, noise_shape=(1, 4), name="d")(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    assert main(["import", str(path), "-o", str(tmp_path / "m.yaml")]) == 2


def test_onnx_export_of_resampling_runs_in_onnx_runtime(resample) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    spec, _, weights = resample
    graph = nnspec.load(spec)
    model = onnx.load_from_string(build_onnx_model(graph, weights).SerializeToString())
    onnx.checker.check_model(model, full_check=True)
    assert {"Pad", "Slice", "Resize", "Identity"} <= {n.op_type for n in model.graph.node}
    x = _x((5, 4, 2), n=9)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x})[0]
    assert np.max(np.abs(got - reference_predict(graph, weights, x.astype(np.float64)))) < TOL
