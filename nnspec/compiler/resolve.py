"""Validation and resolution of each section: positioned nodes in, canonical values out.

Each ``resolve_*`` function reads one section against :mod:`nnspec.compiler.schema`, records every
problem in a :class:`~nnspec.compiler.report.Report`, fills defaults, and returns what it could resolve
(None or a default where a part was invalid, so that one mistake does not cascade).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .ir import (
    DATASETS,
    INPUT,
    OPTIMIZERS,
    SCHEDULES,
    CheckpointConfig,
    DataConfig,
    EarlyStoppingConfig,
    OptimizerConfig,
    ScheduleConfig,
    Shape,
    TrainConfig,
)
from .loader import YMap, YNode, YScalar, YSeq
from .opset import COMMON_KEYS, LAYER_TYPES, OPS, OpDef
from .report import Report
from .schema import (
    CHECKPOINT_FIELDS,
    DATA_FIELDS,
    DATASET_OPTIONS,
    EARLY_STOPPING_FIELDS,
    FAILED,
    INPUT_FIELDS,
    OPTIMIZER_FIELDS,
    SCHEDULE_FIELDS,
    TRAIN_FIELDS,
    Field,
    read_section,
)
from .training_defaults import OPTIMIZER_DEFAULTS, SCHEDULE_DEFAULTS
from .values import Invalid, describe, did_you_mean, plural, read_identifier, read_str, shorten, single_key


@dataclass
class LayerDraft:
    """One layer entry after validation: ``attrs`` is None when the entry was invalid.

    ``inputs`` holds the names written under ``inputs:`` (None when the key is absent: the layer
    reads the one before it), with ``input_nodes`` their positions; ``inputs_invalid`` marks an
    entry whose inputs could not be read (already reported).
    """

    index: int
    op: str
    name: str
    attrs: dict[str, Any] | None
    node: YNode
    inputs: tuple[str, ...] | None = None
    inputs_node: YNode | None = None
    input_nodes: tuple[YNode, ...] = ()
    inputs_invalid: bool = False

    @property
    def label(self) -> str:
        """``layers[i] 'name' (op)``, the way messages name a layer."""
        return f"layers[{self.index}] {self.name!r} ({self.op})"


def _is_null(node: YNode | None) -> bool:
    return node is None or (isinstance(node, YScalar) and node.kind == "null")


def _layer_entry(index: int, item: YNode, report: Report) -> tuple[str, YScalar | None, YNode | None] | None:
    """Split a layer entry into (type text, type node, params node); None when it has no usable shape."""
    if isinstance(item, YScalar) and item.kind == "str":
        return item.text, item, None
    if isinstance(item, YMap):
        entry = single_key(item)
        if entry is not None:
            return entry[0].text, entry[0], entry[1]
        keys = list(item.items)
        hint = (
            "a layer is a one-key mapping {type: {params}}; indent the parameters under the type, e.g. "
            "`- dense: {units: 10}`"
        )
        typed = [k for k in keys if k in LAYER_TYPES]
        if len(typed) == 1 and len(keys) > 1:
            others = ", ".join(k for k in keys if k != typed[0])
            hint = f"move {others} inside {typed[0]}: `- {typed[0]}: {{{others}: ...}}`"
        report.add(
            "E0205",
            f"layers[{index}] must be a one-key mapping {{type: {{params}}}}; got keys {', '.join(keys) or 'none'}",
            item,
            hint,
        )
        return None
    report.add(
        "E0205",
        f"layers[{index}] must be a layer type or {{type: {{params}}}}; got {describe(item)}",
        item,
        "write e.g. `- flatten` or `- dense: {units: 10}`",
    )
    return None


def _explicit_name(index: int, op: str, params: YNode | None, report: Report) -> tuple[str, YNode] | None:
    if not isinstance(params, YMap) or "name" not in params.items:
        return None
    value = params.items["name"][1]
    try:
        name = read_identifier(value)
    except Invalid as exc:
        report.invalid(exc, "E0604", f"layers[{index}] ({op}): name", value)
        return None
    if name == INPUT:
        report.add(
            "E0604",
            f"layers[{index}] ({op}): name {INPUT!r} is reserved for the model's input",
            value,
            "choose another name",
        )
        return None
    return name, value


def _read_inputs(draft: LayerDraft, params: YNode | None, report: Report) -> None:
    """Read ``inputs:`` (one name, or a list of names) into ``draft``."""
    if not isinstance(params, YMap) or "inputs" not in params.items:
        return
    value = params.items["inputs"][1]
    draft.inputs_node = value
    items = value.items if isinstance(value, YSeq) else [value]
    try:
        names = tuple(read_str(item, "a layer name or a list of layer names") for item in items)
    except Invalid as exc:
        report.add(
            "E0203",
            f"{draft.label}: inputs must be a layer name or a list of layer names; got {describe(value)}",
            value,
            exc.hint or "write inputs: [conv2d_1, max_pool2d_1], or inputs: input for the model's input",
        )
        draft.inputs_invalid = True
        return
    draft.inputs = names
    draft.input_nodes = tuple(items)


def resolve_layers(node: YNode, report: Report) -> list[LayerDraft]:
    """Validate the ``layers`` list; returns one draft per entry (attrs None where invalid)."""
    if not isinstance(node, YSeq) or not node.items:
        report.add(
            "E0607",
            f"layers must be a non-empty list of layers; got {describe(node)}",
            node,
            "write e.g. layers: [flatten, {dense: {units: 10}}, softmax]",
        )
        return []
    entries = [_layer_entry(i, item, report) for i, item in enumerate(node.items)]
    explicit: dict[int, tuple[str, YNode]] = {}
    for i, entry in enumerate(entries):
        if entry is not None:
            found = _explicit_name(i, entry[0], entry[2], report)
            if found:
                explicit[i] = found
    names = _assign_names(entries, explicit, report)
    drafts: list[LayerDraft] = []
    for i, (item, entry) in enumerate(zip(node.items, entries)):
        if entry is None:
            drafts.append(LayerDraft(i, "?", names[i], None, item))
            continue
        op, type_node, params = entry
        draft = LayerDraft(i, op, names[i], None, type_node or item)
        _read_inputs(draft, params, report)
        if op not in OPS:
            report.add(
                "E0201",
                f"layers[{i}]: unknown layer type {shorten(op)!r}{did_you_mean(op, LAYER_TYPES)}",
                type_node,
                f"layer types: {', '.join(LAYER_TYPES)}",
            )
        else:
            draft.attrs = _layer_attrs(draft, params, report)
        drafts.append(draft)
    return drafts


def _assign_names(entries: list[Any], explicit: dict[int, tuple[str, YNode]], report: Report) -> list[str]:
    """Explicit names where given, else ``<type>_<n>`` counting every layer of that type from 1."""
    counts: dict[str, int] = {}
    names: list[str] = []
    for i, entry in enumerate(entries):
        op = entry[0] if entry is not None else "layer"
        counts[op] = counts.get(op, 0) + 1
        names.append(explicit[i][0] if i in explicit else f"{op}_{counts[op]}")
    owner: dict[str, int] = {}
    for i, name in enumerate(names):
        if name not in owner:
            owner[name] = i
            continue
        first = owner[name]
        if i in explicit:
            where = "is already the name of" if first in explicit else "is already the default name of"
            report.add(
                "E0605",
                f"layers[{i}]: name {name!r} {where} layers[{first}]",
                explicit[i][1],
                "give each layer a unique name",
            )
        else:
            report.add(
                "E0605",
                f"layers[{first}]: name {name!r} is also the default name of layers[{i}]",
                explicit[first][1],
                f"choose another name, or name layers[{i}] explicitly",
            )
    return names


def _is_shorthand_mapping(definition: OpDef, params: YMap) -> bool:
    """Whether ``params`` is the shorthand value itself written as a mapping, as ``- activation: {relu: {...}}``
    is: a one-key mapping whose key is no key of the layer, for an op whose shorthand value is ``{name: args}``."""
    if definition.shorthand is None or not definition.fields[definition.shorthand].named_mapping:
        return False
    keys = list(params.items)
    return len(keys) == 1 and keys[0] not in definition.fields and keys[0] not in COMMON_KEYS


def _layer_attrs(draft: LayerDraft, params: YNode | None, report: Report) -> dict[str, Any] | None:
    definition = OPS[draft.op]
    fields = definition.fields
    where = draft.label
    if _is_null(params):
        values: dict[str, Any] = {}
        for key, field in fields.items():
            if field.required:
                report.add(
                    "E0204",
                    f"{where}: missing required key {key!r}",
                    draft.node,
                    f"write `- {draft.op}: {{{key}: ...}}`",
                )
                return None
    elif isinstance(params, YMap) and not _is_shorthand_mapping(definition, params):
        body = YMap(
            {k: v for k, v in params.items.items() if k not in COMMON_KEYS}, params.file, params.line, params.column
        )
        values = read_section(
            body,
            fields,
            report,
            where=where,
            sep=": ",
            codes=("E0202", "E0203", "E0204"),
            owner=draft.op,
            also=COMMON_KEYS,
        )
        if FAILED in values.values() or any(f.required and k not in values for k, f in fields.items()):
            return None
    elif definition.shorthand:
        key = definition.shorthand
        try:
            values = {key: fields[key].read(params)}  # type: ignore[arg-type]  # a scalar or a list here
        except Invalid as exc:
            report.invalid(exc, "E0203", f"{where}: {key}", params)
            return None
    else:
        required = [k for k, f in fields.items() if f.required] or list(fields)[:1]
        example = "{" + ", ".join(f"{k}: ..." for k in required) + "}"
        hint = f"write `- {draft.op}: {example}`" if fields else f"write just `- {draft.op}`"
        if definition.merge:
            hint = f"write `- {draft.op}: {{inputs: [a, b]}}`"
        report.add("E0205", f"{where}: parameters must be a mapping; got {describe(params)}", params, hint)
        draft.inputs_invalid = True  # its inputs cannot be known either
        return None
    return values


def resolve_input(node: YNode, report: Report) -> tuple[Shape | None, str]:
    """The ``input`` section: (shape or None when invalid, dtype)."""
    if not isinstance(node, YMap):
        report.add(
            "E0606",
            f"input must be a mapping with shape (and dtype); got {describe(node)}",
            node,
            "write input: {shape: [28, 28, 1]}",
        )
        return None, "float32"
    values = read_section(node, INPUT_FIELDS, report, where="input", sep=".", codes=("E0601", "E0606", "E0606"))
    shape = values.get("shape")
    dtype = values.get("dtype", "float32")
    return (None if shape in (None, FAILED) else shape), ("float32" if dtype is FAILED else dtype)


def _named_block(
    node: YNode, kinds: tuple[str, ...], what: str, report: Report, code: str
) -> tuple[str, YNode | None, YNode] | None:
    """Split ``name`` or ``{name: {params}}`` into (name, params node, name node)."""
    if isinstance(node, YScalar) and not _is_null(node):
        key: YNode = node
        params: YNode | None = None
    elif isinstance(node, YMap) and single_key(node) is not None:
        key, params = single_key(node)  # type: ignore[misc]
    else:
        report.add(
            code,
            f"train.{what} must be a name or a one-key mapping {{name: {{params}}}}; got {describe(node)}",
            node,
            f"write e.g. {what}: {kinds[0]} or {what}: {{{kinds[0]}: {{...}}}}",
        )
        return None
    text = key.text if isinstance(key, YScalar) else ""
    if text not in kinds:
        report.add(
            code,
            f"train.{what}: unknown {what} {shorten(text)!r}{did_you_mean(text, kinds)}",
            key,
            f"{plural(what)}: {', '.join(kinds)}",
        )
        return None
    return text, params, key


def _block_params(
    name: str, params: YNode | None, fields: dict, what: str, report: Report, codes: tuple[str, str, str], anchor: YNode
) -> dict[str, Any] | None:
    if _is_null(params):
        values: dict[str, Any] = {}
        missing = [k for k, f in fields.items() if f.required]
        for key in missing:
            report.add(
                codes[2],
                f"train.{what} {name}: missing required key {key!r}",
                anchor,
                f"write {what}: {{{name}: {{{key}: ...}}}}",
            )
        return None if missing else values
    if not isinstance(params, YMap):
        report.add(
            codes[1],
            f"train.{what} {name}: parameters must be a mapping; got {describe(params)}",
            params,
            f"write {what}: {{{name}: {{{', '.join(fields) or ''}}}}}",
        )
        return None
    values = read_section(params, fields, report, where=f"train.{what} {name}", sep=": ", codes=codes, owner=name)
    if FAILED in values.values() or any(f.required and k not in values for k, f in fields.items()):
        return None
    return values


def resolve_train(node: YNode | None, report: Report) -> TrainConfig:
    """The ``train`` section, defaults filled (Keras's optimiser defaults)."""
    default_optimizer = OptimizerConfig("adam", dict(OPTIMIZER_DEFAULTS["adam"]))
    if _is_null(node):
        return TrainConfig(optimizer=default_optimizer)
    if not isinstance(node, YMap):
        report.add(
            "E0402", f"train must be a mapping; got {describe(node)}", node, "write train: {epochs: 10, batch_size: 32}"
        )
        return TrainConfig(optimizer=default_optimizer)
    values = read_section(
        node, TRAIN_FIELDS, report, where="train", sep=".", codes=("E0401", "E0402", "E0402"), section="train"
    )
    optimizer = default_optimizer
    if values.get("optimizer") is not None:
        block = _named_block(values["optimizer"], OPTIMIZERS, "optimizer", report, "E0404")
        if block:
            name, params, key = block
            read = _block_params(
                name, params, OPTIMIZER_FIELDS[name], "optimizer", report, ("E0405", "E0402", "E0405"), key
            )
            optimizer = OptimizerConfig(name, {**OPTIMIZER_DEFAULTS[name], **(read or {})})
    schedule = ScheduleConfig()
    if values.get("schedule") is not None:
        block = _named_block(values["schedule"], SCHEDULES, "schedule", report, "E0406")
        if block:
            name, params, key = block
            read = _block_params(
                name, params, SCHEDULE_FIELDS[name], "schedule", report, ("E0407", "E0402", "E0407"), key
            )
            schedule = ScheduleConfig(name, {**SCHEDULE_DEFAULTS[name], **(read or {})})
    blocks = ("optimizer", "schedule", "checkpoint", "early_stopping")
    checkpoint = CheckpointConfig(
        **_subsection(
            values.get("checkpoint"), CHECKPOINT_FIELDS, "checkpoint", report, "checkpoint: {every: 1, keep: 2}"
        )
    )
    early_stopping = None
    if not _is_null(values.get("early_stopping")):
        early_stopping = EarlyStoppingConfig(
            **_subsection(
                values["early_stopping"],
                EARLY_STOPPING_FIELDS,
                "early_stopping",
                report,
                "early_stopping: {monitor: val_loss, patience: 3}",
            )
        )
    settled = {k: (TRAIN_FIELDS[k].default if v is FAILED else v) for k, v in values.items() if k not in blocks}
    defaults = {k: f.default for k, f in TRAIN_FIELDS.items() if k not in blocks}
    return TrainConfig(
        optimizer=optimizer,
        schedule=schedule,
        checkpoint=checkpoint,
        early_stopping=early_stopping,
        **{**defaults, **settled},
    )


def _subsection(
    node: YNode | None, fields: Mapping[str, Field], what: str, report: Report, example: str
) -> dict[str, Any]:
    """A mapping inside ``train`` read against ``fields``: the values read (invalid ones left to their defaults)."""
    if node is None or _is_null(node) or node is FAILED:
        return {}
    if not isinstance(node, YMap):
        report.add("E0402", f"train.{what} must be a mapping; got {describe(node)}", node, f"write {example}")
        return {}
    values = read_section(
        node, fields, report, where=f"train.{what}", sep=".", codes=("E0401", "E0402", "E0402"), owner=what
    )
    return {k: v for k, v in values.items() if v is not FAILED}


def resolve_data(node: YNode | None, report: Report) -> DataConfig:
    """The ``data`` section; dataset-specific keys go to ``DataConfig.options``."""
    if _is_null(node):
        return DataConfig()
    if not isinstance(node, YMap):
        report.add("E0502", f"data must be a mapping; got {describe(node)}", node, "write data: {dataset: digits}")
        return DataConfig()
    values = read_section(
        node, DATA_FIELDS, report, where="data", sep=".", codes=("E0501", "E0502", "E0504"), section="data"
    )
    dataset = values.get("dataset")
    if dataset in (None, FAILED):
        dataset_node = node.get("dataset")
        entry = single_key(dataset_node) if isinstance(dataset_node, YMap) else None
        if entry is not None and entry[0].text in DATASETS:
            report.diagnostics.pop()
            kind = entry[0].text
            report.add(
                "E0503",
                f"data.dataset must be a name; got a mapping {{{kind}: ...}}",
                dataset_node,
                f"write dataset: {kind} and path: <file> as keys of data",
            )
        return DataConfig()
    for kind, keys in DATASET_OPTIONS.items():
        for key in keys:
            if key in node.items and dataset != kind:
                report.add(
                    "E0501",
                    f"data.{key} applies only to dataset {kind}; this spec uses {dataset}",
                    node.items[key][0],
                    f"remove {key}, or set dataset: {kind}",
                )
    if dataset in DATASET_OPTIONS and "path" not in values:
        report.add(
            "E0504", f"data: dataset {dataset} needs a path", node.items["dataset"][1], f"add path: <file.{dataset}>"
        )
    settled = {k: (DATA_FIELDS[k].default if v is FAILED else v) for k, v in values.items()}
    options = {key: settled.get(key, DATA_FIELDS[key].default) for key in DATASET_OPTIONS.get(dataset, ())}
    return DataConfig(
        dataset=dataset,
        path=settled.get("path"),
        options=options,
        validation_split=settled.get("validation_split", 0.1),
        test_split=settled.get("test_split", 0.2),
        normalize=settled.get("normalize", "scale"),
    )
