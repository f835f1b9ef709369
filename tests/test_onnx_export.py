"""``nnspec export --to onnx``: valid ONNX (``onnx.checker``, full check) that predicts with ONNX Runtime
what nnspec predicts, for every spec in specs/ and for graph specs covering every op and activation."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import nnspec
from nnspec.cli import main
from nnspec.compiler.init import initial_weights
from nnspec.compiler.ir import ACTIVATIONS, Graph
from nnspec.compiler.opset import LAYER_TYPES
from nnspec.errors import SpecWarning
from nnspec.interop.onnx_export import ONNX_OPSET, OnnxExportError, build_onnx_model, export_onnx
from nnspec.reference import predict as reference_predict
from nnspec.semantics.weights import save_weights

SPECS = sorted(Path(__file__).resolve().parent.parent.joinpath("specs").glob("*.yaml"))
TOL = 1e-5

# Every op and activation; both paddings, strides, odd sizes (odd "same" padding), avg pool with "same"
# padding, merges across layouts, normalisation on rank-1, rank-2 and rank-3 values, a mid-graph softmax.
EVERY_OP = """\
nnspec: 1.1
name: onnx_every_op
input: {shape: [9, 9, 2]}
layers:
  - conv2d: {filters: 4, kernel: 3, strides: 2, padding: same, activation: elu, name: c1}   # (5, 5, 4)
  - batch_norm: {name: bn1}
  - max_pool2d: {size: 2, strides: 1, padding: same, name: mp}                              # (5, 5, 4)
  - avg_pool2d: {size: 2, padding: same, inputs: input, name: ap}                           # (5, 5, 2), pads (0, 1)
  - conv2d: {filters: 4, kernel: 1, activation: tanh, use_bias: false, name: c2}            # (5, 5, 4)
  - add: {inputs: [mp, c2, c1], name: total}
  - concat: {inputs: [total, c2], axis: 0, name: rows}                                      # (10, 5, 4)
  - conv2d: {filters: 3, kernel: [3, 2], strides: [2, 1], activation: gelu, name: c3}       # valid: (4, 4, 3)
  - layer_norm: {center: false, name: ln}
  - batch_norm: {scale: false, epsilon: 0.01, name: bn2}
  - softmax: {name: channel_softmax}
  - concat: {inputs: [channel_softmax, ln], name: both}                                     # (4, 4, 6)
  - reshape: {shape: [8, 12], name: rs}
  - batch_norm: {center: false, name: bn3}
  - flatten
  - dense: {units: 16, activation: sigmoid}
  - dropout: 0.5
  - dense: {units: 12, activation: softplus, name: d2}
  - global_avg_pool2d: {inputs: c3, name: gap}                                              # (3,)
  - global_max_pool2d: {inputs: c1, name: gmp}                                              # (4,)
  - concat: {inputs: [gap, gmp], name: pooled}                                              # (7,)
  - dense: {units: 12, activation: relu, name: output}                                     # a layer named "output"
  - add: {inputs: [d2, output]}
  - activation: {activation: linear}
  - layer_norm: {name: ln_flat}
  - dense: {units: 10, use_bias: false, name: logits}
  - softmax
"""

# A version-1 chain: valid padding with strides that leave rows unread, every activation as a layer.
CHAIN = """\
nnspec: 1
name: onnx_chain
input: {shape: [11, 10, 3]}
layers:
  - conv2d: {filters: 5, kernel: [3, 4], strides: [2, 3], activation: softplus}     # (5, 3, 5)
  - avg_pool2d: {size: 2, strides: 2}                                              # (2, 1, 5)
  - reshape: [10]
  - dense: {units: 8}
  - activation: relu
  - activation: sigmoid
  - activation: tanh
  - activation: elu
  - activation: gelu
  - activation: softplus
  - activation: linear
  - dense: {units: 6}
"""

# Version 1.2: the 1-D layers (same, causal and dilated convolutions, both pools, both global pools) and
# dense on every step of a sequence (MatMul on the last axis, with and without a bias).
SEQUENCE = """\
nnspec: 1.2
name: onnx_sequence
input: {shape: [11, 3]}
layers:
  - conv1d: {filters: 4, kernel: 3, padding: causal, dilation: 2, activation: relu, name: c1}  # (11, 4)
  - max_pool1d: {size: 2, padding: same}                                                       # (6, 4)
  - conv1d: {filters: 5, kernel: 2, strides: 2, padding: same, use_bias: false}                # (3, 5)
  - avg_pool1d: {size: 2, strides: 1, padding: same}                                           # (3, 5)
  - dense: {units: 4, activation: tanh, name: steps}                                           # (3, 4)
  - dense: {units: 4, use_bias: false, name: steps2}
  - global_max_pool1d: {name: gmax}
  - global_avg_pool1d: {inputs: c1, name: gavg}
  - concat: {inputs: [gmax, gavg]}
  - dense: {units: 3}
"""

# Version 1.3: the element-wise merges broadcasting across ranks and layouts, rescaling, layer_scale, keepdims pools.
MERGES = """\
nnspec: 1.3
name: onnx_merges
input: {shape: [5, 5, 3]}
layers:
  - conv2d: {filters: 3, kernel: 3, padding: same, activation: tanh, name: f}
  - global_avg_pool2d: {keepdims: true, name: sq}
  - multiply: {inputs: [f, sq], name: se}
  - global_max_pool2d: {inputs: f, name: peak}
  - subtract: {inputs: [se, peak], name: sub}
  - maximum: {inputs: [sub, f], name: hi}
  - minimum: {inputs: [f, sub], name: lo}
  - average: {inputs: [hi, lo, sq], name: mid}
  - rescaling: {scale: [0.5, -1.0, 2.0], offset: 0.1}
  - layer_scale: 0.5
  - zero_pad2d: [[1, 0], [0, 2]]
  - crop2d: [[1, 1], [0, 1]]
  - upsample2d: {size: [2, 3], interpolation: bilinear}
  - spatial_dropout2d: 0.3
  - dropout: {rate: 0.2, noise_shape: [1, null, 1]}
  - crop2d: [[0, 0], [6, 6]]
  - upsample2d: [1, 5]
  - reshape: {shape: [-1, 3]}
  - global_avg_pool1d: {keepdims: true, name: g1}
  - global_max_pool1d: {inputs: reshape_1, keepdims: true, name: g2}
  - add: {inputs: [g1, g2, peak]}
  - flatten
"""

# Version 1.3: Keras 3's convolutions (grouped and dilated, depthwise, separable, transposed).
CONVS = """\
nnspec: 1.3
name: onnx_convs
input: {shape: [7, 6, 4]}
layers:
  - conv2d: {filters: 6, kernel: 3, padding: same, groups: 2, dilation: 2, activation: tanh}
  - depthwise_conv2d: {kernel: 3, strides: 2, padding: same, depth_multiplier: 2}
  - separable_conv2d: {filters: 5, kernel: [3, 2], padding: same, activation: relu}
  - conv2d_transpose: {filters: 3, kernel: 3, strides: 2, padding: same, output_padding: 1}
  - conv2d_transpose: {filters: 2, kernel: [2, 3], strides: [3, 2], activation: sigmoid}
  - flatten
"""


def _load(tmp_path: Path, text: str, name: str = "spec.yaml", overrides: list[str] | None = None) -> Graph:
    path = tmp_path / name
    path.write_text(text)
    return nnspec.load(str(path), overrides=overrides)


def _nontrivial(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Initial weights with every bias, gamma, beta and moving statistic moved off its start value."""
    rng = np.random.default_rng(seed)
    weights = initial_weights(graph)
    for key, value in weights.items():
        if key.endswith("moving_variance"):
            fresh = rng.uniform(0.3, 2.0, value.shape)
        elif key.endswith(("moving_mean", "beta", "bias")):
            fresh = value + rng.normal(0.0, 0.3, value.shape)
        elif key.endswith("gamma"):
            fresh = rng.uniform(0.5, 1.5, value.shape)
        else:
            continue
        weights[key] = fresh.astype(value.dtype)
    return weights


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _check_and_run(
    graph: Graph, weights: dict[str, np.ndarray], x: np.ndarray
) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """Export, re-check the model as a reader would, and return it with ONNX Runtime's and nnspec's outputs."""
    model = build_onnx_model(graph, weights)
    reread = onnx.load_from_string(model.SerializeToString())
    onnx.checker.check_model(reread, full_check=True)
    got = _session(reread).run(["output"], {"input": x.astype(np.float32)})[0]
    want = reference_predict(graph, weights, x)
    return reread, got, want


def _inputs(graph: Graph, n: int = 12, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, *graph.input_shape)).astype(np.float32)


def _error(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape and got.dtype == np.float32
    return float(np.max(np.abs(got - want)))


# ---- every spec in specs/ ---------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_predicts_what_nnspec_predicts(spec: Path) -> None:
    graph = nnspec.load(str(spec))
    weights = _nontrivial(graph)
    model, got, want = _check_and_run(graph, weights, _inputs(graph))
    assert _error(got, want) < TOL
    assert model.opset_import[0].version == ONNX_OPSET and model.opset_import[0].domain == ""
    if graph.ends_in_softmax:
        assert np.allclose(got.sum(axis=1), 1.0, atol=1e-5)
    if graph.has_state:
        assert "BatchNormalization" in {n.op_type for n in model.graph.node}


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_gives_nnspecs_logits(spec: Path) -> None:
    """The same with the output moved to the logits (before the final softmax): larger values, no squashing."""
    graph = nnspec.load(str(spec))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)  # the softmax left without a reader
        logits = nnspec.load(str(spec), overrides=[f"output={graph.head}"])
    weights = {k: v for k, v in _nontrivial(graph).items() if k in set(logits.weight_keys())}
    _, got, want = _check_and_run(logits, weights, _inputs(logits))
    assert _error(got, want) < TOL * max(1.0, float(np.max(np.abs(want))))


# ---- small specs covering every op ------------------------------------------------------------------
def test_every_op_and_activation_matches_nnspec(tmp_path: Path) -> None:
    graph = _load(tmp_path, EVERY_OP)
    chain = _load(tmp_path, CHAIN, "chain.yaml")
    sequence = _load(tmp_path, SEQUENCE, "sequence.yaml")
    merges = _load(tmp_path, MERGES, "merges.yaml")
    convs = _load(tmp_path, CONVS, "convs.yaml")
    covered = {n.op for g in (graph, chain, sequence, merges, convs) for n in g.nodes}
    assert covered == set(LAYER_TYPES)
    activations = {n.attrs["activation"].name for g in (graph, chain) for n in g.nodes if "activation" in n.attrs}
    assert activations <= set(ACTIVATIONS) and len(activations) >= 5  # all of them: tests/test_activation_interop.py
    for g in (graph, chain, sequence, merges, convs):
        weights = _nontrivial(g, seed=4)
        _, got, want = _check_and_run(g, weights, _inputs(g, seed=5) * 4.0 - 2.0)
        assert _error(got, want) < TOL * max(1.0, float(np.max(np.abs(want)))), g.name


def test_every_op_graph_keeps_one_node_per_layer_and_few_transposes(tmp_path: Path) -> None:
    graph = _load(tmp_path, EVERY_OP)
    model = build_onnx_model(graph, initial_weights(graph))
    names = {n.name for n in model.graph.node}
    assert {n.name for n in graph.nodes} <= names and len(names) == len(model.graph.node)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Transpose") <= 8  # one per layout change, each made once and reused
    pool = next(n for n in model.graph.node if n.op_type == "AveragePool")
    assert onnx.helper.get_attribute_value(next(a for a in pool.attribute if a.name == "count_include_pad")) == 0
    assert [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == ["batch", 9, 9, 2]


def test_avg_pool_same_averages_in_image_values_only(tmp_path: Path) -> None:
    spec = "nnspec: 1\ninput: {shape: [3, 3, 1]}\nlayers:\n  - avg_pool2d: {size: 2, padding: same}\n  - flatten\n"
    graph = _load(tmp_path, spec)
    model = build_onnx_model(graph, {})
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    got = _session(model).run(None, {"input": x})[0]
    # windows (0,1)x(0,1), (0,1)x(2), (2)x(0,1), (2)x(2): the padded row and column are not counted
    assert got.tolist() == [[3.0, 4.5, 7.5, 9.0]]


def test_flatten_of_channels_last_data_is_nnspecs_order(tmp_path: Path) -> None:
    spec = "nnspec: 1\ninput: {shape: [2, 3, 4]}\nlayers:\n  - max_pool2d: {size: 1}\n  - flatten\n"
    graph = _load(tmp_path, spec)
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    got = _session(build_onnx_model(graph, {})).run(None, {"input": x})[0]
    assert got.tolist() == [list(range(24))]  # (h, w, c) row-major, though the pool ran channels first


def test_float64_spec_is_exported_in_float32(tmp_path: Path) -> None:
    graph = _load(tmp_path, CHAIN.replace("input: {shape: [11, 10, 3]}", "input: {shape: [11, 10, 3], dtype: float64}"))
    weights = _nontrivial(graph)
    assert weights["dense_1.kernel"].dtype == np.float64
    model, got, want = _check_and_run(graph, weights, _inputs(graph))
    assert _error(got, want) < TOL * max(1.0, float(np.max(np.abs(want))))
    assert {t.data_type for t in model.graph.initializer if t.data_type != onnx.TensorProto.INT64} == {
        onnx.TensorProto.FLOAT
    }
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


# ---- refusals ---------------------------------------------------------------------------------------
def test_a_layer_onnx_cannot_express_is_named(tmp_path: Path) -> None:
    graph = _load(tmp_path, CHAIN)
    nodes = list(graph.nodes)
    nodes[4] = dataclasses.replace(nodes[4], op="pixel_shuffle")
    with pytest.raises(OnnxExportError, match=r"layers\[4\] 'activation_1' \(pixel_shuffle\).*no exact form"):
        build_onnx_model(graph.replace(nodes=tuple(nodes)), initial_weights(graph))


def test_export_refuses_bad_paths_and_leaves_nothing(tmp_path: Path) -> None:
    graph = _load(tmp_path, CHAIN)
    with pytest.raises(OnnxExportError, match="must end in .onnx"):
        export_onnx(graph, initial_weights(graph), tmp_path / "model.keras")
    with pytest.raises(OnnxExportError, match="does not exist"):
        export_onnx(graph, initial_weights(graph), tmp_path / "missing" / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


# ---- the command line, with weights trained by nnspec run -------------------------------------------
TINY = """\
nnspec: 1.1
name: tiny_digits_onnx
input: {shape: [8, 8, 1]}
layers:
  - conv2d: {filters: 6, kernel: 3, padding: same, use_bias: false, name: c1}
  - batch_norm: {name: bn}
  - activation: relu
  - max_pool2d: {size: 2}
  - flatten
  - dropout: 0.2
  - dense: {units: 10}
  - softmax
train: {optimizer: {adam: {learning_rate: 0.01}}, batch_size: 32, epochs: 1, seed: 0}
data: {dataset: digits}
"""


def test_cli_exports_trained_weights_that_onnx_runtime_predicts_like_jax(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nnspec.data import load_dataset
    from nnspec.semantics.weights import load_weights

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    run = tmp_path / "run"
    assert main(["run", str(spec), "--backend", "jax", "--device", "cpu", "--out", str(run), "--quiet"]) == 0
    weights_file = str(run / "weights.safetensors")
    out = tmp_path / "tiny.onnx"
    assert main(["export", str(spec), "--weights", weights_file, "--to", "onnx", str(out)]) == 0
    assert f"opset {ONNX_OPSET}" in capsys.readouterr().out
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)

    graph = nnspec.load(str(spec))
    trained = load_weights(weights_file, graph)
    assert not np.allclose(trained["bn.moving_mean"], 0.0)  # the running statistics were trained
    data = load_dataset(graph, str(tmp_path))
    x = data.x_test[:200]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    jax_model = nnspec.compile(graph, "jax", trained, device="cpu")
    want = np.asarray(jax_model.predict(x))
    assert _error(got, want) < TOL
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))
    assert float(np.mean(got.argmax(axis=1) == data.y_test[:200])) > 0.5  # trained, not chance

    by_suffix = tmp_path / "by_suffix.onnx"  # --to defaults from the suffix
    assert main(["export", str(spec), str(by_suffix), "-w", weights_file]) == 0
    assert by_suffix.read_bytes() == out.read_bytes()


def test_cli_refuses_onnx_to_a_keras_name_and_keeps_keras_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "chain.yaml"
    spec.write_text(CHAIN)
    graph = nnspec.load(str(spec))
    save_weights(tmp_path / "w.safetensors", initial_weights(graph), graph)
    assert (
        main(["export", str(spec), str(tmp_path / "m.keras"), "--to", "onnx", "-w", str(tmp_path / "w.safetensors")])
        == 1
    )
    assert "must end in .onnx" in capsys.readouterr().err
    assert main(["export", str(spec), str(tmp_path / "m.h5")]) == 1  # no suffix of ours: Keras, as before
    assert "must end in .keras" in capsys.readouterr().err
    assert not (tmp_path / "m.keras").exists() and not (tmp_path / "m.h5").exists()
