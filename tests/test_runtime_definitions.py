"""The shared runtime definitions (optimisers, schedules, losses, activations, dropout masks) against
values computed by hand, through the NumPy :class:`Ops`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnspec.compiler.ir import OptimizerConfig, ScheduleConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.semantics.activations import activate
from nnspec.semantics.dropout import apply_dropout, keep_mask, lowbias32, mask_key, numpy_keep_mask, scale, threshold
from nnspec.semantics.losses import correct_count, loss_from_head
from nnspec.semantics.numpy_ops import NumpyOps
from nnspec.semantics.optimizers import apply_updates, init_state
from nnspec.semantics.schedules import learning_rate

OPS = NumpyOps("float64")


def one_step(
    name: str, params: dict, weight_decay: float = 0.0, steps: int = 1, g: float = 0.5, p: float = 1.0
) -> float:
    """Run ``steps`` updates of a single scalar weight with a constant gradient ``g``."""
    cfg = OptimizerConfig(name, params)
    weights = {"w": np.array(p)}
    state = init_state(cfg, weights)
    for step in range(steps):
        lr = learning_rate(OPS, ScheduleConfig(), cfg.learning_rate, step)
        weights, state = apply_updates(OPS, cfg, lr, step, weights, {"w": np.array(g)}, state, weight_decay)
    return float(weights["w"])


# ---- optimisers: p = 1, g = 0.5 ------------------------------------------------------------------------------


def test_sgd_plain() -> None:
    # p - lr * g = 1 - 0.1 * 0.5
    assert one_step("sgd", {"learning_rate": 0.1, "momentum": 0.0, "nesterov": False}) == pytest.approx(0.95, abs=1e-15)


def test_sgd_momentum_two_steps() -> None:
    # v1 = 0.9*0 - 0.05 = -0.05, p1 = 0.95; v2 = 0.9*(-0.05) - 0.05 = -0.095, p2 = 0.855
    params = {"learning_rate": 0.1, "momentum": 0.9, "nesterov": False}
    assert one_step("sgd", params) == pytest.approx(0.95, abs=1e-15)
    assert one_step("sgd", params, steps=2) == pytest.approx(0.855, abs=1e-15)


def test_sgd_nesterov() -> None:
    # v1 = -0.05; p1 = 1 + 0.9*(-0.05) - 0.05 = 0.905
    # v2 = 0.9*(-0.05) - 0.05 = -0.095; p2 = 0.905 + 0.9*(-0.095) - 0.05 = 0.7695
    params = {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}
    assert one_step("sgd", params) == pytest.approx(0.905, abs=1e-15)
    assert one_step("sgd", params, steps=2) == pytest.approx(0.7695, abs=1e-15)


def test_adam_first_step() -> None:
    # m = 0.1*0.5 = 0.05; v = 0.001*0.25 = 0.00025; sqrt(v) = 0.015811388300841896
    # lr_t = 0.001 * sqrt(1 - 0.999) / (1 - 0.9) = 0.001 * 0.03162277660168379 / 0.1 = 3.162277660168379e-4
    # p = 1 - 3.162277660168379e-4 * 0.05 / (0.015811388300841896 + 1e-7) = 1 - 9.999936754e-4 = 0.9990000063245953
    params = {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    assert one_step("adam", params) == pytest.approx(0.9990000063245953, abs=1e-13)


def test_adam_second_step() -> None:
    # m2 = 0.05 + (0.5 - 0.05)*0.1 = 0.095; v2 = 0.00025 + (0.25 - 0.00025)*0.001 = 0.00049975
    # lr_t = 0.001 * sqrt(1 - 0.999**2) / (1 - 0.9**2) = 0.001 * 0.044710177812216 / 0.19 = 2.3531672532745e-4
    # step = lr_t * 0.095 / (sqrt(0.00049975) + 1e-7) = 2.3531672532745e-4 * 0.095 / 0.0223550218 = 9.99995527e-4
    params = {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    assert one_step("adam", params, steps=2) == pytest.approx(0.9990000063245953 - 9.99995527e-4, abs=1e-11)


def test_rmsprop_first_step() -> None:
    # a = 0.1 * 0.25 = 0.025; sqrt(a) = 0.15811388300841897
    # p = 1 - 0.001 * 0.5 / (0.15811388300841897 + 1e-7) = 1 - 0.0031622756603 = 0.9968377243397
    params = {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7}
    assert one_step("rmsprop", params) == pytest.approx(0.9968377243397, abs=1e-12)


def test_rmsprop_momentum() -> None:
    # increment as above = 0.0031622756603; v1 = 0 + increment; p1 = 1 - v1
    params = {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.5, "epsilon": 1e-7}
    assert one_step("rmsprop", params) == pytest.approx(0.9968377243397, abs=1e-12)


def test_weight_decay_is_decoupled() -> None:
    # p = 1 - 1 * 0.01 * 0.1 = 0.999, then sgd: 0.999 - 0.1 * 0.5 = 0.949
    params = {"learning_rate": 0.1, "momentum": 0.0, "nesterov": False}
    assert one_step("sgd", params, weight_decay=0.01) == pytest.approx(0.949, abs=1e-15)


def test_float32_update_keeps_dtype() -> None:
    ops = NumpyOps("float32")
    cfg = OptimizerConfig("adam", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7})
    w = {"w": np.ones(3, np.float32)}
    new, state = apply_updates(
        ops, cfg, ops.constant(0.001), 0, w, {"w": np.full(3, 0.5, np.float32)}, init_state(cfg, w)
    )
    assert new["w"].dtype == np.float32 and state["w/m"].dtype == np.float32
    np.testing.assert_allclose(new["w"], 0.999, rtol=1e-6)


# ---- schedules -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, params, step, expected",
    [
        ("constant", {}, 1000, 0.1),
        ("step", {"every": 10, "factor": 0.5}, 9, 0.1),
        ("step", {"every": 10, "factor": 0.5}, 25, 0.025),  # 0.1 * 0.5**2
        ("exponential", {"decay_steps": 10, "decay_rate": 0.5, "staircase": False}, 5, 0.1 * math.sqrt(0.5)),
        ("exponential", {"decay_steps": 10, "decay_rate": 0.5, "staircase": True}, 15, 0.05),
        ("cosine", {"decay_steps": 100, "alpha": 0.0}, 0, 0.1),
        ("cosine", {"decay_steps": 100, "alpha": 0.0}, 50, 0.05),  # 0.5 * (1 + cos(pi/2))
        ("cosine", {"decay_steps": 100, "alpha": 0.1}, 100, 0.01),  # alpha * lr at the end
        ("cosine", {"decay_steps": 100, "alpha": 0.1}, 500, 0.01),  # stays there
    ],
)
def test_schedules(name: str, params: dict, step: int, expected: float) -> None:
    assert float(learning_rate(OPS, ScheduleConfig(name, params), 0.1, step)) == pytest.approx(expected, abs=1e-15)


# ---- losses and metrics ------------------------------------------------------------------------------------


def test_cross_entropy_from_logits() -> None:
    graph = make_graph((2,), [("dense", {"units": 2}), "softmax"])
    # logits [0, 0] -> ln 2; logits [ln 3, 0] with label 0 -> -ln(3/4) = ln(4/3)
    head = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    loss = loss_from_head(OPS, graph, head, np.array([1, 0]))
    assert float(loss) == pytest.approx((math.log(2.0) + math.log(4.0 / 3.0)) / 2, abs=1e-15)
    # stable for huge logits: [1000, 0] with label 1 -> 1000
    assert float(loss_from_head(OPS, graph, np.array([[1000.0, 0.0]]), np.array([1]))) == pytest.approx(1000.0)


def test_mse_on_one_hot() -> None:
    graph = make_graph((2,), [("dense", {"units": 2}), "softmax"], train=TrainConfig(loss="mse"))
    # ((0.75 - 1)^2 + (0.25 - 0)^2) / 2 = 0.0625
    assert float(loss_from_head(OPS, graph, np.array([[0.75, 0.25]]), np.array([0]))) == pytest.approx(
        0.0625, abs=1e-15
    )


def test_correct_count() -> None:
    head = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert float(correct_count(OPS, head, np.array([1, 1, 1]))) == 2.0


# ---- activations --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, x, expected",
    [
        ("relu", [-2.0, 0.0, 3.0], [0.0, 0.0, 3.0]),
        ("sigmoid", [0.0], [0.5]),
        ("tanh", [0.0], [0.0]),
        ("elu", [-1.0, 2.0], [math.exp(-1.0) - 1.0, 2.0]),
        ("gelu", [1.0, 0.0], [0.8413447460685429, 0.0]),  # 0.5 * (1 + erf(1/sqrt 2))
        ("softplus", [0.0, 100.0], [math.log(2.0), 100.0]),
        ("linear", [-3.0], [-3.0]),
    ],
)
def test_activations(name: str, x: list, expected: list) -> None:
    np.testing.assert_allclose(activate(OPS, name, np.array(x)), expected, rtol=1e-12, atol=1e-15)


# ---- dropout masks ------------------------------------------------------------------------------------------


def lowbias32_int(x: int) -> int:
    """Independent Python-int version of the hash."""
    m = 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    return x ^ (x >> 16)


def test_lowbias32_known_values() -> None:
    inputs = np.array([0, 1, 2, 0xDEADBEEF, 0xFFFFFFFF], dtype=np.uint32)
    expected = [0x0, 0x688990C0, 0xD1132181, 0xE628C683, 0x6768824A]
    assert [int(v) for v in lowbias32(OPS, OPS.u32(inputs))] == expected
    assert [lowbias32_int(int(v)) for v in inputs] == expected


def test_mask_definition_matches_python_ints() -> None:
    seed, layer, step, rate = 7, 3, 11, 0.3
    key = lowbias32_int(lowbias32_int(lowbias32_int(seed) ^ layer) ^ step)
    assert int(mask_key(OPS, seed, layer, step)) == key
    thr = int(round(rate * (1 << 24)))
    assert threshold(rate) == thr
    want = [(lowbias32_int(key ^ i) >> 8) >= thr for i in range(24)]
    np.testing.assert_array_equal(numpy_keep_mask(seed, layer, step, (4, 6), rate).ravel(), want)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_mask_rate_statistics(rate: float) -> None:
    mask = numpy_keep_mask(0, 1, 0, (200, 500), rate)
    n = mask.size
    sigma = math.sqrt(rate * (1 - rate) / n)
    assert abs((1 - mask.mean()) - rate) < 5 * sigma
    # rows and columns are not correlated with the index: each half drops about the same share
    assert abs(mask[:100].mean() - mask[100:].mean()) < 10 * sigma


def test_mask_determinism_and_independence() -> None:
    a = numpy_keep_mask(0, 2, 5, (64, 32), 0.5)
    np.testing.assert_array_equal(a, numpy_keep_mask(0, 2, 5, (64, 32), 0.5))
    for other in (
        numpy_keep_mask(0, 2, 6, (64, 32), 0.5),
        numpy_keep_mask(0, 3, 5, (64, 32), 0.5),
        numpy_keep_mask(1, 2, 5, (64, 32), 0.5),
    ):
        agree = (a == other).mean()
        assert 0.4 < agree < 0.6  # independent masks agree on about half the units


def test_apply_dropout_scales_kept_units() -> None:
    x = np.ones((10, 100))
    y = apply_dropout(OPS, x, 0, 1, 3, 0.25, x.shape)
    keep = keep_mask(OPS, 0, 1, 3, x.shape, 0.25)
    np.testing.assert_array_equal(y[keep], 1 / 0.75)
    np.testing.assert_array_equal(y[~keep], 0.0)
    assert apply_dropout(OPS, x, 0, 1, 3, 0.0, x.shape) is x
    assert scale(0.1, "float32") == float(np.float32(1 / 0.9))
