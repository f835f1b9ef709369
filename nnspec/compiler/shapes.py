"""Shape, parameter and FLOP inference, one rule per op type.

Each rule takes the op's canonical attributes and the per-example input shape and returns the output
shape, the parameter specs and the forward FLOPs per example, or raises :class:`ShapeProblem` with a
message and a hint. The front end turns a ``ShapeProblem`` into a positioned diagnostic.

Padding and rounding (the same on every backend): ``valid`` gives ``floor((n - k) / s) + 1``;
``same`` gives ``ceil(n / s)`` and pads ``max((out - 1) * s + k - n, 0)`` in all, ``total // 2`` before
and the rest (the odd pixel) after, which is TensorFlow's rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .ir import (
    INPUT,
    DataConfig,
    Graph,
    Initializer,
    Node,
    ParamSpec,
    Shape,
    TrainConfig,
)


class ShapeProblem(Exception):
    """A layer cannot take its input; ``message`` says what was found and ``hint`` how to fix it."""

    def __init__(self, message: str, hint: str | None = None, code: str = "E0301"):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


@dataclass(frozen=True)
class Inferred:
    """What shape inference learns about one layer."""

    output_shape: Shape
    params: tuple[ParamSpec, ...] = ()
    flops: int = 0
    state: tuple[ParamSpec, ...] = ()


Rule = Callable[[Mapping[str, Any], Shape], Inferred]
#: A merge rule takes the shapes of all inputs and the names of the layers they come from.
MergeRule = Callable[[Mapping[str, Any], tuple[Shape, ...], tuple[str, ...]], Inferred]
_RULES: dict[str, Rule] = {}
_MERGE_RULES: dict[str, MergeRule] = {}
#: Ops that take two or more inputs.
MERGE_OPS: frozenset[str] = frozenset({"add", "concat"})

DEFAULT_KERNEL_INIT = Initializer("glorot_uniform")
DEFAULT_BIAS_INIT = Initializer("zeros")

#: Defaults of every optional attribute, per op, in canonical form.
DEFAULTS: dict[str, dict[str, Any]] = {
    "dense": {"activation": "linear", "use_bias": True, "kernel_init": DEFAULT_KERNEL_INIT, "bias_init": DEFAULT_BIAS_INIT},
    "conv2d": {
        "strides": (1, 1),
        "padding": "valid",
        "activation": "linear",
        "use_bias": True,
        "kernel_init": DEFAULT_KERNEL_INIT,
        "bias_init": DEFAULT_BIAS_INIT,
    },
    "max_pool2d": {"padding": "valid"},
    "avg_pool2d": {"padding": "valid"},
    "flatten": {},
    "reshape": {},
    "dropout": {},
    "activation": {},
    "softmax": {},
    "add": {},
    "concat": {"axis": -1},
    "batch_norm": {"momentum": 0.99, "epsilon": 1e-3, "center": True, "scale": True},
    "layer_norm": {"epsilon": 1e-3, "center": True, "scale": True},
    "global_avg_pool2d": {},
    "global_max_pool2d": {},
}


def rule(op: str) -> Callable[[Rule], Rule]:
    """Register the inference rule of ``op``."""

    def register(fn: Rule) -> Rule:
        _RULES[op] = fn
        return fn

    return register


def merge_rule(op: str) -> Callable[[MergeRule], MergeRule]:
    """Register the inference rule of merge op ``op``."""

    def register(fn: MergeRule) -> MergeRule:
        _MERGE_RULES[op] = fn
        return fn

    return register


def infer(op: str, attrs: Mapping[str, Any], input_shape: Shape | Sequence[Shape], sources: Sequence[str] = ()) -> Inferred:
    """Infer one layer; raises :class:`ShapeProblem` when it cannot take its input(s).

    ``input_shape`` is one shape, or for a merge op the sequence of its inputs' shapes (``sources``
    names the layers they come from, for messages).
    """
    if op in MERGE_OPS:
        shapes = tuple(tuple(s) for s in input_shape)  # type: ignore[union-attr]
        names = tuple(sources) or tuple(f"input {i}" for i in range(len(shapes)))
        if len(shapes) < 2:
            raise ShapeProblem(f"needs at least 2 inputs; got {len(shapes)}", "list the layers to merge: inputs: [a, b]", code="E0305")
        return _MERGE_RULES[op](attrs, shapes, names)
    return _RULES[op](attrs, tuple(input_shape))  # type: ignore[arg-type]


def _size(shape: Sequence[int]) -> int:
    return math.prod(shape)


def output_length(n: int, k: int, s: int, padding: str) -> int:
    """Length of one spatial axis after a window of size ``k`` and stride ``s`` (see module docstring)."""
    if padding == "same":
        return -(-n // s)
    return (n - k) // s + 1


def same_padding(n: int, k: int, s: int) -> tuple[int, int]:
    """Padding (before, after) of one axis under ``same``: the odd pixel goes after."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def padding_pairs(node: Node) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit ((top, bottom), (left, right)) padding of a conv or pool node."""
    window = node.attrs["kernel"] if node.op == "conv2d" else node.attrs["size"]
    if node.attrs["padding"] == "valid":
        return (0, 0), (0, 0)
    h, w = node.input_shape[0], node.input_shape[1]
    return (
        same_padding(h, window[0], node.attrs["strides"][0]),
        same_padding(w, window[1], node.attrs["strides"][1]),
    )


def pool_window_counts(node: Node) -> "np.ndarray":
    """How many in-image elements each output position of a pool covers, shape (oh, ow, 1), float64.

    ``avg_pool2d`` divides its window sums by these counts, so that ``same`` padding is not averaged in.
    """
    import numpy as np

    (ph, pw), (sh, sw) = node.attrs["size"], node.attrs["strides"]
    (top, _), (left, _) = padding_pairs(node)
    h, w = node.input_shape[0], node.input_shape[1]
    oh, ow = node.output_shape[0], node.output_shape[1]
    rows = np.array([min(i * sh - top + ph, h) - max(i * sh - top, 0) for i in range(oh)])
    cols = np.array([min(j * sw - left + pw, w) - max(j * sw - left, 0) for j in range(ow)])
    return (rows[:, None] * cols[None, :])[:, :, None].astype(np.float64)


def _needs_rank(shape: Shape, rank: int, what: str, hint: str) -> None:
    if len(shape) != rank:
        raise ShapeProblem(f"needs {what}; got {shape}", hint)


def _spatial(attrs: Mapping[str, Any], shape: Shape, window: tuple[int, int], label: str) -> tuple[int, int]:
    (h, w), (kh, kw), (sh, sw) = shape[:2], window, attrs["strides"]
    padding = attrs["padding"]
    if padding == "valid" and (kh > h or kw > w):
        raise ShapeProblem(
            f"{label} {window[0]}x{window[1]} is larger than its input {h}x{w} with padding 'valid'",
            f"use a smaller {label}, or padding: same",
            code="E0302",
        )
    return output_length(h, kh, sh, padding), output_length(w, kw, sw, padding)


@rule("dense")
def _dense(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    _needs_rank(shape, 1, "a rank-1 input per example", "insert `- flatten` before it")
    n_in, units = shape[0], attrs["units"]
    params = [ParamSpec("kernel", (n_in, units), attrs["kernel_init"], n_in, units)]
    if attrs["use_bias"]:
        params.append(ParamSpec("bias", (units,), attrs["bias_init"], n_in, units))
    flops = 2 * n_in * units + (units if attrs["use_bias"] else 0) + _activation_flops(attrs["activation"], units)
    return Inferred((units,), tuple(params), flops)


@rule("conv2d")
def _conv2d(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    _needs_rank(shape, 3, "a rank-3 input (height, width, channels) per example", "give input.shape as [H, W, C], or add a `reshape` before it")
    kh, kw = attrs["kernel"]
    oh, ow = _spatial(attrs, shape, (kh, kw), "kernel")
    cin, cout = shape[2], attrs["filters"]
    fan_in, fan_out = kh * kw * cin, kh * kw * cout
    params = [ParamSpec("kernel", (kh, kw, cin, cout), attrs["kernel_init"], fan_in, fan_out)]
    if attrs["use_bias"]:
        params.append(ParamSpec("bias", (cout,), attrs["bias_init"], fan_in, fan_out))
    out = oh * ow * cout
    flops = 2 * kh * kw * cin * out + (out if attrs["use_bias"] else 0) + _activation_flops(attrs["activation"], out)
    return Inferred((oh, ow, cout), tuple(params), flops)


def _pool(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    _needs_rank(shape, 3, "a rank-3 input (height, width, channels) per example", "pool only after a conv2d or a reshape to [H, W, C]")
    ph, pw = attrs["size"]
    oh, ow = _spatial(attrs, shape, (ph, pw), "pool size")
    return Inferred((oh, ow, shape[2]), (), ph * pw * oh * ow * shape[2])


rule("max_pool2d")(_pool)
rule("avg_pool2d")(_pool)


@rule("flatten")
def _flatten(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    return Inferred((_size(shape),))


@rule("reshape")
def _reshape(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    target = tuple(attrs["shape"])
    if _size(target) != _size(shape):
        raise ShapeProblem(
            f"cannot reshape {shape} ({_size(shape)} values) to {target} ({_size(target)} values)",
            "the new shape must hold the same number of values; use -1 for one axis to infer it",
            code="E0303",
        )
    return Inferred(target)


@rule("dropout")
def _dropout(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    return Inferred(shape, (), _size(shape))


@rule("activation")
def _activation(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    return Inferred(shape, (), _activation_flops(attrs["activation"], _size(shape)))


@rule("softmax")
def _softmax(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    return Inferred(shape, (), 3 * _size(shape))


@merge_rule("add")
def _add(attrs: Mapping[str, Any], shapes: tuple[Shape, ...], names: tuple[str, ...]) -> Inferred:
    for shape, name in zip(shapes[1:], names[1:]):
        if shape != shapes[0]:
            raise ShapeProblem(
                f"cannot add {names[0]!r} {shapes[0]} and {name!r} {shape}: add needs inputs of one shape",
                "make both branches produce the same shape (for example a 1x1 conv2d on the shortcut, or padding: same)",
                code="E0305",
            )
    return Inferred(shapes[0], (), (len(shapes) - 1) * _size(shapes[0]))


@merge_rule("concat")
def _concat(attrs: Mapping[str, Any], shapes: tuple[Shape, ...], names: tuple[str, ...]) -> Inferred:
    rank = len(shapes[0])
    axis = attrs["axis"]
    for shape, name in zip(shapes[1:], names[1:]):
        if len(shape) != rank:
            raise ShapeProblem(
                f"cannot concatenate {names[0]!r} {shapes[0]} and {name!r} {shape}: their ranks differ",
                "concatenate outputs of one rank (flatten both, or both (H, W, C))",
                code="E0305",
            )
    if not -rank <= axis < rank:
        raise ShapeProblem(f"axis {axis} is out of range for inputs of rank {rank} (per example)", f"use an axis from {-rank} to {rank - 1}; the default -1 is the channel axis", code="E0305")
    axis %= rank
    for shape, name in zip(shapes[1:], names[1:]):
        if any(a != b for i, (a, b) in enumerate(zip(shape, shapes[0])) if i != axis):
            raise ShapeProblem(
                f"cannot concatenate {names[0]!r} {shapes[0]} and {name!r} {shape} on axis {axis}: the other axes differ",
                "the inputs must agree on every axis but the concatenation axis",
                code="E0305",
            )
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return Inferred(tuple(out))


def _norm_params(attrs: Mapping[str, Any], channels: int) -> tuple[ParamSpec, ...]:
    params = []
    if attrs["scale"]:
        params.append(ParamSpec("gamma", (channels,), Initializer("ones")))
    if attrs["center"]:
        params.append(ParamSpec("beta", (channels,), Initializer("zeros")))
    return tuple(params)


@rule("batch_norm")
def _batch_norm(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    if not shape:
        raise ShapeProblem("needs an input with a channel axis; got a scalar per example", "apply batch_norm to a dense or conv2d output")
    channels = shape[-1]
    state = (ParamSpec("moving_mean", (channels,), Initializer("zeros")), ParamSpec("moving_variance", (channels,), Initializer("ones")))
    return Inferred(shape, _norm_params(attrs, channels), 2 * _size(shape), state)


@rule("layer_norm")
def _layer_norm(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    if not shape:
        raise ShapeProblem("needs an input with a feature axis; got a scalar per example", "apply layer_norm to a dense or conv2d output")
    return Inferred(shape, _norm_params(attrs, shape[-1]), 7 * _size(shape))


def _global_pool(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    _needs_rank(shape, 3, "a rank-3 input (height, width, channels) per example", "pool only after a conv2d or a reshape to [H, W, C]")
    return Inferred((shape[2],), (), _size(shape))


rule("global_avg_pool2d")(_global_pool)
rule("global_max_pool2d")(_global_pool)


def _activation_flops(name: str, n: int) -> int:
    return 0 if name == "linear" else n


def resolve_reshape_target(target: Sequence[int], input_shape: Shape) -> Shape:
    """Replace one ``-1`` in a reshape target by the length that keeps the size; raises ShapeProblem."""
    target = tuple(int(t) for t in target)
    if target.count(-1) > 1:
        raise ShapeProblem("reshape may infer at most one axis (-1)", "give every axis but one explicitly", code="E0303")
    if -1 in target:
        known = _size(t for t in target if t != -1)
        total = _size(input_shape)
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

    ``input_shape`` is the input's shape, or for a merge op (``add``, ``concat``) the list of its inputs'
    shapes; ``inputs`` names the nodes (or ``input``) the node reads.
    """
    shapes: tuple[Shape, ...] = tuple(tuple(s) for s in input_shape) if op in MERGE_OPS else (tuple(input_shape),)  # type: ignore[misc]
    input_shape = shapes[0] if shapes else ()
    full = {**DEFAULTS[op], **attrs}
    for key in ("kernel", "strides", "size"):
        if key in full and isinstance(full[key], int):
            full[key] = (full[key], full[key])
        elif key in full:
            full[key] = tuple(full[key])
    if op in ("max_pool2d", "avg_pool2d") and "strides" not in full:
        full["strides"] = tuple(full["size"])
    if op == "reshape":
        full["shape"] = resolve_reshape_target(full["shape"], input_shape)
    result = infer(op, full, shapes if op in MERGE_OPS else input_shape, inputs)
    if op == "concat":
        full["axis"] = full["axis"] % len(shapes[0])
    return Node(index, name, op, full, tuple(input_shape), result.output_shape, result.params, result.flops, tuple(inputs), shapes, result.state)


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
        inputs = tuple(attrs.pop("inputs", (previous,)))
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
