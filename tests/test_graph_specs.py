"""Graph specs (language 1.1): inputs, output, merge layers, state, unused layers, and the opset tables."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import pytest

from nnspec.cli import main
from nnspec.compiler import opset, schema, shapes
from nnspec.compiler.frontend import check_text, diagnose_text, load_spec
from nnspec.compiler.init import initial_weights
from nnspec.compiler.shapes import make_graph
from nnspec.compiler.summary import format_summary
from nnspec.errors import SpecError, SpecWarning

SPECS = sorted((Path(__file__).parent.parent / "specs").glob("*.yaml"))
#: The example specs written in language version 1 (chains of layers).
CHAIN_SPECS = [p for p in SPECS if "\nnnspec: 1\n" in "\n" + p.read_text()]

RESIDUAL = textwrap.dedent(
    """\
    nnspec: 1.1
    name: residual
    input: {shape: [8, 8, 1]}
    layers:
      - conv2d: {filters: 16, kernel: 3, padding: same, activation: relu, name: stem}
      - conv2d: {filters: 16, kernel: 3, padding: same, use_bias: false, name: conv1}
      - batch_norm: {name: bn1}
      - activation: relu
      - conv2d: {filters: 16, kernel: 3, padding: same, use_bias: false, name: conv2}
      - batch_norm: {name: bn2, momentum: 0.9}
      - add: {inputs: [bn2, stem], name: residual}
      - activation: relu
      - global_avg_pool2d
      - dense: {units: 10}
      - softmax
    """
)

INCEPTION = textwrap.dedent(
    """\
    nnspec: 1.1
    name: inception
    input: {shape: [8, 8, 3]}
    layers:
      - conv2d: {filters: 8, kernel: 1, name: branch_1x1}
      - conv2d: {filters: 4, kernel: 3, padding: same, name: branch_3x3, inputs: input}
      - max_pool2d: {size: 3, strides: 1, padding: same, name: pool, inputs: [input]}
      - conv2d: {filters: 2, kernel: 1, name: pool_proj}
      - concat: {inputs: [branch_1x1, branch_3x3, pool_proj], name: mixed}
      - global_max_pool2d
      - layer_norm
      - dense: {units: 10}
    """
)


def spec(layers: str, extra: str = "", version: str = "1.1") -> str:
    return (
        f"nnspec: {version}\ninput: {{shape: [8, 8, 1]}}\nlayers:\n"
        + textwrap.indent(textwrap.dedent(layers), "  ")
        + extra
    )


def test_residual_block_nodes_inputs_shapes_and_state() -> None:
    graph = check_text(RESIDUAL)
    assert [n.name for n in graph] == [
        "stem",
        "conv1",
        "bn1",
        "activation_1",
        "conv2",
        "bn2",
        "residual",
        "activation_2",
        "global_avg_pool2d_1",
        "dense_1",
        "softmax_1",
    ]
    assert [n.inputs for n in graph] == [
        ("input",),
        ("stem",),
        ("conv1",),
        ("bn1",),
        ("activation_1",),
        ("conv2",),
        ("bn2", "stem"),
        ("residual",),
        ("activation_2",),
        ("global_avg_pool2d_1",),
        ("dense_1",),
    ]
    residual = graph.node("residual")
    assert (
        residual.op == "add"
        and residual.input_shapes == ((8, 8, 16), (8, 8, 16))
        and residual.output_shape == (8, 8, 16)
    )
    assert graph.node("global_avg_pool2d_1").output_shape == (16,)
    bn1, bn2 = graph.node("bn1"), graph.node("bn2")
    assert bn1.attrs == {"momentum": 0.99, "epsilon": 1e-3, "center": True, "scale": True}
    assert bn2.attrs["momentum"] == 0.9
    assert [(p.name, p.shape) for p in bn1.params] == [("gamma", (16,)), ("beta", (16,))]
    assert [(p.name, p.shape) for p in bn1.state] == [("moving_mean", (16,)), ("moving_variance", (16,))]
    assert bn1.num_params == 64 and bn1.num_trainable == 32
    assert graph.num_params == graph.num_trainable + 2 * 2 * 16
    assert graph.has_state and not graph.is_chain and graph.output is None
    assert graph.version == 1.1
    assert [k for k, _, _ in graph.state_specs()] == [
        "bn1.moving_mean",
        "bn1.moving_variance",
        "bn2.moving_mean",
        "bn2.moving_variance",
    ]
    weights = initial_weights(graph)
    assert list(weights) == graph.weight_keys()
    assert (
        (weights["bn1.moving_variance"] == 1).all()
        and (weights["bn1.gamma"] == 1).all()
        and (weights["bn1.beta"] == 0).all()
    )


def test_residual_block_matches_make_graph() -> None:
    built = make_graph(
        (8, 8, 1),
        [
            ("conv2d", {"filters": 16, "kernel": 3, "padding": "same", "activation": "relu", "name": "stem"}),
            ("conv2d", {"filters": 16, "kernel": 3, "padding": "same", "use_bias": False, "name": "conv1"}),
            ("batch_norm", {"name": "bn1"}),
            ("activation", {"activation": "relu"}),
            ("conv2d", {"filters": 16, "kernel": 3, "padding": "same", "use_bias": False, "name": "conv2"}),
            ("batch_norm", {"name": "bn2", "momentum": 0.9}),
            ("add", {"inputs": ["bn2", "stem"], "name": "residual"}),
            ("activation", {"activation": "relu"}),
            "global_avg_pool2d",
            ("dense", {"units": 10}),
            "softmax",
        ],
    )
    assert check_text(RESIDUAL).nodes == built.nodes


def test_inception_style_concat() -> None:
    graph = check_text(INCEPTION)
    assert graph.node("branch_3x3").inputs == ("input",) and graph.node("pool").inputs == ("input",)
    assert graph.node("pool_proj").inputs == ("pool",)
    mixed = graph.node("mixed")
    assert mixed.inputs == ("branch_1x1", "branch_3x3", "pool_proj")
    assert mixed.input_shapes == ((8, 8, 8), (8, 8, 4), (8, 8, 2))
    assert mixed.output_shape == (8, 8, 14) and mixed.attrs == {"axis": 2}
    assert graph.node("global_max_pool2d_1").output_shape == (14,)
    norm = graph.node("layer_norm_1")
    assert [(p.name, p.shape) for p in norm.params] == [("gamma", (14,)), ("beta", (14,))] and norm.state == ()
    assert not graph.has_state and graph.num_params == graph.num_trainable


def test_concat_on_a_spatial_axis_and_normalised_axis() -> None:
    graph = check_text(
        spec(
            "- conv2d: {filters: 4, kernel: 3, padding: same, name: a}\n- conv2d: {filters: 4, kernel: 1, name: b, "
            "inputs: a}\n- concat: {inputs: [a, b], axis: 0}\n- global_avg_pool2d\n- dense: {units: 2}\n"
        )
    )
    assert graph.node("concat_1").output_shape == (16, 8, 4) and graph.node("concat_1").attrs["axis"] == 0
    graph = check_text(
        spec(
            "- conv2d: {filters: 4, kernel: 3, padding: same, name: a}\n- concat: {inputs: [a, input], axis: -1}\n- "
            "global_avg_pool2d\n- dense: {units: 2}\n"
        )
    )
    assert graph.node("concat_1").output_shape == (8, 8, 5) and graph.node("concat_1").attrs["axis"] == 2


def test_normalisation_options_choose_the_parameters() -> None:
    graph = check_text(
        spec(
            "- flatten\n- dense: {units: 6}\n- batch_norm: {center: false}\n- layer_norm: {scale: false, epsilon: "
            "1e-5}\n- dense: {units: 2}\n"
        )
    )
    bn, ln = graph.node("batch_norm_1"), graph.node("layer_norm_1")
    assert [p.name for p in bn.params] == ["gamma"] and [p.name for p in bn.state] == ["moving_mean", "moving_variance"]
    assert [p.name for p in ln.params] == ["beta"] and ln.attrs["epsilon"] == 1e-5


@pytest.mark.parametrize("path", CHAIN_SPECS, ids=[p.stem for p in CHAIN_SPECS])
def test_every_version_1_example_spec_is_a_chain(path: Path) -> None:
    assert len(CHAIN_SPECS) >= 8
    graph = load_spec(path)
    previous = "input"
    for position, node in enumerate(graph.nodes):
        assert node.inputs == (previous,) and node.index == position
        assert node.input_shapes == (node.input_shape,)
        previous = node.name
    assert graph.is_chain and graph.output is None and graph.version == 1
    assert graph.output_node is graph.nodes[-1]


def test_inputs_may_be_one_name_or_the_model_input() -> None:
    graph = check_text(
        spec(
            "- flatten: {name: flat}\n- dense: {units: 4, name: a}\n- dense: {units: 4, inputs: flat}\n- flatten: "
            "{inputs: input}\n- dense: {units: 4}\n- add: {inputs: [a, dense_2, dense_3]}\n"
        )
    )
    assert graph.node("dense_2").inputs == ("flat",)
    assert graph.node("flatten_2").inputs == ("input",) and graph.node("flatten_2").input_shape == (8, 8, 1)
    assert graph.node("add_1").inputs == ("a", "dense_2", "dense_3") and graph.node("add_1").flops == 2 * 4


def test_unused_layer_is_a_warning_and_left_out() -> None:
    text = spec(
        "- flatten\n- dense: {units: 32, name: hidden}\n- dropout: {rate: 0.5, name: spare}\n- dense: {units: 10, "
        "inputs: hidden}\n- softmax\n"
    )
    diagnostics = diagnose_text(text, "unused.yaml")
    assert [(d.severity, d.code, d.line, d.column) for d in diagnostics] == [("warning", "W0701", 6, 5)]
    assert (
        diagnostics[0]
        .format()
        .startswith("unused.yaml:6:5: warning[W0701]: layers[2] 'spare' (dropout): its output reaches nothing")
    )
    with pytest.warns(SpecWarning, match=r"W0701.*'spare'") as caught:
        graph = check_text(text, "unused.yaml")
    assert caught[0].message.diagnostic == diagnostics[0]  # type: ignore[union-attr]
    assert [n.name for n in graph] == ["flatten_1", "hidden", "dense_2", "softmax_1"]
    assert [n.index for n in graph] == [0, 1, 3, 4]  # the declaration index (dropout masks use it) is kept


def test_output_picks_a_middle_layer() -> None:
    text = spec(
        "- flatten\n- dense: {units: 10, name: logits}\n- softmax\n- dense: {units: 3}\n", extra="output: logits\n"
    )
    graph, diagnostics = diagnose_text_graph(text)
    assert graph is not None
    assert graph.output == "logits" and graph.output_node is graph.node("logits") and graph.output_shape == (10,)
    assert [n.name for n in graph] == ["flatten_1", "logits"]
    assert [(d.code, d.message.split(":")[0]) for d in diagnostics] == [
        ("W0701", "layers[2] 'softmax_1' (softmax)"),
        ("W0701", "layers[3] 'dense_2' (dense)"),
    ]
    assert graph.head == "logits" and not graph.loss_from_logits


def test_output_is_checked_against_the_loss_and_the_data() -> None:
    codes = [
        d.code
        for d in diagnose_text(
            spec(
                "- conv2d: {filters: 4, kernel: 3, name: features}\n- flatten\n",
                extra="output: features\ndata: {dataset: digits}\n",
            )
        )
    ]
    assert codes == ["E0304", "W0701"]
    codes = [
        d.code
        for d in diagnose_text(
            spec(
                "- flatten\n- dense: {units: 3, name: small}\n- dense: {units: 10}\n",
                extra="output: small\ndata: {dataset: digits}\n",
            )
        )
    ]
    assert codes == ["E0505", "W0701"]


def diagnose_text_graph(text: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        graph = check_text(text)
    return graph, diagnose_text(text)


def test_one_wiring_mistake_does_not_cascade() -> None:
    text = spec(
        "- conv2d: {filters: 4, kernel: 3, padding: same, name: a}\n- add: {inputs: [a, b]}\n- conv2d: {filters: 4, "
        "kernel: 3, name: b}\n- dense: {units: 2}\n"
    )
    assert [d.code for d in diagnose_text(text)] == ["E0702"]  # no E0301 for the dense, no warning for 'b'


@pytest.mark.parametrize(
    "version, ok",
    [("1", True), ("1.1", True), ("1.2", True), ("1.3", True), ("1.4", False), ("2", False), ('"1.1"', False)],
)
def test_language_versions(version: str, ok: bool) -> None:
    codes = [d.code for d in diagnose_text(spec("- flatten\n- dense: {units: 2}\n", version=version))]
    assert codes == ([] if ok else ["E0608" if version.startswith('"') else "E0603"])


def test_parameterless_layers_may_be_bare_names() -> None:
    graph = check_text(
        spec(
            "- conv2d: {filters: 4, kernel: 3}\n- batch_norm\n- global_max_pool2d\n- layer_norm\n- dense: {units: 2}\n"
        )
    )
    assert [n.op for n in graph] == ["conv2d", "batch_norm", "global_max_pool2d", "layer_norm", "dense"]


def test_spec_error_lists_warnings_too() -> None:
    text = spec("- flatten\n- dense: {units: 5, name: spare}\n- dense: {units: 0, inputs: flatten_1}\n")
    with pytest.raises(SpecError) as caught:
        check_text(text)
    assert [(d.severity, d.code) for d in caught.value.diagnostics] == [("warning", "W0701"), ("error", "E0203")]


def test_opset_is_the_one_source_of_the_vocabulary() -> None:
    assert opset.LAYER_TYPES == tuple(schema.LAYER_FIELDS) == tuple(shapes.DEFAULTS)
    merges = {"add", "concat", "multiply", "subtract", "average", "maximum", "minimum"}
    assert shapes.MERGE_OPS == opset.MERGE_OPS == merges
    assert opset.SPATIAL_OPS == {
        "conv1d",
        "conv2d",
        "max_pool1d",
        "max_pool2d",
        "avg_pool1d",
        "avg_pool2d",
        "depthwise_conv2d",
        "separable_conv2d",
        "conv2d_transpose",
    }
    assert opset.STATEFUL_OPS == {"batch_norm"}
    assert opset.WIDE_OPS == {"batch_norm", "layer_norm"}
    assert schema.LAYER_SHORTHAND == {
        "reshape": "shape",
        "dropout": "rate",
        "activation": "activation",
        "layer_scale": "init_values",
        "zero_pad2d": "padding",
        "crop2d": "cropping",
        "upsample2d": "size",
        "spatial_dropout2d": "rate",
    }
    for name, definition in opset.OPS.items():
        assert definition.name == name and definition.doc
        assert set(definition.defaults) <= set(definition.fields), name
        assert not set(definition.fields) & set(opset.COMMON_KEYS), name


def test_summary_shows_inputs_and_trainable_count() -> None:
    text = format_summary(check_text(RESIDUAL))
    residual = next(line for line in text.splitlines() if " residual " in line)
    assert residual.rstrip().endswith("bn2, stem")
    graph = check_text(RESIDUAL)
    assert f"{graph.num_params:,} parameters ({graph.num_trainable:,} trainable)" in text


def test_cli_warnings_only_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "unused.yaml"
    path.write_text(spec("- flatten\n- dense: {units: 5, name: spare}\n- dense: {units: 10, inputs: flatten_1}\n"))
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out == f"{path}: ok (2 layers, 650 parameters; 1 warning)\n"
    assert out.err.startswith(f"{path}:5:5: warning[W0701]: layers[1] 'spare' (dense)")
    assert main(["summary", str(path)]) == 0
    out = capsys.readouterr()
    assert "warning[W0701]" in out.err and "spare" not in out.out
    residual = tmp_path / "residual.yaml"
    residual.write_text(RESIDUAL)
    assert main(["check", str(residual)]) == 0 and capsys.readouterr().err == ""
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec("- flatten\n- dense: {units: 5, name: spare}\n- dense: {units: 10, inputs: spar}\n"))
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "error[E0701]" in err and "did you mean 'spare'?" in err and "W0701" not in err
