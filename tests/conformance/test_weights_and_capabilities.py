"""Weights in and out (get/set/save/load), refusal of what a backend lacks, devices and dtypes."""

from __future__ import annotations

import numpy as np
import pytest
from conformance_support import compile_model, graph, random_batch, random_weights

from nnspec.backends import get_backend
from nnspec.backends.base import Capabilities
from nnspec.compiler.opset import LAYER_TYPES
from nnspec.errors import BackendError, WeightsError

LAYERS = [
    ("conv2d", {"filters": 2, "kernel": 3, "activation": "relu", "name": "conv"}),
    ("avg_pool2d", {"size": 2, "name": "pool"}),
    "flatten",
    ("dense", {"units": 3, "use_bias": False, "name": "head"}),
    "softmax",
]


def test_weights_round_trip(backend_name: str, tmp_path) -> None:
    g = graph((6, 6, 1), LAYERS)
    weights = random_weights(g, seed=1)
    model = compile_model(backend_name, g, weights)
    got = model.get_weights()
    assert set(got) == {"conv.kernel", "conv.bias", "head.kernel"}
    for key, value in weights.items():
        assert got[key].shape == value.shape and got[key].dtype == np.float64
        np.testing.assert_array_equal(got[key], value)
    other = random_weights(g, seed=2)
    model.set_weights(other)
    for key, value in model.get_weights().items():
        np.testing.assert_array_equal(value, other[key])
    path = tmp_path / "w.safetensors"
    model.save(str(path))
    fresh = compile_model(backend_name, g, dtype="float32")
    fresh.load(str(path))
    x, _ = random_batch(g, 4)
    np.testing.assert_allclose(fresh.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)
    assert all(v.dtype == np.float32 for v in fresh.get_weights().values())


def test_mismatched_weights_are_refused(backend_name: str) -> None:
    g = graph((6, 6, 1), LAYERS)
    model = compile_model(backend_name, g)
    bad = random_weights(g)
    bad["head.kernel"] = np.zeros((3, 3))
    with pytest.raises(WeightsError, match="head.kernel"):
        model.set_weights(bad)
    with pytest.raises(WeightsError, match="head.kernel"):
        compile_model(backend_name, g, bad)


def test_default_weights_come_from_the_seeded_initialisers(backend_name: str) -> None:
    from nnspec.compiler.init import initial_weights

    g = graph((6, 6, 1), LAYERS, seed=17)
    got = compile_model(backend_name, g, dtype="float32").get_weights()
    for key, value in initial_weights(g, dtype="float32").items():
        np.testing.assert_array_equal(got[key], value)


def test_a_missing_layer_is_refused_naming_layer_and_backend(backend_name: str, monkeypatch) -> None:
    backend = get_backend(backend_name)
    reduced = Capabilities(layers=frozenset(LAYER_TYPES) - {"avg_pool2d"}, gaps={"avg_pool2d": "not lowered yet"})
    monkeypatch.setattr(backend, "capabilities", lambda: reduced)
    with pytest.raises(BackendError) as info:
        backend.compile(graph((6, 6, 1), LAYERS), device="cpu")
    message = str(info.value)
    assert (
        "'pool'" in message
        and "avg_pool2d" in message
        and f"'{backend.name}'" in message
        and "not lowered yet" in message
    )


def test_declared_gaps_are_refused_and_explained(backend_name: str) -> None:
    backend = get_backend(backend_name)
    caps = backend.capabilities()
    for op in sorted(set(LAYER_TYPES) - caps.layers):
        assert caps.gaps.get(op), f"backend '{backend.name}' lacks {op} without saying why (Capabilities.gaps)"
    for dtype in ("float32", "float64"):
        if dtype not in caps.dtypes:
            with pytest.raises(BackendError, match=dtype):
                backend.compile(graph((4,), [("dense", {"units": 2})]), dtype=dtype)


def test_asking_for_a_missing_gpu_is_an_error(backend_name: str) -> None:
    backend = get_backend(backend_name)
    if "gpu" in backend.devices():
        pytest.skip("this machine has a GPU for this backend; the refusal cannot be observed here")
    with pytest.raises(BackendError, match="GPU"):
        backend.compile(graph((4,), [("dense", {"units": 2})]), device="gpu")


def test_float32_and_float64_models_coexist(backend_name: str) -> None:
    g = graph((5,), [("dense", {"units": 4, "activation": "tanh"}), ("dense", {"units": 3})])
    weights = random_weights(g)
    x, y = random_batch(g, 3)
    wide = compile_model(backend_name, g, weights, dtype="float64")
    narrow = compile_model(backend_name, g, weights, dtype="float32")
    for _ in range(2):  # interleaved calls: neither model's precision leaks into the other
        out64, out32 = wide.predict(x), narrow.predict(x.astype("float32"))
        assert out64.dtype == np.float64 and out32.dtype == np.float32
        assert 0 < np.max(np.abs(out64 - out32)) < 1e-5
        _, g64 = wide.loss_and_gradients(x, y)
        _, g32 = narrow.loss_and_gradients(x.astype("float32"), y)
        assert all(v.dtype == np.float64 for v in g64.values()) and all(v.dtype == np.float32 for v in g32.values())
