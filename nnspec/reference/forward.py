"""NumPy forward pass of every op, layer by layer: the oracle every engine is checked against.

It computes in float64 by default (``dtype='float32'`` is allowed, for checking rounding), follows the
contracts of docs/architecture.md literally (padding pairs from :func:`nnspec.compiler.shapes.padding_pairs`,
``avg_pool2d`` averaging over in-image elements only, ``max_pool2d`` padding with -inf) and uses the shared
definitions of :mod:`nnspec.runtime` through :class:`~nnspec.runtime.numpy_ops.NumpyOps`.

:func:`forward_trace` keeps, per layer, what a backward pass needs: the layer's input, its
pre-activation (dense, conv2d, activation) and its dropout keep-mask and scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from ..compiler.ir import Graph, Node
from ..compiler.shapes import padding_pairs
from ..runtime.activations import activate
from ..runtime.dropout import apply_dropout, numpy_keep_mask, scale
from ..runtime.losses import correct_count, loss_from_head
from ..runtime.numpy_ops import NumpyOps
from ..backends.lowering import OpRegistry

Weights = Mapping[str, np.ndarray]
Pads = tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class LayerRecord:
    """One layer's forward pass: its input and output, and what its backward pass needs.

    ``pre_activation`` is the value the layer's activation was applied to (``dense``, ``conv2d``,
    ``activation``; ``None`` otherwise). ``keep`` is the boolean keep-mask of a ``dropout`` layer in
    training mode and ``scale`` the factor kept units were multiplied by (``None`` / 1.0 otherwise).
    """

    node: Node
    input: np.ndarray
    output: np.ndarray
    pre_activation: np.ndarray | None = None
    keep: np.ndarray | None = None
    scale: float = 1.0


# ---- building blocks (also used by the backward pass) ---------------------------------------------
def windows(x: np.ndarray, window: tuple[int, int], strides: tuple[int, int], pads: Pads, fill: float = 0.0) -> np.ndarray:
    """Sliding windows of a padded (B, H, W, C) batch: shape (B, oh, ow, C, kh, kw), a read-only view."""
    padded = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=fill)
    view = np.lib.stride_tricks.sliding_window_view(padded, window, axis=(1, 2))
    return view[:, :: strides[0], :: strides[1]]


def conv2d(x: np.ndarray, kernel: np.ndarray, strides: tuple[int, int], pads: Pads) -> np.ndarray:
    """Cross-correlation of (B, H, W, C) with a [kh, kw, C, O] kernel (no bias), channels last."""
    patches = windows(x, kernel.shape[:2], strides, pads)
    return np.einsum("bhwcij,ijco->bhwo", patches, kernel, optimize=True)


def max_pool2d(x: np.ndarray, size: tuple[int, int], strides: tuple[int, int], pads: Pads) -> np.ndarray:
    """Max over each window; padding takes no part (it is -inf)."""
    return windows(x, size, strides, pads, fill=-np.inf).max(axis=(4, 5))


def pool_counts(shape: tuple[int, ...], size: tuple[int, int], strides: tuple[int, int], pads: Pads) -> np.ndarray:
    """Number of in-image elements in each window of a (H, W, ...) input: shape (oh, ow, 1)."""
    ones = np.ones((1, shape[0], shape[1], 1))
    return windows(ones, size, strides, pads).sum(axis=(4, 5))[0]


def avg_pool2d(x: np.ndarray, size: tuple[int, int], strides: tuple[int, int], pads: Pads) -> np.ndarray:
    """Mean over the in-image elements of each window (padding is not counted)."""
    total = windows(x, size, strides, pads).sum(axis=(4, 5))
    return total / pool_counts(x.shape[1:], size, strides, pads).astype(x.dtype)


# ---- one function per op ----------------------------------------------------------------------------
Forward = Callable[[Node, Weights, np.ndarray, NumpyOps, bool, int, int], LayerRecord]
FORWARD: OpRegistry[Forward] = OpRegistry("reference")
forward_op = FORWARD.register


def _finish(node: Node, weights: Weights, x: np.ndarray, z: np.ndarray, ops: NumpyOps) -> LayerRecord:
    if node.attrs["use_bias"]:
        z = z + weights[node.key("bias")]
    return LayerRecord(node, x, activate(ops, node.attrs["activation"], z), pre_activation=z)


@forward_op("dense")
def _dense(node: Node, w: Weights, x: np.ndarray, ops: NumpyOps, training: bool, step: int, seed: int) -> LayerRecord:
    return _finish(node, w, x, x @ w[node.key("kernel")], ops)


@forward_op("conv2d")
def _conv2d(node: Node, w: Weights, x: np.ndarray, ops: NumpyOps, training: bool, step: int, seed: int) -> LayerRecord:
    z = conv2d(x, w[node.key("kernel")], node.attrs["strides"], padding_pairs(node))
    return _finish(node, w, x, z, ops)


@forward_op("max_pool2d")
def _max_pool(node: Node, w: Weights, x: np.ndarray, ops: NumpyOps, training: bool, step: int, seed: int) -> LayerRecord:
    return LayerRecord(node, x, max_pool2d(x, node.attrs["size"], node.attrs["strides"], padding_pairs(node)))


@forward_op("avg_pool2d")
def _avg_pool(node: Node, w: Weights, x: np.ndarray, ops: NumpyOps, training: bool, step: int, seed: int) -> LayerRecord:
    return LayerRecord(node, x, avg_pool2d(x, node.attrs["size"], node.attrs["strides"], padding_pairs(node)))


@forward_op("flatten")
def _flatten(node: Node, w: Weights, x: np.ndarray, ops: NumpyOps, training: bool, step: int, seed: int) -> LayerRecord:
    return LayerRecord(node, x, x.reshape(x.shape[0], -1))


@forward_op("reshape")
def _reshape(node: Node, w: Weights, x: np.ndarray, ops: NumpyOps, training: bool, step: int, seed: int) -> LayerRecord:
    return LayerRecord(node, x, x.reshape(x.shape[0], *node.attrs["shape"]))


@forward_op("dropout")
def _dropout(node: Node, w: Weights, x: np.ndarray, ops: NumpyOps, training: bool, step: int, seed: int) -> LayerRecord:
    rate = float(node.attrs["rate"])
    if not training or rate <= 0.0:
        return LayerRecord(node, x, x)
    keep = numpy_keep_mask(seed, node.index, step, x.shape, rate)
    factor = scale(rate, ops.float_dtype)
    y = apply_dropout(ops, x, seed, node.index, step, rate, x.shape)
    return LayerRecord(node, x, y, keep=keep, scale=factor)


@forward_op("activation")
def _activation(node: Node, w: Weights, x: np.ndarray, ops: NumpyOps, training: bool, step: int, seed: int) -> LayerRecord:
    return LayerRecord(node, x, activate(ops, node.attrs["activation"], x), pre_activation=x)


@forward_op("softmax")
def _softmax(node: Node, w: Weights, x: np.ndarray, ops: NumpyOps, training: bool, step: int, seed: int) -> LayerRecord:
    return LayerRecord(node, x, ops.softmax(x))


# ---- whole model ------------------------------------------------------------------------------------
def forward_trace(
    graph: Graph, weights: Weights, x: np.ndarray, *, training: bool = False, step: int = 0, dtype: str = "float64"
) -> list[LayerRecord]:
    """Run every node on batch ``x``; one :class:`LayerRecord` per node, in order.

    With ``training``, dropout layers drop the units of the shared mask for ``(train.seed, layer, step)``.
    """
    ops = NumpyOps(dtype)
    w = {k: np.asarray(v, dtype=dtype) for k, v in weights.items()}
    value = np.asarray(x, dtype=dtype)
    records = []
    for node in graph.nodes:
        record = FORWARD[node.op](node, w, value, ops, training, step, int(graph.train.seed))
        records.append(record)
        value = record.output
    return records


def layer_outputs(
    graph: Graph, weights: Weights, x: np.ndarray, *, training: bool = False, step: int = 0, dtype: str = "float64"
) -> list[np.ndarray]:
    """Every node's output for batch ``x`` (what ``CompiledModel.layer_outputs`` must match)."""
    return [r.output for r in forward_trace(graph, weights, x, training=training, step=step, dtype=dtype)]


def head_index(graph: Graph) -> int:
    """Index of the node whose output is the loss's head (the logits when the loss is taken from them)."""
    return len(graph.logits_nodes) - 1


def head_of(graph: Graph, outputs: list[np.ndarray]) -> np.ndarray:
    """The head among a forward pass's per-node outputs."""
    return outputs[head_index(graph)]


def loss_of_head(graph: Graph, head: np.ndarray, y: np.ndarray, dtype: str = "float64") -> float:
    """The batch loss from its head and integer labels (the shared definition, in NumPy)."""
    return float(loss_from_head(NumpyOps(dtype), graph, head, np.asarray(y)))


def loss(graph: Graph, weights: Weights, x: np.ndarray, y: np.ndarray, *, training: bool = True, step: int = 0, dtype: str = "float64") -> float:
    """The batch loss; by default in training mode (dropout masks of ``step``), as a training step sees it."""
    outputs = layer_outputs(graph, weights, x, training=training, step=step, dtype=dtype)
    return loss_of_head(graph, head_of(graph, outputs), y, dtype)


def predict(graph: Graph, weights: Weights, x: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """The model's final outputs (dropout off)."""
    return layer_outputs(graph, weights, x, dtype=dtype)[-1]


def evaluate(graph: Graph, weights: Weights, x: np.ndarray, y: np.ndarray, dtype: str = "float64") -> tuple[float, float]:
    """Mean loss and accuracy over ``(x, y)`` with dropout off."""
    outputs = layer_outputs(graph, weights, x, dtype=dtype)
    h = head_of(graph, outputs)
    hits = correct_count(NumpyOps(dtype), h, np.asarray(y))
    return loss_of_head(graph, h, y, dtype), float(hits) / len(y)
