"""Shape, parameter and FLOP inference over the opset, and building a :class:`Graph` from Python.

The rule of each op lives in :mod:`nnspec.compiler.rules` and is found through
:data:`nnspec.compiler.opset.OPS`; :func:`make_node` fills an op's defaults, normalises its windows and
runs its rule. Padding and rounding (the same on every backend): ``valid`` gives
``floor((n - k) / s) + 1``; ``same`` gives ``ceil(n / s)`` and pads ``max((out - 1) * s + k - n, 0)``
in all, ``total // 2`` before and the rest (the odd pixel) after, which is TensorFlow's rule.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .ir import INPUT, DataConfig, Graph, Node, Shape, TrainConfig
from .opset import DEFAULT_BIAS_INIT, DEFAULT_KERNEL_INIT, MERGE_OPS, OPS, as_activation
from .resample_rules import sides
from .rules import MAX_ELEMENTS, Inferred, MergeRule, Rule, ShapeProblem, check_sizes, output_length, same_padding

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULTS",
    "DEFAULT_BIAS_INIT",
    "DEFAULT_KERNEL_INIT",
    "MAX_ELEMENTS",
    "MERGE_OPS",
    "Inferred",
    "MergeRule",
    "Rule",
    "ShapeProblem",
    "infer",
    "make_graph",
    "make_node",
    "output_length",
    "dilation_of",
    "padding_pairs",
    "pool_window_counts",
    "resolve_reshape_target",
    "same_padding",
    "window_of",
    "window_rank",
]

#: Defaults of every optional attribute, per op, in canonical form (from the opset).
DEFAULTS: dict[str, dict[str, Any]] = {name: dict(op.defaults) for name, op in OPS.items()}


def infer(
    op: str, attrs: Mapping[str, Any], input_shape: Shape | Sequence[Shape], sources: Sequence[str] = ()
) -> Inferred:
    """Infer one layer; raises :class:`ShapeProblem` when it cannot take its input(s).

    ``input_shape`` is one shape, or for a merge op the sequence of its inputs' shapes (``sources``
    names the layers they come from, for messages).
    """
    if op in MERGE_OPS:
        shapes = tuple(tuple(s) for s in input_shape)  # type: ignore[union-attr, arg-type]
        names = tuple(sources) or tuple(f"input {i}" for i in range(len(shapes)))
        if len(shapes) < 2:
            raise ShapeProblem(
                f"needs at least 2 inputs; got {len(shapes)}", "list the layers to merge: inputs: [a, b]", code="E0305"
            )
        return OPS[op].rule(attrs, shapes, names)
    return OPS[op].rule(attrs, tuple(input_shape))  # type: ignore[arg-type]


def window_rank(op: str) -> int:
    """How many spatial axes the window of ``op`` slides over: the length of its default strides or size (2 if none)."""
    defaults = DEFAULTS[op]
    window = defaults.get("strides", defaults.get("size"))
    return len(window) if isinstance(window, tuple) else 2


def window_of(node: Node) -> tuple[int, ...]:
    """The window of a conv or pool node: its ``kernel`` or its ``size``, one length per spatial axis."""
    return tuple(node.attrs["kernel"] if "kernel" in node.attrs else node.attrs["size"])


def dilation_of(node: Node) -> tuple[int, ...]:
    """The spacing of a conv or pool node's window taps (1 on every axis unless it has ``dilation``)."""
    return tuple(node.attrs.get("dilation", (1,) * len(window_of(node))))


def padding_pairs(node: Node) -> tuple[tuple[int, int], ...]:
    """Explicit (before, after) padding of a conv or pool node, one pair per spatial axis.

    ``valid``: none; ``same``: TensorFlow's rule (the odd element after); ``causal``: all of it before.
    """
    window, dilation = window_of(node), dilation_of(node)
    spans = [d * (k - 1) + 1 for k, d in zip(window, dilation)]
    mode = node.attrs["padding"]
    if mode == "valid":
        return tuple((0, 0) for _ in window)
    if mode == "causal":
        return tuple((span - 1, 0) for span in spans)
    return tuple(same_padding(n, span, s) for n, span, s in zip(node.input_shape, spans, node.attrs["strides"]))


def pool_window_counts(node: Node) -> "np.ndarray":
    """How many in-image elements each output position of a pool covers, shape (*out, 1), float64.

    ``avg_pool2d`` divides its window sums by these counts, so that ``same`` padding is not averaged in.
    """
    import numpy as np

    window, strides = window_of(node), node.attrs["strides"]
    axes = []
    for n, k, s, (before, _), o in zip(node.input_shape, window, strides, padding_pairs(node), node.output_shape):
        axes.append(np.array([min(i * s - before + k, n) - max(i * s - before, 0) for i in range(o)]))
    counts = axes[0]
    for axis in axes[1:]:
        counts = np.multiply.outer(counts, axis)
    return counts[..., None].astype(np.float64)


def resolve_reshape_target(target: Sequence[int], input_shape: Shape) -> Shape:
    """Replace one ``-1`` in a reshape target by the length that keeps the size; raises ShapeProblem."""
    target = tuple(int(t) for t in target)
    if target.count(-1) > 1:
        raise ShapeProblem(
            "reshape may infer at most one axis (-1)", "give every axis but one explicitly", code="E0303"
        )
    if -1 in target:
        known = math.prod(t for t in target if t != -1)
        total = math.prod(input_shape)
        if known == 0 or total % known:
            raise ShapeProblem(
                f"cannot reshape {input_shape} ({total} values) to {target}",
                "the new shape must hold the same number of values",
                code="E0303",
            )
        target = tuple(total // known if t == -1 else t for t in target)
    return target


def make_node(
    index: int,
    name: str,
    op: str,
    attrs: Mapping[str, Any],
    input_shape: Shape | Sequence[Shape],
    inputs: Sequence[str] = (),
) -> Node:
    """Fill defaults into ``attrs``, infer shapes and return the :class:`Node` (raises ShapeProblem).

    A layer whose output or weights would hold more than :data:`MAX_ELEMENTS` values is refused (``E0306``).

    ``input_shape`` is the input's shape, or for a merge op (``add``, ``concat``) the list of its inputs'
    shapes; ``inputs`` names the nodes (or ``input``) the node reads.
    """
    given: Any = input_shape
    shapes: tuple[Shape, ...] = tuple(tuple(s) for s in given) if op in MERGE_OPS else (tuple(given),)
    input_shape = shapes[0] if shapes else ()
    full = {**DEFAULTS[op], **attrs}
    rank = window_rank(op)
    for key in ("kernel", "strides", "size", "dilation", "output_padding"):
        if key in full and isinstance(full[key], int):
            full[key] = (full[key],) * rank
        elif full.get(key) is not None:
            full[key] = tuple(full[key])
    for key in ("padding", "cropping"):  # an amount per side (zero_pad2d, crop2d), not a padding rule's name
        if key in full and not isinstance(full[key], str):
            full[key] = sides(full[key])
    if full.get("noise_shape") is not None:
        full["noise_shape"] = tuple(full["noise_shape"])
    if "size" in full and "strides" not in full and OPS[op].spatial:  # a pool's default strides: its size
        full["strides"] = tuple(full["size"])
    if op == "reshape":
        full["shape"] = resolve_reshape_target(full["shape"], input_shape)
    if "activation" in full:
        full["activation"] = as_activation(full["activation"])
    result = infer(op, full, shapes if op in MERGE_OPS else input_shape, inputs)
    check_sizes(result)
    if op == "concat":
        full["axis"] = full["axis"] % len(shapes[0])
    return Node(
        index,
        name,
        op,
        full,
        tuple(input_shape),
        result.output_shape,
        result.params,
        result.flops,
        tuple(inputs),
        shapes,
        result.state,
    )


def make_graph(
    input_shape: Sequence[int],
    layers: Sequence[tuple[str, Mapping[str, Any]] | str],
    *,
    name: str = "model",
    train: TrainConfig | None = None,
    data: DataConfig | None = None,
    dtype: str = "float32",
    output: str | None = None,
) -> Graph:
    """Build a :class:`Graph` directly from Python, for tests and tools (no YAML, no diagnostics).

    ``layers`` holds ``(op, attrs)`` pairs (or bare op names); ``attrs`` may carry ``name`` and
    ``inputs`` (a list of layer names or ``input``; default: the layer before). Default names are
    ``<op>_<n>``, counted per op from 1. ``output`` names the output layer (default: the last).
    """
    nodes: list[Node] = []
    counts: dict[str, int] = {}
    shapes: dict[str, Shape] = {INPUT: tuple(input_shape)}
    previous = INPUT
    for index, layer in enumerate(layers):
        op, attrs = (layer, {}) if isinstance(layer, str) else layer
        attrs = dict(attrs)
        counts[op] = counts.get(op, 0) + 1
        layer_name = attrs.pop("name", f"{op}_{counts[op]}")
        given_inputs = attrs.pop("inputs", (previous,))
        inputs = (given_inputs,) if isinstance(given_inputs, str) else tuple(given_inputs)
        given = [shapes[i] for i in inputs]
        node = make_node(index, layer_name, op, attrs, given if op in MERGE_OPS else given[0], inputs)
        nodes.append(node)
        shapes[layer_name] = node.output_shape
        previous = layer_name
    return Graph(
        name=name,
        input_shape=tuple(input_shape),
        nodes=tuple(nodes),
        train=train or TrainConfig(),
        data=data or DataConfig(),
        dtype=dtype,
        output=output,
    )
