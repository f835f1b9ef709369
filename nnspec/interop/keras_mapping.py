"""One mapping per Keras layer class to nnspec spec layers, registered by class name.

A mapper reads a layer's config and returns the spec layers it becomes (usually one; ``Dense`` with
``activation='softmax'`` becomes ``dense`` + ``softmax``), or raises :class:`KerasImportError` naming the
Keras layer and the option nnspec lacks. Options that do not change what the layer computes (a dropout
seed, an initialiser nnspec has no name for) become notes instead. The first spec layer of a Keras layer
reads what the Keras layer reads; the others read the one before them. Merges: ``Add`` is ``add``,
``Concatenate`` is ``concat`` on the per-example axis (Keras's axis less one); ``BatchNormalization`` and
``LayerNormalization`` must act on the last axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..compiler.ir import ACTIVATIONS
from ..compiler.opset import ACTIVATION_ARGS
from .errors import KerasImportError, short
from .keras_config import MAX_DIM, KerasLayer


@dataclass
class SpecLayer:
    """One nnspec layer made from a Keras layer: op, spec parameters (YAML form), name, and its source."""

    op: str
    params: dict[str, Any]
    name: str
    source: KerasLayer
    weight_names: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    #: the (batched) Keras axis the layer acts on, checked or converted once the input's rank is known
    keras_axis: int | None = None
    #: the spec names this layer reads (``input`` for the model input), filled in by the import
    inputs: tuple[str, ...] = ()


Mapper = Callable[[KerasLayer], list[SpecLayer]]
_MAPPERS: dict[str, Mapper] = {}

_INITIALIZERS = {
    "GlorotUniform": "glorot_uniform",
    "GlorotNormal": "glorot_normal",
    "HeNormal": "he_normal",
    "HeUniform": "he_uniform",
    "LecunNormal": "lecun_normal",
    "LecunUniform": "lecun_uniform",
    "Zeros": "zeros",
    "Ones": "ones",
}


def maps(*class_names: str) -> Callable[[Mapper], Mapper]:
    """Register the mapper of Keras layer classes ``class_names``."""

    def register(fn: Mapper) -> Mapper:
        for name in class_names:
            _MAPPERS[name] = fn
        return fn

    return register


def known_classes() -> list[str]:
    """Keras layer classes nnspec can import."""
    return sorted(_MAPPERS)


def map_layer(layer: KerasLayer) -> list[SpecLayer]:
    """The spec layers of one Keras layer; a class nnspec does not know is an error naming it."""
    if layer.class_name == "Lambda":
        raise KerasImportError(
            f"{layer.label}: Lambda layers hold Python code; nnspec never loads code from a model file",
            where=layer.at(),
        )
    if layer.class_name in ("Sequential", "Functional", "Model"):
        raise KerasImportError(
            f"{layer.label} is a nested model; rebuild the Keras model with its layers inline", where=layer.at()
        )
    mapper = _MAPPERS.get(layer.class_name)
    if mapper is None:
        raise KerasImportError(
            f"{layer.label} has no nnspec equivalent",
            where=f"{layer.path}.class_name",
        )
    _check_dtype(layer)
    try:
        specs = mapper(layer)
    except KerasImportError:
        raise
    except KeyError as exc:
        key = exc.args[0] if exc.args else None
        where = layer.at(key) if isinstance(key, str) else layer.at()
        raise KerasImportError(f"{layer.label}: a malformed layer config (no {short(key)})", where=where) from None
    except (TypeError, ValueError, AttributeError, IndexError, ArithmeticError) as exc:
        raise KerasImportError(
            f"{layer.label}: a malformed layer config ({type(exc).__name__}: {short(str(exc), 160)})", where=layer.at()
        ) from None
    if layer.config.get("trainable") is False:
        specs[0].notes.append(f"{layer.label} is frozen in Keras (trainable: false); nnspec trains every layer")
    return specs


def clean_float(value: Any) -> float:
    """A float from a Keras config in its shortest float32 form when that is what it is
    (0.0010000000474974513 -> 0.001)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {short(value)}")
    exact = float(value)
    with np.errstate(over="ignore"):
        shortest = float(str(np.float32(exact)))
    return shortest if abs(shortest - exact) <= 1e-7 * abs(exact) else exact


def _number(
    layer: KerasLayer, key: str, default: Any = None, within: dict[str, Any] | None = None, where: str | None = None
) -> float:
    """The number at ``key`` of the layer's config (or of ``within``, found at config path ``where``), as
    :func:`clean_float` gives it."""
    source = layer.config if within is None else within
    value = source.get(key, default)
    try:
        return clean_float(value)
    except (TypeError, ValueError, OverflowError):
        raise KerasImportError(
            f"{layer.label}: {key}={short(value)} is not a number", where=f"{where}.{key}" if where else layer.at(key)
        ) from None


def _check_dtype(layer: KerasLayer) -> None:
    policy = layer.config.get("dtype")
    if isinstance(policy, dict):
        cfg = policy.get("config")
        name = cfg.get("name") if isinstance(cfg, dict) else None
    else:
        name = policy
    if name not in (None, "float32", "float64"):
        raise KerasImportError(
            f"{layer.label} uses dtype policy {short(name)}; nnspec computes in float32 or float64",
            where=layer.at("dtype"),
        )


def _unsupported(layer: KerasLayer, key: str, value: Any, why: str) -> KerasImportError:
    return KerasImportError(f"{layer.label}: {key}={short(value)} is not supported ({why})", where=layer.at(key))


def _require_default(layer: KerasLayer, key: str, default: Any, why: str) -> None:
    value = layer.config.get(key, default)
    if isinstance(value, list):
        value = tuple(value)
    if value != default and value is not None:
        raise _unsupported(layer, key, layer.config.get(key), why)


def _no_extras(layer: KerasLayer, keys: tuple[str, ...]) -> None:
    for key in keys:
        if layer.config.get(key) not in (None, False):
            raise _unsupported(
                layer, key, layer.config.get(key), "nnspec has no regularisers, constraints, LoRA or quantisation"
            )


#: The activations a Keras config may name (those without a required argument).
_NAMED_ACTIVATIONS: tuple[str, ...] = tuple(
    name for name in ACTIVATIONS if not any(arg.required for arg in ACTIVATION_ARGS.get(name, {}).values())
)


def _activation(layer: KerasLayer, value: Any) -> str:
    if isinstance(value, dict):
        raise KerasImportError(
            f"{layer.label}: activation {short(value.get('config', value))} is a custom function; "
            f"nnspec knows Keras's named activations ({', '.join(_NAMED_ACTIVATIONS)})",
            where=layer.at("activation"),
        )
    if value is not None and not isinstance(value, str):
        raise KerasImportError(f"{layer.label}: activation {short(value)} is not a name", where=layer.at("activation"))
    name = value or "linear"
    if name not in _NAMED_ACTIVATIONS:
        raise KerasImportError(
            f"{layer.label}: activation '{short(name)[1:-1]}' has no nnspec equivalent "
            f"(nnspec knows {', '.join(_NAMED_ACTIVATIONS)})",
            where=layer.at("activation"),
        )
    return name


def _initializer(layer: KerasLayer, key: str, default: str) -> tuple[Any, list[str]]:
    """The spec form of a Keras initialiser (``None`` when it is nnspec's default) and notes."""
    init = layer.config.get(key)
    if init is None or init == default:
        return None, []
    if not isinstance(init, dict):
        if isinstance(init, str) and init in _INITIALIZERS.values():
            return init, []
        return None, [
            f"{layer.label}: {key} {short(init)} has no nnspec equivalent; the spec uses {default} "
            "(imported weights are unaffected)"
        ]
    cls, cfg = init.get("class_name"), init.get("config") or {}
    if not isinstance(cfg, dict):
        raise KerasImportError(
            f"{layer.label}: the config of {key} is {short(cfg)}, not an object", where=layer.at(f"{key}.config")
        )
    if isinstance(cls, str) and cls in _INITIALIZERS:
        name = _INITIALIZERS[cls]
        return (None if name == default else name), []
    at = layer.at(f"{key}.config")
    if cls == "RandomNormal":
        return {
            "normal": {"mean": _number(layer, "mean", 0.0, cfg, at), "stddev": _number(layer, "stddev", 0.05, cfg, at)}
        }, []
    if cls == "RandomUniform":
        return {
            "uniform": {
                "minval": _number(layer, "minval", -0.05, cfg, at),
                "maxval": _number(layer, "maxval", 0.05, cfg, at),
            }
        }, []
    return None, [
        f"{layer.label}: {key} {short(cls)} has no nnspec equivalent; the spec uses {default} "
        "(imported weights are unaffected)"
    ]


def _is_dim(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_DIM


def _pair(layer: KerasLayer, key: str, default: Any = None) -> Any:
    """A size or stride option (one positive int, or a list of one or two) as the spec writes it."""
    value = layer.config.get(key, default) if default is not None else layer.config[key]
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not all(_is_dim(v) for v in values):
        raise _unsupported(layer, key, value, f"expected one or two positive ints of at most {MAX_DIM:,}")
    return values[0] if values[0] == values[1] else values


def _single(layer: KerasLayer, key: str, default: Any = None) -> int:
    """A 1-D size, stride or dilation option (a positive int, or a list of one) as the spec writes it."""
    value = layer.config.get(key, default) if default is not None else layer.config[key]
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) != 1 or not _is_dim(values[0]):
        raise _unsupported(layer, key, value, f"expected one positive int of at most {MAX_DIM:,}")
    return values[0]


def _positive(layer: KerasLayer, key: str) -> int:
    value = layer.config[key]
    if not _is_dim(value):
        raise _unsupported(layer, key, value, f"it must be a positive int of at most {MAX_DIM:,}")
    return value


def _channels_last(layer: KerasLayer) -> None:
    fmt = layer.config.get("data_format")
    if fmt not in (None, "channels_last"):
        raise _unsupported(layer, "data_format", fmt, "nnspec is channels-last: (height, width, channels)")


def _with_activation(layer: KerasLayer, op: str, params: dict[str, Any], notes: list[str]) -> list[SpecLayer]:
    activation = _activation(layer, layer.config.get("activation"))
    if activation not in ("linear", "softmax"):
        params["activation"] = activation
    names = ("kernel", "bias") if params.get("use_bias", True) else ("kernel",)
    main = SpecLayer(op, params, layer.name, layer, weight_names=names, notes=notes)
    if activation == "softmax":
        note = f"{layer.label}: its softmax activation becomes a separate softmax layer"
        return [main, SpecLayer("softmax", {}, f"{layer.name}_softmax", layer, notes=[note])]
    return [main]


def _weights_options(layer: KerasLayer, params: dict[str, Any]) -> list[str]:
    _no_extras(
        layer,
        (
            "kernel_regularizer",
            "bias_regularizer",
            "activity_regularizer",
            "kernel_constraint",
            "bias_constraint",
            "lora_rank",
            "quantization_config",
        ),
    )
    if not layer.config.get("use_bias", True):
        params["use_bias"] = False
    notes: list[str] = []
    for key, spec_key, default in (
        ("kernel_initializer", "kernel_init", "glorot_uniform"),
        ("bias_initializer", "bias_init", "zeros"),
    ):
        value, more = _initializer(layer, key, default)
        notes += more
        if value is not None:
            params[spec_key] = value
    return notes


@maps("Dense")
def _dense(layer: KerasLayer) -> list[SpecLayer]:
    params: dict[str, Any] = {"units": _positive(layer, "units")}
    notes = _weights_options(layer, params)
    return _with_activation(layer, "dense", params, notes)


def _window_2d(layer: KerasLayer, params: dict[str, Any], dilation: bool = True) -> None:
    """``strides``, ``padding`` (and ``dilation``) of a 2-D convolution, where they differ from the defaults."""
    _channels_last(layer)
    padding = str(layer.config.get("padding", "valid")).lower()
    if padding not in ("valid", "same"):
        raise _unsupported(layer, "padding", padding, "nnspec pads 'valid' or 'same'")
    if _pair(layer, "strides", 1) != 1:
        params["strides"] = _pair(layer, "strides")
    if padding != "valid":
        params["padding"] = padding
    if dilation and _pair(layer, "dilation_rate", 1) != 1:
        params["dilation"] = _pair(layer, "dilation_rate")


@maps("Conv2D")
def _conv2d(layer: KerasLayer) -> list[SpecLayer]:
    params: dict[str, Any] = {"filters": _positive(layer, "filters"), "kernel": _pair(layer, "kernel_size")}
    _window_2d(layer, params)
    if layer.config.get("groups", 1) != 1:
        params["groups"] = _positive(layer, "groups")
    notes = _weights_options(layer, params)
    return _with_activation(layer, "conv2d", params, notes)


@maps("Conv2DTranspose")
def _conv2d_transpose(layer: KerasLayer) -> list[SpecLayer]:
    params: dict[str, Any] = {"filters": _positive(layer, "filters"), "kernel": _pair(layer, "kernel_size")}
    _window_2d(layer, params, dilation=False)
    if _pair(layer, "dilation_rate", 1) != 1:
        raise _unsupported(layer, "dilation_rate", layer.config["dilation_rate"], "nnspec's conv2d_transpose has none")
    extra = layer.config.get("output_padding")
    if extra is not None:
        values = list(extra) if isinstance(extra, (list, tuple)) else [extra, extra]
        if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v for v in values):
            raise _unsupported(layer, "output_padding", extra, "expected one or two non-negative ints")
        params["output_padding"] = values[0] if values[0] == values[1] else values
    notes = _weights_options(layer, params)
    return _with_activation(layer, "conv2d_transpose", params, notes)


#: Options of the depthwise convolutions that nnspec lacks (regularisers, constraints).
_DEPTHWISE_EXTRAS = tuple(
    f"{part}_{what}" for part in ("depthwise", "pointwise", "bias") for what in ("regularizer", "constraint")
) + ("activity_regularizer", "lora_rank", "quantization_config")


def _depthwise_layer(
    layer: KerasLayer, op: str, params: dict[str, Any], kernels: dict[str, tuple[str, str]]
) -> list[SpecLayer]:
    """A ``DepthwiseConv2D`` or ``SeparableConv2D``; ``kernels`` maps each Keras kernel initialiser key to its
    spec key and the weight it initialises, in Keras's order of weights."""
    params["kernel"] = _pair(layer, "kernel_size")
    _window_2d(layer, params)
    if layer.config.get("depth_multiplier", 1) != 1:
        params["depth_multiplier"] = _positive(layer, "depth_multiplier")
    _no_extras(layer, _DEPTHWISE_EXTRAS)
    if not layer.config.get("use_bias", True):
        params["use_bias"] = False
    notes: list[str] = []
    inits = {key: (spec_key, "glorot_uniform") for key, (spec_key, _) in kernels.items()}
    for key, (spec_key, default) in {**inits, "bias_initializer": ("bias_init", "zeros")}.items():
        value, more = _initializer(layer, key, default)
        notes += more
        if value is not None:
            params[spec_key] = value
    specs = _with_activation(layer, op, params, notes)
    weights = tuple(weight for _, weight in kernels.values())
    specs[0].weight_names = (*weights, "bias") if params.get("use_bias", True) else weights
    return specs


@maps("DepthwiseConv2D")
def _depthwise_conv2d(layer: KerasLayer) -> list[SpecLayer]:
    return _depthwise_layer(layer, "depthwise_conv2d", {}, {"depthwise_initializer": ("kernel_init", "kernel")})


@maps("SeparableConv2D")
def _separable_conv2d(layer: KerasLayer) -> list[SpecLayer]:
    kernels = {
        "depthwise_initializer": ("depthwise_init", "depthwise_kernel"),
        "pointwise_initializer": ("pointwise_init", "pointwise_kernel"),
    }
    return _depthwise_layer(layer, "separable_conv2d", {"filters": _positive(layer, "filters")}, kernels)


@maps("MaxPooling1D", "AveragePooling1D", "MaxPooling2D", "AveragePooling2D")
def _pool(layer: KerasLayer) -> list[SpecLayer]:
    cfg = layer.config
    _channels_last(layer)
    padding = str(cfg.get("padding", "valid")).lower()
    if padding not in ("valid", "same"):
        raise _unsupported(layer, "padding", padding, "nnspec pads 'valid' or 'same'")
    rank = 1 if layer.class_name.endswith("1D") else 2
    window = _single if rank == 1 else _pair
    size = window(layer, "pool_size", 2)
    params: dict[str, Any] = {"size": size}
    strides = window(layer, "strides") if cfg.get("strides") is not None else size
    if strides != size:
        params["strides"] = strides
    if padding != "valid":
        params["padding"] = padding
    op = f"{'max' if layer.class_name.startswith('Max') else 'avg'}_pool{rank}d"
    return [SpecLayer(op, params, layer.name, layer)]


@maps("Conv1D")
def _conv1d(layer: KerasLayer) -> list[SpecLayer]:
    cfg = layer.config
    _channels_last(layer)
    _require_default(layer, "groups", 1, "nnspec's conv1d has no grouped convolution")
    padding = str(cfg.get("padding", "valid")).lower()
    if padding not in ("valid", "same", "causal"):
        raise _unsupported(layer, "padding", padding, "nnspec's conv1d pads 'valid', 'same' or 'causal'")
    params: dict[str, Any] = {"filters": _positive(layer, "filters"), "kernel": _single(layer, "kernel_size")}
    if _single(layer, "strides", 1) != 1:
        params["strides"] = _single(layer, "strides")
    if padding != "valid":
        params["padding"] = padding
    if _single(layer, "dilation_rate", 1) != 1:
        params["dilation"] = _single(layer, "dilation_rate")
    notes = _weights_options(layer, params)
    return _with_activation(layer, "conv1d", params, notes)


@maps("Flatten")
def _flatten(layer: KerasLayer) -> list[SpecLayer]:
    _channels_last(layer)
    return [SpecLayer("flatten", {}, layer.name, layer)]


@maps("Reshape")
def _reshape(layer: KerasLayer) -> list[SpecLayer]:
    shape = layer.config["target_shape"]
    if not isinstance(shape, list) or not shape or not all(_is_dim(d) or d == -1 for d in shape):
        raise _unsupported(
            layer, "target_shape", shape, f"expected a list of positive ints of at most {MAX_DIM:,} (or -1)"
        )
    return [SpecLayer("reshape", {"shape": list(shape)}, layer.name, layer)]


def _seed_notes(layer: KerasLayer) -> list[str]:
    if layer.config.get("seed") is None:
        return []
    return [f"{layer.label}: its seed is not kept; nnspec's dropout masks come from train.seed"]


def _noise_shape(layer: KerasLayer, key: str, batched: bool) -> list[int | None] | None:
    """Keras's ``noise_shape`` as nnspec's (the batch axis dropped: it must be None, one mask per example)."""
    value = layer.config.get(key)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value or not all(v is None or _is_dim(v) for v in value):
        raise _unsupported(layer, key, value, "expected a list of positive ints or None, one per axis")
    if batched:
        if value[0] is not None:
            raise _unsupported(layer, key, value, "nnspec draws one mask per example: the batch entry must be None")
        value = value[1:]
    return list(value)


@maps("Dropout")
def _dropout(layer: KerasLayer) -> list[SpecLayer]:
    params: dict[str, Any] = {"rate": _number(layer, "rate")}
    noise = _noise_shape(layer, "noise_shape", batched=True)
    if noise is not None:
        params["noise_shape"] = noise
    return [SpecLayer("dropout", params, layer.name, layer, notes=_seed_notes(layer))]


@maps("SpatialDropout2D")
def _spatial_dropout2d(layer: KerasLayer) -> list[SpecLayer]:
    _channels_last(layer)
    rate = _number(layer, "rate")
    return [SpecLayer("spatial_dropout2d", {"rate": rate}, layer.name, layer, notes=_seed_notes(layer))]


@maps("CounterDropout")
def _counter_dropout(layer: KerasLayer) -> list[SpecLayer]:
    """nnspec's own training dropout (in a model saved from the keras backend's ``to_keras()``)."""
    params: dict[str, Any] = {"rate": _number(layer, "rate")}
    mask = _noise_shape(layer, "mask_shape", batched=False)
    if mask is not None and any(m == 1 for m in mask):
        params["noise_shape"] = [1 if m == 1 else None for m in mask]
    return [SpecLayer("dropout", params, layer.name, layer)]


def _sides(layer: KerasLayer, key: str) -> Any:
    """ZeroPadding2D's ``padding`` / Cropping2D's ``cropping`` as ``[[top, bottom], [left, right]]``."""
    value = layer.config.get(key, 1 if key == "padding" else 0)
    ok = lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_DIM  # noqa: E731
    if ok(value):
        return [[value, value], [value, value]]
    if isinstance(value, (list, tuple)) and len(value) == 2:
        pairs = [list(v) if isinstance(v, (list, tuple)) else [v, v] for v in value]
        if all(len(p) == 2 and all(ok(v) for v in p) for p in pairs):
            return pairs
    raise _unsupported(layer, key, value, "expected an int, two ints or two pairs of ints >= 0")


@maps("ZeroPadding2D")
def _zero_padding2d(layer: KerasLayer) -> list[SpecLayer]:
    _channels_last(layer)
    return [SpecLayer("zero_pad2d", {"padding": _sides(layer, "padding")}, layer.name, layer)]


@maps("Cropping2D")
def _cropping2d(layer: KerasLayer) -> list[SpecLayer]:
    _channels_last(layer)
    return [SpecLayer("crop2d", {"cropping": _sides(layer, "cropping")}, layer.name, layer)]


@maps("UpSampling2D", "Upsample2D")
def _upsampling2d(layer: KerasLayer) -> list[SpecLayer]:
    """Keras's ``UpSampling2D`` (and nnspec's own float64 form of it, from the keras backend's ``to_keras()``)."""
    _channels_last(layer)
    interpolation = layer.config.get("interpolation", "nearest")
    if interpolation not in ("nearest", "bilinear"):
        raise _unsupported(layer, "interpolation", interpolation, "nnspec upsamples nearest or bilinear")
    params = {"size": _pair(layer, "size", 2), "interpolation": interpolation}
    return [SpecLayer("upsample2d", params, layer.name, layer)]


@maps("Activation")
def _activation_layer(layer: KerasLayer) -> list[SpecLayer]:
    name = _activation(layer, layer.config.get("activation"))
    if name == "softmax":
        return [SpecLayer("softmax", {}, layer.name, layer)]
    return [SpecLayer("activation", {"activation": name}, layer.name, layer)]


def _parametrised(layer: KerasLayer, name: str, args: dict[str, float | None]) -> list[SpecLayer]:
    """An ``activation`` layer of ``name`` with the arguments that differ from nnspec's (Keras's) defaults."""
    defaults = ACTIVATION_ARGS[name]
    given = {k: v for k, v in args.items() if v is not None and v != defaults[k].default}
    value: Any = {name: given} if given else name
    return [SpecLayer("activation", {"activation": value}, layer.name, layer)]


@maps("ReLU")
def _relu(layer: KerasLayer) -> list[SpecLayer]:
    max_value = layer.config.get("max_value")
    if max_value is not None:
        max_value = _number(layer, "max_value")
        if max_value < 0:
            raise _unsupported(layer, "max_value", max_value, "it must be >= 0")
    slope = _number(layer, "negative_slope", 0.0)
    if slope < 0:
        raise _unsupported(layer, "negative_slope", slope, "it must be >= 0")
    args = {"max_value": max_value, "negative_slope": slope, "threshold": _number(layer, "threshold", 0.0)}
    return _parametrised(layer, "relu", args)


@maps("LeakyReLU")
def _leaky_relu(layer: KerasLayer) -> list[SpecLayer]:
    key = "negative_slope" if "negative_slope" in layer.config else "alpha"
    slope = _number(layer, key, 0.3)
    if slope < 0:
        raise _unsupported(layer, key, slope, "it must be >= 0")
    return _parametrised(layer, "leaky_relu", {"negative_slope": slope})


@maps("ELU")
def _elu(layer: KerasLayer) -> list[SpecLayer]:
    return _parametrised(layer, "elu", {"alpha": _number(layer, "alpha", 1.0)})


@maps("Softmax")
def _softmax(layer: KerasLayer) -> list[SpecLayer]:
    axis = layer.config.get("axis", -1)
    if axis not in (-1, [-1]):
        raise _unsupported(layer, "axis", axis, "nnspec's softmax is over the last axis")
    return [SpecLayer("softmax", {}, layer.name, layer)]


@maps("Add")
def _add(layer: KerasLayer) -> list[SpecLayer]:
    return [SpecLayer("add", {}, layer.name, layer)]


@maps("Concatenate")
def _concatenate(layer: KerasLayer) -> list[SpecLayer]:
    axis = layer.config.get("axis", -1)
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise _unsupported(layer, "axis", axis, "nnspec concatenates along one axis given as an int")
    return [SpecLayer("concat", {}, layer.name, layer, keras_axis=axis)]


def _one_axis(layer: KerasLayer) -> int:
    axis = layer.config.get("axis", -1)
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise _unsupported(
            layer, "axis", layer.config.get("axis"), "nnspec normalises over the last axis only (axis=-1)"
        )
    return axis


def _norm_options(
    layer: KerasLayer, defaults: dict[str, Any], initializers: dict[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """Spec parameters (those that differ from nnspec's defaults) and notes of a normalisation layer."""
    cfg = layer.config
    _no_extras(layer, ("gamma_regularizer", "beta_regularizer", "gamma_constraint", "beta_constraint"))
    params: dict[str, Any] = {}
    for key in ("momentum", "epsilon"):
        if key in defaults and cfg.get(key) is not None:
            value = _number(layer, key)
            if value != defaults[key]:
                params[key] = value
    for key in ("center", "scale"):
        if not cfg.get(key, True):
            params[key] = False
    notes = []
    for key, default in initializers.items():
        init = cfg.get(key)
        name = init.get("class_name") if isinstance(init, dict) else init
        if name is not None and _INITIALIZERS.get(str(name), str(name)) != default:
            notes.append(
                f"{layer.label}: {key} {name} has no nnspec equivalent; the spec uses {default} "
                "(imported weights are unaffected)"
            )
    return params, notes


def _affine_names(params: dict[str, Any]) -> tuple[str, ...]:
    return tuple(name for name, key in (("gamma", "scale"), ("beta", "center")) if params.get(key, True))


@maps("BatchNormalization")
def _batch_norm(layer: KerasLayer) -> list[SpecLayer]:
    from ..compiler.shapes import DEFAULTS

    if layer.config.get("renorm"):
        raise _unsupported(layer, "renorm", True, "nnspec's batch_norm has no batch renormalisation")
    axis = _one_axis(layer)
    inits = {
        "gamma_initializer": "ones",
        "beta_initializer": "zeros",
        "moving_mean_initializer": "zeros",
        "moving_variance_initializer": "ones",
    }
    params, notes = _norm_options(layer, DEFAULTS["batch_norm"], inits)
    names = (*_affine_names(params), "moving_mean", "moving_variance")
    return [SpecLayer("batch_norm", params, layer.name, layer, weight_names=names, notes=notes, keras_axis=axis)]


@maps("LayerNormalization")
def _layer_norm(layer: KerasLayer) -> list[SpecLayer]:
    from ..compiler.shapes import DEFAULTS

    if layer.config.get("rms_scaling"):
        raise _unsupported(
            layer, "rms_scaling", True, "nnspec's layer_norm centres and scales by the standard deviation"
        )
    axis = layer.config.get("axis", -1)
    if isinstance(axis, list) and len(axis) != 1:
        raise _unsupported(layer, "axis", axis, "nnspec's layer_norm normalises over the last axis only (axis=-1)")
    params, notes = _norm_options(
        layer, DEFAULTS["layer_norm"], {"gamma_initializer": "ones", "beta_initializer": "zeros"}
    )
    return [
        SpecLayer(
            "layer_norm",
            params,
            layer.name,
            layer,
            weight_names=_affine_names(params),
            notes=notes,
            keras_axis=_one_axis(layer),
        )
    ]


_GLOBAL_POOLS = {
    "GlobalAveragePooling1D": "global_avg_pool1d",
    "GlobalMaxPooling1D": "global_max_pool1d",
    "GlobalAveragePooling2D": "global_avg_pool2d",
    "GlobalMaxPooling2D": "global_max_pool2d",
}


@maps(*_GLOBAL_POOLS)
def _global_pool(layer: KerasLayer) -> list[SpecLayer]:
    _channels_last(layer)
    params = {"keepdims": True} if layer.config.get("keepdims") else {}
    return [SpecLayer(_GLOBAL_POOLS[layer.class_name], params, layer.name, layer)]


# ---- element-wise merges, rescaling, layer scale (language 1.3) ------------------------------------------------

_MERGES = {
    "Multiply": "multiply",
    "Subtract": "subtract",
    "Average": "average",
    "Maximum": "maximum",
    "Minimum": "minimum",
}


@maps(*_MERGES)
def _elementwise_merge(layer: KerasLayer) -> list[SpecLayer]:
    return [SpecLayer(_MERGES[layer.class_name], {}, layer.name, layer)]


@maps("FirstExtreme")
def _first_extreme(layer: KerasLayer) -> list[SpecLayer]:
    """nnspec's own training maximum/minimum (in a model saved from the keras backend's ``to_keras()``)."""
    from ..semantics.merges import EXTREMES

    op = layer.config.get("op")
    if op not in EXTREMES:
        raise _unsupported(layer, "op", op, "expected maximum or minimum")
    return [SpecLayer(str(op), {}, layer.name, layer)]


def _numbers(layer: KerasLayer, key: str, default: float) -> Any:
    """A number or a flat list of numbers (one per channel) at ``key``, as the spec writes it."""
    value = layer.config.get(key, default)
    if isinstance(value, list):
        if not value or any(isinstance(v, list) for v in value):
            raise _unsupported(layer, key, value, "nnspec takes a number or one number per channel")
        return [_number(layer, key, within={key: v}, where=layer.at(key)) for v in value]
    return _number(layer, key, default)


@maps("Rescaling", "ExactRescaling")
def _rescaling(layer: KerasLayer) -> list[SpecLayer]:
    params: dict[str, Any] = {}
    for key, default in (("scale", 1.0), ("offset", 0.0)):
        value = _numbers(layer, key, default)
        if value != default:
            params[key] = value
    return [SpecLayer("rescaling", params, layer.name, layer)]


@maps("LayerScale")
def _layer_scale(layer: KerasLayer) -> list[SpecLayer]:
    """ConvNeXt's ``LayerScale(init_values, projection_dim)``: ``x * gamma`` (the channels come from the input)."""
    params = {"init_values": _number(layer, "init_values")}
    return [SpecLayer("layer_scale", params, layer.name, layer, weight_names=("gamma",))]
