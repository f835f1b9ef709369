"""The vocabulary of the spec language: every section's keys, how each value is read, what is required.

One table per section (:data:`TOP_FIELDS`, :data:`INPUT_FIELDS`, :data:`LAYER_FIELDS`,
:data:`TRAIN_FIELDS`, :data:`DATA_FIELDS`, :data:`OPTIMIZER_FIELDS`, :data:`SCHEDULE_FIELDS`), and
:func:`read_section`, which reads a mapping against a table and reports unknown keys (with a
did-you-mean), missing required keys and invalid values. Names are resolved only through these tables:
nothing in a spec can name code to import.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from .ir import DATASETS, DIVERGENCE_ACTIONS, LOSSES, MONITORS, NORMALIZATIONS, PRECISIONS
from .loader import YMap, YNode, YScalar
from .opset import INITIALIZER_ARGS, OPS, PADDINGS, POOL_DEFAULT_SIZE, read_initializer  # noqa: F401 (re-exported)
from .report import Report
from .training_defaults import SCHEDULE_DEFAULTS, SCHEDULE_REQUIRED
from .values import (
    Field,
    Invalid,
    choice_reader,
    describe,
    did_you_mean,
    read_bool,
    read_float,
    read_identifier,
    read_int,
    read_list,
    read_shape,
    read_str,
    shorten,
    suggest,
    words,
)

#: The language versions this nnspec reads, as written after ``nnspec:``, oldest first; each reads every spec of
#: the versions before it. What each added is in the op table (``OpDef.since``, ``Field.since``).
LANGUAGE_VERSIONS: tuple[str, ...] = ("1", "1.1", "1.2", "1.3")
DTYPES: tuple[str, ...] = ("float32", "float64")
METRICS: tuple[str, ...] = ("accuracy",)

#: Keys of each layer type, from the opset (``name`` and ``inputs`` are accepted by every layer and read
#: separately).
LAYER_FIELDS: dict[str, dict[str, Field]] = {name: dict(op.fields) for name, op in OPS.items()}
#: Layers whose single main key may be written directly: ``- dropout: 0.5``, ``- activation: relu``.
LAYER_SHORTHAND: dict[str, str] = {name: op.shorthand for name, op in OPS.items() if op.shorthand}


class Failed:
    """Marks a key whose value was present but invalid (already reported)."""

    def __repr__(self) -> str:
        return "FAILED"


FAILED = Failed()


def _positive_int(node: YNode) -> int:
    return read_int(node, 1)


def _devices(node: YNode) -> int | str:
    """``train.devices``: a positive count or ``all``."""
    if isinstance(node, YScalar) and node.kind == "str":
        return choice_reader(("all",), "device count", "E0402")(node)
    try:
        return read_int(node, 1)
    except Invalid as exc:
        exc.hint = exc.hint or "write a number of devices, such as 2, or all"
        raise


def _bool(node: YNode) -> bool:
    return read_bool(node)


def _unit_open(doc: str) -> Field:
    return Field(lambda n: read_float(n, 0.0, 1.0, max_open=True), doc=doc)


_LR = Field(
    lambda n: read_float(n, 0.0, min_open=True), doc="The base learning rate (> 0); a schedule scales it over time."
)
_MOMENTUM = _unit_open("Momentum, in [0, 1).")
_EPSILON = Field(lambda n: read_float(n, 0.0, min_open=True), doc="Added to the denominator for stability (> 0).")

#: Hyper-parameters of each optimiser (defaults: ``nnspec.compiler.training_defaults.OPTIMIZER_DEFAULTS``).
OPTIMIZER_FIELDS: dict[str, dict[str, Field]] = {
    "sgd": {"learning_rate": _LR, "momentum": _MOMENTUM, "nesterov": Field(_bool, doc="Use Nesterov momentum.")},
    "adam": {
        "learning_rate": _LR,
        "beta_1": _unit_open("Decay of the first-moment estimate, in [0, 1)."),
        "beta_2": _unit_open("Decay of the second-moment estimate, in [0, 1)."),
        "epsilon": _EPSILON,
    },
    "rmsprop": {
        "learning_rate": _LR,
        "rho": _unit_open("Decay of the moving average of squared gradients, in [0, 1)."),
        "momentum": _MOMENTUM,
        "epsilon": _EPSILON,
    },
}

_POSITIVE = lambda n: read_float(n, 0.0, min_open=True)  # noqa: E731
#: Each schedule's keys: how the value is read and what it means.
_SCHEDULE_KEYS: dict[str, dict[str, tuple[Callable[[YNode], Any], str]]] = {
    "constant": {},
    "step": {
        "every": (_positive_int, "Optimiser steps (batches, not epochs) between two drops of the rate."),
        "factor": (_POSITIVE, "What the rate is multiplied by at each drop."),
    },
    "exponential": {
        "decay_steps": (_positive_int, "Optimiser steps (batches, not epochs) over which the rate decays."),
        "decay_rate": (_POSITIVE, "The rate is multiplied by decay_rate every decay_steps steps."),
        "staircase": (_bool, "Floor the exponent: drop in steps rather than smoothly."),
    },
    "cosine": {
        "decay_steps": (_positive_int, "Optimiser steps (batches, not epochs) over which the rate decays."),
        "alpha": (lambda n: read_float(n, 0.0, 1.0), "The fraction of the rate left at the end, in [0, 1]."),
    },
}
#: Parameters of each learning-rate schedule (defaults and required keys: ``nnspec.compiler.training_defaults``).
SCHEDULE_FIELDS: dict[str, dict[str, Field]] = {
    name: {
        key: Field(reader, required=key in SCHEDULE_REQUIRED[name], doc=doc)
        for key, (reader, doc) in _SCHEDULE_KEYS[name].items()
    }
    for name in SCHEDULE_DEFAULTS
}


def _metrics(node: YNode) -> tuple[str, ...]:
    return tuple(
        choice_reader(METRICS, "metric", "E0408")(item)
        for item in read_list(node, "a list of metric names, e.g. [accuracy]")
    )


def _seed(node: YNode) -> int:
    return read_int(node, 0)


#: ``train`` keys; ``optimizer`` and ``schedule`` are read by :mod:`nnspec.compiler.resolve`.
TRAIN_FIELDS: dict[str, Field] = {
    "loss": Field(
        choice_reader(LOSSES, "loss", "E0403"),
        default="cross_entropy",
        doc="cross_entropy (integer labels; computed from the logits when the model ends in softmax) or mse (against "
        "one-hot labels).",
    ),
    "optimizer": Field(
        lambda n: n,
        doc="A name (adam) or {name: {params}} ({sgd: {learning_rate: 0.1, momentum: 0.9}}); Keras 3's definitions and "
        "defaults.",
    ),
    "schedule": Field(
        lambda n: n,
        doc="How the learning rate changes with the optimiser step: a name or {name: {params}} ({cosine: {decay_steps: "
        "2000}}).",
    ),
    "weight_decay": Field(
        lambda n: read_float(n, 0.0),
        default=0.0,
        doc="Decoupled weight decay: each update first does p -= p * weight_decay * lr, on every kernel and bias.",
    ),
    "batch_size": Field(_positive_int, default=32, doc="Examples per optimiser step."),
    "epochs": Field(_positive_int, default=10, doc="Passes over the training split."),
    "seed": Field(
        _seed, default=0, doc="Seeds the initial weights, the validation split, the data order and the dropout masks."
    ),
    "metrics": Field(_metrics, default=("accuracy",), doc="Metrics reported per epoch."),
    "on_divergence": Field(
        choice_reader(DIVERGENCE_ACTIONS, "divergence action", "E0402"),
        default="stop",
        doc="At the first NaN or infinite loss: stop (exit code 3, the weights from before that step kept) or "
        "continue.",
    ),
    "checkpoint": Field(lambda n: n, doc="A checkpoint every `every` epochs (0: none), the `keep` most recent kept."),
    "early_stopping": Field(lambda n: n, doc="Stop when a metric stops improving, as Keras's EarlyStopping."),
    "precision": Field(
        choice_reader(PRECISIONS, "precision", "E0402"),
        default="float32",
        doc="float32 (parity), tf32 (float32 with TF32 matrix products on NVIDIA GPUs), mixed_bfloat16 / mixed_float16 "
        "(float32 weights, low-precision compute; float16 with loss scaling) or float64.",
    ),
    "devices": Field(
        _devices, default=1, doc="Local devices each batch is split over (data parallel): a number or all."
    ),
}

#: ``train.checkpoint`` keys.
CHECKPOINT_FIELDS: dict[str, Field] = {
    "every": Field(lambda n: read_int(n, 0), default=1, doc="Write a checkpoint every this many epochs (0: none)."),
    "keep": Field(_positive_int, default=2, doc="How many of the most recent checkpoints to keep."),
}

#: ``train.early_stopping`` keys (Keras's ``EarlyStopping`` names, ``restore_best`` for ``restore_best_weights``).
EARLY_STOPPING_FIELDS: dict[str, Field] = {
    "monitor": Field(
        choice_reader(MONITORS, "monitored metric", "E0402"), default="val_loss", doc="The metrics.csv column to watch."
    ),
    "mode": Field(
        choice_reader(("auto", "min", "max"), "mode", "E0402"),
        default="auto",
        doc="auto minimises losses and maximises accuracies; min or max say which way is better.",
    ),
    "patience": Field(lambda n: read_int(n, 0), default=0, doc="Epochs without improvement before training stops."),
    "min_delta": Field(
        lambda n: read_float(n, 0.0), default=0.0, doc="The least change that counts as an improvement."
    ),
    "restore_best": Field(_bool, default=False, doc="End the run with the weights of the best epoch."),
}

_SPLIT = lambda n: read_float(n, 0.0, 1.0, max_open=True)  # noqa: E731

#: ``data`` keys; ``x``/``y`` apply to ``npz`` only and ``label`` to ``csv`` only.
DATA_FIELDS: dict[str, Field] = {
    "dataset": Field(
        choice_reader(DATASETS, "dataset", "E0503"),
        required=True,
        doc="digits (scikit-learn's 8x8 digits, no download), mnist, fashion_mnist, npz (a NumPy .npz file) or csv (a "
        "CSV file with a header row).",
    ),
    "path": Field(
        lambda n: read_str(n, "a file or directory path"),
        doc="A file or folder; required for npz and csv. A relative path is taken relative to the spec's folder when "
        "it "
        "exists there.",
    ),
    "x": Field(
        lambda n: read_str(n, "an array name in the .npz file"),
        default="x",
        doc="npz only: the name of the inputs array.",
    ),
    "y": Field(
        lambda n: read_str(n, "an array name in the .npz file"),
        default="y",
        doc="npz only: the name of the labels array.",
    ),
    "label": Field(
        lambda n: read_str(n, "a column name"),
        default="label",
        doc="csv only: the name of the label column; the other columns are the inputs.",
    ),
    "validation_split": Field(
        _SPLIT, default=0.1, doc="The fraction of the training examples held out for validation."
    ),
    "test_split": Field(
        _SPLIT,
        default=0.2,
        doc="The fraction of all examples held out for testing, for data without an official test split (digits, npz, "
        "csv).",
    ),
    "normalize": Field(
        choice_reader(NORMALIZATIONS, "normalization", "E0502"),
        default="scale",
        doc="scale: divide by the data's maximum (min-max for npz and csv); standardize: per-feature mean and standard "
        "deviation of the training split; none: as is.",
    ),
}
#: Dataset-specific ``data`` keys (they go to ``DataConfig.options``).
DATASET_OPTIONS: dict[str, tuple[str, ...]] = {"npz": ("x", "y"), "csv": ("label",)}

INPUT_FIELDS: dict[str, Field] = {
    "shape": Field(
        lambda n: read_shape(n, allow_infer=False),
        required=True,
        doc="One example's shape, without the batch axis; images are [height, width, channels] (channels last): [8, 8, "
        "1] for digits, [28, 28, 1] for MNIST.",
    ),
    "dtype": Field(
        choice_reader(DTYPES, "dtype"),
        default="float32",
        doc="The precision the model is built and trained in (float64 for tight parity checks).",
    ),
}


def _model_name(node: YNode) -> str:
    try:
        return read_identifier(node, model=True)
    except Invalid as exc:
        exc.code = "E0604"
        raise


def read_version(node: YNode) -> str:
    """The language version as written (``1``, ``1.2``); whether this nnspec reads it is checked later."""
    if isinstance(node, YScalar) and node.plain and node.kind in ("int", "float"):
        return node.text
    hint = (
        "remove the quotes"
        if isinstance(node, YScalar) and not node.plain
        else f"write nnspec: {LANGUAGE_VERSIONS[-1]}"
    )
    raise Invalid(
        f"must be a version number such as {words(LANGUAGE_VERSIONS, 'or')}; got {describe(node)}", hint, node
    )


#: Top-level keys; the sections are read by :mod:`nnspec.compiler.resolve`.
TOP_FIELDS: dict[str, Field] = {
    "nnspec": Field(read_version, required=True),
    "name": Field(
        _model_name,
        doc="The model's name: letters, digits, _ and -, starting with a letter or _ (at most 64 characters); it "
        "becomes "
        "a directory name. Default: the file name, cleaned.",
    ),
    "description": Field(lambda n: read_str(n), doc="Free text."),
    "extends": Field(
        lambda n: read_str(n, "a path to a base spec"),
        doc="A base spec this one builds on, relative to this file: input, train and data merge key by key; every "
        "other "
        "value (layers included) is replaced as a whole.",
    ),
    "input": Field(lambda n: n, required=True, doc="One example's shape and dtype."),
    "layers": Field(
        lambda n: n,
        required=True,
        doc="The layers, applied in order: a type name (- flatten), {type: {params}} (- dense: {units: 10}), or a type "
        "with its main parameter (- dropout: 0.5).",
    ),
    "output": Field(
        lambda n: read_str(n, "the name of a layer"),
        since="1.1",
        doc="The layer whose output is the model's output (default: the last layer).",
    ),
    "train": Field(
        lambda n: n, doc="Loss, optimiser, schedule, batch size, epochs, seed, metrics, checkpoints, early stopping."
    ),
    "data": Field(lambda n: n, doc="The data set and how it is split and normalised (default: {dataset: digits})."),
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
            hint = MISPLACED.get((section, key)) or (
                f"{owner_name} takes: {', '.join(known)}" if known else f"{owner_name} takes no keys"
            )
            best = suggest(key, known)
            if best:
                suggested.add(best)
            report.add(unknown_code, f"{where}: unknown key {shorten(key)!r}{did_you_mean(key, known)}", key_node, hint)
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
