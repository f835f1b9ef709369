"""PyTensor-specific tests of the Theano backend: linker set-up, BLAS, dropout bits per linker, JAX x64
isolation, chunked evaluation.

Backend-independent behaviour (forward values, gradients against finite differences, fused epochs equal
to single steps, optimisers, weights) is checked by tests/conformance, which runs this backend too.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nnspec.backends import get_backend
from nnspec.backends.theano import config
from nnspec.compiler.ir import OptimizerConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.errors import BackendError
from nnspec.semantics.dropout import keep_mask, numpy_keep_mask

# a missing PyTensor fails tests/test_backends_installed.py loudly; here the module is just not run
pytestmark = pytest.mark.skipif(importlib.util.find_spec("pytensor") is None, reason="PyTensor is not installed")
HAS_JAX = importlib.util.find_spec("jax") is not None


def _run(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter (module-level engine state must start clean) and return stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_importing_the_backend_module_does_not_import_pytensor() -> None:
    out = _run(
        """
        import sys
        from nnspec.backends import backend_class
        cls = backend_class("pytensor")
        print(cls.name, cls.availability()[0], "pytensor" in sys.modules)
        """
    )
    assert out.split() == ["theano", "True", "False"]


def test_blas_is_found_and_linked_when_a_system_openblas_exists() -> None:
    info = config.setup()
    if not config.blas_candidates():
        assert info.blas_ldflags == "" and config.default_mode("cpu") == "numba"
        return
    assert info.blas_ldflags, "a system BLAS exists but no flags linked"
    assert config.default_mode("cpu") == "c"
    import pytensor

    assert pytensor.config.blas__ldflags == info.blas_ldflags
    if (
        os.environ.get("PYTENSOR_FLAGS", "").find("base_compiledir") < 0
        or str(config.cache_dir()) in os.environ["PYTENSOR_FLAGS"]
    ):
        assert str(config.cache_dir()) in info.compiledir


def test_mode_override_and_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.MODE_ENV, "numba")
    assert config.default_mode("cpu") == "numba"
    monkeypatch.setenv(config.MODE_ENV, "cuda")
    with pytest.raises(BackendError, match="NNSPEC_THEANO_MODE"):
        config.default_mode("cpu")
    monkeypatch.delenv(config.MODE_ENV)
    assert config.default_mode("gpu") == "jax"


MODES = ["c", "numba"] + (["jax"] if HAS_JAX else [])


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype")
@pytest.mark.parametrize("mode", MODES)
def test_dropout_mask_bits_equal_numpy_on_every_linker(mode: str) -> None:
    import pytensor
    import pytensor.tensor as pt

    from nnspec.backends.theano.ops import PyTensorOps

    step = pt.lscalar("step")
    mask = keep_mask(PyTensorOps("float32"), 11, 2, step, (17, 9), 0.4)
    fn = pytensor.function([step], mask, mode=config.get_mode(mode))
    for s in (0, 1, 977, 2**31 + 3):
        np.testing.assert_array_equal(np.asarray(fn(s)), numpy_keep_mask(11, 2, s, (17, 9), 0.4))


@pytest.mark.skipif(not HAS_JAX, reason="JAX is not installed")
def test_pytensor_leaves_jax_x64_off() -> None:
    out = _run(
        """
        import os, jax, jax.numpy as jnp, numpy as np, pytensor
        from nnspec.backends.theano import config
        from nnspec.backends import get_backend
        from nnspec.compiler.shapes import make_graph
        config.setup()
        import pytensor
        with pytensor.config.change_flags(floatX="float64"):
            config.import_jax_linker()       # PyTensor's JAX dispatch would switch x64 on here
        g = make_graph((4,), [("dense", {"units": 3}), "softmax"])
        os.environ["NNSPEC_THEANO_MODE"] = "c"
        m = get_backend("theano").compile(g, device="cpu", dtype="float64")
        m.predict(np.ones((2, 4)))
        os.environ["NNSPEC_THEANO_MODE"] = "jax"
        m32 = get_backend("theano").compile(g, device="cpu", dtype="float32")
        m32.predict(np.ones((2, 4)))
        print(jax.config.jax_enable_x64, (jnp.ones(3) * 2.0).dtype, jnp.asarray(np.ones(2)).dtype)
        """
    )
    assert out.split() == ["False", "float32", "float32"]


def test_training_mlp_learns_and_evaluates_in_chunks() -> None:
    g = make_graph(
        (6,),
        [("dense", {"units": 16, "activation": "relu"}), ("dense", {"units": 3}), "softmax"],
        train=TrainConfig(batch_size=32, optimizer=OptimizerConfig("adam", {"learning_rate": 0.01})),
    )
    m = get_backend("pytensor").compile(g, device="cpu")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1100, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    xs, ys = m.put(x), m.put(y)
    first, _ = m.evaluate_arrays(xs, ys)  # 1100 = 2 full chunks of 512 and a remainder
    for epoch in range(5):
        m.run_epoch(xs, ys, np.random.default_rng([0, epoch]).permutation(1100), 32)
    loss, acc = m.evaluate_arrays(xs, ys)
    assert m.step == 5 * (1100 // 32)
    assert loss < first and acc > 0.8
    probs = m.predict(x)
    assert probs.shape == (1100, 3) and probs.dtype == np.float32
    assert np.mean(np.argmax(probs, 1) == y) == pytest.approx(acc, abs=1e-6)
    assert m.compile_seconds > 0
