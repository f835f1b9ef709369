"""Dropout masks equal ``nnspec.semantics.dropout.numpy_keep_mask`` bit for bit, on every engine."""

from __future__ import annotations

import numpy as np
import pytest
from conformance_support import compile_model, graph

from nnspec.semantics.dropout import numpy_keep_mask, scale

LAYERS = [
    ("dropout", {"rate": 0.3}),
    ("reshape", {"shape": [5, 4, 3]}),
    ("dropout", {"rate": 0.75}),
    "flatten",
    ("dropout", {"rate": 0.5}),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_masks_are_bit_identical(backend_name: str, dtype: str) -> None:
    g = graph((60,), LAYERS, seed=123456789)
    model = compile_model(backend_name, g, dtype=dtype)
    x = np.ones((7, 60), dtype=dtype)
    for step in (0, 1, 4097, 2**31 - 1):
        outputs = model.layer_outputs(x, training=True, step=step)
        previous = x
        for node, out in zip(g.nodes, outputs):
            if node.op == "dropout":
                rate = node.attrs["rate"]
                keep = numpy_keep_mask(g.train.seed, node.index, step, out.shape, rate)
                if node.index == 0:
                    np.testing.assert_array_equal(out != 0, keep, err_msg=f"mask of '{node.name}' at step {step}")
                factor = np.asarray(scale(rate, dtype), dtype=dtype)
                expected = np.where(keep, previous.reshape(out.shape) * factor, np.zeros((), dtype=dtype))
                np.testing.assert_array_equal(out, expected, err_msg=f"'{node.name}' at step {step}")
            previous = out


def test_masks_differ_by_step_and_layer_and_follow_the_seed(backend_name: str) -> None:
    g = graph((200,), [("dropout", {"rate": 0.5}), ("dropout", {"rate": 0.5})], seed=3)
    model = compile_model(backend_name, g)
    x = np.ones((2, 200))
    first = model.layer_outputs(x, training=True, step=10)[0] != 0
    np.testing.assert_array_equal(first, numpy_keep_mask(3, 0, 10, (2, 200), 0.5))
    assert not np.array_equal(first, model.layer_outputs(x, training=True, step=11)[0] != 0)
    other_seed = compile_model(
        backend_name, graph((200,), [("dropout", {"rate": 0.5}), ("dropout", {"rate": 0.5})], seed=4)
    )
    np.testing.assert_array_equal(
        other_seed.layer_outputs(x, training=True, step=10)[0] != 0, numpy_keep_mask(4, 0, 10, (2, 200), 0.5)
    )


def test_dropout_is_identity_when_not_training(backend_name: str) -> None:
    g = graph((30,), [("dropout", {"rate": 0.9})])
    model = compile_model(backend_name, g)
    x = np.random.default_rng(0).normal(size=(4, 30))
    np.testing.assert_array_equal(model.layer_outputs(x)[0], x)
    np.testing.assert_array_equal(model.predict(x), x)


#: Shaped masks (language 1.3): a noise_shape sharing the mask along the height and the channels, then whole
#: channels dropped (spatial_dropout2d).
SHAPED = [
    ("reshape", {"shape": [5, 4, 3]}),
    ("dropout", {"rate": 0.4, "noise_shape": [None, 1, 1]}),
    ("spatial_dropout2d", {"rate": 0.5}),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shaped_masks_are_drawn_at_the_reduced_shape_and_broadcast(backend_name: str, dtype: str) -> None:
    g = graph((60,), SHAPED, seed=987654321)
    model = compile_model(backend_name, g, dtype=dtype)
    x = np.random.default_rng(0).uniform(0.5, 1.5, size=(7, 60)).astype(dtype)
    for step in (0, 3, 2**31 - 1):
        outputs = model.layer_outputs(x, training=True, step=step)
        previous = outputs[0]
        for node, out, reduced in zip(g.nodes[1:], outputs[1:], [(7, 5, 1, 1), (7, 1, 1, 3)]):
            rate = node.attrs["rate"]
            keep = numpy_keep_mask(g.train.seed, node.index, step, reduced, rate)
            assert 0 < keep.sum() < keep.size, "some units kept, some dropped"
            # the mask bit for bit (x has no zeros); the kept values to rounding (PyTensor fuses the product)
            np.testing.assert_array_equal(out != 0, np.broadcast_to(keep, out.shape) & (previous != 0), node.name)
            factor = np.asarray(scale(rate, dtype), dtype=dtype)
            expected = np.where(keep, previous * factor, np.zeros((), dtype=dtype))
            np.testing.assert_allclose(out, expected, rtol=1e-6 if dtype == "float32" else 1e-15, atol=0)
            previous = out
