"""Parity of one compiled model against the NumPy float64 reference: forward per layer, loss and gradients,
and a K-step training trajectory. Each function returns a :class:`pandas.DataFrame`, one row per compared
tensor (or step), with the measures of :mod:`nnspec.compare.tolerances` and an ``ok`` column.

The reference side is computed once per comparison (:class:`Reference`) and shared by every engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..compiler.ir import INPUT, Graph
from ..reference.backward import loss_and_gradients
from ..reference.train import Trajectory, reference_trajectory
from ..semantics.precision import training_slots
from .tolerances import Tolerances, errors, weights_distance

if TYPE_CHECKING:
    from ..backends.base import CompiledModel

Batch = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Reference:
    """The reference results a comparison checks every engine against."""

    weights: dict[str, np.ndarray]
    x: np.ndarray
    y: np.ndarray
    outputs: list[np.ndarray]
    training_outputs: list[np.ndarray] | None
    loss: float
    gradients: dict[str, np.ndarray]
    batches: list[Batch]
    trajectory: Trajectory | None


def has_dropout(graph: Graph) -> bool:
    """True when some layer drops units in training."""
    return any(n.op == "dropout" and float(n.attrs["rate"]) > 0 for n in graph.nodes)


def compute_reference(
    graph: Graph, weights: Mapping[str, np.ndarray], batches: Sequence[Batch], *, trajectory: bool = True
) -> Reference:
    """Reference forward (inference, and training at step 0 when there is dropout or batch statistics), loss and
    gradients on ``batches[0]``, and the trajectory over all of ``batches``. Inputs and weights are used exactly
    as given (already rounded to the engines' dtype), in float64."""
    from ..reference.forward import layer_outputs

    w64 = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    x, y = batches[0]
    x64 = np.asarray(x, dtype=np.float64)
    outputs = [np.asarray(o) for o in layer_outputs(graph, w64, x64, training=False, step=0)]
    training_differs = has_dropout(graph) or graph.has_state
    training = (
        [np.asarray(o) for o in layer_outputs(graph, w64, x64, training=True, step=0)] if training_differs else None
    )
    loss, grads = loss_and_gradients(graph, w64, x64, y, step=0)
    traj = (
        reference_trajectory(graph, w64, [(np.asarray(bx, dtype=np.float64), by) for bx, by in batches])
        if trajectory
        else None
    )
    return Reference(w64, x64, np.asarray(y), outputs, training, loss, grads, list(batches), traj)


def compare_forward(graph: Graph, model: "CompiledModel", ref: Reference, tol: Tolerances) -> pd.DataFrame:
    """Per-layer forward errors (inference mode, and training mode at step 0 when the graph has dropout or
    batch normalisation).

    Columns: ``mode, index, layer, op, max_abs, max_rel, tolerance, ok``; the final layer's row also has
    ``argmax_agreement`` (fraction of examples whose largest output matches the reference's).
    """
    x = ref.x.astype(model.dtype)
    rows = []
    modes = [("inference", False, ref.outputs)]
    if ref.training_outputs is not None:
        modes.append(("training", True, ref.training_outputs))
    for mode, training, expected in modes:
        got = model.layer_outputs(x, training=training, step=0)
        for node, a, r in zip(graph.nodes, got, expected):
            max_abs, max_rel = errors(a, r)
            row = {
                "mode": mode,
                "index": node.index,
                "layer": node.name,
                "op": node.op,
                "max_abs": max_abs,
                "max_rel": max_rel,
            }
            if node is graph.output_node:
                row["argmax_agreement"] = argmax_agreement(np.asarray(a), r)
            rows.append(row)
    return _with_tolerance(pd.DataFrame(rows), tol.forward)


def argmax_agreement(actual: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of examples whose largest output (last axis) is at the same index as the reference's."""
    if actual.shape != reference.shape:
        return 0.0
    return float(np.mean(np.argmax(actual, axis=-1) == np.argmax(reference, axis=-1)))


def compare_gradients(graph: Graph, model: "CompiledModel", ref: Reference, tol: Tolerances) -> pd.DataFrame:
    """Loss and per-weight gradient errors on the first batch (dropout on, masks of step 0).

    Columns: ``item`` (``loss`` or a weight key), ``layer``, ``max_abs``, ``max_rel``, ``tolerance``, ``ok``.
    """
    loss, grads = model.loss_and_gradients(ref.x.astype(model.dtype), ref.y, step=0)
    rows = [
        {
            "item": "loss",
            "layer": "",
            **dict(zip(("max_abs", "max_rel"), errors(np.asarray(loss), np.asarray(ref.loss)))),
        }
    ]
    for key, node, _ in graph.param_specs():
        got = grads.get(key)
        max_abs, max_rel = errors(got, ref.gradients[key]) if got is not None else (float("inf"), float("inf"))
        rows.append({"item": key, "layer": node.name, "max_abs": max_abs, "max_rel": max_rel})
    return _with_tolerance(pd.DataFrame(rows), tol.gradients)


#: After a kink flip (see :func:`kink_flips`) the trajectory is held to this multiple of its tolerance.
KINK_FACTOR = 100.0


def kink_flips(
    graph: Graph, engine_outputs: Sequence[np.ndarray], ref_records: Sequence[Any], x: np.ndarray, threshold: float
) -> tuple[list[str], bool]:
    """Where an engine's forward pass took the other side of a kink than the reference's: a ReLU unit
    active in one and not in the other, or a max-pooling window whose (first) maximum is elsewhere.

    A flip is *explained by rounding* when the reference is within ``threshold`` (relative to the layer's
    largest value) of the kink there: the ReLU input is that close to 0, or the two window elements are
    that close. Exact zeros and exact ties are computed exactly by every engine and never flip. Each
    description reads ``'<layer> <n> ReLU flip(s) at <distance>'`` or ``'<layer> <n> max moved at
    <distance>'``, the distance relative to the layer's largest value, with ``', NOT rounding'`` added
    when it is over ``threshold``. Returns
    the descriptions and whether every flip found is explained by rounding (True when there is none).
    After an explained flip an engine's trajectory rightly parts from the reference's by far more than
    rounding (in float32, about 1e-4 relative after one Adam step).
    """
    from ..reference.backward import node_windows

    found: list[str] = []
    explained = True
    values_e = {INPUT: x, **{n.name: out for n, out in zip(graph.nodes, engine_outputs)}}
    inputs_e = [values_e[graph.inputs_of(n)[0]] for n in graph.nodes]
    for node, out_e, in_e, rec in zip(graph.nodes, engine_outputs, inputs_e, ref_records):
        if node.attrs.get("activation") == "relu" and rec.pre_activation is not None:
            z = rec.pre_activation
            flipped = (np.asarray(out_e) > 0) != (z > 0)
            if flipped.any():
                worst = float(np.abs(z[flipped]).max() / max(np.abs(z).max(), 1e-300))
                ok = worst <= threshold
                explained &= ok
                found.append(
                    f"{node.name} {int(flipped.sum())} ReLU flip(s) at {worst:.0e}{'' if ok else ', NOT rounding'}"
                )
        elif node.op.startswith("max_pool"):  # max_pool1d, max_pool2d: windows (B, *out, *window, C)
            d = len(node.attrs["size"])
            win_r = node_windows(node, rec.input, fill=-np.inf)
            win_r = win_r.reshape(win_r.shape[: 1 + d] + (-1, win_r.shape[-1]))
            win_e = node_windows(node, np.asarray(in_e, dtype=np.float64), fill=-np.inf)
            at_e = np.argmax(win_e.reshape(win_e.shape[: 1 + d] + (-1, win_e.shape[-1])), axis=1 + d)
            moved = at_e != np.argmax(win_r, axis=1 + d)
            if moved.any():
                chosen = np.take_along_axis(win_r, np.expand_dims(at_e, 1 + d), axis=1 + d)
                gap = win_r.max(axis=1 + d) - np.squeeze(chosen, axis=1 + d)
                worst = float(gap[moved].max() / max(np.abs(rec.input).max(), 1e-300))
                ok = worst <= threshold
                explained &= ok
                found.append(f"{node.name} {int(moved.sum())} max moved at {worst:.0e}{'' if ok else ', NOT rounding'}")
    return found, explained


def compare_trajectory(graph: Graph, model: "CompiledModel", ref: Reference, tol: Tolerances) -> pd.DataFrame:
    """Train ``model`` K steps from the reference's initial weights (step counter reset to 0) on the
    reference's batches (pass a freshly compiled model: its optimiser slots must be zero, unless it offers
    ``set_optimizer_state``, which is then used to reset them); per step: the reference loss, the engine's loss, their
    relative error, and the distance between the weights after the step.

    Columns: ``step, ref_loss, loss, loss_rel, weights_max_abs, weights_rel, state_rel, max_rel, kink_flip,
    tolerance, ok`` where ``weights_rel`` covers every array of the weights file (trainable and running
    statistics), ``state_rel`` the running statistics alone (NaN without any) and ``max_rel`` is the largest
    of ``loss_rel``, ``weights_rel`` and ``state_rel``. ``kink_flip`` names what
    :func:`kink_flips` found in the engine's training forward pass at that step (with the forward tolerance
    as the rounding threshold). From the first step whose flips are all explained by rounding, while the
    engine was still within tolerance, the trajectory is held to ``KINK_FACTOR`` times its tolerance: the
    engine has rightly taken the other side of a kink, and what is left to check is that it does not go
    far astray.
    """
    from ..reference.forward import forward_trace

    assert ref.trajectory is not None, "the reference was computed without a trajectory"
    start = {k: v.astype(model.dtype) for k, v in ref.weights.items()}
    model.set_weights(start)
    if hasattr(model, "set_optimizer_state"):  # optional hook: restart from fresh optimiser slots
        model.set_optimizer_state(
            training_slots(graph, {k: start[k] for k, _, _ in graph.param_specs()}, model.precision)
        )
    model.step = 0
    rows: list[dict[str, Any]] = []
    tolerance = tol.trajectory
    before = ref.weights
    for k, ((bx, by), ref_loss, ref_w) in enumerate(zip(ref.batches, ref.trajectory.losses, ref.trajectory.weights)):
        x64 = np.asarray(bx, dtype=np.float64)
        engine_outputs = model.layer_outputs(np.asarray(bx, dtype=model.dtype), training=True, step=k)
        records = forward_trace(graph, before, x64, training=True, step=k)
        kinks, explained = kink_flips(graph, engine_outputs, records, x64, tol.forward)
        on_track = not rows or rows[-1]["max_rel"] <= tol.trajectory
        if kinks and explained and on_track:
            tolerance = tol.trajectory * KINK_FACTOR
        before = ref_w
        loss = float(model.train_step(np.asarray(bx, dtype=model.dtype), by))
        _, loss_rel = errors(np.asarray(loss), np.asarray(ref_loss))
        got = model.get_weights()
        w_abs, w_rel = weights_distance(got, ref_w)
        state_keys = [key for key, _, _ in graph.state_specs()]
        state_rel = (
            weights_distance({k: got[k] for k in state_keys}, {k: ref_w[k] for k in state_keys})[1]
            if state_keys
            else float("nan")
        )
        rows.append(
            {
                "step": k,
                "ref_loss": ref_loss,
                "loss": loss,
                "loss_rel": loss_rel,
                "weights_max_abs": w_abs,
                "weights_rel": w_rel,
                "state_rel": state_rel,
                "max_rel": max(loss_rel, w_rel, 0.0 if np.isnan(state_rel) else state_rel),
                "kink_flip": "; ".join(kinks),
                "tolerance": tolerance,
            }
        )
    df = pd.DataFrame(rows)
    df["ok"] = df["max_rel"] <= df["tolerance"]
    return df


def _with_tolerance(df: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    df["tolerance"] = tolerance
    df["ok"] = df["max_rel"] <= tolerance
    return df


def first_over(df: pd.DataFrame, column: str) -> str | None:
    """The ``column`` value of the first row that is over its tolerance, or ``None``."""
    bad = df[~df["ok"]]
    return None if bad.empty else str(bad.iloc[0][column])
