"""One JAX lowering per IR op, registered by op type.

A lowering takes the :class:`Context` of the forward pass, the node, the node's parameters and its input
(a batch, channels last) and returns the node's output. Shared definitions (activations, dropout masks)
come from :mod:`nnspec.runtime`, evaluated with :class:`~nnspec.backends.jax.ops.JaxOps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax.numpy as jnp
import numpy as np
from jax import lax

from ...compiler.ir import Graph, Node
from ...compiler.shapes import padding_pairs
from ...runtime.activations import activate
from ...runtime.dropout import apply_dropout
from .ops import HIGHEST, JaxOps


@dataclass(frozen=True)
class Context:
    """What a forward pass knows besides the data: the ops, the mode, the step (traced) and the seed."""

    ops: JaxOps
    training: bool = False
    step: Any = 0
    seed: int = 0


Params = Mapping[str, Any]
Lowering = Callable[[Context, Node, Params, Any], Any]
LOWERINGS: dict[str, Lowering] = {}


def lowering(op: str) -> Callable[[Lowering], Lowering]:
    """Register the JAX lowering of ``op``."""

    def register(fn: Lowering) -> Lowering:
        LOWERINGS[op] = fn
        return fn

    return register


def _bias_activation(ctx: Context, node: Node, params: Params, z: Any) -> Any:
    if node.attrs["use_bias"]:
        z = z + params[node.key("bias")]
    return activate(ctx.ops, node.attrs["activation"], z)


@lowering("dense")
def _dense(ctx: Context, node: Node, params: Params, x: Any) -> Any:
    return _bias_activation(ctx, node, params, ctx.ops.matmul(x, params[node.key("kernel")]))


@lowering("conv2d")
def _conv2d(ctx: Context, node: Node, params: Params, x: Any) -> Any:
    z = lax.conv_general_dilated(
        x,
        params[node.key("kernel")],
        window_strides=tuple(node.attrs["strides"]),
        padding=padding_pairs(node),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=HIGHEST,
    )
    return _bias_activation(ctx, node, params, z)


def _window(node: Node) -> tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, int], ...]]:
    (ph, pw), (sh, sw) = node.attrs["size"], node.attrs["strides"]
    pad_h, pad_w = padding_pairs(node)
    return (1, ph, pw, 1), (1, sh, sw, 1), ((0, 0), pad_h, pad_w, (0, 0))


@lowering("max_pool2d")
def _max_pool2d(ctx: Context, node: Node, params: Params, x: Any) -> Any:
    dims, strides, pads = _window(node)
    return lax.reduce_window(x, np.array(-np.inf, dtype=x.dtype), lax.max, dims, strides, pads)


def window_counts(node: Node) -> np.ndarray:
    """How many in-image elements each output position of a pool averages over, shape (oh, ow, 1)."""
    (ph, pw), (sh, sw) = node.attrs["size"], node.attrs["strides"]
    (top, bottom), (left, right) = padding_pairs(node)
    h, w = node.input_shape[0], node.input_shape[1]
    oh, ow = node.output_shape[0], node.output_shape[1]
    rows = np.array([min(i * sh - top + ph, h) - max(i * sh - top, 0) for i in range(oh)])
    cols = np.array([min(j * sw - left + pw, w) - max(j * sw - left, 0) for j in range(ow)])
    return (rows[:, None] * cols[None, :])[:, :, None].astype(np.float64)


@lowering("avg_pool2d")
def _avg_pool2d(ctx: Context, node: Node, params: Params, x: Any) -> Any:
    dims, strides, pads = _window(node)
    total = lax.reduce_window(x, np.array(0, dtype=x.dtype), lax.add, dims, strides, pads)
    return total / jnp.asarray(window_counts(node), dtype=x.dtype)


@lowering("flatten")
def _flatten(ctx: Context, node: Node, params: Params, x: Any) -> Any:
    return jnp.reshape(x, (x.shape[0], -1))


@lowering("reshape")
def _reshape(ctx: Context, node: Node, params: Params, x: Any) -> Any:
    return jnp.reshape(x, (x.shape[0], *node.attrs["shape"]))


@lowering("dropout")
def _dropout(ctx: Context, node: Node, params: Params, x: Any) -> Any:
    if not ctx.training:
        return x
    return apply_dropout(ctx.ops, x, ctx.seed, node.index, ctx.step, float(node.attrs["rate"]), tuple(x.shape))


@lowering("activation")
def _activation(ctx: Context, node: Node, params: Params, x: Any) -> Any:
    return activate(ctx.ops, node.attrs["activation"], x)


@lowering("softmax")
def _softmax(ctx: Context, node: Node, params: Params, x: Any) -> Any:
    return ctx.ops.softmax(x)


def run_nodes(ctx: Context, nodes: tuple[Node, ...], params: Params, x: Any, *, keep_all: bool = False) -> Any:
    """Apply ``nodes`` in order; returns the last output, or every node's output when ``keep_all``."""
    outputs = []
    for node in nodes:
        x = LOWERINGS[node.op](ctx, node, params, x)
        if keep_all:
            outputs.append(x)
    return outputs if keep_all else x


def head(ctx: Context, graph: Graph, params: Params, x: Any) -> Any:
    """Output of ``graph.logits_nodes``: the logits when the loss is taken from them."""
    return run_nodes(ctx, graph.logits_nodes, params, x)


def finish(ctx: Context, graph: Graph, head_value: Any) -> Any:
    """The model's final output from its head (applies a final softmax that the head left out)."""
    if graph.loss_from_logits:
        return ctx.ops.softmax(head_value)
    return head_value
