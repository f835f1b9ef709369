"""NumPy forward pass of every op over the graph: the oracle every engine is checked against.

It computes in float64 by default (``dtype='float32'`` is allowed, for checking rounding), follows the
contracts of docs/architecture.md literally (padding pairs from :func:`nnspec.compiler.shapes.padding_pairs`,
average pools averaging over in-image elements only, max pools padding with -inf: the N-d windows of
:mod:`nnspec.semantics.numpy_windows`) and uses the shared definitions of :mod:`nnspec.semantics`
(activations, dropout masks, normalisation, merges, global pools) through
:class:`~nnspec.semantics.numpy_ops.NumpyOps`.

Each op has one lowering with the signature every engine uses, ``fn(ctx, node, inputs) -> value``,
registered in :data:`FORWARD`; the graph is walked by the shared
:func:`nnspec.semantics.lowering.run_graph`. The context, a :class:`ReferenceContext`, keeps per node a
:class:`LayerRecord` of what the backward pass needs.

Weights dicts may hold non-trainable state (``<layer>.moving_mean``, ...) beside the trainable weights;
:func:`split_weights` separates them by :meth:`Graph.state_specs`, and state that is missing starts from
:func:`nnspec.compiler.init.initial_weights`. In training, ``batch_norm`` normalises with the batch
statistics and writes new moving statistics (:attr:`Trace.state`); in inference it uses the moving ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from ..compiler.ir import INPUT, Graph, Node
from ..compiler.shapes import dilation_of, padding_pairs, window_of
from ..semantics import merges
from ..semantics import normalization as norm
from ..semantics import numpy_windows as win
from ..semantics.activations import activate
from ..semantics.dropout import apply_dropout, layer_mask_shape, numpy_keep_mask, scale
from ..semantics.losses import correct_count, loss_from_head
from ..semantics.lowering import LoweringContext, OpRegistry, run_graph
from ..semantics.numpy_ops import NumpyOps
from . import conv_family, resample

Weights = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class LayerRecord:
    """One layer's forward pass: its input(s) and output, and what its backward pass needs.

    ``input`` is the first input (the only one but for ``add`` / ``concat``), ``inputs`` all of them.
    ``pre_activation`` is the value the layer's activation was applied to (``dense``, ``conv2d``,
    ``activation``; ``None`` otherwise). ``keep`` is the boolean keep-mask of a ``dropout`` layer in
    training mode and ``scale`` the factor kept units were multiplied by (``None`` / 1.0 otherwise).
    ``saved`` holds op-specific values: for ``batch_norm`` / ``layer_norm`` the ``mean`` and ``var`` used
    to normalise (batch statistics, moving statistics or per-example statistics, with size-1 axes where
    they broadcast) and ``batch_statistics`` (whether the mean and variance came from this batch).
    """

    node: Node
    input: np.ndarray
    output: np.ndarray
    pre_activation: np.ndarray | None = None
    keep: np.ndarray | None = None
    scale: float = 1.0
    inputs: tuple[np.ndarray, ...] = ()
    saved: Mapping[str, Any] = field(default_factory=dict)

    @property
    def all_inputs(self) -> tuple[np.ndarray, ...]:
        """Every input value (``inputs``, or ``(input,)`` for a record built without them)."""
        return self.inputs or (self.input,)


@dataclass
class ReferenceContext(LoweringContext):
    """A :class:`LoweringContext` over NumPy that also keeps one :class:`LayerRecord` per node run."""

    records: dict[str, LayerRecord] = field(default_factory=dict)

    def keep_record(self, node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, **extra: Any) -> np.ndarray:
        """Record ``node``'s pass (``extra``: the other :class:`LayerRecord` fields) and return ``output``."""
        self.records[node.name] = LayerRecord(node, inputs[0], output, inputs=tuple(inputs), **extra)
        return output


@dataclass(frozen=True)
class Trace:
    """A whole forward pass: every computed value by name (``input`` included), the records in
    declaration order, and the state after the pass (what ``batch_norm`` wrote in training)."""

    graph: Graph
    values: dict[str, np.ndarray]
    records: dict[str, LayerRecord]
    state: dict[str, np.ndarray]

    def outputs(self) -> list[np.ndarray]:
        """The outputs of the nodes that were run, in declaration order."""
        return [self.values[n.name] for n in self.graph.nodes if n.name in self.values]

    @property
    def head(self) -> np.ndarray:
        """The value the loss is computed from."""
        return self.values[self.graph.head]

    @property
    def output(self) -> np.ndarray:
        """The model's final output."""
        out = self.graph.output_node
        return self.values[out.name if out is not None else INPUT]


# ---- one lowering per op ----------------------------------------------------------------------------
FORWARD: OpRegistry = OpRegistry("reference")
forward_op = FORWARD.register


def _optional(ctx: LoweringContext, node: Node, name: str) -> np.ndarray | None:
    return ctx.param(node, name) if ctx.has_param(node, name) else None


def _finish(ctx: ReferenceContext, node: Node, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    if node.attrs["use_bias"]:
        z = z + ctx.param(node, "bias")
    return ctx.keep_record(node, [x], activate(ctx.ops, node.attrs["activation"], z), pre_activation=z)


@forward_op("dense")
def _dense(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return _finish(ctx, node, inputs[0], inputs[0] @ ctx.param(node, "kernel"))


@forward_op("conv1d", "conv2d")
def _conv(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    strides, groups = tuple(node.attrs["strides"]), int(node.attrs.get("groups", 1))
    z = win.conv(inputs[0], ctx.param(node, "kernel"), strides, padding_pairs(node), dilation_of(node), groups)
    return _finish(ctx, node, inputs[0], z)


@forward_op("depthwise_conv2d")
def _depthwise_conv(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return _finish(ctx, node, inputs[0], conv_family.depthwise(node, inputs[0], ctx.param(node, "kernel")))


@forward_op("separable_conv2d")
def _separable_conv(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    mid = conv_family.depthwise(node, inputs[0], ctx.param(node, "depthwise_kernel"))
    y = _finish(ctx, node, inputs[0], conv_family.pointwise(mid, ctx.param(node, "pointwise_kernel")))
    ctx.records[node.name] = replace(ctx.records[node.name], saved={"depthwise": mid})
    return y


@forward_op("conv2d_transpose")
def _conv_transpose(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return _finish(ctx, node, inputs[0], conv_family.transpose(node, inputs[0], ctx.param(node, "kernel")))


@forward_op("max_pool1d", "max_pool2d")
def _max_pool(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    y = win.max_pool(inputs[0], window_of(node), node.attrs["strides"], padding_pairs(node))
    return ctx.keep_record(node, inputs, y)


@forward_op("avg_pool1d", "avg_pool2d")
def _avg_pool(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    y = win.avg_pool(inputs[0], window_of(node), node.attrs["strides"], padding_pairs(node))
    return ctx.keep_record(node, inputs, y)


@forward_op("flatten")
def _flatten(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return ctx.keep_record(node, inputs, inputs[0].reshape(inputs[0].shape[0], -1))


@forward_op("reshape")
def _reshape(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return ctx.keep_record(node, inputs, inputs[0].reshape(inputs[0].shape[0], *node.attrs["shape"]))


@forward_op("dropout", "spatial_dropout2d")
def _dropout(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    x = inputs[0]
    rate = float(node.attrs["rate"])
    if not ctx.training or rate <= 0.0:
        return ctx.keep_record(node, inputs, x)
    shape = layer_mask_shape(node, x.shape[0], spatial=node.op == "spatial_dropout2d")  # broadcast over x
    keep = numpy_keep_mask(ctx.seed, node.index, int(ctx.step), shape, rate)
    y = apply_dropout(ctx.ops, x, ctx.seed, node.index, int(ctx.step), rate, shape)
    return ctx.keep_record(node, inputs, y, keep=keep, scale=scale(rate, ctx.ops.float_dtype))


@forward_op("zero_pad2d")
def _zero_pad2d(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return ctx.keep_record(node, inputs, resample.pad(inputs[0], node.attrs["padding"]))


@forward_op("crop2d")
def _crop2d(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return ctx.keep_record(node, inputs, resample.crop(inputs[0], node.attrs["cropping"]))


@forward_op("upsample2d")
def _upsample2d(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    y = resample.upsample(inputs[0], tuple(node.attrs["size"]), node.attrs["interpolation"])  # type: ignore[arg-type]
    return ctx.keep_record(node, inputs, y)


@forward_op("activation")
def _activation(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return ctx.keep_record(
        node, inputs, activate(ctx.ops, node.attrs["activation"], inputs[0]), pre_activation=inputs[0]
    )


@forward_op("softmax")
def _softmax(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return ctx.keep_record(node, inputs, ctx.ops.softmax(inputs[0]))


@forward_op("add", "multiply", "subtract", "average", "maximum", "minimum")
def _elementwise_merge(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return ctx.keep_record(node, inputs, merges.merge_node(ctx.ops, node, inputs))


@forward_op("rescaling")
def _rescaling(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return ctx.keep_record(node, inputs, merges.rescale(ctx.ops, inputs[0], node.attrs["scale"], node.attrs["offset"]))


@forward_op("layer_scale")
def _layer_scale(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return ctx.keep_record(node, inputs, inputs[0] * ctx.param(node, "gamma"))


@forward_op("concat")
def _concat(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return ctx.keep_record(node, inputs, ctx.ops.concat(list(inputs), node.attrs["axis"] + 1))


@forward_op("batch_norm")
def _batch_norm(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    x = inputs[0]
    ops, attrs = ctx.ops, node.attrs
    gamma, beta = _optional(ctx, node, "gamma"), _optional(ctx, node, "beta")
    moving_mean, moving_var = ctx.read_state(node, "moving_mean"), ctx.read_state(node, "moving_variance")
    if not ctx.training:
        y = norm.batch_norm_infer(ops, x, gamma, beta, moving_mean, moving_var, attrs["epsilon"])
        return ctx.keep_record(
            node, inputs, y, saved={"mean": moving_mean, "var": moving_var, "batch_statistics": False}
        )
    y, new_mean, new_var = norm.batch_norm_train(
        ops, x, gamma, beta, moving_mean, moving_var, attrs["momentum"], attrs["epsilon"]
    )
    ctx.write_state(node, "moving_mean", new_mean)
    ctx.write_state(node, "moving_variance", new_var)
    mean, var = norm.moments(ops, x, tuple(range(x.ndim - 1)))
    return ctx.keep_record(node, inputs, y, saved={"mean": mean, "var": var, "batch_statistics": True})


@forward_op("layer_norm")
def _layer_norm(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    x = inputs[0]
    y = norm.layer_norm(ctx.ops, x, _optional(ctx, node, "gamma"), _optional(ctx, node, "beta"), node.attrs["epsilon"])
    mean, var = norm.moments(ctx.ops, x, (x.ndim - 1,))
    return ctx.keep_record(node, inputs, y, saved={"mean": mean, "var": var, "batch_statistics": True})


@forward_op("global_avg_pool2d")
def _global_avg_pool(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    pooled = norm.global_avg_pool2d(ctx.ops, inputs[0], node.output_shape[-1])
    return ctx.keep_record(node, inputs, pooled.reshape(-1, *node.output_shape))


@forward_op("global_max_pool2d")
def _global_max_pool(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    shape: Any = node.input_shape
    pooled = norm.global_max_pool2d(ctx.ops, inputs[0], shape)
    return ctx.keep_record(node, inputs, pooled.reshape(-1, *node.output_shape))


@forward_op("global_avg_pool1d")
def _global_avg_pool1d(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return ctx.keep_record(node, inputs, np.mean(inputs[0], axis=1).reshape(-1, *node.output_shape))


@forward_op("global_max_pool1d")
def _global_max_pool1d(ctx: ReferenceContext, node: Node, inputs: list) -> np.ndarray:
    return ctx.keep_record(node, inputs, np.max(inputs[0], axis=1).reshape(-1, *node.output_shape))


# ---- weights and state ------------------------------------------------------------------------------
def state_keys(graph: Graph) -> list[str]:
    """Keys of ``graph``'s non-trainable state arrays, in model order."""
    return [k for k, _, _ in graph.state_specs()]


def initial_state(graph: Graph, dtype: str = "float64") -> dict[str, np.ndarray]:
    """The state a graph starts from (``moving_mean`` zeros, ``moving_variance`` ones)."""
    keys = state_keys(graph)
    if not keys:
        return {}
    from ..compiler.init import initial_weights

    start = initial_weights(graph, dtype=dtype)
    return {k: start[k] for k in keys}


def split_weights(
    graph: Graph, weights: Weights, state: Weights | None = None, dtype: str = "float64"
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(params, state)`` from a weights dict that may also hold state keys, cast to ``dtype``.

    State comes from ``state`` where given, else from ``weights``, else from :func:`initial_state`.
    """
    keys = state_keys(graph)
    params = {k: np.asarray(v, dtype=dtype) for k, v in weights.items() if k not in keys}
    given = {**{k: weights[k] for k in keys if k in weights}, **{k: v for k, v in (state or {}).items() if k in keys}}
    if len(given) < len(keys):
        given = {**initial_state(graph, dtype), **given}
    return params, {k: np.asarray(given[k], dtype=dtype) for k in keys}


# ---- whole model ------------------------------------------------------------------------------------
def run_trace(
    graph: Graph,
    weights: Weights,
    x: np.ndarray,
    *,
    training: bool = False,
    step: int = 0,
    dtype: str = "float64",
    state: Weights | None = None,
    targets: Sequence[str] | None = None,
) -> Trace:
    """Run the nodes ``targets`` need (default: every node) on batch ``x``; returns the :class:`Trace`.

    ``weights`` may hold state keys (see :func:`split_weights`). With ``training``, dropout layers drop the
    units of the shared mask for ``(train.seed, layer, step)`` and ``batch_norm`` uses and updates batch
    statistics.
    """
    params, start_state = split_weights(graph, weights, state, dtype)
    ctx = ReferenceContext(NumpyOps(dtype), params, start_state, training, int(step), int(graph.train.seed))
    values = run_graph(FORWARD.lower, ctx, graph, np.asarray(x, dtype=dtype), targets)
    records = {n.name: ctx.records[n.name] for n in graph.nodes if n.name in ctx.records}
    return Trace(graph, values, records, {k: np.asarray(v, dtype=dtype) for k, v in ctx.updated_state().items()})


def forward_trace(
    graph: Graph,
    weights: Weights,
    x: np.ndarray,
    *,
    training: bool = False,
    step: int = 0,
    dtype: str = "float64",
    state: Weights | None = None,
) -> list[LayerRecord]:
    """Run every node on batch ``x``; one :class:`LayerRecord` per node, in declaration order."""
    return list(run_trace(graph, weights, x, training=training, step=step, dtype=dtype, state=state).records.values())


def layer_outputs(
    graph: Graph,
    weights: Weights,
    x: np.ndarray,
    *,
    training: bool = False,
    step: int = 0,
    dtype: str = "float64",
    state: Weights | None = None,
) -> list[np.ndarray]:
    """Every node's output for batch ``x``, in declaration order (what ``CompiledModel.layer_outputs`` must match)."""
    return run_trace(graph, weights, x, training=training, step=step, dtype=dtype, state=state).outputs()


def head_index(graph: Graph) -> int:
    """Position in ``graph.nodes`` of the node whose output is the loss's head (the logits when the loss is
    taken from them)."""
    return [n.name for n in graph.nodes].index(graph.head)


def head_of(graph: Graph, outputs: list[np.ndarray]) -> np.ndarray:
    """The head among a forward pass's per-node outputs (declaration order)."""
    return outputs[head_index(graph)]


def loss_of_head(graph: Graph, head: np.ndarray, y: np.ndarray, dtype: str = "float64") -> float:
    """The batch loss from its head and integer labels (the shared definition, in NumPy)."""
    return float(loss_from_head(NumpyOps(dtype), graph, head, np.asarray(y)))


def loss(
    graph: Graph,
    weights: Weights,
    x: np.ndarray,
    y: np.ndarray,
    *,
    training: bool = True,
    step: int = 0,
    dtype: str = "float64",
    state: Weights | None = None,
) -> float:
    """The batch loss; by default in training mode (dropout masks of ``step``, batch statistics), as a
    training step sees it."""
    trace = run_trace(graph, weights, x, training=training, step=step, dtype=dtype, state=state, targets=(graph.head,))
    return loss_of_head(graph, trace.head, y, dtype)


def predict(
    graph: Graph, weights: Weights, x: np.ndarray, dtype: str = "float64", state: Weights | None = None
) -> np.ndarray:
    """The model's final outputs (inference mode: dropout off, moving statistics)."""
    out = graph.output_node
    return run_trace(graph, weights, x, dtype=dtype, state=state, targets=None if out is None else (out.name,)).output


def evaluate(
    graph: Graph, weights: Weights, x: np.ndarray, y: np.ndarray, dtype: str = "float64", state: Weights | None = None
) -> tuple[float, float]:
    """Mean loss and accuracy over ``(x, y)`` in inference mode."""
    head = run_trace(graph, weights, x, dtype=dtype, state=state, targets=(graph.head,)).head
    hits = correct_count(NumpyOps(dtype), head, np.asarray(y))
    return loss_of_head(graph, head, y, dtype), float(hits) / len(y)
