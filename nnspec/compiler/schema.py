"""The vocabulary of spec language v1: every section's keys, how each value is read, what is required.

One table per section (:data:`TOP_FIELDS`, :data:`INPUT_FIELDS`, :data:`LAYER_FIELDS`,
:data:`TRAIN_FIELDS`, :data:`DATA_FIELDS`, :data:`OPTIMIZER_FIELDS`, :data:`SCHEDULE_FIELDS`), and
:func:`read_section`, which reads a mapping against a table and reports unknown keys (with a
did-you-mean), missing required keys and invalid values. Names are resolved only through these tables:
nothing in a spec can name code to import.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..runtime.schedules import SCHEDULE_DEFAULTS, SCHEDULE_REQUIRED
from .ir import ACTIVATIONS, DATASETS, INITIALIZERS, LOSSES, NORMALIZATIONS, Initializer
from .loader import YMap, YNode, YScalar
from .report import Report
from .values import (
    Field,
    Invalid,
    describe,
    did_you_mean,
    read_bool,
    read_choice,
    read_float,
    read_identifier,
    read_int,
    read_list,
    read_pair,
    read_shape,
    read_str,
    single_key,
    suggest,
)

LANGUAGE_VERSIONS: tuple[int, ...] = (1,)
DTYPES: tuple[str, ...] = ("float32", "float64")
PADDINGS: tuple[str, ...] = ("valid", "same")
METRICS: tuple[str, ...] = ("accuracy",)

#: Arguments each initialiser takes, with defaults (filled into ``Initializer.args``).
INITIALIZER_ARGS: dict[str, dict[str, float]] = {
    "normal": {"mean": 0.0, "stddev": 0.05},
    "uniform": {"minval": -0.05, "maxval": 0.05},
}

#: Optional attributes whose default is not in ``shapes.DEFAULTS``.
POOL_DEFAULT_SIZE = (2, 2)


class Failed:
    """Marks a key whose value was present but invalid (already reported)."""

    def __repr__(self) -> str:
        return "FAILED"


FAILED = Failed()


def _choice(options: tuple[str, ...], what: str, code: str | None = None) -> Callable[[YNode], str]:
    def read(node: YNode) -> str:
        try:
            return read_choice(node, options, what)
        except Invalid as exc:
            exc.code = exc.code or code
            raise

    return read


def _positive_int(node: YNode) -> int:
    return read_int(node, 1)


def _bool(node: YNode) -> bool:
    return read_bool(node)


def read_initializer(node: YNode) -> Initializer:
    """An initialiser: a name (``he_normal``) or ``{normal: {stddev: 0.05, mean: 0}}``; arguments get defaults."""
    if isinstance(node, YMap):
        entry = single_key(node)
        if entry is None:
            raise Invalid(f"must be an initialiser name or a one-key mapping {{name: {{args}}}}; got {describe(node)}", "write e.g. he_normal or {normal: {stddev: 0.05}}", node, "E0207")
        key, args_node = entry
        name = _choice(INITIALIZERS, "initializer", "E0207")(key)
        allowed = INITIALIZER_ARGS.get(name, {})
        args = dict(allowed)
        if args_node is not None and not (isinstance(args_node, YScalar) and args_node.kind == "null"):
            if not isinstance(args_node, YMap):
                raise Invalid(f"arguments of {name} must be a mapping; got {describe(args_node)}", f"write {{{name}: {{{', '.join(f'{k}: {v:g}' for k, v in allowed.items())}}}}}" if allowed else f"write just {name}", args_node, "E0207")
            for arg, (arg_key, value) in args_node.items.items():
                if arg not in allowed:
                    takes = f"it takes {', '.join(allowed)}" if allowed else "it takes no arguments"
                    raise Invalid(f"unknown argument {arg!r} of initializer {name}{did_you_mean(arg, allowed)}", takes, arg_key, "E0207")
                try:
                    args[arg] = read_float(value, 0.0, min_open=True) if arg == "stddev" else read_float(value)
                except Invalid as exc:
                    raise Invalid(f"argument {arg} of initializer {name} {exc.message}", exc.hint, value, "E0207") from None
        if name == "uniform" and args["minval"] >= args["maxval"]:
            raise Invalid(f"initializer uniform needs minval < maxval; got minval {args['minval']:g}, maxval {args['maxval']:g}", None, args_node, "E0207")
        return Initializer(name, tuple(sorted(args.items())))
    name = _choice(INITIALIZERS, "initializer", "E0207")(node)
    return Initializer(name, tuple(sorted(INITIALIZER_ARGS.get(name, {}).items())))


_ACTIVATION = _choice(ACTIVATIONS, "activation", "E0206")
_PADDING = _choice(PADDINGS, "padding")


def _pair(key: str, example: int) -> Callable[[YNode], tuple[int, int]]:
    return lambda node: read_pair(node, key, example)


def _rate(node: YNode) -> float:
    return read_float(node, 0.0, 1.0, max_open=True)


def _reshape_target(node: YNode) -> tuple[int, ...]:
    return read_shape(node, allow_infer=True)


_DENSE_LIKE = {
    "activation": Field(_ACTIVATION),
    "use_bias": Field(_bool),
    "kernel_init": Field(read_initializer),
    "bias_init": Field(read_initializer),
}
_POOL = {"size": Field(_pair("size", 2), default=POOL_DEFAULT_SIZE), "strides": Field(_pair("strides", 2)), "padding": Field(_PADDING)}

#: Keys of each layer type (``name`` is accepted by every layer and read separately).
LAYER_FIELDS: dict[str, dict[str, Field]] = {
    "dense": {"units": Field(_positive_int, required=True), **_DENSE_LIKE},
    "conv2d": {
        "filters": Field(_positive_int, required=True),
        "kernel": Field(_pair("kernel", 3), required=True),
        "strides": Field(_pair("strides", 2)),
        "padding": Field(_PADDING),
        **_DENSE_LIKE,
    },
    "max_pool2d": dict(_POOL),
    "avg_pool2d": dict(_POOL),
    "flatten": {},
    "reshape": {"shape": Field(_reshape_target, required=True)},
    "dropout": {"rate": Field(_rate, required=True)},
    "activation": {"activation": Field(_ACTIVATION, required=True)},
    "softmax": {},
}

#: Layers whose single main key may be written directly: ``- dropout: 0.5``, ``- activation: relu``.
LAYER_SHORTHAND: dict[str, str] = {"dropout": "rate", "activation": "activation", "reshape": "shape"}

_LR = Field(lambda n: read_float(n, 0.0, min_open=True))
_UNIT_OPEN = Field(lambda n: read_float(n, 0.0, 1.0, max_open=True))
_EPSILON = Field(lambda n: read_float(n, 0.0, min_open=True))

#: Hyper-parameters of each optimiser (defaults: ``nnspec.runtime.optimizers.OPTIMIZER_DEFAULTS``).
OPTIMIZER_FIELDS: dict[str, dict[str, Field]] = {
    "sgd": {"learning_rate": _LR, "momentum": _UNIT_OPEN, "nesterov": Field(_bool)},
    "adam": {"learning_rate": _LR, "beta_1": _UNIT_OPEN, "beta_2": _UNIT_OPEN, "epsilon": _EPSILON},
    "rmsprop": {"learning_rate": _LR, "rho": _UNIT_OPEN, "momentum": _UNIT_OPEN, "epsilon": _EPSILON},
}

#: Parameters of each learning-rate schedule (defaults and required keys: ``nnspec.runtime.schedules``).
SCHEDULE_FIELDS: dict[str, dict[str, Field]] = {
    name: {
        key: Field(reader, required=key in SCHEDULE_REQUIRED[name])
        for key, reader in {
            "constant": {},
            "step": {"every": _positive_int, "factor": lambda n: read_float(n, 0.0, min_open=True)},
            "exponential": {"decay_steps": _positive_int, "decay_rate": lambda n: read_float(n, 0.0, min_open=True), "staircase": _bool},
            "cosine": {"decay_steps": _positive_int, "alpha": lambda n: read_float(n, 0.0, 1.0)},
        }[name].items()
    }
    for name in SCHEDULE_DEFAULTS
}


def _metrics(node: YNode) -> tuple[str, ...]:
    return tuple(_choice(METRICS, "metric", "E0408")(item) for item in read_list(node, "a list of metric names, e.g. [accuracy]"))


def _seed(node: YNode) -> int:
    return read_int(node, 0)


#: ``train`` keys; ``optimizer`` and ``schedule`` are read by :mod:`nnspec.compiler.resolve`.
TRAIN_FIELDS: dict[str, Field] = {
    "loss": Field(_choice(LOSSES, "loss", "E0403"), default="cross_entropy"),
    "optimizer": Field(lambda n: n),
    "schedule": Field(lambda n: n),
    "weight_decay": Field(lambda n: read_float(n, 0.0), default=0.0),
    "batch_size": Field(_positive_int, default=32),
    "epochs": Field(_positive_int, default=10),
    "seed": Field(_seed, default=0),
    "metrics": Field(_metrics, default=("accuracy",)),
}

_SPLIT = lambda n: read_float(n, 0.0, 1.0, max_open=True)  # noqa: E731

#: ``data`` keys; ``x``/``y`` apply to ``npz`` only and ``label`` to ``csv`` only.
DATA_FIELDS: dict[str, Field] = {
    "dataset": Field(_choice(DATASETS, "dataset", "E0503"), required=True),
    "path": Field(lambda n: read_str(n, "a file or directory path")),
    "x": Field(lambda n: read_str(n, "an array name in the .npz file"), default="x"),
    "y": Field(lambda n: read_str(n, "an array name in the .npz file"), default="y"),
    "label": Field(lambda n: read_str(n, "a column name"), default="label"),
    "validation_split": Field(_SPLIT, default=0.1),
    "test_split": Field(_SPLIT, default=0.2),
    "normalize": Field(_choice(NORMALIZATIONS, "normalization", "E0502"), default="scale"),
}
#: Dataset-specific ``data`` keys (they go to ``DataConfig.options``).
DATASET_OPTIONS: dict[str, tuple[str, ...]] = {"npz": ("x", "y"), "csv": ("label",)}

INPUT_FIELDS: dict[str, Field] = {
    "shape": Field(lambda n: read_shape(n, allow_infer=False), required=True),
    "dtype": Field(_choice(DTYPES, "dtype"), default="float32"),
}

def _model_name(node: YNode) -> str:
    try:
        return read_identifier(node, model=True)
    except Invalid as exc:
        exc.code = "E0604"
        raise


#: Top-level keys; the sections are read by :mod:`nnspec.compiler.resolve`.
TOP_FIELDS: dict[str, Field] = {
    "nnspec": Field(lambda n: read_int(n, 0), required=True),
    "name": Field(_model_name),
    "description": Field(lambda n: read_str(n)),
    "extends": Field(lambda n: read_str(n, "a path to a base spec")),
    "input": Field(lambda n: n, required=True),
    "layers": Field(lambda n: n, required=True),
    "train": Field(lambda n: n),
    "data": Field(lambda n: n),
}

#: Hints for keys people write in the wrong section.
MISPLACED: dict[tuple[str, str], str] = {
    ("train", "learning_rate"): "the learning rate belongs to the optimizer: optimizer: {adam: {learning_rate: 0.001}}",
    ("train", "lr"): "the learning rate belongs to the optimizer: optimizer: {adam: {learning_rate: 0.001}}",
    ("top", "loss"): "loss belongs in the train section",
    ("top", "optimizer"): "optimizer belongs in the train section",
    ("top", "epochs"): "epochs belongs in the train section",
    ("top", "batch_size"): "batch_size belongs in the train section",
    ("top", "dataset"): "dataset belongs in the data section: data: {dataset: digits}",
    ("top", "shape"): "shape belongs in the input section: input: {shape: [28, 28, 1]}",
}


def read_section(
    node: YMap,
    fields: Mapping[str, Field],
    report: Report,
    *,
    where: str,
    sep: str,
    codes: tuple[str, str, str],
    section: str = "",
    owner: str | None = None,
    also: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Read ``node`` against ``fields``; returns the values read (an invalid one is :data:`FAILED`).

    ``codes`` are (unknown key, invalid value, missing key); ``owner`` names the section in hints,
    ``also`` lists keys read elsewhere (a layer's ``name``). Messages read ``<where>: unknown key ...``,
    ``<where><sep><key> must be ...`` and ``<where>: missing required key ...``.
    """
    unknown_code, invalid_code, missing_code = codes
    values: dict[str, Any] = {}
    suggested: set[str] = set()
    for key, (key_node, value_node) in node.items.items():
        field = fields.get(key)
        if field is None:
            owner_name = owner or where
            known = [*fields, *also]
            hint = MISPLACED.get((section, key)) or (f"{owner_name} takes: {', '.join(known)}" if known else f"{owner_name} takes no keys")
            best = suggest(key, known)
            if best:
                suggested.add(best)
            report.add(unknown_code, f"{where}: unknown key {key!r}{did_you_mean(key, known)}", key_node, hint)
            continue
        try:
            values[key] = field.read(value_node)
        except Invalid as exc:
            report.invalid(exc, invalid_code, f"{where}{sep}{key}", value_node)
            values[key] = FAILED
    for key, field in fields.items():
        if field.required and key not in values and key not in suggested:
            report.add(missing_code, f"{where}: missing required key {key!r}", node, _missing_hint(key))
    return values


_EXAMPLES = {
    "units": "units: 10",
    "filters": "filters: 32",
    "kernel": "kernel: 3",
    "rate": "rate: 0.5",
    "activation": "activation: relu",
    "shape": "shape: [28, 28, 1]",
    "dataset": "dataset: digits",
    "nnspec": "nnspec: 1 as the first line",
    "input": "input: {shape: [28, 28, 1]}",
    "layers": "layers: [flatten, {dense: {units: 10}}, softmax]",
    "every": "every: 1000 (optimiser steps)",
    "decay_steps": "decay_steps: 1000 (optimiser steps)",
}


def _missing_hint(key: str) -> str | None:
    example = _EXAMPLES.get(key)
    return f"add {example}" if example else None

