"""Shapes, parameter counts and FLOPs against hand-computed values, through the whole front end."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nnspec.compiler.frontend import check_text, load_spec
from nnspec.compiler.shapes import make_graph, padding_pairs, same_padding

SPECS = Path(__file__).parent.parent / "specs"


def model(input_shape: str, layers: str) -> str:
    return f"nnspec: 1\ninput: {{shape: {input_shape}}}\nlayers:\n" + textwrap.indent(textwrap.dedent(layers), "  ")


def test_keras_mnist_convnet_has_34826_parameters() -> None:
    graph = load_spec(SPECS / "mnist_cnn.yaml")
    assert [n.output_shape for n in graph] == [
        (26, 26, 32),
        (13, 13, 32),
        (11, 11, 64),
        (5, 5, 64),
        (1600,),
        (1600,),
        (10,),
        (10,),
    ]
    assert [n.num_params for n in graph] == [3 * 3 * 1 * 32 + 32, 0, 3 * 3 * 32 * 64 + 64, 0, 0, 0, 1600 * 10 + 10, 0]
    assert graph.num_params == 34_826
    kernel = graph.nodes[2].params[0]
    assert kernel.shape == (3, 3, 32, 64) and (kernel.fan_in, kernel.fan_out) == (3 * 3 * 32, 3 * 3 * 64)
    assert graph.nodes[6].params[0].shape == (1600, 10)


def test_front_end_matches_make_graph() -> None:
    graph = load_spec(SPECS / "mnist_cnn.yaml")
    built = make_graph(
        (28, 28, 1),
        [
            ("conv2d", {"filters": 32, "kernel": 3, "activation": "relu"}),
            ("max_pool2d", {"size": 2}),
            ("conv2d", {"filters": 64, "kernel": 3, "activation": "relu"}),
            ("max_pool2d", {"size": 2}),
            "flatten",
            ("dropout", {"rate": 0.5}),
            ("dense", {"units": 10}),
            "softmax",
        ],
    )
    assert graph.nodes == built.nodes


@pytest.mark.parametrize(
    "n, k, s, padding, expected",
    [
        (28, 3, 1, "valid", 26),
        (7, 3, 2, "valid", 3),  # floor((7 - 3) / 2) + 1
        (8, 3, 2, "valid", 3),  # floor((8 - 3) / 2) + 1, the last column is never visited
        (7, 3, 2, "same", 4),  # ceil(7 / 2)
        (8, 3, 2, "same", 4),
        (5, 2, 2, "same", 3),
        (13, 2, 2, "valid", 6),
    ],
)
def test_conv_output_lengths(n: int, k: int, s: int, padding: str, expected: int) -> None:
    graph = check_text(
        model(
            f"[{n}, {n}, 2]",
            f"- conv2d: {{filters: 4, kernel: {k}, strides: {s}, padding: {padding}}}\n- flatten\n- dense: "
            f"{{units: 2}}\n",
        )
    )
    assert graph.nodes[0].output_shape == (expected, expected, 4)


def test_same_padding_puts_the_odd_pixel_after() -> None:
    assert same_padding(8, 3, 2) == (0, 1)  # out 4, total (4-1)*2+3-8 = 1
    assert same_padding(7, 3, 2) == (1, 1)  # out 4, total 2
    assert same_padding(5, 4, 1) == (1, 2)  # out 5, total 3
    assert same_padding(6, 1, 2) == (0, 0)
    graph = check_text(
        model(
            "[8, 7, 1]",
            "- conv2d: {filters: 2, kernel: 3, strides: 2, padding: same}\n- flatten\n- dense: {units: 2}\n",
        )
    )
    assert padding_pairs(graph.nodes[0]) == ((0, 1), (1, 1))


def test_rectangular_kernels_and_strides() -> None:
    graph = check_text(
        model(
            "[10, 12, 3]", "- conv2d: {filters: 5, kernel: [3, 5], strides: [1, 2]}\n- flatten\n- dense: {units: 2}\n"
        )
    )
    node = graph.nodes[0]
    assert node.attrs["kernel"] == (3, 5) and node.attrs["strides"] == (1, 2)
    assert node.output_shape == (8, 4, 5)  # (10-3)//1+1, (12-5)//2+1
    assert node.num_params == 3 * 5 * 3 * 5 + 5


def test_pool_strides_default_to_size_and_size_to_two() -> None:
    graph = check_text(
        model(
            "[9, 9, 4]",
            "- max_pool2d\n- avg_pool2d: {size: 3, strides: 1, padding: same}\n- max_pool2d: {size: [2, 1]}\n- "
            "flatten\n- dense: {units: 2}\n",
        )
    )
    first, second, third = graph.nodes[:3]
    assert first.attrs["size"] == (2, 2) and first.attrs["strides"] == (2, 2) and first.output_shape == (4, 4, 4)
    assert second.output_shape == (4, 4, 4)
    assert third.attrs["strides"] == (2, 1) and third.output_shape == (2, 4, 4)


def test_reshape_infers_one_axis() -> None:
    graph = check_text(
        model("[8, 8, 1]", "- reshape: [-1, 4]\n- reshape: {shape: [4, 4, 4]}\n- flatten\n- dense: {units: 2}\n")
    )
    assert graph.nodes[0].output_shape == (16, 4) and graph.nodes[0].attrs["shape"] == (16, 4)
    assert graph.nodes[1].output_shape == (4, 4, 4)


def test_dense_without_bias_and_flops() -> None:
    graph = check_text(
        model("[64]", "- dense: {units: 32, activation: relu}\n- dense: {units: 10, use_bias: false}\n- softmax\n")
    )
    hidden, out, soft = graph.nodes
    assert hidden.num_params == 64 * 32 + 32 and [p.name for p in out.params] == ["kernel"] and out.num_params == 320
    assert hidden.flops == 2 * 64 * 32 + 32 + 32  # multiply-adds, bias, relu
    assert out.flops == 2 * 32 * 10
    assert soft.flops == 3 * 10
    assert graph.flops == hidden.flops + out.flops + soft.flops


def test_conv_and_pool_flops() -> None:
    graph = load_spec(SPECS / "mnist_cnn.yaml")
    conv1, pool1 = graph.nodes[0], graph.nodes[1]
    out = 26 * 26 * 32
    assert conv1.flops == 2 * 3 * 3 * 1 * out + out + out
    assert pool1.flops == 2 * 2 * 13 * 13 * 32
    assert graph.nodes[5].flops == 1600  # dropout: one per element


def test_failed_layer_does_not_cascade() -> None:
    from nnspec.compiler.frontend import diagnose_text

    found = diagnose_text(
        model(
            "[28, 28, 1]",
            "- conv1d: {filters: 4, kernel: 3}\n- dense: {units: 32}\n- reshape: [3, 3]\n- dense: {units: 10}\n",
        )
    )
    assert [d.code for d in found] == ["E0301"]


@pytest.mark.parametrize("spec", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_spec_loads(spec: Path) -> None:
    graph = load_spec(spec)
    assert graph.output_shape == (10,)
    assert graph.ends_in_softmax and graph.loss_from_logits
    assert graph.name == spec.stem


def test_digits_specs_fit_the_data() -> None:
    for name in ("digits_softmax", "digits_mlp", "digits_cnn"):
        graph = load_spec(SPECS / f"{name}.yaml")
        assert graph.input_shape == (8, 8, 1) and graph.data.dataset == "digits"
    mlp = load_spec(SPECS / "digits_mlp.yaml")
    assert [n.op for n in mlp] == ["flatten", "dense", "dense", "softmax"]
    assert 64 <= mlp.nodes[1].attrs["units"] <= 128 and mlp.nodes[1].attrs["activation"] == "relu"
