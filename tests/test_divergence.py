"""The divergence guard inside every engine's compiled epoch (``train.on_divergence: stop``).

A three-layer linear network on scikit-learn's digits with SGD (momentum 0.5) at learning rate 1 blows
up: its loss grows by orders of magnitude each step and becomes NaN a few steps into the first epoch (of
20 steps an epoch). For every engine and epoch mode, single optimiser steps over the
epoch's batches find the first step whose loss is not finite; a guarded ``run_epoch`` must
stop exactly there, holding the state of a model that took only the good steps; unguarded, NaN flows on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import nnspec
from nnspec.backends import get_backend
from nnspec.backends.base import CompiledModel
from nnspec.compiler.ir import Graph
from nnspec.data import load_dataset
from nnspec.data.dataset import Dataset
from nnspec.runtime.loop import epoch_order

SPEC = """\
nnspec: 1
name: blowup
input: {{shape: [8, 8, 1]}}
layers: [flatten, {{dense: {{units: 16}}}}, {{dense: {{units: 16}}}}, {{dense: {{units: 10}}}}, softmax]
train: {{epochs: 2, batch_size: 64, seed: 3, optimizer: {{sgd: {{learning_rate: {lr}, momentum: 0.5}}}}}}
data: {{dataset: digits}}
"""


def _use_jax_scan(model: Any) -> None:
    model.epoch_mode = "scan"


def _use_jax_step(model: Any) -> None:
    model.epoch_mode = "step"


def _use_tf_fused(model: Any) -> None:
    from nnspec.backends.tensorflow.model import ExecutionPlan

    model.set_plan(ExecutionPlan(fused=True, jit=True))


def _use_tf_fused_without_xla(model: Any) -> None:
    from nnspec.backends.tensorflow.model import ExecutionPlan

    model.set_plan(ExecutionPlan(fused=True, jit=False))


def _use_tf_per_batch(model: Any) -> None:
    from nnspec.backends.tensorflow.model import ExecutionPlan

    model.set_plan(ExecutionPlan(fused=False, jit=False))


def _as_compiled(model: Any) -> None:
    pass


#: (backend, how its epoch runs): every engine, both JAX epoch modes, TensorFlow fused (with and without
#: XLA) and per batch; between them both forms of the guarded update (``lazy`` and select) run.
ENGINES: dict[str, tuple[str, Callable[[Any], None]]] = {
    "jax-scan": ("jax", _use_jax_scan),
    "jax-step": ("jax", _use_jax_step),
    "tensorflow-fused": ("tensorflow", _use_tf_fused),
    "tensorflow-fused-no-xla": ("tensorflow", _use_tf_fused_without_xla),
    "tensorflow-per-batch": ("tensorflow", _use_tf_per_batch),
    "theano": ("theano", _as_compiled),
    "keras": ("keras", _as_compiled),
}


def _graph(tmp_path: Path, lr: str, extra: str = "") -> Graph:
    path = tmp_path / f"blowup_{lr}.yaml"
    path.write_text(SPEC.format(lr=lr) + extra)
    return nnspec.load(str(path))


@pytest.fixture(scope="module")
def blowup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Graph, Dataset]:
    graph = _graph(tmp_path_factory.mktemp("spec"), "1")
    return graph, load_dataset(graph)


def _model(graph: Graph, engine: str, dtype: str) -> CompiledModel:
    backend, configure = ENGINES[engine]
    model = get_backend(backend).compile(graph, device="cpu", dtype=dtype)
    configure(model)
    return model


def _batches(graph: Graph, ds: Dataset, epoch: int) -> list[np.ndarray]:
    order = epoch_order(graph.train.seed, epoch, len(ds.x_train))
    bs = graph.train.batch_size
    return [order[i * bs : (i + 1) * bs] for i in range(len(order) // bs)]


def _finite(model: CompiledModel) -> bool:
    return all(np.isfinite(v).all() for v in model.get_weights().values())


def _first_bad_step(model: CompiledModel, ds: Dataset, batches: list[np.ndarray]) -> tuple[int, list[float]]:
    """Single steps until the first whose loss is not finite: its index and the losses before it."""
    losses: list[float] = []
    for i, b in enumerate(batches):
        loss = model.train_step(ds.x_train[b], ds.y_train[b])
        if not np.isfinite(loss):
            return i, losses
        assert _finite(model)  # this spec's weights stay finite while its loss does
        losses.append(loss)
    raise AssertionError("the blow-up spec did not diverge within an epoch")


def _run_epoch(model: CompiledModel, graph: Graph, ds: Dataset, epoch: int) -> tuple[float, float]:
    order = epoch_order(graph.train.seed, epoch, len(ds.x_train))
    return model.run_epoch(model.put(ds.x_train), model.put(ds.y_train), order, graph.train.batch_size)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("engine", list(ENGINES))
def test_guarded_epoch_stops_at_the_first_bad_step(engine: str, dtype: str, blowup: tuple[Graph, Dataset]) -> None:
    graph, ds = blowup
    batches = _batches(graph, ds, 0)
    bad, good_losses = _first_bad_step(_model(graph, engine, dtype), ds, batches)
    assert 0 < bad < len(batches)

    reference = _model(graph, engine, dtype)
    for b in batches[:bad]:
        reference.train_step(ds.x_train[b], ds.y_train[b])

    model = _model(graph, engine, dtype)
    assert model.guard_divergence  # train.on_divergence defaults to stop
    loss, accuracy = _run_epoch(model, graph, ds, 0)
    assert model.diverged_step == bad and model.step == bad
    assert not np.isfinite(model.diverged_loss)
    assert _finite(model)
    expected = reference.get_weights()
    for key, value in model.get_weights().items():
        np.testing.assert_allclose(
            value, expected[key], rtol=1e-5 if dtype == "float32" else 1e-12, atol=0, err_msg=key
        )
    np.testing.assert_allclose(loss, np.mean(good_losses), rtol=1e-4 if dtype == "float32" else 1e-10)
    assert 0.0 <= accuracy <= 1.0
    slots, expected_slots = model.optimizer_state(), reference.optimizer_state()
    assert slots.keys() == expected_slots.keys() and slots
    for key, value in slots.items():
        assert np.isfinite(value).all()
        np.testing.assert_allclose(
            value, expected_slots[key], rtol=1e-5 if dtype == "float32" else 1e-12, atol=0, err_msg=key
        )
    held = model.get_weights()

    # The next epoch starts from the good state: its first step (global step `bad`) blows up again and
    # changes nothing.
    loss, accuracy = _run_epoch(model, graph, ds, 1)
    assert model.diverged_step == bad and model.step == bad and np.isnan(loss) and np.isnan(accuracy)
    for key, value in model.get_weights().items():
        np.testing.assert_array_equal(value, held[key], err_msg=key)

    # Guard switched off after compiling (and after the guarded programs ran): NaN flows on, unreported.
    model.guard_divergence = False
    _run_epoch(model, graph, ds, 1)
    assert model.diverged_step is None and model.step == bad + len(batches)
    assert not _finite(model)


@pytest.mark.parametrize("engine", list(ENGINES))
def test_guard_changes_nothing_when_no_step_diverges(engine: str, tmp_path: Path) -> None:
    graph = _graph(tmp_path, "0.05")
    ds = load_dataset(graph)
    runs = []
    for guard in (True, False):
        model = _model(graph, engine, "float32")
        model.guard_divergence = guard
        metrics = [_run_epoch(model, graph, ds, e) for e in range(2)]
        runs.append((metrics, model.get_weights(), model.optimizer_state(), model.step, model.diverged_step))
    (m_on, w_on, s_on, step_on, bad_on), (m_off, w_off, s_off, step_off, bad_off) = runs
    assert bad_on is None and bad_off is None and step_on == step_off == 2 * len(_batches(graph, ds, 0))
    assert m_on == m_off
    for key in w_off:
        np.testing.assert_array_equal(w_on[key], w_off[key], err_msg=key)
    for key in s_off:
        np.testing.assert_array_equal(s_on[key], s_off[key], err_msg=key)


def test_on_divergence_continue_turns_the_guard_off(tmp_path: Path) -> None:
    graph = _graph(tmp_path, "1", "")
    assert get_backend("jax").compile(graph, device="cpu").guard_divergence
    path = tmp_path / "continue.yaml"
    path.write_text(SPEC.format(lr="1"))
    model = get_backend("jax").compile(nnspec.load(str(path), ["train.on_divergence=continue"]), device="cpu")
    assert not model.guard_divergence
    ds = load_dataset(model.graph)
    _run_epoch(model, model.graph, ds, 0)
    assert model.diverged_step is None and not _finite(model)


def _ops(engine: str) -> tuple[Any, Callable[[Any, list[Any]], list[np.ndarray]]]:
    """An engine's Ops and a function that evaluates ``fn(ops, *inputs)`` on host inputs."""
    if engine == "theano":
        import pytensor
        import pytensor.tensor as pt

        from nnspec.backends.theano.ops import PyTensorOps

        def run_symbolic(fn: Any, inputs: list[Any]) -> list[np.ndarray]:
            symbols = [pt.tensor(dtype=str(np.asarray(v).dtype), shape=np.shape(v)) for v in inputs]
            outputs = fn(*symbols)
            return [np.asarray(o) for o in pytensor.function(symbols, outputs)(*inputs)]

        return PyTensorOps("float32"), run_symbolic
    to_tensor: Callable[[Any], Any] = np.asarray
    if engine == "numpy":
        from nnspec.semantics.numpy_ops import NumpyOps

        ops: Any = NumpyOps("float32")
    elif engine == "jax":
        import jax.numpy as jnp

        from nnspec.backends.jax.ops import JaxOps

        ops, to_tensor = JaxOps("float32"), jnp.asarray
    elif engine == "tensorflow":
        import tensorflow as tf

        from nnspec.backends.tensorflow.ops import TensorFlowOps

        ops, to_tensor = TensorFlowOps("float32"), tf.constant
    else:
        from keras import ops as K

        from nnspec.backends.keras.ops import KerasOps

        ops, to_tensor = KerasOps("float32"), K.convert_to_tensor
    return ops, lambda fn, inputs: [np.asarray(o) for o in fn(*(to_tensor(v) for v in inputs))]


@pytest.mark.parametrize("engine", ["numpy", "jax", "tensorflow", "theano", "keras"])
def test_guard_ops(engine: str) -> None:
    ops, run = _ops(engine)
    a, b = np.array([1.0, 2.0], np.float32), np.array([5.0, 6.0], np.float32)

    def cond(pred: Any, x: Any, y: Any) -> list[Any]:
        then = lambda: ({"x": x * 2.0, "y": (x,)}, y)  # noqa: E731
        otherwise = lambda: ({"x": y, "y": (y,)}, x)  # noqa: E731
        chosen, other = ops.cond(pred, then, otherwise)
        return [chosen["x"], chosen["y"][0], other]

    taken = run(cond, [np.array(True), a, b])
    assert [t.tolist() for t in taken] == [[2.0, 4.0], [1.0, 2.0], [5.0, 6.0]]
    taken = run(cond, [np.array(False), a, b])
    assert [t.tolist() for t in taken] == [[5.0, 6.0], [5.0, 6.0], [1.0, 2.0]]

    def finite(x: Any, y: Any, p: Any, q: Any) -> list[Any]:
        return [ops.all_finite(x), ops.all_finite(y), ops.logical_and(p, q), ops.logical_and(p, p)]

    for bad in (np.nan, np.inf, -np.inf):
        out = run(finite, [a, np.array([1.0, bad], np.float32), np.array(True), np.array(False)])
        assert [bool(o) for o in out] == [True, False, False, True]
