"""The layer vocabulary: every fact about each op type, in one :class:`OpDef` per op.

An op's ``fields`` say which keys a spec may give it, how each value is read and what it means
(``Field.doc``); ``defaults`` are the canonical values of its optional attributes (what ``Node.attrs``
holds when a key is left out); ``rule`` infers its output shape, parameters and FLOPs
(:mod:`nnspec.compiler.rules`); ``since`` is the language version that introduced it; the flags say how
it behaves (``spatial``, ``stateful``, ``merge``, ``wide``). The schema and its descriptions, the shape
inference, the list of layer types, the language versions' contents, the ops kept in float32 under mixed
precision and the backends' op sets are all derived from :data:`OPS`, so adding an op means one ``OpDef``
here plus one lowering per engine.

Every layer also accepts :data:`COMMON_FIELDS` (``name``, ``inputs``), which the front end reads itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import conv_rules, merge_rules, resample_rules, rules
from .ir import ACTIVATIONS, INITIALIZERS, Activation, Initializer
from .loader import YMap, YNode, YScalar, YSeq
from .values import (
    Field,
    Invalid,
    choice_reader,
    describe,
    did_you_mean,
    read_bool,
    read_float,
    read_int,
    read_pair,
    read_shape,
    single_key,
)

PADDINGS: tuple[str, ...] = ("valid", "same")


def _read_elsewhere(node: YNode) -> YNode:
    """The reader of a key the front end reads itself: it hands the node on."""
    return node


#: Keys every layer accepts besides its own fields (read by :mod:`nnspec.compiler.resolve`).
COMMON_FIELDS: dict[str, Field] = {
    "name": Field(
        _read_elsewhere,
        doc="The layer's name: letters, digits and _, starting with a letter or _ (input is reserved). "
        "Default: <type>_<n>, counting the layers of that type from 1.",
        since="1",
    ),
    "inputs": Field(
        _read_elsewhere,
        doc="The layers this layer reads: one name or a list of names (input is the model's input). "
        "Default: the layer before it.",
        since="1.1",
    ),
}
COMMON_KEYS: tuple[str, ...] = tuple(COMMON_FIELDS)
#: The default window of the pools.
POOL_DEFAULT_SIZE = (2, 2)

#: Arguments each initialiser takes, with defaults (filled into ``Initializer.args``).
INITIALIZER_ARGS: dict[str, dict[str, float]] = {
    "normal": {"mean": 0.0, "stddev": 0.05},
    "uniform": {"minval": -0.05, "maxval": 0.05},
}
#: What each initialiser argument means.
INITIALIZER_ARG_DOCS: dict[str, str] = {
    "mean": "Mean of the normal distribution.",
    "stddev": "Standard deviation of the normal distribution (> 0).",
    "minval": "Lower end of the uniform range (below maxval).",
    "maxval": "Upper end of the uniform range (above minval).",
}

DEFAULT_KERNEL_INIT = Initializer("glorot_uniform")
DEFAULT_BIAS_INIT = Initializer("zeros")


def read_initializer(node: YNode) -> Initializer:
    """An initialiser: a name (``he_normal``) or ``{normal: {stddev: 0.05, mean: 0}}``; arguments get defaults."""
    choose = choice_reader(INITIALIZERS, "initializer", "E0207")
    if not isinstance(node, YMap):
        name = choose(node)
        return Initializer(name, tuple(sorted(INITIALIZER_ARGS.get(name, {}).items())))
    entry = single_key(node)
    if entry is None:
        raise Invalid(
            f"must be an initialiser name or a one-key mapping {{name: {{args}}}}; got {describe(node)}",
            "write e.g. he_normal or {normal: {stddev: 0.05}}",
            node,
            "E0207",
        )
    key, args_node = entry
    name = choose(key)
    allowed = INITIALIZER_ARGS.get(name, {})
    args = dict(allowed)
    if args_node is not None and not (isinstance(args_node, YScalar) and args_node.kind == "null"):
        if not isinstance(args_node, YMap):
            example = (
                f"write {{{name}: {{{', '.join(f'{k}: {v:g}' for k, v in allowed.items())}}}}}"
                if allowed
                else f"write just {name}"
            )
            raise Invalid(
                f"arguments of {name} must be a mapping; got {describe(args_node)}", example, args_node, "E0207"
            )
        for arg, (arg_key, value) in args_node.items.items():
            if arg not in allowed:
                takes = f"it takes {', '.join(allowed)}" if allowed else "it takes no arguments"
                raise Invalid(
                    f"unknown argument {arg!r} of initializer {name}{did_you_mean(arg, allowed)}",
                    takes,
                    arg_key,
                    "E0207",
                )
            try:
                args[arg] = read_float(value, 0.0, min_open=True) if arg == "stddev" else read_float(value)
            except Invalid as exc:
                raise Invalid(f"argument {arg} of initializer {name} {exc.message}", exc.hint, value, "E0207") from None
    if name == "uniform" and args["minval"] >= args["maxval"]:
        raise Invalid(
            f"initializer uniform needs minval < maxval; got minval {args['minval']:g}, maxval {args['maxval']:g}",
            None,
            args_node,
            "E0207",
        )
    return Initializer(name, tuple(sorted(args.items())))


@dataclass(frozen=True)
class ActivationArg:
    """One argument of a parametrised activation: Keras's default (``None``: none, the argument is left out),
    how it is read, what it means, and whether a spec must give it."""

    default: Any
    read: Callable[[YNode], Any]
    doc: str
    required: bool = False


def _any_float(node: YNode) -> float:
    return read_float(node)


def _non_negative(node: YNode) -> float:
    return read_float(node, 0.0)


#: The arguments each activation takes, with Keras's defaults (Keras's own argument names).
ACTIVATION_ARGS: dict[str, dict[str, ActivationArg]] = {
    "relu": {
        "negative_slope": ActivationArg(0.0, _non_negative, "Slope below the threshold (>= 0)."),
        "max_value": ActivationArg(None, _non_negative, "Upper bound of the output (>= 0; 6 gives ReLU6)."),
        "threshold": ActivationArg(0.0, _any_float, "Inputs at or below it are 0 (or on the negative slope)."),
    },
    "leaky_relu": {"negative_slope": ActivationArg(0.2, _non_negative, "Slope below 0 (>= 0).")},
    "elu": {"alpha": ActivationArg(1.0, _any_float, "Scale of the negative part, alpha (exp(x) - 1).")},
    "celu": {"alpha": ActivationArg(1.0, lambda n: read_float(n, 0.0, min_open=True), "alpha (> 0).")},
    "gelu": {"approximate": ActivationArg(False, read_bool, "Use the tanh approximation instead of erf.")},
    "hard_shrink": {"threshold": ActivationArg(0.5, _non_negative, "Inputs with |x| <= threshold become 0.")},
    "soft_shrink": {"threshold": ActivationArg(0.5, _non_negative, "Shrinks inputs towards 0 by threshold.")},
    "squareplus": {"b": ActivationArg(4.0, _non_negative, "Smoothness b of (x + sqrt(x^2 + b)) / 2 (>= 0).")},
    "threshold": {
        "threshold": ActivationArg(None, _any_float, "Inputs at or below it are replaced.", required=True),
        "default_value": ActivationArg(None, _any_float, "The value that replaces them.", required=True),
    },
}


def _activation_args(name: str, args_node: YNode | None) -> tuple[tuple[str, Any], ...]:
    allowed = ACTIVATION_ARGS.get(name, {})
    given: dict[str, Any] = {}
    if args_node is not None and not (isinstance(args_node, YScalar) and args_node.kind == "null"):
        if not isinstance(args_node, YMap):
            takes = f"write {{{name}: {{{', '.join(allowed)}: ...}}}}" if allowed else f"write just {name}"
            raise Invalid(
                f"arguments of activation {name} must be a mapping; got {describe(args_node)}",
                takes,
                args_node,
                "E0206",
            )
        for arg, (arg_key, value) in args_node.items.items():
            if arg not in allowed:
                takes = f"it takes {', '.join(allowed)}" if allowed else "it takes no arguments"
                raise Invalid(
                    f"unknown argument {arg!r} of activation {name}{did_you_mean(arg, allowed)}",
                    takes,
                    arg_key,
                    "E0206",
                )
            try:
                given[arg] = allowed[arg].read(value)
            except Invalid as exc:
                raise Invalid(f"argument {arg} of activation {name} {exc.message}", exc.hint, value, "E0206") from None
    missing = [arg for arg, spec in allowed.items() if spec.required and arg not in given]
    if missing:
        raise Invalid(
            f"activation {name} needs {' and '.join(missing)}",
            f"write {{{name}: {{{', '.join(f'{a}: 0.0' for a in allowed)}}}}}",
            args_node,
            "E0206",
        )
    return tuple(sorted((k, v) for k, v in given.items() if v != allowed[k].default))


def read_activation(node: YNode) -> Activation:
    """An activation: a name (``relu``) or ``{name: {args}}`` (``{relu: {max_value: 6}}``); arguments equal to
    Keras's defaults are dropped."""
    choose = choice_reader(ACTIVATIONS, "activation", "E0206")
    if not isinstance(node, YMap):
        name = choose(node)
        return Activation(name, _activation_args(name, None))
    entry = single_key(node)
    if entry is None:
        raise Invalid(
            f"must be an activation name or a one-key mapping {{name: {{args}}}}; got {describe(node)}",
            "write e.g. relu or {relu: {max_value: 6}}",
            node,
            "E0206",
        )
    key, args_node = entry
    name = choose(key)
    return Activation(name, _activation_args(name, args_node))


def as_activation(value: Activation | str | Mapping[str, Mapping[str, Any] | None]) -> Activation:
    """An :class:`Activation` from Python: itself, a name, or ``{name: {args}}`` (arguments equal to Keras's
    defaults dropped), for graphs built without YAML (:func:`nnspec.compiler.shapes.make_graph`)."""
    if isinstance(value, Activation):
        return value
    if isinstance(value, str):
        return Activation(value)
    ((name, args),) = value.items()
    allowed = ACTIVATION_ARGS.get(name, {})
    return Activation(name, tuple(sorted((k, v) for k, v in (args or {}).items() if v != allowed[k].default)))


def _positive_int(node: YNode) -> int:
    return read_int(node, 1)


def _pair(key: str, example: int) -> Callable[[YNode], tuple[int, int]]:
    return lambda node: read_pair(node, key, example)


_ACTIVATION = read_activation
_EPSILON = Field(lambda n: read_float(n, 0.0, min_open=True), doc="Added to the variance (> 0).")
_DENSE_LIKE = {
    "activation": Field(
        _ACTIVATION,
        doc="The activation, applied after the bias: a name (relu) or {name: {args}} ({relu: {max_value: 6}}).",
    ),
    "use_bias": Field(read_bool, doc="Add a bias vector."),
    "kernel_init": Field(
        read_initializer,
        doc="Initialiser of the kernel: a name (he_normal) or {name: {args}} ({normal: {stddev: 0.01}}).",
    ),
    "bias_init": Field(read_initializer, doc="Initialiser of the bias: a name (zeros) or {name: {args}}."),
}
_DENSE_LIKE_DEFAULTS = {
    "activation": Activation("linear"),
    "use_bias": True,
    "kernel_init": DEFAULT_KERNEL_INIT,
    "bias_init": DEFAULT_BIAS_INIT,
}
_STRIDES_DOC = "Step between windows: n for [n, n], or [height, width]."
_WINDOWED = {
    "strides": Field(_pair("strides", 2), doc=_STRIDES_DOC),
    "padding": Field(
        choice_reader(PADDINGS, "padding"),
        doc="valid: no padding, output floor((n - k) / s) + 1; same: output ceil(n / s), padded as TensorFlow "
        "pads (the odd element at the end).",
    ),
}
_NORM = {
    "epsilon": _EPSILON,
    "center": Field(read_bool, doc="Learn an offset beta."),
    "scale": Field(read_bool, doc="Learn a factor gamma."),
}
_NORM_DEFAULTS = {"epsilon": 1e-3, "center": True, "scale": True}


@dataclass(frozen=True)
class OpDef:
    """Everything nnspec knows about one layer type, apart from its lowerings.

    ``rule`` is a :data:`~nnspec.compiler.rules.Rule`, or for a ``merge`` op a
    :data:`~nnspec.compiler.rules.MergeRule`. ``doc`` says what the op computes and each field's
    ``doc`` what the key means. ``since`` is the language version that introduced the op (one of
    :data:`~nnspec.compiler.schema.LANGUAGE_VERSIONS`). ``shorthand`` names the one key that may be
    written directly (``- dropout: 0.5``). ``spatial`` ops slide a window over (H, W) (padding rules
    apply); ``stateful`` ops keep non-trainable state; ``merge`` ops read two or more inputs (and
    ``inputs_doc`` says which); ``wide`` ops compute in the storage type (float32) under mixed precision,
    with their weights kept in it, as Keras's normalisation layers do.
    """

    name: str
    rule: Callable[..., rules.Inferred]
    doc: str
    fields: Mapping[str, Field] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    shorthand: str | None = None
    spatial: bool = False
    stateful: bool = False
    merge: bool = False
    since: str = ""
    wide: bool = False
    inputs_doc: str | None = None

    @property
    def required(self) -> tuple[str, ...]:
        """The keys a spec must give."""
        return tuple(k for k, f in self.fields.items() if f.required)

    def key_doc(self, key: str) -> str:
        """What ``key`` (one of the op's fields or a common key) means, for this op."""
        if key == "inputs" and self.inputs_doc:
            return self.inputs_doc
        entry = self.fields.get(key) or COMMON_FIELDS.get(key)
        return entry.doc if entry is not None else ""

    def key_since(self, key: str) -> str:
        """The language version that introduced ``key`` on this op: the key's own, or the op's."""
        entry = self.fields.get(key) or COMMON_FIELDS.get(key)
        own = entry.since if entry is not None else None
        return own or self.since


_KERNEL_2D = Field(_pair("kernel", 3), required=True, doc="Kernel height and width: n for [n, n], or [height, width].")
_DILATION_2D = Field(
    _pair("dilation", 2),
    doc="Spacing of the kernel's taps: n for [n, n], or [height, width] (Keras's dilation_rate); strides and "
    "dilation cannot both exceed 1.",
    since="1.3",
)


def _pool(name: str, doc: str) -> OpDef:
    return OpDef(
        name,
        rules.pool2d,
        doc,
        {
            "size": Field(_pair("size", 2), doc="Window height and width: n for [n, n], or [height, width]."),
            "strides": Field(_pair("strides", 2), doc=f"{_STRIDES_DOC} Default: the size."),
            "padding": _WINDOWED["padding"],
        },
        {"size": POOL_DEFAULT_SIZE, "padding": "valid"},
        spatial=True,
        since="1",
    )


def _single(key: str, example: int) -> Callable[[YNode], tuple[int]]:
    """A reader of a 1-D window field: a positive int ``n`` or a one-item list ``[n]``, as ``(n,)``."""

    def read(node: YNode) -> tuple[int]:
        items = node.items if isinstance(node, YSeq) and len(node.items) == 1 else [node]
        try:
            return (read_int(items[0], 1),)
        except Invalid:
            raise Invalid(
                f"must be a positive int or [n]; got {describe(node)}", f"use {key}: {example}", node
            ) from None

    return read


def _pool1d(name: str, doc: str) -> OpDef:
    return OpDef(
        name,
        rules.pool1d,
        doc,
        {
            "size": Field(_single("size", 2), doc="Window length: n or [n]."),
            "strides": Field(_single("strides", 2), doc="Step between windows: n or [n]. Default: the size."),
            "padding": _WINDOWED["padding"],
        },
        {"size": (2,), "padding": "valid"},
        spatial=True,
        since="1.2",
    )


def _read_output_padding(node: YNode) -> tuple[int, int]:
    """``output_padding``: a non-negative int ``n`` (``(n, n)``) or ``[height, width]``."""
    items = node.items if isinstance(node, YSeq) and len(node.items) == 2 else [node, node]
    try:
        return read_int(items[0], 0), read_int(items[1], 0)
    except Invalid:
        raise Invalid(
            f"must be a non-negative int or [height, width]; got {describe(node)}", "use output_padding: 1", node
        ) from None


def _depthwise_fields(init_doc: dict[str, Field]) -> dict[str, Field]:
    """The fields of the depthwise part of ``depthwise_conv2d`` and ``separable_conv2d`` and their own."""
    return {
        "kernel": _KERNEL_2D,
        **_WINDOWED,
        "dilation": _DILATION_2D,
        "depth_multiplier": Field(
            _positive_int, doc="Filters per input channel (Keras's depth_multiplier): output channel c * m + i."
        ),
        **init_doc,
        "activation": _DENSE_LIKE["activation"],
        "use_bias": _DENSE_LIKE["use_bias"],
        "bias_init": _DENSE_LIKE["bias_init"],
    }


_DEPTHWISE_DEFAULTS = {"strides": (1, 1), "padding": "valid", "dilation": (1, 1), "depth_multiplier": 1}

#: The convolutions of language 1.3 (Keras's DepthwiseConv2D, SeparableConv2D and Conv2DTranspose).
CONV_FAMILY: tuple[OpDef, ...] = (
    OpDef(
        "depthwise_conv2d",
        conv_rules.depthwise_conv2d,
        "each channel convolved with its own depth_multiplier filters (Keras's DepthwiseConv2D): "
        "activation(conv(x, kernel, groups=in) + bias); kernel [kh, kw, in, depth_multiplier]",
        _depthwise_fields({"kernel_init": _DENSE_LIKE["kernel_init"]}),
        {**_DEPTHWISE_DEFAULTS, **_DENSE_LIKE_DEFAULTS},
        spatial=True,
        since="1.3",
    ),
    OpDef(
        "separable_conv2d",
        conv_rules.separable_conv2d,
        "a depthwise convolution then a 1x1 convolution (Keras's SeparableConv2D): "
        "activation(pointwise(depthwise(x)) + bias)",
        {
            "filters": Field(_positive_int, required=True, doc="Output channels (of the pointwise convolution)."),
            **_depthwise_fields(
                {
                    "depthwise_init": Field(
                        read_initializer, doc="Initialiser of depthwise_kernel [kh, kw, in, depth_multiplier]."
                    ),
                    "pointwise_init": Field(
                        read_initializer, doc="Initialiser of pointwise_kernel [1, 1, in * depth_multiplier, filters]."
                    ),
                }
            ),
        },
        {
            **_DEPTHWISE_DEFAULTS,
            **{k: v for k, v in _DENSE_LIKE_DEFAULTS.items() if k != "kernel_init"},
            "depthwise_init": DEFAULT_KERNEL_INIT,
            "pointwise_init": DEFAULT_KERNEL_INIT,
        },
        spatial=True,
        since="1.3",
    ),
    OpDef(
        "conv2d_transpose",
        conv_rules.conv2d_transpose,
        "the transposed 2-D convolution (Keras's Conv2DTranspose): the input gradient of a convolution with "
        "kernel [kh, kw, filters, in]; activation(conv_transpose(x, kernel) + bias)",
        {
            "filters": Field(_positive_int, required=True, doc="Output channels."),
            "kernel": _KERNEL_2D,
            "strides": _WINDOWED["strides"],
            "padding": Field(
                choice_reader(PADDINGS, "padding"),
                doc="valid: output (n - 1) * s + max(k, s); same: output n * s (Keras's sizes).",
            ),
            "output_padding": Field(
                _read_output_padding,
                doc="Extra rows and columns at the end of the output, each below the stride: the output is "
                "(n - 1) * s + k + output_padding (valid) or (n - 1) * s + k % 2 + output_padding (same). "
                "Default: none (the sizes of padding).",
            ),
            **_DENSE_LIKE,
        },
        {"strides": (1, 1), "padding": "valid", "output_padding": None, **_DENSE_LIKE_DEFAULTS},
        spatial=True,
        since="1.3",
    ),
)


#: The inputs of an element-wise merge, and the broadcasting rule (docs/spec.md, "Element-wise merges").
_BROADCAST_DOC = (
    "shapes broadcast as in Keras: aligned on the last axis, each length equal or 1 (a per-channel gate (C,) or "
    "(1, 1, C) times a feature map (H, W, C))"
)


def _elementwise(name: str, doc: str, inputs_doc: str, rule: Callable[..., rules.Inferred] = merge_rules.elementwise):
    return OpDef(name, rule, f"{doc}; {_BROADCAST_DOC}", merge=True, since="1.3", inputs_doc=inputs_doc)


_KEEPDIMS = Field(read_bool, doc="Keep the pooled axes with length 1: (1, 1, C) / (1, C) instead of (C,).", since="1.3")

#: The element-wise merges and per-channel affine layers of language 1.3 (Keras's Multiply, Subtract, Average,
#: Maximum, Minimum, Rescaling and ConvNeXt's LayerScale).
MERGE_FAMILY: tuple[OpDef, ...] = (
    _elementwise("multiply", "the elementwise product of two or more inputs", "The two or more layers to multiply."),
    _elementwise(
        "subtract",
        "the first input minus the second",
        "Exactly two layers [a, b]: the output is a - b.",
        merge_rules.subtract,
    ),
    _elementwise("average", "the elementwise mean of two or more inputs", "The two or more layers to average."),
    _elementwise(
        "maximum",
        "the elementwise maximum of two or more inputs (at a tie the first input takes the gradient)",
        "The two or more layers to compare.",
    ),
    _elementwise(
        "minimum",
        "the elementwise minimum of two or more inputs (at a tie the first input takes the gradient)",
        "The two or more layers to compare.",
    ),
    OpDef(
        "rescaling",
        merge_rules.rescaling,
        "x * scale + offset, elementwise (Keras's Rescaling); also how to multiply by or add a number",
        {
            "scale": Field(
                merge_rules.read_number_or_list,
                doc="The factor: a number, or a list with one number per channel (the last axis).",
            ),
            "offset": Field(
                merge_rules.read_number_or_list,
                doc="Added after scaling: a number, or a list with one number per channel.",
            ),
        },
        {"scale": 1.0, "offset": 0.0},
        since="1.3",
    ),
    OpDef(
        "layer_scale",
        merge_rules.layer_scale,
        "x * gamma with a learned per-channel gamma (the last axis), as ConvNeXt's LayerScale",
        {"init_values": Field(read_float, doc="The value every element of gamma starts from.")},
        {"init_values": 1e-6},
        shorthand="init_values",
        since="1.3",
    ),
)


_DROP_RATE = Field(
    lambda n: read_float(n, 0.0, 1.0, max_open=True),
    required=True,
    doc="The probability of DROPPING a unit (Keras's meaning), in [0, 1); 0 makes the layer the identity.",
)

#: Padding, cropping, upsampling and channel dropout of language 1.3 (Keras's ZeroPadding2D, Cropping2D,
#: UpSampling2D and SpatialDropout2D).
RESAMPLE_FAMILY: tuple[OpDef, ...] = (
    OpDef(
        "zero_pad2d",
        resample_rules.zero_pad2d,
        "zeros added around an image (Keras's ZeroPadding2D): (H, W, C) -> (H + top + bottom, W + left + right, C)",
        {
            "padding": Field(
                resample_rules.read_padding,
                doc="Rows and columns of zeros: n on every side, [h, w] (h above and below, w left and right) or "
                "[[top, bottom], [left, right]]. Default: 1.",
            )
        },
        {"padding": ((1, 1), (1, 1))},
        shorthand="padding",
        since="1.3",
    ),
    OpDef(
        "crop2d",
        resample_rules.crop2d,
        "rows and columns cut from the edges of an image (Keras's Cropping2D): "
        "(H, W, C) -> (H - top - bottom, W - left - right, C)",
        {
            "cropping": Field(
                resample_rules.read_cropping,
                doc="Rows and columns to cut: n on every side, [h, w] (h above and below, w left and right) or "
                "[[top, bottom], [left, right]]. Default: 0 (nothing).",
            )
        },
        {"cropping": ((0, 0), (0, 0))},
        shorthand="cropping",
        since="1.3",
    ),
    OpDef(
        "upsample2d",
        resample_rules.upsample2d,
        "an image enlarged by whole factors (Keras's UpSampling2D): (H, W, C) -> (H * sh, W * sw, C)",
        {
            "size": Field(_pair("size", 2), doc="Upsampling factors: n for [n, n], or [height, width]."),
            "interpolation": Field(
                choice_reader(("nearest", "bilinear"), "interpolation"),
                doc="nearest: each pixel repeated; bilinear: linear in each axis between the nearest pixel "
                "centres (half-pixel centres, edges repeated, as Keras 3's resize without antialiasing).",
            ),
        },
        {"size": (2, 2), "interpolation": "nearest"},
        shorthand="size",
        since="1.3",
    ),
    OpDef(
        "spatial_dropout2d",
        resample_rules.spatial_dropout2d,
        "drops whole channels of an image with probability rate while training (Keras's SpatialDropout2D): one "
        "mask value per example and channel",
        {"rate": _DROP_RATE},
        shorthand="rate",
        since="1.3",
    ),
)

_OPS: tuple[OpDef, ...] = (
    OpDef(
        "dense",
        rules.dense,
        "fully connected on the last axis: activation(x @ kernel + bias), as Keras's Dense (any input rank)",
        {"units": Field(_positive_int, required=True, doc="Output size."), **_DENSE_LIKE},
        _DENSE_LIKE_DEFAULTS,
        since="1",
    ),
    OpDef(
        "conv2d",
        rules.conv2d,
        "2-D cross-correlation over (H, W, C): activation(conv(x, kernel) + bias)",
        {
            "filters": Field(_positive_int, required=True, doc="Output channels."),
            "kernel": Field(
                _pair("kernel", 3), required=True, doc="Kernel height and width: n for [n, n], or [height, width]."
            ),
            **_WINDOWED,
            "dilation": _DILATION_2D,
            "groups": Field(
                _positive_int,
                doc="Split the input channels and the filters into this many independent convolutions "
                "(Keras's groups; it divides both); the kernel is [kh, kw, in / groups, filters].",
                since="1.3",
            ),
            **_DENSE_LIKE,
        },
        {"strides": (1, 1), "padding": "valid", "dilation": (1, 1), "groups": 1, **_DENSE_LIKE_DEFAULTS},
        spatial=True,
        since="1",
    ),
    *CONV_FAMILY,
    _pool("max_pool2d", "the maximum of each window, per channel"),
    _pool("avg_pool2d", "the mean of each window, per channel (same padding is not averaged in)"),
    OpDef("flatten", rules.flatten, "row-major over (H, W, C) to one axis", since="1"),
    OpDef(
        "reshape",
        rules.reshape,
        "a new per-example shape holding the same values",
        {
            "shape": Field(
                lambda n: read_shape(n, allow_infer=True),
                required=True,
                doc="The new per-example shape; one entry may be -1, inferred so that the number of values is kept.",
            )
        },
        shorthand="shape",
        since="1",
    ),
    OpDef(
        "dropout",
        resample_rules.dropout,
        "drops each unit with probability rate while training",
        {
            "rate": _DROP_RATE,
            "noise_shape": Field(
                resample_rules.read_noise_shape,
                doc="The shape of the mask, per example (Keras's noise_shape without the batch axis): 1 on an axis "
                "shares one mask value along it, null (or the axis's length) draws one per element; [1, 1, null] "
                "drops whole channels of an image. Default: the input's shape.",
                since="1.3",
            ),
        },
        shorthand="rate",
        since="1",
    ),
    OpDef(
        "activation",
        rules.activation,
        "an activation applied elementwise",
        {
            "activation": Field(
                _ACTIVATION,
                required=True,
                named_mapping=True,
                doc="The activation: a name (relu) or {name: {args}} ({leaky_relu: {negative_slope: 0.1}}).",
            )
        },
        shorthand="activation",
        since="1",
    ),
    OpDef("softmax", rules.softmax, "softmax over the last axis", since="1"),
    OpDef(
        "add",
        merge_rules.elementwise,
        f"the elementwise sum of two or more inputs; {_BROADCAST_DOC} (since 1.3)",
        merge=True,
        since="1.1",
        inputs_doc="The two or more layers to add (shapes that broadcast).",
    ),
    OpDef(
        "concat",
        rules.concat,
        "two or more inputs joined along a per-example axis (-1: channels)",
        {
            "axis": Field(
                read_int,
                doc="The axis to join along, per example (the batch axis is not counted): for images 0 is the "
                "height, 1 the width, 2 or -1 the channels.",
            )
        },
        {"axis": -1},
        merge=True,
        since="1.1",
        inputs_doc="The two or more layers to join (one rank; equal on every axis but axis).",
    ),
    OpDef(
        "batch_norm",
        rules.batch_norm,
        "batch normalisation over the last axis (Keras BatchNormalization, axis -1)",
        {
            "momentum": Field(
                lambda n: read_float(n, 0.0, 1.0, max_open=True),
                doc="How much of the moving statistics each training step keeps, in [0, 1).",
            ),
            **_NORM,
        },
        {"momentum": 0.99, **_NORM_DEFAULTS},
        stateful=True,
        since="1.1",
        wide=True,
    ),
    OpDef(
        "layer_norm",
        rules.layer_norm,
        "layer normalisation over the last axis (Keras LayerNormalization, axis -1)",
        dict(_NORM),
        dict(_NORM_DEFAULTS),
        since="1.1",
        wide=True,
    ),
    OpDef(
        "global_avg_pool2d",
        rules.global_pool2d,
        "the mean over (H, W), per channel: (H, W, C) -> (C,), or (1, 1, C) with keepdims",
        {"keepdims": _KEEPDIMS},
        {"keepdims": False},
        since="1.1",
    ),
    OpDef(
        "global_max_pool2d",
        rules.global_pool2d,
        "the maximum over (H, W), per channel: (H, W, C) -> (C,), or (1, 1, C) with keepdims",
        {"keepdims": _KEEPDIMS},
        {"keepdims": False},
        since="1.1",
    ),
    # sequences (steps, channels), Keras's Conv1D, MaxPooling1D, AveragePooling1D and global pools
    OpDef(
        "conv1d",
        rules.conv1d,
        "1-D cross-correlation over (steps, C): activation(conv(x, kernel) + bias), as Keras's Conv1D",
        {
            "filters": Field(_positive_int, required=True, doc="Output channels."),
            "kernel": Field(_single("kernel", 3), required=True, doc="Kernel length: n or [n]."),
            "strides": Field(_single("strides", 1), doc="Step between windows: n or [n]."),
            "padding": Field(
                choice_reader(("valid", "same", "causal"), "padding"),
                doc="valid: no padding; same: output ceil(n / s), padded as TensorFlow pads (the odd element at "
                "the end); causal: dilation * (kernel - 1) zeros before the first step, so that no output step "
                "sees a later input step.",
            ),
            "dilation": Field(
                _single("dilation", 2),
                doc="Spacing of the kernel's taps (Keras's dilation_rate); strides and dilation cannot both exceed 1.",
            ),
            **_DENSE_LIKE,
        },
        {"strides": (1,), "padding": "valid", "dilation": (1,), **_DENSE_LIKE_DEFAULTS},
        spatial=True,
        since="1.2",
    ),
    _pool1d("max_pool1d", "the maximum of each window of steps, per channel"),
    _pool1d("avg_pool1d", "the mean of each window of steps, per channel (same padding is not averaged in)"),
    OpDef(
        "global_avg_pool1d",
        rules.global_pool1d,
        "the mean over steps, per channel: (steps, C) -> (C,), or (1, C) with keepdims",
        {"keepdims": _KEEPDIMS},
        {"keepdims": False},
        since="1.2",
    ),
    OpDef(
        "global_max_pool1d",
        rules.global_pool1d,
        "the maximum over steps, per channel: (steps, C) -> (C,), or (1, C) with keepdims",
        {"keepdims": _KEEPDIMS},
        {"keepdims": False},
        since="1.2",
    ),
    *MERGE_FAMILY,
    *RESAMPLE_FAMILY,
)

#: Every op, by name, in the order of the language reference.
OPS: dict[str, OpDef] = {op.name: op for op in _OPS}
#: The layer types, in the order of :data:`OPS`.
LAYER_TYPES: tuple[str, ...] = tuple(OPS)
#: Ops that slide a window over (H, W): ``conv2d``, ``max_pool2d``, ``avg_pool2d``.
SPATIAL_OPS: frozenset[str] = frozenset(op.name for op in _OPS if op.spatial)
#: Ops with non-trainable state (running statistics): ``batch_norm``.
STATEFUL_OPS: frozenset[str] = frozenset(op.name for op in _OPS if op.stateful)
#: Ops that read two or more inputs: ``add``, ``concat``.
MERGE_OPS: frozenset[str] = frozenset(op.name for op in _OPS if op.merge)
#: Ops that compute in float32 under mixed precision: ``batch_norm``, ``layer_norm``.
WIDE_OPS: frozenset[str] = frozenset(op.name for op in _OPS if op.wide)


def op(name: str) -> OpDef:
    """The :class:`OpDef` of layer type ``name`` (``KeyError`` for an unknown type)."""
    return OPS[name]
