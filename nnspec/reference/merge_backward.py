"""The float64 reference backward rules of the element-wise merges, ``rescaling`` and ``layer_scale``.

An input that was broadcast gets the sum of the output gradient over the axes it was broadcast along (the
axes of length 1 it had, and the axes it lacked after the batch axis). ``maximum`` and ``minimum`` give the
whole gradient to the first input holding the extreme value (the first at a tie), as the shared definitions'
``where`` chains do (:mod:`nnspec.semantics.merges`).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from .forward import LayerRecord

Grads = dict[str, np.ndarray]
Rule = Callable[[LayerRecord, Mapping[str, np.ndarray], np.ndarray], tuple[object, Grads]]


def unbroadcast(dy: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``dy`` (batched) summed down to a batched input of per-example ``shape`` that was broadcast to it."""
    extra = dy.ndim - 1 - len(shape)
    if extra:
        dy = dy.sum(axis=tuple(range(1, 1 + extra)))
    axes = tuple(i + 1 for i, n in enumerate(shape) if n == 1 and dy.shape[i + 1] != 1)
    return dy.sum(axis=axes, keepdims=True) if axes else dy


def _full(rec: LayerRecord) -> list[np.ndarray]:
    """The inputs broadcast to the output's batched shape."""
    return [np.broadcast_to(_aligned(x, rec.output.ndim), rec.output.shape) for x in rec.all_inputs]


def _aligned(x: np.ndarray, ndim: int) -> np.ndarray:
    return x.reshape(x.shape[0], *((1,) * (ndim - x.ndim)), *x.shape[1:])


def _back(rec: LayerRecord, grads: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [unbroadcast(g, x.shape[1:]) for g, x in zip(grads, rec.all_inputs)]


def _add(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[object, Grads]:
    return _back(rec, [dy] * len(rec.all_inputs)), {}


def _average(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[object, Grads]:
    n = len(rec.all_inputs)
    return _back(rec, [dy / n] * n), {}


def _subtract(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[object, Grads]:
    return _back(rec, [dy, -dy]), {}


def _multiply(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[object, Grads]:
    full = _full(rec)
    grads = []
    for i in range(len(full)):
        others = dy
        for j, x in enumerate(full):
            if j != i:
                others = others * x
        grads.append(others)
    return _back(rec, grads), {}


def _extreme(pick: Callable[..., np.ndarray]) -> Rule:
    def rule(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[object, Grads]:
        winner = pick(np.stack(_full(rec)), axis=0)  # the first input holding the extreme value
        return _back(rec, [np.where(winner == i, dy, 0.0) for i in range(len(rec.all_inputs))]), {}

    return rule


def _rescaling(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[object, Grads]:
    return dy * np.asarray(rec.node.attrs["scale"], dtype=np.float64), {}


def _layer_scale(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[object, Grads]:
    node = rec.node
    gamma = w[node.key("gamma")]
    return dy * gamma, {node.key("gamma"): (dy * rec.input).reshape(-1, gamma.shape[0]).sum(axis=0)}


#: op -> backward rule, merged into :mod:`nnspec.reference.backward`'s table.
RULES: dict[str, Rule] = {
    "add": _add,
    "multiply": _multiply,
    "subtract": _subtract,
    "average": _average,
    "maximum": _extreme(np.argmax),
    "minimum": _extreme(np.argmin),
    "rescaling": _rescaling,
    "layer_scale": _layer_scale,
}
