"""``train.precision``: the spec setting, each policy on every engine against the float64 reference, loss
scaling, refusals with their reasons, and the GPU reporting hooks (on this CPU-only machine: no GPU listed,
GPU paths refused)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.backends import available_backends, get_backend
from nnspec.cli import main
from nnspec.compare import compare
from nnspec.compare.core import AGREE
from nnspec.compare.tolerances import DEFAULT_TOLERANCES
from nnspec.compiler.ir import PRECISIONS, Graph
from nnspec.errors import BackendError, SpecError
from nnspec.runtime.specfile import dump_spec
from nnspec.semantics.precision import GOOD_STEPS, LOSS_SCALE, POLICIES, policy_for

SPEC = """\
nnspec: 1
name: small_bn_cnn
input: {shape: [8, 8, 1]}
layers:
  - conv2d: {filters: 4, kernel: 3, padding: same, activation: relu}
  - max_pool2d: {size: 2}
  - batch_norm
  - flatten
  - dropout: {rate: 0.25}
  - dense: {units: 10}
  - softmax
train:
  optimizer: {adam: {learning_rate: 0.01}}
  batch_size: 16
  epochs: 1
  precision: PRECISION
data: {dataset: digits}
"""

#: engines that implement the reduced precisions (Theano refuses them with a reason)
MIXED_ENGINES = [b for b in available_backends() if b != "theano"]
REDUCED = ("tf32", "mixed_bfloat16", "mixed_float16")


def _graph(tmp_path: Path, precision: str) -> Graph:
    path = tmp_path / f"{precision}.yaml"
    path.write_text(SPEC.replace("PRECISION", precision))
    return nnspec.load(str(path))


# --- the spec setting ---------------------------------------------------------------------------------


def test_every_precision_is_read_and_written_back(tmp_path: Path) -> None:
    for precision in PRECISIONS:
        graph = _graph(tmp_path, precision)
        assert graph.train.precision == precision
        assert graph.dtype == ("float64" if precision == "float64" else "float32")
        assert policy_for(graph, graph.dtype).name == precision
        assert f"precision: {precision}" in dump_spec(graph)


def test_contradicting_dtype_is_an_error_at_the_precision_key(tmp_path: Path) -> None:
    text = SPEC.replace("PRECISION", "mixed_bfloat16").replace(
        "input: {shape: [8, 8, 1]}", "input: {shape: [8, 8, 1], dtype: float64}"
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        nnspec.load(str(path))
    message = str(info.value)
    assert "bad.yaml:16:14" in message and "E0402" in message and "contradicts input.dtype float64" in message


def test_unknown_precision_suggests_the_closest(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(SPEC.replace("PRECISION", "mixed_bfloat"))
    with pytest.raises(SpecError, match="did you mean 'mixed_bfloat16'"):
        nnspec.load(str(path))


def test_a_float64_model_always_runs_the_float64_policy(tmp_path: Path) -> None:
    graph = _graph(tmp_path, "mixed_float16")
    assert policy_for(graph, "float64").name == "float64"
    assert (
        policy_for(graph.replace(train=dataclasses.replace(graph.train, precision="float64")), "float32").name
        == "float32"
    )


# --- each policy on each engine, against the float64 reference ------------------------------------------


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("engine", MIXED_ENGINES)
def test_reduced_precision_agrees_with_the_reference_within_its_tolerance(
    tmp_path: Path, engine: str, precision: str
) -> None:
    graph = _graph(tmp_path, precision)
    result = compare(graph, [engine], steps=3, batch=16, timing=False)
    assert result.tolerances == DEFAULT_TOLERANCES[precision]
    assert result.status(engine) == AGREE, result.summary.to_string()


@pytest.mark.parametrize("engine", MIXED_ENGINES)
def test_mixed_precision_keeps_float32_weights_and_computes_in_the_low_type(tmp_path: Path, engine: str) -> None:
    graph = _graph(tmp_path, "mixed_bfloat16")
    model = get_backend(engine).compile(graph, device="cpu")
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype(np.float32)
    exact = get_backend(engine).compile(
        graph.replace(train=dataclasses.replace(graph.train, precision="float32")), model.get_weights(), device="cpu"
    )
    low, full = model.predict_arrays(x), exact.predict_arrays(x)
    assert all(v.dtype == np.float32 for v in model.get_weights().values())
    assert low.dtype == np.float32 and np.all(np.isfinite(low))
    # bfloat16 rounding is visible (the low type was used) but small (it was only rounding)
    assert 0 < np.max(np.abs(low - full)) < 0.05


def test_theano_refuses_the_reduced_precisions_with_a_reason(tmp_path: Path) -> None:
    for precision in REDUCED:
        with pytest.raises(
            BackendError,
            match=f"train.precision '{precision}' is not supported by backend 'theano': PyTensor has no bfloat16",
        ):
            get_backend("theano").compile(_graph(tmp_path, precision), device="cpu")
    caps = get_backend("theano").capabilities()
    assert caps.precisions == ("float32", "float64") and set(REDUCED) <= set(caps.gaps)


def test_cli_refusal_is_a_message_and_exit_code_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("PRECISION", "mixed_float16"))
    code = main(["run", str(path), "--backend", "theano", "--out", str(tmp_path / "run"), "--no-tensorboard"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "PyTensor has no bfloat16 type" in err


# --- loss scaling ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", MIXED_ENGINES)
def test_loss_scaling_skips_an_overflowing_step_and_halves_the_scale(tmp_path: Path, engine: str) -> None:
    graph = _graph(tmp_path, "mixed_float16")
    model = get_backend(engine).compile(graph, device="cpu")
    slots = model.optimizer_state()
    assert float(slots[LOSS_SCALE]) == 2.0**15 and float(slots[GOOD_STEPS]) == 0.0
    x = np.random.default_rng(1).normal(size=(16, 8, 8, 1)).astype(np.float32)
    y = np.arange(16, dtype=np.int32) % 10
    before = model.get_weights()
    model.set_optimizer_state({**slots, LOSS_SCALE: np.asarray(3e38, dtype=np.float32)})  # the scaled loss overflows
    loss = model.train_step(x, y)
    after = model.optimizer_state()
    assert np.isfinite(loss)
    assert float(after[LOSS_SCALE]) == pytest.approx(1.5e38, rel=1e-6) and float(after[GOOD_STEPS]) == 0.0
    assert all(np.array_equal(before[k], v) for k, v in model.get_weights().items()), (
        "a skipped step changed the weights"
    )
    model.set_optimizer_state({**after, LOSS_SCALE: np.asarray(1.0, dtype=np.float32)})
    model.train_step(x, y)
    final = model.optimizer_state()
    assert float(final[LOSS_SCALE]) == 1.0 and float(final[GOOD_STEPS]) == 1.0
    assert any(not np.array_equal(before[k], v) for k, v in model.get_weights().items())


@pytest.mark.parametrize("engine", MIXED_ENGINES[:1])
def test_the_loss_scale_travels_with_the_training_state(tmp_path: Path, engine: str) -> None:
    graph = _graph(tmp_path, "mixed_float16")
    model = get_backend(engine).compile(graph, device="cpu")
    model.set_optimizer_state({**model.optimizer_state(), LOSS_SCALE: np.asarray(512.0, dtype=np.float32)})
    state = model.get_training_state()
    assert float(state.slots["loss_scale.scale"]) == 512.0
    fresh = get_backend(engine).compile(graph, device="cpu")
    fresh.set_training_state(state)
    assert float(fresh.optimizer_state()[LOSS_SCALE]) == 512.0
    plain = get_backend(engine).compile(
        graph.replace(train=dataclasses.replace(graph.train, precision="float32")), device="cpu"
    )
    with pytest.raises(BackendError, match="optimiser slots"):
        plain.set_training_state(state)


def test_policies_say_what_they_compute_in() -> None:
    assert [p.compute for p in POLICIES.values()] == ["float32", "float32", "bfloat16", "float16", "float64"]
    assert [p.name for p in POLICIES.values() if p.loss_scaling] == ["mixed_float16"]
    assert [p.name for p in POLICIES.values() if p.full_precision_matmul] == ["float32", "float64"]


# --- GPUs: listed when present, refused when absent -------------------------------------------------------


def test_backends_json_lists_gpus_and_how_each_engine_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for row in rows:
        assert isinstance(row["gpus"], list) and isinstance(row["execution"], dict)
        if row["available"]:
            assert ("gpu" in row["devices"]) == bool(row["gpus"])


def test_gpu_is_refused_clearly_where_there_is_none(tmp_path: Path, backend_name: str) -> None:
    backend = get_backend(backend_name)
    if "gpu" in backend.devices():
        pytest.skip("this machine has a GPU: the refusal cannot be shown here")
    with pytest.raises(BackendError, match="sees no GPU on this machine.*never falls back silently"):
        backend.compile(_graph(tmp_path, "float32"), device="gpu")
