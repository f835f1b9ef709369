"""The Theano backend's linker choice (issue 14 item 4): which PyTensor linker each model gets, the
``NNSPEC_THEANO_MODE`` override, the notes that say so (``execution_notes``, ``env.json``), and that the
faster linker trains to the same values as the C linker.

The rule and the measurements behind it are in :mod:`nnspec.backends.theano.config`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnspec.backends import get_backend
from nnspec.backends.theano import config
from nnspec.compiler.ir import Graph, OptimizerConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.errors import BackendError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pytensor") is None, reason="PyTensor is not installed")
HAS_JAX = importlib.util.find_spec("jax") is not None
REPO = Path(__file__).resolve().parent.parent
ADAM = OptimizerConfig("adam", {"learning_rate": 1e-3})


def _convnet(batch: int = 32) -> Graph:
    layers = [
        ("conv2d", {"filters": 8, "kernel": 3, "padding": "same", "activation": "relu"}),
        ("max_pool2d", {"size": 2}),
        "flatten",
        ("dropout", {"rate": 0.3}),
        ("dense", {"units": 10}),
        "softmax",
    ]
    return make_graph((8, 8, 1), layers, train=TrainConfig(batch_size=batch, optimizer=ADAM))


def _mlp(inputs: tuple[int, ...], units: int, batch: int) -> Graph:
    layers = ["flatten", ("dense", {"units": units, "activation": "relu"}), ("dense", {"units": 10}), "softmax"]
    return make_graph(inputs, layers, train=TrainConfig(batch_size=batch, optimizer=ADAM))


@pytest.fixture
def auto_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.MODE_ENV, raising=False)


def _base() -> str:
    return "c" if config.setup().blas_ldflags else "numba"


@pytest.mark.usefixtures("auto_mode")
def test_convnet_gets_the_jax_linker_and_says_why() -> None:
    model = get_backend("theano").compile(_convnet(), device="cpu")
    notes = model.execution_notes()
    if not HAS_JAX:
        assert model.mode == notes["linker"] == _base() and "JAX is not installed" in notes["why"]
        return
    assert model.mode == notes["linker"] == "jax"
    assert "conv2d" in notes["why"] and "max_pool2d" in notes["why"]


@pytest.mark.usefixtures("auto_mode")
def test_mlp_linker_depends_on_the_step_size() -> None:
    big = get_backend("theano").compile(_mlp((28, 28, 1), 512, 128), device="cpu")  # 103 MFLOP forward per step
    tiny = get_backend("theano").compile(_mlp((8, 8, 1), 16, 8), device="cpu")  # 0.02 MFLOP
    assert tiny.mode == _base() and "small step" in tiny.execution_notes()["why"]
    assert big.mode == ("jax" if HAS_JAX else _base())
    if HAS_JAX:
        assert "MFLOP" in big.execution_notes()["why"]


@pytest.mark.usefixtures("auto_mode")
def test_float64_stays_on_the_base_linker() -> None:
    model = get_backend("theano").compile(_convnet(), device="cpu", dtype="float64")
    notes = model.execution_notes()
    assert model.mode == notes["linker"] == _base()
    assert "float64" in notes["why"]
    if model.mode == "c":
        assert notes["blas"] == config.setup().blas_ldflags


@pytest.mark.parametrize("mode", ["c", "numba"])
def test_override_env_var_wins(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setenv(config.MODE_ENV, mode)
    assert config.choose_linker("cpu", "float32", _convnet()).mode == mode
    if mode == "c":  # compiling and training a step on the forced linker (Numba's JIT takes too long here)
        model = get_backend("theano").compile(_convnet(), device="cpu")
        assert model.mode == "c" and model.execution_notes() == {
            "linker": "c",
            "why": f"set by {config.MODE_ENV}=c",
            "blas": config.setup().blas_ldflags or "none",
        }
        x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
        assert np.isfinite(model.train_step(x, np.arange(32, dtype=np.int32) % 10))
    monkeypatch.setenv(config.MODE_ENV, "tpu")
    with pytest.raises(BackendError, match="NNSPEC_THEANO_MODE"):
        get_backend("theano").compile(_convnet(), device="cpu")


@pytest.mark.usefixtures("auto_mode")
def test_backend_notes_state_the_rule() -> None:
    notes = get_backend("theano").execution_notes()
    assert notes["linker"] == "auto" and notes["base_linker"] == _base()
    assert (
        "float32" in notes["rule"]
        and "float64" in notes["rule"]
        and f"{config.JAX_MIN_STEP_FLOPS / 1e6:g} MFLOP" in notes["rule"]
    )


def test_backend_notes_name_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.MODE_ENV, "numba")
    notes = get_backend("theano").execution_notes()
    assert notes["linker"] == "numba" and config.MODE_ENV in notes["rule"]


@pytest.mark.skipif(not HAS_JAX, reason="JAX is not installed")
@pytest.mark.filterwarnings("ignore:Explicitly requested dtype")
def test_jax_linker_trains_like_the_c_linker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same float32 convnet (dropout on) for two epochs on each linker: equal losses and weights
    within float32 rounding, so the linker choice changes speed, not results."""
    g = _convnet()
    rng = np.random.default_rng(3)
    x = rng.random((200, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 10, 200).astype(np.int32)
    from nnspec.compiler.init import initial_weights

    w = initial_weights(g, dtype="float32")
    results = {}
    for mode in ("c", "jax"):
        monkeypatch.setenv(config.MODE_ENV, mode)
        model = get_backend("theano").compile(g, w, device="cpu")
        xs, ys = model.put(x), model.put(y)
        losses = [model.run_epoch(xs, ys, np.random.default_rng([0, e]).permutation(200), 32)[0] for e in range(2)]
        results[mode] = (losses, model.get_weights())
    np.testing.assert_allclose(results["jax"][0], results["c"][0], rtol=1e-5)
    for key, value in results["c"][1].items():
        np.testing.assert_allclose(results["jax"][1][key], value, rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="JAX is not installed")
def test_env_json_records_the_linker(tmp_path: Path) -> None:
    """``nnspec run`` of the digits convnet writes the model's linker and its reason into env.json."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != config.MODE_ENV}
    cmd = [
        sys.executable,
        "-m",
        "nnspec",
        "run",
        str(REPO / "specs" / "digits_cnn.yaml"),
        "--backend",
        "theano",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--quiet",
        "--no-tensorboard",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    execution = json.loads((out / "env.json").read_text())["execution"]
    assert execution["linker"] == "jax"
    assert "conv2d" in execution["why"]
