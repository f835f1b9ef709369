"""Every op's forward pass, in several configurations, against the NumPy reference (float64 and float32)."""

from __future__ import annotations

import numpy as np
import pytest
from conformance_support import assert_close, compile_model, graph, random_batch, random_weights

from nnspec import reference


def _conv(kernel, strides=1, padding="valid", **extra):
    return ("conv2d", {"filters": 3, "kernel": kernel, "strides": strides, "padding": padding, **extra})


def _pool(op, size, strides=None, padding="valid"):
    attrs = {"size": size, "padding": padding}
    if strides is not None:
        attrs["strides"] = strides
    return (op, attrs)


#: id -> (input shape, layers). Odd sizes and asymmetric kernels/strides exercise the padding rules.
CASES: dict[str, tuple[tuple[int, ...], list]] = {
    "dense": ((7,), [("dense", {"units": 5})]),
    "dense-relu-nobias": ((6,), [("dense", {"units": 4, "activation": "relu", "use_bias": False})]),
    "dense-softmax": ((5,), [("dense", {"units": 4}), "softmax"]),
    "conv-k3-s1-valid": ((7, 7, 2), [_conv(3)]),
    "conv-k3-s1-same-odd": ((7, 9, 2), [_conv(3, padding="same", activation="relu")]),
    "conv-k3-s2-same-odd": ((7, 9, 2), [_conv(3, strides=2, padding="same")]),
    "conv-k3-s2-valid-odd": ((9, 7, 1), [_conv(3, strides=2)]),
    "conv-k32-s21-same": ((6, 7, 2), [_conv([3, 2], strides=[2, 1], padding="same", activation="tanh")]),
    "conv-k32-s12-valid": ((6, 7, 2), [_conv([3, 2], strides=[1, 2])]),
    "conv-k2-s2-same-even": ((6, 6, 3), [_conv(2, strides=2, padding="same", use_bias=False)]),
    "conv-k4-s3-same": ((8, 7, 1), [_conv(4, strides=3, padding="same")]),
    "conv-k1": ((5, 4, 3), [_conv(1, activation="sigmoid")]),
    "conv-k5-same-small": ((4, 4, 2), [_conv(5, padding="same")]),
    "maxpool-2-valid-odd": ((7, 7, 2), [_pool("max_pool2d", 2)]),
    "maxpool-3-s2-same": ((7, 8, 2), [_pool("max_pool2d", 3, 2, "same")]),
    "maxpool-32-s12-same": ((5, 6, 2), [_pool("max_pool2d", [3, 2], [1, 2], "same")]),
    "maxpool-2-same-odd": ((5, 5, 1), [_pool("max_pool2d", 2, padding="same")]),
    "maxpool-3-s1-valid": ((6, 5, 2), [_pool("max_pool2d", 3, 1)]),
    "avgpool-2-valid-odd": ((7, 7, 2), [_pool("avg_pool2d", 2)]),
    "avgpool-3-s2-same": ((7, 8, 2), [_pool("avg_pool2d", 3, 2, "same")]),
    "avgpool-32-s12-same": ((5, 6, 2), [_pool("avg_pool2d", [3, 2], [1, 2], "same")]),
    "avgpool-2-same-odd": ((5, 5, 1), [_pool("avg_pool2d", 2, padding="same")]),
    "avgpool-3-s1-same": ((4, 5, 2), [_pool("avg_pool2d", 3, 1, "same")]),
    "flatten-rowmajor": ((3, 4, 2), ["flatten", ("dense", {"units": 3})]),
    "reshape-conv": ((48,), [("reshape", {"shape": [4, 4, 3]}), _conv(3, padding="same"), "flatten"]),
    "reshape-minus-one": ((4, 3, 2), [("reshape", {"shape": [-1, 6]}), ("reshape", {"shape": [24]})]),
    "dropout-eval": ((6,), [("dropout", {"rate": 0.5}), ("dense", {"units": 3})]),
    "softmax-rank3": ((3, 4, 5), ["softmax"]),
    "convnet": (
        (9, 9, 1),
        [
            _conv(3, activation="relu"),
            _pool("max_pool2d", 2, padding="same"),
            _conv(2, padding="same", activation="elu"),
            _pool("avg_pool2d", 2),
            "flatten",
            ("dropout", {"rate": 0.3}),
            ("dense", {"units": 4}),
            "softmax",
        ],
    ),
}


def _conv1d(kernel, strides=1, padding="valid", **extra):
    return ("conv1d", {"filters": 3, "kernel": kernel, "strides": strides, "padding": padding, **extra})


# sequences (steps, channels): conv1d with same/causal padding and dilation, the 1-D pools, dense on any rank
CASES.update(
    {
        "conv1d-k3-valid": ((9, 2), [_conv1d(3)]),
        "conv1d-k3-s2-same-odd": ((9, 2), [_conv1d(3, strides=2, padding="same", activation="relu")]),
        "conv1d-k2-same-even": ((8, 3), [_conv1d(2, padding="same", activation="tanh", use_bias=False)]),
        "conv1d-k3-causal-d2": ((9, 2), [_conv1d(3, padding="causal", dilation=2, activation="elu")]),
        "conv1d-k4-s2-causal": ((9, 2), [_conv1d(4, strides=2, padding="causal")]),
        "conv1d-k2-same-d3": ((10, 2), [_conv1d(2, padding="same", dilation=3, activation="sigmoid")]),
        "conv1d-k3-valid-d2": ((9, 1), [_conv1d(3, dilation=2)]),
        "maxpool1d-2-valid-odd": ((7, 2), [_pool("max_pool1d", 2)]),
        "maxpool1d-3-s2-same": ((8, 2), [_pool("max_pool1d", 3, 2, "same")]),
        "maxpool1d-2-same-odd": ((5, 2), [_pool("max_pool1d", 2, padding="same")]),
        "avgpool1d-2-valid-odd": ((7, 2), [_pool("avg_pool1d", 2)]),
        "avgpool1d-3-s1-same": ((7, 2), [_pool("avg_pool1d", 3, 1, "same")]),
        "avgpool1d-2-same-odd": ((5, 1), [_pool("avg_pool1d", 2, padding="same")]),
        "global-avg-pool1d": ((5, 3), ["global_avg_pool1d"]),
        "global-max-pool1d": ((5, 3), ["global_max_pool1d"]),
        "dense-rank2-softmax": ((4, 5), [("dense", {"units": 3}), "softmax"]),
        "dense-rank3-relu-nobias": ((3, 4, 5), [("dense", {"units": 3, "activation": "relu", "use_bias": False})]),
        "seqnet": (
            (12, 3),
            [
                _conv1d(3, padding="same", activation="relu"),
                _pool("max_pool1d", 2),
                _conv1d(3, padding="causal", dilation=2, activation="gelu"),
                _pool("avg_pool1d", 2, padding="same"),
                ("dense", {"units": 4, "activation": "tanh"}),
                "flatten",
                ("dropout", {"rate": 0.3}),
                ("dense", {"units": 4}),
                "softmax",
            ],
        ),
    }
)

# every activation is in conformance/test_graph_ops.py ("every-activation"); here one on a rank-3 input
CASES["activation-rank3"] = ((3, 5), [("activation", {"activation": "gelu"})])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_matches_reference(backend_name: str, case: str, dtype: str) -> None:
    shape, layers = CASES[case]
    g = graph(shape, layers)
    weights = {k: v.astype(dtype) for k, v in random_weights(g).items()}
    x, _ = random_batch(g, 3)
    x = x.astype(dtype)
    model = compile_model(backend_name, g, weights, dtype=dtype)
    outputs = model.layer_outputs(x)
    expected = reference.layer_outputs(g, weights, x)
    assert len(outputs) == len(g.nodes)
    for node, out, ref in zip(g.nodes, outputs, expected):
        assert out.shape == (3, *node.output_shape), (
            f"{node.name}: engine shape {out.shape}, inferred {node.output_shape}"
        )
        assert np.asarray(out).dtype == np.dtype(dtype), f"{node.name}: computed in {out.dtype}, asked for {dtype}"
        assert_close(out, ref, dtype, f"{case}: layer '{node.name}'")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_predict_matches_reference(backend_name: str, dtype: str) -> None:
    _, layers = CASES["convnet"]
    g = graph((9, 9, 1), layers)
    weights = random_weights(g, seed=3)
    x, _ = random_batch(g, 37)
    model = compile_model(backend_name, g, weights, dtype=dtype)
    out = model.predict(x.astype(dtype))
    assert out.dtype == np.dtype(dtype)
    assert_close(
        out, reference.predict(g, {k: v.astype(dtype) for k, v in weights.items()}, x.astype(dtype)), dtype, "predict"
    )


def test_training_mode_forward_matches_reference(backend_name: str) -> None:
    _, layers = CASES["convnet"]
    g = graph((9, 9, 1), layers, seed=11)
    weights = random_weights(g, seed=4)
    x, _ = random_batch(g, 5)
    model = compile_model(backend_name, g, weights)
    for step in (0, 7):
        outputs = model.layer_outputs(x, training=True, step=step)
        for node, out, ref in zip(g.nodes, outputs, reference.layer_outputs(g, weights, x, training=True, step=step)):
            assert_close(out, ref, "float64", f"step {step}, layer '{node.name}'")
