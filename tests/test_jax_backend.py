"""What only the JAX backend has: lazy import, the epoch-mode rule, scoped float64, compile-once."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nnspec.backends import available_backends, get_backend
from nnspec.compiler.ir import TrainConfig
from nnspec.compiler.shapes import make_graph

pytestmark = pytest.mark.skipif(
    "jax" not in available_backends(), reason="JAX is not installed (test_backends_installed fails for it)"
)

CNN = [
    ("conv2d", {"filters": 3, "kernel": 3, "padding": "same", "activation": "relu"}),
    ("max_pool2d", {"size": 2}),
    "flatten",
    ("dropout", {"rate": 0.3}),
    ("dense", {"units": 10}),
    "softmax",
]
MLP = [
    "flatten",
    ("dense", {"units": 12, "activation": "tanh"}),
    ("dropout", {"rate": 0.2}),
    ("dense", {"units": 10}),
    "softmax",
]


def _graph(layers: list, batch_size: int = 16):
    return make_graph((6, 6, 1), layers, train=TrainConfig(batch_size=batch_size, seed=3))


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 6, 6, 1)), rng.integers(0, 10, size=n).astype(np.int32)


def test_importing_the_backend_module_imports_no_jax() -> None:
    code = (
        "import sys, nnspec, nnspec.backends.jax.backend as b; "
        "from nnspec.backends import available_backends; available_backends(); "
        "assert b.JaxBackend.availability()[0]; "
        "assert 'jax' not in sys.modules and 'jaxlib' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_epoch_mode_rule() -> None:
    from nnspec.backends.jax.model import fused_epoch

    assert fused_epoch(_graph(MLP), "cpu")
    assert not fused_epoch(_graph(CNN), "cpu")
    assert fused_epoch(_graph(CNN), "gpu") and fused_epoch(_graph(MLP), "gpu")
    assert get_backend("jax").compile(_graph(CNN), device="cpu").epoch_mode == "step"
    assert get_backend("jax").compile(_graph(MLP), device="cpu").epoch_mode == "scan"


@pytest.mark.parametrize("layers", [MLP, CNN], ids=["mlp", "cnn"])
def test_scan_and_step_modes_agree(layers: list) -> None:
    g = _graph(layers)
    x, y = _data(100)
    models = []
    for mode in ("scan", "step"):
        model = get_backend("jax").compile(g, device="cpu", dtype="float64")
        model.epoch_mode = mode
        xd, yd = model.put(x), model.put(y)
        metrics = [model.run_epoch(xd, yd, np.random.default_rng([3, e]).permutation(100), 16) for e in range(2)]
        metrics.append(model.evaluate_arrays(model.put(x[:77]), model.put(y[:77])))
        models.append((model, metrics))
    (scan, scan_metrics), (step, step_metrics) = models
    np.testing.assert_allclose(np.array(scan_metrics), np.array(step_metrics), rtol=1e-12)
    for key, value in scan.get_weights().items():
        np.testing.assert_allclose(value, step.get_weights()[key], rtol=1e-11, atol=1e-14, err_msg=key)
    assert scan.step == step.step == 12


@pytest.mark.parametrize("mode", ["scan", "step"])
def test_compiled_once_per_model_and_data_shape(mode: str) -> None:
    model = get_backend("jax").compile(_graph(CNN), device="cpu")
    model.epoch_mode = mode
    x, y = _data(90)
    xd, yd = model.put(x), model.put(y)
    model.run_epoch(xd, yd, np.random.default_rng(0).permutation(90), 16)
    model.evaluate_arrays(xd, yd)
    compiled, seconds = len(model._executables), model.compile_seconds
    assert seconds > 0
    for epoch in range(1, 4):
        model.run_epoch(xd, yd, np.random.default_rng(epoch).permutation(90), 16)
        model.evaluate_arrays(xd, yd)
    assert len(model._executables) == compiled and model.compile_seconds == seconds


def test_predict_compiles_few_chunk_sizes() -> None:
    model = get_backend("jax").compile(_graph(MLP), device="cpu")
    x, _ = _data(1500)
    full = model.predict(x)
    for n in (1, 3, 5, 7, 100, 1025, 1500):
        np.testing.assert_allclose(model.predict(x[:n]), full[:n], rtol=1e-6, atol=1e-7)
    assert len(model._executables) <= 10


def test_float64_is_really_float64_and_leaves_jax_in_float32() -> None:
    import jax

    g = make_graph((2,), [("dense", {"units": 1, "use_bias": False})])
    weights = {"dense_1.kernel": np.array([[1.0], [-1.0]])}
    x = np.array([[1.0 + 1e-12, 1.0]])
    wide = get_backend("jax").compile(g, weights, dtype="float64")
    assert wide.predict(x)[0, 0] == pytest.approx(1e-12, rel=1e-3)  # float32 would give 0
    narrow = get_backend("jax").compile(g, weights, dtype="float32")
    assert narrow.predict(x)[0, 0] == 0.0
    assert not jax.config.jax_enable_x64
    assert jax.numpy.asarray(np.ones(2)).dtype == np.float32


POOLS = {
    "2-valid": ((8, 6, 3), {"size": 2}, True),
    "2-valid-odd": ((7, 7, 2), {"size": 2}, True),
    "3-valid": ((9, 6, 2), {"size": 3}, True),
    "2x4-same-divides": ((6, 8, 2), {"size": [2, 4], "padding": "same"}, True),
    "2-same-odd": ((5, 5, 1), {"size": 2, "padding": "same"}, False),
    "3-s2-overlapping": ((7, 8, 2), {"size": 3, "strides": 2}, False),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(POOLS))
def test_max_pool_values_and_gradients_on_ties(name: str, dtype: str) -> None:
    """The tiled max pool (reshape + max) gives reduce_window's values and the reference's gradients (first
    maximum in row-major window order on ties, NaN counted as the maximum, all -inf windows)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from nnspec.backends.jax.layers import LOWERINGS, Context
    from nnspec.backends.jax.ops import JaxOps
    from nnspec.backends.jax.windows import tiles_input
    from nnspec.compiler.shapes import padding_pairs
    from nnspec.reference.backward import _RULES
    from nnspec.reference.forward import LayerRecord

    shape, attrs, tiled = POOLS[name]
    node = make_graph(shape, [("max_pool2d", attrs)]).nodes[0]
    assert tiles_input(node.attrs["size"], node.attrs["strides"], padding_pairs(node)) == tiled
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=(4, *shape)).astype(dtype)  # many ties
    x[0, 0, 0, 0] = np.nan
    x[1, :3, :3, 0] = -np.inf
    dy = rng.standard_normal((4, *node.output_shape)).astype(dtype)

    def pool(v):
        return LOWERINGS["max_pool2d"](Context(JaxOps(dtype)), node, [v])

    def windowed(v):
        dims, strides = (1, *node.attrs["size"], 1), (1, *node.attrs["strides"], 1)
        return lax.reduce_window(
            v, np.array(-np.inf, dtype=v.dtype), lax.max, dims, strides, ((0, 0), *padding_pairs(node), (0, 0))
        )

    with jax.enable_x64(dtype == "float64"):
        y, vjp = jax.vjp(pool, jnp.asarray(x))
        (dx,) = vjp(jnp.asarray(dy))
        np.testing.assert_array_equal(np.asarray(y), np.asarray(windowed(jnp.asarray(x))))
        y, dx = np.asarray(y), np.asarray(dx)
    assert y.dtype == dx.dtype == np.dtype(dtype)
    expected, _ = _RULES["max_pool2d"](
        LayerRecord(node, x.astype(np.float64), y.astype(np.float64)), {}, dy.astype(np.float64)
    )
    if tiled:  # the reduce_window path (select_and_scatter) agrees on ties, but not in the NaN and -inf corners
        np.testing.assert_array_equal(dx, expected.astype(dtype))
    finite = np.isfinite(x).all(axis=(1, 2, 3))  # overlapping windows add their routed gradients in another order
    np.testing.assert_allclose(dx[finite], expected[finite], rtol=1e-6 if dtype == "float32" else 1e-14, atol=0)


CONVS = {  # name: (input shape, conv2d attrs)
    "3x3-valid": ((9, 10, 3), {"filters": 5, "kernel": 3}),
    "3x2-same-s2": ((9, 10, 3), {"filters": 4, "kernel": [3, 2], "strides": 2, "padding": "same"}),
    "1x1-s2": ((8, 8, 2), {"filters": 3, "kernel": 1, "strides": 2}),
    "5x5-same-1ch": ((7, 7, 1), {"filters": 6, "kernel": 5, "padding": "same"}),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CONVS))
def test_patch_convolution_matches_xla_convolution_and_the_reference(name: str, dtype: str) -> None:
    """The CPU's matrix-product convolution (im2col, custom VJP) gives XLA's convolution's values and both
    gradients, and the float64 reference's, for strides, ``same`` padding and 1x1 kernels."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from nnspec.backends.jax.layers import LOWERINGS, Context
    from nnspec.backends.jax.ops import JaxOps
    from nnspec.backends.jax.windows import _direct_conv, _padded_patch_conv
    from nnspec.compiler.shapes import padding_pairs
    from nnspec.reference.backward import _RULES
    from nnspec.reference.forward import LayerRecord

    shape, attrs = CONVS[name]
    node = make_graph(shape, [("conv2d", {**attrs, "activation": "linear", "use_bias": False})]).nodes[0]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, *shape)).astype(dtype)
    kernel = rng.standard_normal(node.params[0].shape).astype(dtype)
    dy = rng.standard_normal((3, *node.output_shape)).astype(dtype)
    args = {
        "strides": tuple(node.attrs["strides"]),
        "padding": padding_pairs(node),
        "dilation": (1, 1),
        "precision": lax.Precision.HIGHEST,
    }
    rtol = 1e-5 if dtype == "float32" else 1e-12
    with jax.enable_x64(dtype == "float64"):
        ys, grads = [], []
        for form, extra in ((_padded_patch_conv, {}), (_direct_conv, {"groups": 1})):
            y, vjp = jax.vjp(
                lambda v, k, form=form, extra=extra: form(v, k, **args, **extra), jnp.asarray(x), jnp.asarray(kernel)
            )
            ys.append(np.asarray(y))
            grads.append([np.asarray(g) for g in vjp(jnp.asarray(dy))])
        lowered = LOWERINGS["conv2d"](
            Context(JaxOps(dtype), params={node.key("kernel"): jnp.asarray(kernel)}), node, [jnp.asarray(x)]
        )
    assert ys[0].dtype == grads[0][0].dtype == grads[0][1].dtype == np.dtype(dtype)
    np.testing.assert_allclose(ys[0], ys[1], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(np.asarray(lowered), ys[1], rtol=rtol, atol=rtol)
    for patch_grad, xla_grad in zip(grads[0], grads[1]):
        np.testing.assert_allclose(patch_grad, xla_grad, rtol=rtol, atol=rtol * 10)
    record = LayerRecord(node, x.astype(np.float64), ys[1].astype(np.float64), pre_activation=ys[1].astype(np.float64))
    expected_dx, expected = _RULES["conv2d"](
        record, {node.key("kernel"): kernel.astype(np.float64)}, dy.astype(np.float64)
    )
    np.testing.assert_allclose(grads[0][0], expected_dx, rtol=rtol * 10, atol=rtol * 10)
    np.testing.assert_allclose(grads[0][1], expected[node.key("kernel")], rtol=rtol * 10, atol=rtol * 10)


def test_patch_convolution_keeps_bfloat16_and_cpu_programs_use_it() -> None:
    """In bfloat16 (mixed precision) neither form upcasts; on the CPU with JAX < 0.11 the compiled step has matrix
    products where it would have convolutions (forward and kernel gradient), elsewhere XLA's convolution."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from nnspec.backends.jax.windows import SERIAL_CPU_CONVOLUTION, _padded_patch_conv, conv

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 6, 6, 3)), dtype=jnp.bfloat16)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 3, 4)), dtype=jnp.bfloat16)
    args = ((1, 1), ((1, 1), (1, 1)), (1, 1), 1, lax.Precision.DEFAULT)
    y, vjp = jax.vjp(
        lambda v, k: _padded_patch_conv(v, k, strides=args[0], padding=args[1], dilation=args[2], precision=args[4]),
        x,
        kernel,
    )
    dx, dk = vjp(jnp.ones_like(y))
    assert y.dtype == dx.dtype == dk.dtype == jnp.bfloat16

    def loss(v, k):
        return jnp.sum(conv(v, k, *args).astype(jnp.float32) ** 2)

    x, kernel = jax.device_put((x, kernel), jax.devices("cpu")[0])  # the CPU's program, on any machine
    hlo = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, kernel).compile().as_text()
    convolutions = hlo.count("convolution(")
    assert convolutions == (1 if SERIAL_CPU_CONVOLUTION else 3), (
        hlo
    )  # patches: only the input gradient stays a convolution
