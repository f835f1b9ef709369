"""One PyTensor lowering per IR op, registered by op type (as PyTensor registers its own per-op lowerings).

PyTensor has no convolution or pooling op of its own any more, so:

* ``conv2d`` is patch extraction plus one matrix product: the (zero-padded) input's ``kh * kw`` shifted,
  strided views of shape (B, OH, OW, Cin) are concatenated on the channel axis, in (i, j, c) order, which
  is the row-major order of the [kh, kw, Cin, Cout] kernel; one reshape and one ``dot`` with the kernel
  reshaped to [kh*kw*Cin, Cout] follow (a BLAS GEMM).
* ``max_pool2d`` / ``avg_pool2d`` are a reshape and a reduction when the windows tile the input
  (stride == size, no padding), and otherwise an elementwise maximum or sum over the ``ph * pw``
  shifted strided views. ``same`` max pooling pads with -inf; ``same`` average pooling divides by the
  number of in-image elements of each window (a constant computed here).

All of these are plain PyTensor graphs, so ``pytensor.grad`` differentiates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pytensor.tensor as pt

from ...compiler.ir import Graph, Node
from ...compiler.shapes import padding_pairs
from ...runtime.activations import activate
from ...runtime.dropout import apply_dropout
from .ops import PyTensorOps


@dataclass
class Context:
    """What a lowering may use: the Ops, the weights (symbolic), training mode, step and batch size."""

    ops: PyTensorOps
    params: Mapping[str, Any]
    training: bool
    step: Any
    batch: int
    seed: int


Lowering = Callable[[Node, Any, Context], Any]
LOWERINGS: dict[str, Lowering] = {}


def lowering(op: str) -> Callable[[Lowering], Lowering]:
    """Register the lowering of IR op ``op``."""

    def register(fn: Lowering) -> Lowering:
        LOWERINGS[op] = fn
        return fn

    return register


def forward(graph: Graph, x: Any, ctx: Context, nodes: tuple[Node, ...] | None = None) -> list[Any]:
    """Symbolic outputs of every node of ``nodes`` (default: all of ``graph``) for the batch ``x``."""
    outputs: list[Any] = []
    for node in graph.nodes if nodes is None else nodes:
        if node.op not in LOWERINGS:
            from ...errors import BackendError

            raise BackendError(f"layer {node.index} '{node.name}' ({node.op}) has no PyTensor lowering")
        x = LOWERINGS[node.op](node, x, ctx)
        outputs.append(x)
    return outputs


def _bias_and_activation(node: Node, y: Any, ctx: Context) -> Any:
    if node.attrs["use_bias"]:
        y = y + ctx.params[node.key("bias")]
    return activate(ctx.ops, node.attrs["activation"], y)


@lowering("dense")
def _dense(node: Node, x: Any, ctx: Context) -> Any:
    return _bias_and_activation(node, pt.dot(x, ctx.params[node.key("kernel")]), ctx)


def _pad(x: Any, pads: tuple[tuple[int, int], tuple[int, int]], value: float) -> Any:
    (top, bottom), (left, right) = pads
    if top == bottom == left == right == 0:
        return x
    b, h, w, c = (x.type.shape[i] if x.type.shape[i] is not None else x.shape[i] for i in range(4))
    base = pt.full((b, h + top + bottom, w + left + right, c), np.asarray(value, dtype=x.dtype), dtype=x.dtype)
    return pt.set_subtensor(base[:, top : top + h, left : left + w, :], x)


def _windows(x: Any, window: tuple[int, int], strides: tuple[int, int], out_hw: tuple[int, int]) -> list[Any]:
    """The ``kh * kw`` shifted strided views (B, OH, OW, C) of padded ``x``, row-major over the window."""
    (kh, kw), (sh, sw), (oh, ow) = window, strides, out_hw
    return [
        x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]


@lowering("conv2d")
def _conv2d(node: Node, x: Any, ctx: Context) -> Any:
    kh, kw = node.attrs["kernel"]
    cin = node.input_shape[2]
    oh, ow, cout = node.output_shape
    xp = _pad(x, padding_pairs(node), 0.0)
    views = _windows(xp, (kh, kw), node.attrs["strides"], (oh, ow))
    patches = views[0] if len(views) == 1 else pt.concatenate(views, axis=3)
    kernel = pt.reshape(ctx.params[node.key("kernel")], (kh * kw * cin, cout))
    y = pt.dot(pt.reshape(patches, (ctx.batch * oh * ow, kh * kw * cin)), kernel)
    return _bias_and_activation(node, pt.reshape(y, (ctx.batch, oh, ow, cout)), ctx)


def _tiles(node: Node) -> bool:
    return node.attrs["size"] == node.attrs["strides"] and node.attrs["padding"] == "valid"


def _tile_view(node: Node, x: Any, batch: int) -> Any:
    (ph, pw), (oh, ow, c) = node.attrs["size"], node.output_shape
    if (oh * ph, ow * pw) != tuple(node.input_shape[:2]):
        x = x[:, : oh * ph, : ow * pw, :]
    return pt.reshape(x, (batch, oh, ph, ow, pw, c))


@lowering("max_pool2d")
def _max_pool(node: Node, x: Any, ctx: Context) -> Any:
    if _tiles(node):
        return pt.max(_tile_view(node, x, ctx.batch), axis=(2, 4))
    xp = _pad(x, padding_pairs(node), -np.inf)
    views = _windows(xp, node.attrs["size"], node.attrs["strides"], node.output_shape[:2])
    y = views[0]
    for v in views[1:]:
        y = pt.maximum(y, v)
    return y


def _in_image_counts(node: Node) -> np.ndarray:
    """Number of in-image elements of each ``same`` pooling window, shape (OH, OW, 1)."""
    h, w = node.input_shape[:2]
    (top, _), (left, _) = padding_pairs(node)
    (ph, pw), (sh, sw), (oh, ow) = node.attrs["size"], node.attrs["strides"], node.output_shape[:2]
    rows = np.array([min(i * sh - top + ph, h) - max(i * sh - top, 0) for i in range(oh)])
    cols = np.array([min(j * sw - left + pw, w) - max(j * sw - left, 0) for j in range(ow)])
    return (rows[:, None] * cols[None, :])[:, :, None].astype(np.float64)


@lowering("avg_pool2d")
def _avg_pool(node: Node, x: Any, ctx: Context) -> Any:
    if _tiles(node):
        return pt.mean(_tile_view(node, x, ctx.batch), axis=(2, 4))
    ph, pw = node.attrs["size"]
    xp = _pad(x, padding_pairs(node), 0.0)
    views = _windows(xp, (ph, pw), node.attrs["strides"], node.output_shape[:2])
    total = views[0]
    for v in views[1:]:
        total = total + v
    if node.attrs["padding"] == "same":
        return total * pt.constant((1.0 / _in_image_counts(node)).astype(x.dtype))
    return total * ctx.ops.constant(1.0 / (ph * pw))


@lowering("flatten")
def _flatten(node: Node, x: Any, ctx: Context) -> Any:
    return pt.reshape(x, (ctx.batch, node.output_shape[0]))


@lowering("reshape")
def _reshape(node: Node, x: Any, ctx: Context) -> Any:
    return pt.reshape(x, (ctx.batch, *node.output_shape))


@lowering("dropout")
def _dropout(node: Node, x: Any, ctx: Context) -> Any:
    if not ctx.training:
        return x
    shape = (ctx.batch, *node.input_shape)
    return apply_dropout(ctx.ops, x, ctx.seed, node.index, ctx.step, float(node.attrs["rate"]), shape)


@lowering("activation")
def _activation(node: Node, x: Any, ctx: Context) -> Any:
    return activate(ctx.ops, node.attrs["activation"], x)


@lowering("softmax")
def _softmax(node: Node, x: Any, ctx: Context) -> Any:
    return ctx.ops.softmax(x)
