"""The NumPy float64 reference backward pass: hand-written backpropagation, one rule per IR op.

Every engine's gradients are checked against these. The forward pass is
:func:`nnspec.reference.forward.run_trace`, whose per-layer records hold what the rules need (the
layer's inputs, its pre-activation, its dropout keep-mask, its normalisation statistics).

A rule maps ``(record, weights, output gradient)`` to ``(input gradient, weight gradients)``; the input
gradient is one array, or for ``add`` / ``concat`` a list with one array per input. The graph is
processed in reverse declaration order; where a value is read by several layers, their gradients with
respect to it are summed.

Conventions where the derivative is not unique (the engines must agree with them, see docs/backends.md):

* ``relu``: derivative 0 at 0 (``z > 0``).
* max pools: when several elements of a window share the maximum, the first one in row-major
  window order receives the gradient; ``global_max_pool2d``: the first maximum in row-major ``(h, w)``
  order, per example and channel; ``global_max_pool1d``: the first maximum over the steps.
* ``dropout``: the mask of ``(train.seed, layer index, step)`` from :mod:`nnspec.semantics.dropout`.
* ``batch_norm`` in training: the gradient flows through the batch mean and (biased) variance; in
  inference the layer is an affine map of the moving statistics.
* ``cross_entropy`` after a final ``softmax`` is differentiated as one fused op from the logits:
  ``(softmax(z) - one_hot(y)) / batch``.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence, Union

import numpy as np

from ..compiler.ir import INPUT, Graph, Node
from ..compiler.shapes import dilation_of, padding_pairs, window_of
from ..semantics import numpy_windows as win
from ..semantics.losses import loss_from_head
from ..semantics.numpy_ops import NumpyOps
from . import conv_family
from .activation_backward import activation_backward, activation_derivative
from .forward import LayerRecord, run_trace, split_weights
from .merge_backward import RULES as MERGE_RULES
from .resample_backward import RULES as RESAMPLE_RULES

__all__ = ["activation_derivative", "loss_and_gradients"]

Grads = dict[str, np.ndarray]
InputGrads = Union[np.ndarray, Sequence[np.ndarray]]
#: A backward rule: (layer record, weights, output gradient) -> (input gradient(s), weight gradients).
BackwardRule = Callable[[LayerRecord, Mapping[str, np.ndarray], np.ndarray], tuple[InputGrads, Grads]]
_RULES: dict[str, BackwardRule] = {}
_OPS = NumpyOps("float64")


def backward_rule(op: str) -> Callable[[BackwardRule], BackwardRule]:
    """Register the backward rule of IR op ``op``."""

    def register(fn: BackwardRule) -> BackwardRule:
        _RULES[op] = fn
        return fn

    return register


# ---- windows (convolutions and pools) ---------------------------------------------------------------------


def node_windows(node: Node, x: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """The windows of a conv/pool node over its input ``x``: shape (B, *out, *window, C), a view."""
    view = win.windows(x, window_of(node), node.attrs["strides"], padding_pairs(node), dilation_of(node), fill)
    n = len(window_of(node))
    return np.moveaxis(view, n + 1, -1)


# ---- activations ---------------------------------------------------------------------------------------


def _through_activation(rec: LayerRecord, dy: np.ndarray) -> np.ndarray:
    assert rec.pre_activation is not None
    return activation_backward(rec.node.attrs["activation"], rec.pre_activation, rec.output, dy)


# ---- rules ---------------------------------------------------------------------------------------------


@backward_rule("dense")
def _dense(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[np.ndarray, Grads]:
    node = rec.node
    kernel = w[node.key("kernel")]
    dz = _through_activation(rec, dy)
    rows, dz_rows = rec.input.reshape(-1, kernel.shape[0]), dz.reshape(-1, kernel.shape[1])
    grads = {node.key("kernel"): rows.T @ dz_rows}
    if node.attrs["use_bias"]:
        grads[node.key("bias")] = dz_rows.sum(axis=0)
    return dz @ kernel.T, grads


@backward_rule("conv1d")
@backward_rule("conv2d")
def _conv(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[np.ndarray, Grads]:
    node = rec.node
    kernel = w[node.key("kernel")]
    strides, pads, dilation = tuple(node.attrs["strides"]), padding_pairs(node), dilation_of(node)
    groups = int(node.attrs.get("groups", 1))
    dz = _through_activation(rec, dy)
    dk = win.conv_kernel_gradient(rec.input, dz, window_of(node), strides, pads, dilation, groups)
    grads = {node.key("kernel"): dk}
    if node.attrs["use_bias"]:
        grads[node.key("bias")] = dz.reshape(-1, dz.shape[-1]).sum(axis=0)
    spatial = tuple(node.input_shape[:-1])
    return win.conv_transpose(dz, kernel, spatial, strides, pads, dilation, groups), grads


@backward_rule("depthwise_conv2d")
@backward_rule("separable_conv2d")
@backward_rule("conv2d_transpose")
def _conv_family(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[np.ndarray, Grads]:
    node = rec.node
    dz = _through_activation(rec, dy)
    grads = {node.key("bias"): dz.reshape(-1, dz.shape[-1]).sum(axis=0)} if node.attrs["use_bias"] else {}
    if node.op == "conv2d_transpose":
        dx, grads[node.key("kernel")] = conv_family.transpose_backward(node, rec.input, w[node.key("kernel")], dz)
    elif node.op == "depthwise_conv2d":
        dx, grads[node.key("kernel")] = conv_family.depthwise_backward(node, rec.input, w[node.key("kernel")], dz)
    else:
        pointwise, depthwise = w[node.key("pointwise_kernel")], w[node.key("depthwise_kernel")]
        mid = rec.saved["depthwise"]
        dmid, grads[node.key("pointwise_kernel")] = conv_family.pointwise_backward(mid, pointwise, dz)
        dx, grads[node.key("depthwise_kernel")] = conv_family.depthwise_backward(node, rec.input, depthwise, dmid)
    return dx, grads


@backward_rule("max_pool1d")
@backward_rule("max_pool2d")
def _max_pool(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[np.ndarray, Grads]:
    node = rec.node
    return win.max_pool_backward(rec.input, dy, window_of(node), node.attrs["strides"], padding_pairs(node)), {}


@backward_rule("avg_pool1d")
@backward_rule("avg_pool2d")
def _avg_pool(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[np.ndarray, Grads]:
    node = rec.node
    spatial = tuple(node.input_shape[:-1])
    return win.avg_pool_backward(dy, spatial, window_of(node), node.attrs["strides"], padding_pairs(node)), {}


@backward_rule("flatten")
@backward_rule("reshape")
def _reshape(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[np.ndarray, Grads]:
    return dy.reshape(rec.input.shape), {}


@backward_rule("spatial_dropout2d")
@backward_rule("dropout")
def _dropout(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[np.ndarray, Grads]:
    if rec.keep is None:  # inference, or rate 0
        return dy, {}
    return np.where(rec.keep, dy * rec.scale, 0.0), {}


@backward_rule("activation")
def _activation(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[np.ndarray, Grads]:
    return _through_activation(rec, dy), {}


def softmax_backward(s: np.ndarray, ds: np.ndarray) -> np.ndarray:
    """Gradient through ``s = softmax(z)`` (last axis): ``s * (ds - sum(ds * s))``."""
    return s * (ds - np.sum(ds * s, axis=-1, keepdims=True))


@backward_rule("softmax")
def _softmax(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[np.ndarray, Grads]:
    return softmax_backward(rec.output, dy), {}


# ---- merges, normalisation and global pools --------------------------------------------------------


@backward_rule("concat")
def _concat(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[InputGrads, Grads]:
    axis = rec.node.attrs["axis"]
    bounds = np.cumsum([x.shape[axis + 1] for x in rec.all_inputs])[:-1]
    return np.split(dy, bounds, axis=axis + 1), {}


def _normalized_backward(
    rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray, axes: tuple[int, ...]
) -> tuple[np.ndarray, Grads]:
    """Backward of ``y = (x - mean) / sqrt(var + eps) * gamma + beta``; ``mean`` and the biased ``var``
    are statistics of ``x`` over ``axes`` when ``batch_statistics`` is set, constants otherwise."""
    node = rec.node
    x, mean, var = rec.input, rec.saved["mean"], rec.saved["var"]
    inv = 1.0 / np.sqrt(var + node.attrs["epsilon"])
    x_hat = (x - mean) * inv
    param_axes = tuple(range(x.ndim - 1))
    grads: Grads = {}
    d_hat = dy
    if node.attrs["scale"]:
        grads[node.key("gamma")] = np.sum(dy * x_hat, axis=param_axes)
        d_hat = dy * w[node.key("gamma")]
    if node.attrs["center"]:
        grads[node.key("beta")] = np.sum(dy, axis=param_axes)
    if not rec.saved["batch_statistics"]:
        return d_hat * inv, grads
    mean_d = np.mean(d_hat, axis=axes, keepdims=True)
    mean_d_hat = np.mean(d_hat * x_hat, axis=axes, keepdims=True)
    return inv * (d_hat - mean_d - x_hat * mean_d_hat), grads


@backward_rule("batch_norm")
def _batch_norm(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[InputGrads, Grads]:
    return _normalized_backward(rec, w, dy, tuple(range(rec.input.ndim - 1)))


@backward_rule("layer_norm")
def _layer_norm(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[InputGrads, Grads]:
    return _normalized_backward(rec, w, dy, (rec.input.ndim - 1,))


@backward_rule("global_avg_pool2d")
def _global_avg_pool(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[InputGrads, Grads]:
    b, h, wd, c = rec.input.shape
    dy = dy.reshape(b, c)  # keepdims: (b, 1, 1, c)
    return np.broadcast_to(dy[:, None, None, :] / (h * wd), (b, h, wd, c)).copy(), {}


@backward_rule("global_max_pool2d")
def _global_max_pool(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[InputGrads, Grads]:
    b, h, wd, c = rec.input.shape
    dy = dy.reshape(b, c)
    first = np.argmax(rec.input.reshape(b, h * wd, c), axis=1)  # the first maximum in row-major (h, w) order
    routed = (np.arange(h * wd)[None, :, None] == first[:, None, :]) * dy[:, None, :]
    return routed.reshape(b, h, wd, c), {}


@backward_rule("global_avg_pool1d")
def _global_avg_pool1d(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[InputGrads, Grads]:
    b, steps, c = rec.input.shape
    dy = dy.reshape(b, c)  # keepdims: (b, 1, c)
    return np.broadcast_to(dy[:, None, :] / steps, (b, steps, c)).copy(), {}


@backward_rule("global_max_pool1d")
def _global_max_pool1d(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[InputGrads, Grads]:
    first = np.argmax(rec.input, axis=1)  # the first maximum over the steps
    dy = dy.reshape(first.shape)
    routed = (np.arange(rec.input.shape[1])[None, :, None] == first[:, None, :]) * dy[:, None, :]
    return routed, {}


# the element-wise merges (add included), rescaling and layer_scale
_RULES.update(MERGE_RULES)  # type: ignore[arg-type]
# padding, cropping and upsampling
_RULES.update(RESAMPLE_RULES)  # type: ignore[arg-type]


# ---- loss ----------------------------------------------------------------------------------------------


def loss_and_head_gradient(graph: Graph, head: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """The shared loss of one batch and its gradient with respect to ``head`` (the value named ``graph.head``)."""
    head = np.asarray(head, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    loss = float(loss_from_head(_OPS, graph, head, labels))
    onehot = _OPS.one_hot(labels, graph.output_shape[-1])
    if graph.train.loss == "cross_entropy":
        return loss, (_OPS.softmax(head) - onehot) / head.shape[0]
    if graph.train.loss == "mse":
        return loss, 2.0 * (head - onehot) / head.size
    raise ValueError(f"unknown loss {graph.train.loss!r}")


# ---- the whole pass ------------------------------------------------------------------------------------


def backward(
    graph: Graph, weights: Mapping[str, np.ndarray], records: Sequence[LayerRecord], d_head: np.ndarray
) -> Grads:
    """Gradients of every trainable weight from a forward trace and the gradient of the loss with respect
    to the head (the value named ``graph.head``: the logits when the loss is fused with a final softmax).

    ``records`` holds at least the records of ``graph.logits_nodes``. Weights that do not reach the head
    get zero gradients.
    """
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    by_name = {rec.node.name: rec for rec in records}
    pending: dict[str, np.ndarray] = {graph.head: np.asarray(d_head, dtype=np.float64)}
    grads: Grads = {}
    for node in reversed(graph.logits_nodes):
        rec = by_name[node.name]
        dy = pending.pop(node.name)
        d_inputs, g = _RULES[node.op](rec, w, dy.reshape(rec.output.shape))
        grads.update(g)
        sources = graph.inputs_of(node)
        d_list = list(d_inputs) if isinstance(d_inputs, (list, tuple)) else [d_inputs]
        for name, dx in zip(sources, d_list, strict=True):
            if name != INPUT:
                pending[name] = pending[name] + dx if name in pending else dx  # type: ignore[assignment]
    return {key: grads[key] if key in grads else np.zeros(spec.shape) for key, _, spec in graph.param_specs()}


def loss_gradients_and_state(
    graph: Graph,
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    *,
    step: int = 0,
    training: bool = True,
    state: Mapping[str, np.ndarray] | None = None,
) -> tuple[float, Grads, dict[str, np.ndarray]]:
    """Reference loss of one batch, its float64 gradient per trainable weight, and the state after the
    forward pass (the new moving statistics in training; the given state otherwise).

    ``weights`` may hold state keys; ``state`` overrides them (see :func:`nnspec.reference.forward.split_weights`).
    """
    params, _ = split_weights(graph, weights, state)
    trace = run_trace(
        graph, weights, x, training=training, step=step, dtype="float64", state=state, targets=(graph.head,)
    )
    loss, d_head = loss_and_head_gradient(graph, trace.head, y)
    return loss, backward(graph, params, list(trace.records.values()), d_head), trace.state


def loss_and_gradients(
    graph: Graph,
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    *,
    step: int = 0,
    training: bool = True,
    state: Mapping[str, np.ndarray] | None = None,
) -> tuple[float, Grads]:
    """Reference loss of one batch and its float64 gradient per trainable weight (dropout on, masks of
    ``step``, batch statistics in ``batch_norm``).

    The same contract as :meth:`nnspec.backends.base.CompiledModel.loss_and_gradients`.
    """
    loss, grads, _ = loss_gradients_and_state(graph, weights, x, y, step=step, training=training, state=state)
    return loss, grads
