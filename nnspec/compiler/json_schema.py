"""The JSON Schema (draft 2020-12) of the spec language, generated from the front end's own tables.

Editors validate and complete a spec with it (VS Code with Red Hat's YAML extension, or any other
yaml-language-server client: docs/editor.md); ``nnspec schema`` prints it. Nothing here restates the
language. The keys of each section, which are required, their defaults and descriptions (``Field.doc``), the
layer types, their shorthand and the language versions come from :data:`~nnspec.compiler.opset.OPS` and the
tables of :mod:`nnspec.compiler.schema`;
the type and range of each value come from probing the key's own reader with sample YAML nodes
(:func:`value_schema`): ``units`` takes ``1`` and ``2147483647`` but not ``0``, ``2147483648`` or ``1.5``,
so it is ``{"type": "integer", "minimum": 1, "maximum": 2147483647}``; ``rate`` takes ``0`` and the float
just below 1 but not ``1``, so it has ``"exclusiveMaximum": 1``. The few facts that are not in a table
(which sections may be left empty) are asked of the front end itself, on a minimal spec. Anything the
generator cannot describe (a reader that takes none of the samples, a key whose ``Field`` has no ``doc``, an
op without a language version) raises :class:`SchemaGap`, so a new key cannot slip into the language unseen.

Left to ``nnspec check``, because JSON Schema cannot say it: shapes; the wiring of a graph (that
``inputs`` and ``output`` name layers defined before, without cycles) and unique layer names;
``minval < maxval`` of the ``uniform`` initialiser; and what only the YAML text shows (``1e1`` where an
integer is expected is 10.0 to a JSON validator, ``.inf`` is a number to it).

Only keywords that draft-07 validators read the same way are used (``$defs`` is reached by JSON
pointer), since editors' validators lag behind the drafts.
"""

from __future__ import annotations

import json
import re
import struct
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from . import values
from .compose import MERGED_SECTIONS
from .frontend import analyse_text
from .ir import (
    ACTIVATIONS,
    INITIALIZERS,
    INPUT,
    OPTIMIZERS,
    SCHEDULES,
    Activation,
    Initializer,
    ScheduleConfig,
    TrainConfig,
)
from .loader import YMap, YNode, YScalar, YSeq
from .opset import (
    ACTIVATION_ARGS,
    COMMON_KEYS,
    INITIALIZER_ARG_DOCS,
    INITIALIZER_ARGS,
    OPS,
    OpDef,
    read_activation,
    read_initializer,
)
from .schema import (
    CHECKPOINT_FIELDS,
    DATA_FIELDS,
    DATASET_OPTIONS,
    EARLY_STOPPING_FIELDS,
    INPUT_FIELDS,
    LANGUAGE_VERSIONS,
    OPTIMIZER_FIELDS,
    SCHEDULE_FIELDS,
    TOP_FIELDS,
    TRAIN_FIELDS,
    read_version,
)
from .training_defaults import OPTIMIZER_DEFAULTS, SCHEDULE_DEFAULTS
from .values import MAX_INT, Field, Invalid, read_identifier
from .versions import additions

#: The dialect the schema declares.
DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: Hover text of optimisers, schedules and initialisers in their ``{name: {params}}`` form (docs/spec.md).
NAME_DOCS: dict[str, dict[str, str]] = {
    "optimizer": {
        "sgd": "Stochastic gradient descent, with optional (Nesterov) momentum.",
        "adam": "Adam: m += (g - m)(1 - beta_1), v += (g*g - v)(1 - beta_2), p -= lr * sqrt(1 - beta_2**t) / (1 - "
        "beta_1**t) * m / (sqrt(v) + epsilon).",
        "rmsprop": "RMSprop: a = rho*a + (1 - rho)*g*g; p -= lr * g / (sqrt(a) + epsilon), with optional momentum.",
    },
    "schedule": {
        "constant": "lr",
        "step": "lr * factor ** floor(step / every)",
        "exponential": "lr * decay_rate ** (step / decay_steps), the exponent floored when staircase",
        "cosine": "lr * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha)",
    },
    "activation": {
        "relu": "max(x, 0); with negative_slope, max_value and threshold as Keras's ReLU layer.",
        "sigmoid": "1 / (1 + exp(-x)).",
        "tanh": "tanh(x).",
        "elu": "x if x > 0, else alpha (exp(x) - 1).",
        "gelu": "0.5 x (1 + erf(x / sqrt 2)); the tanh approximation with approximate: true.",
        "softplus": "log(1 + exp(x)).",
        "linear": "x (no activation).",
        "relu6": "min(max(x, 0), 6).",
        "leaky_relu": "x if x > 0, else negative_slope x.",
        "selu": "scale * elu(x, alpha), Keras's constants.",
        "celu": "x if x > 0, else alpha (exp(x / alpha) - 1).",
        "silu": "x sigmoid(x).",
        "swish": "x sigmoid(x) (Keras's alias of silu).",
        "hard_sigmoid": "relu6(x + 3) / 6.",
        "hard_silu": "x hard_sigmoid(x).",
        "hard_swish": "x hard_sigmoid(x) (Keras's alias of hard_silu).",
        "hard_tanh": "min(max(x, -1), 1).",
        "softsign": "x / (1 + |x|).",
        "mish": "x tanh(softplus(x)).",
        "exponential": "exp(x).",
        "log_sigmoid": "log(sigmoid(x)).",
        "tanh_shrink": "x - tanh(x).",
        "hard_shrink": "x if |x| > threshold, else 0.",
        "soft_shrink": "x - threshold above threshold, x + threshold below -threshold, else 0.",
        "sparse_plus": "0 up to -1, (x + 1)^2 / 4 on (-1, 1), x from 1.",
        "sparse_sigmoid": "0 up to -1, (x + 1) / 2 on (-1, 1), 1 from 1.",
        "squareplus": "(x + sqrt(x^2 + b)) / 2.",
        "threshold": "x if x > threshold, else default_value.",
        "softmax": "exp(x) / sum(exp(x)) over the last axis.",
        "log_softmax": "x - log(sum(exp(x))) over the last axis.",
    },
    "initializer": {
        "glorot_uniform": "Uniform in [-l, l], l = sqrt(6 / (fan_in + fan_out)).",
        "glorot_normal": "Truncated normal, stddev = sqrt(2 / (fan_in + fan_out)).",
        "he_normal": "Truncated normal, stddev = sqrt(2 / fan_in).",
        "he_uniform": "Uniform in [-l, l], l = sqrt(6 / fan_in).",
        "lecun_normal": "Truncated normal, stddev = sqrt(1 / fan_in).",
        "lecun_uniform": "Uniform in [-l, l], l = sqrt(3 / fan_in).",
        "zeros": "0.",
        "ones": "1.",
        "normal": "Normal (not truncated) with mean and stddev.",
        "uniform": "Uniform in [minval, maxval).",
    },
}

#: A spec the front end accepts, on which :func:`_may_be_empty` tries leaving a section empty.
_MINIMAL_SPEC = "nnspec: 1\ninput: {shape: [8, 8, 1]}\nlayers: [flatten, {dense: {units: 10}}]\n"
#: Inputs of ``add`` and ``concat``: two or more (fewer is E0703); every other layer reads one (E0704).
_MERGE_MIN_INPUTS = 2

_INT_SEEDS = (1, 0, 2, 3, 10, 64, -1)
_FLOAT_SEEDS = (0.5, 0.001, 0.9, 1.5, -0.5, 1e-7, 100.0)
#: Integers tried outside the range found around a seed (``-1`` of ``reshape``).
_INT_SPECIALS = (-1, 0)
#: Integers are probed up to this magnitude; a reader that takes it has no bound on that side.
_INT_CAP = 4 * MAX_INT
_FLOAT_CAP = sys.float_info.max
#: A word no vocabulary holds: a choice reader answers it with the list of words it takes.
_FAR_WORD = "zqxjkv_not_a_word"
_CHOICES = re.compile(r"expected one of (.+)$")
#: Patterns of plain names (the front end's own): a layer's name, and a model's (which may hold ``-``).
_NAME_PATTERNS = {False: values.IDENTIFIER_PATTERN.pattern, True: values.MODEL_NAME_PATTERN.pattern}

Reader = Callable[[YNode], Any]
Schema = dict[str, Any]


class SchemaGap(LookupError):
    """A table of the front end holds something the schema generator cannot describe."""


@lru_cache(maxsize=1)
def schema_text() -> str:
    """The schema as ``nnspec schema`` prints it and ``nnspec.schema.json`` holds it: JSON, two-space
    indent (generated once per process)."""
    return json.dumps(build_schema(), indent=2) + "\n"


# --- probing readers ------------------------------------------------------------------------------------


def _plain(text: str) -> YScalar:
    return YScalar(text, True, None, None, None)


def _quoted(text: str) -> YScalar:
    return YScalar(text, False, None, None, None)


def _seq(items: Iterable[YNode]) -> YSeq:
    return YSeq(list(items), None, None, None)


def _map(items: Mapping[str, YNode]) -> YMap:
    return YMap({key: (_plain(key), value) for key, value in items.items()}, None, None, None)


def _accepts(reader: Reader, node: YNode) -> bool:
    try:
        reader(node)
    except Invalid:
        return False
    return True


def _passes_through(reader: Reader) -> bool:
    """Whether ``reader`` hands its node on unread (a section or block read elsewhere)."""
    probe = _map({})
    try:
        return reader(probe) is probe
    except Invalid:
        return False


def value_schema(reader: Reader) -> Schema:
    """The JSON Schema of the values ``reader`` accepts, found by feeding it sample nodes.

    Booleans, integers and numbers (with their bounds, found by bisection), words (an ``enum`` when the
    reader names the words it takes), strings (with the pattern of a plain name when the reader refuses
    ``"a b"``), and lists of any of these (with their lengths). A reader that takes a scalar and a list
    (a window: ``3`` or ``[3, 3]``) gets ``anyOf`` both. Raises :class:`SchemaGap` when nothing fits.
    """
    forms = [form for form in (_scalar_form(reader), _list_form(reader)) if form is not None]
    if not forms:
        raise SchemaGap(f"{_name(reader)} accepts none of the sample values the schema generator tries")
    schemas = [schema for schema, _ in forms]
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def _name(reader: Reader) -> str:
    return f"reader {getattr(reader, '__qualname__', reader)!s}"


def _scalar_form(reader: Reader) -> tuple[Schema, YScalar] | None:
    """The schema of the single values ``reader`` takes, with one value it takes."""
    if _accepts(reader, _plain("true")) and _accepts(reader, _plain("false")):
        return {"type": "boolean"}, _plain("true")
    number, word = _number_form(reader), _word_form(reader)
    if number is not None and word is not None:  # a count or a word (train.devices: 2 or all)
        return {"anyOf": [number[0], word[0]]}, number[1]
    return number or word


def _number_form(reader: Reader) -> tuple[Schema, YScalar] | None:
    int_seed = next((i for i in _INT_SEEDS if _accepts(reader, _plain(str(i)))), None)
    floats = _FLOAT_SEEDS + ((float(int_seed),) if int_seed is not None else ())
    float_seed = next((x for x in floats if _accepts(reader, _plain(repr(x)))), None)
    if float_seed is not None:
        return {"type": "number", **_float_bounds(reader, float_seed)}, _plain(repr(float_seed))
    if int_seed is None:
        return None

    def takes(i: int) -> bool:
        return _accepts(reader, _plain(str(i)))

    low, high = _edge(takes, int_seed, -1, _INT_CAP), _edge(takes, int_seed, 1, _INT_CAP)
    schema: Schema = {"type": "integer"}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    specials = [s for s in _INT_SPECIALS if not (low is None or low <= s) and takes(s)]
    if specials:
        schema = {"anyOf": [schema, *({"const": s} for s in specials)]}
    return schema, _plain(str(int_seed))


def _edge(takes: Callable[[int], bool], seed: int, direction: int, cap: int) -> int | None:
    """The last integer ``takes`` accepts going from ``seed`` in ``direction``, or None when it takes
    everything up to ``cap``: steps that double until one is refused, then bisection."""
    good, step = seed, 1
    while True:
        probe = seed + direction * step
        if abs(probe) >= cap:
            probe = direction * cap
            if takes(probe):
                return None
            break
        if not takes(probe):
            break
        good, step = probe, step * 2
    bad = probe
    while abs(bad - good) > 1:
        middle = (good + bad) // 2
        if takes(middle):
            good = middle
        else:
            bad = middle
    return good


def _ordinal(x: float) -> int:
    """Floats as integers in the same order (adjacent floats are adjacent integers)."""
    bits: int = struct.unpack("<q", struct.pack("<d", x))[0]
    return bits if bits >= 0 else -(bits & 0x7FFF_FFFF_FFFF_FFFF)


def _from_ordinal(n: int) -> float:
    value: float = struct.unpack("<d", struct.pack("<Q", n if n >= 0 else (-n) | (1 << 63)))[0]
    return value


def _float_bounds(reader: Reader, seed: float) -> Schema:
    """``minimum``/``exclusiveMinimum`` and ``maximum``/``exclusiveMaximum`` of a number reader.

    The last float accepted and the first refused are found exactly; the bound is whichever of the two
    is written shorter (``0.0`` rather than ``5e-324``), exclusive when it is the refused one.
    """

    def takes(n: int) -> bool:
        return _accepts(reader, _plain(repr(_from_ordinal(n))))

    bounds: Schema = {}
    for direction, side in ((-1, "minimum"), (1, "maximum")):
        last = _edge(takes, _ordinal(seed), direction, _ordinal(_FLOAT_CAP))
        if last is None:
            continue
        inside, outside = _from_ordinal(last), _from_ordinal(last + direction)
        if len(repr(outside)) < len(repr(inside)):
            bounds["exclusive" + side.capitalize()] = _tidy(outside)
        else:
            bounds[side] = _tidy(inside)
    return bounds


def _tidy(x: float) -> int | float:
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


def _word_form(reader: Reader) -> tuple[Schema, YScalar] | None:
    far = _quoted(_FAR_WORD)
    if _accepts(reader, far):
        schema: Schema = {"type": "string"}
        if not _accepts(reader, _quoted("a b")):
            schema["pattern"] = _NAME_PATTERNS[_accepts(reader, _quoted("a-b"))]
        return schema, far
    try:
        reader(far)
    except Invalid as exc:
        found = _CHOICES.search(exc.message)
        if found is None:
            return None
        words = found.group(1).split(", ")
        refused = [w for w in words if not _accepts(reader, _plain(w))]
        if refused:
            raise SchemaGap(f"{_name(reader)} lists {', '.join(refused)} but refuses them") from None
        return {"enum": words}, _plain(words[0])
    return None


def _list_form(reader: Reader) -> tuple[Schema, YSeq] | None:
    """The schema of the lists ``reader`` takes: the items' schema found with lists of 1, 2 or 3 equal items."""
    for count in (1, 2, 3):
        item = _scalar_form(lambda node, count=count: reader(_seq([node] * count)))  # type: ignore[misc]
        if item is not None:
            break
    else:
        return None
    item_schema, seed = item
    lengths = [n for n in range(9) if _accepts(reader, _seq([seed] * n))]
    schema: Schema = {"type": "array", "items": item_schema}
    if min(lengths) > 0:
        schema["minItems"] = min(lengths)
    if max(lengths) < 8:
        schema["maxItems"] = max(lengths)
    return schema, _seq([seed] * lengths[0])


# --- assembling the schema ------------------------------------------------------------------------------


def build_schema() -> Schema:
    """Generate the JSON Schema of a spec file from the front end's tables, by probing (timing: docs/benchmarks.md);
    raises :class:`SchemaGap` when a table holds something it cannot describe."""
    layer_defs = {f"layer.{name}": _layer_type(op) for name, op in OPS.items()}
    top = _section(TOP_FIELDS, "spec", "", {"input": _input, "layers": _layers, "train": _train, "data": _data})
    # Requirements a spec without `extends` must meet alone (with it, its base may provide them).
    full: Schema = {"required": top.pop("required")}
    for key in MERGED_SECTIONS:
        section = top["properties"][key]
        needed: Schema = {"required": section.pop("required")} if "required" in section else {}
        if key == "data":
            needed["allOf"] = [_path_needed()]
        if needed:
            full.setdefault("properties", {})[key] = needed
    return {
        "$schema": DIALECT,
        "$comment": "Generated by `nnspec schema` from nnspec's front-end tables; do not edit.",
        "title": "nnspec spec",
        "description": f"A neural-network spec for nnspec (language versions {values.words(LANGUAGE_VERSIONS)}); "
        "see docs/spec.md.",
        **top,
        # A spec that extends another may leave anything to its base; input, train and data merge key by key.
        "if": {"required": ["extends"]},
        "else": full,
        "$defs": {
            "layer": _layer_entry(),
            "initializer": _initializer(),
            "activation": _activation(),
            **layer_defs,
        },
    }


def _doc(section: str, key: str, field: Field | None = None, op: OpDef | None = None) -> str:
    """What ``key`` of ``section`` means: the op table's words for a layer key, else the field's own ``doc`` (the
    description of ``nnspec`` is made from the op table's versions)."""
    if op is not None:
        text = op.key_doc(key)
        if not text:
            raise SchemaGap(f"no description of {op.name} key {key!r}: give its Field a doc in nnspec.compiler.opset")
        return text
    if section == "spec" and key == "nnspec":
        return _version_doc()
    if field is None or not field.doc:
        raise SchemaGap(f"no description of {section} key {key!r}: give its Field a doc in nnspec.compiler.schema")
    return field.doc


def _version_doc() -> str:
    """The description of ``nnspec``: the versions this nnspec reads and what each added (from the op table)."""
    try:
        first, *later = additions()
    except ValueError as exc:
        raise SchemaGap(str(exc)) from None
    parts = [
        f"Language version: {values.words(LANGUAGE_VERSIONS, 'or')}; each reads every spec of the versions before it.",
        f"{first.version}: the layers {values.words(first.ops)}.",
    ]
    for added in later:
        news = [f"the layers {values.words(added.ops)}"] if added.ops else []
        news += [f"the keys {values.words(added.keys)}"] if added.keys else []
        parts.append(f"{added.version} added {values.words(news) if news else 'nothing to the vocabulary'}.")
    return " ".join(parts)


def _name_doc(what: str, name: str) -> str:
    text = NAME_DOCS.get(what, {}).get(name)
    if text is None:
        raise SchemaGap(f"no description of {what} {name!r}: add one to nnspec.compiler.json_schema.NAME_DOCS")
    return text


def _section(
    fields: Mapping[str, Field],
    docs: str,
    path: str,
    children: Mapping[str, Callable[[], Schema]] | None = None,
    defaults: Mapping[str, Any] | None = None,
    op: OpDef | None = None,
) -> Schema:
    """A mapping read against ``fields``: its keys' schemas, unknown keys refused, required keys listed.

    Keys whose reader hands the node on (``train``, ``optimizer``...) take their schema from ``children``;
    ``path`` (``"train"``) locates the section for :func:`_may_be_empty`.
    """
    children = dict(children or {})
    properties: Schema = {}
    for key, field in fields.items():
        if _passes_through(field.read):
            if key not in children:
                raise SchemaGap(
                    f"{path or 'spec'}.{key} is read elsewhere in the front end; the schema generator has no schema "
                    "for it"
                )
            schema = children.pop(key)()
            if _may_be_empty(f"{path}.{key}".lstrip(".")):
                kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
                schema["type"] = [*kinds, "null"]
        else:
            schema = _field_value(field)
        default = (defaults or {}).get(key, field.default)
        properties[key] = _described(schema, _doc(docs, key, field, op), _json_default(default, schema))
    if children:
        raise SchemaGap(
            f"the schema generator describes {', '.join(children)} in {path or 'spec'}, which the front end does not "
            "read there"
        )
    result: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    required = [key for key, field in fields.items() if field.required]
    if required:
        result["required"] = required
    return result


def _field_value(field: Field) -> Schema:
    if field.read is read_initializer:
        return {"$ref": "#/$defs/initializer"}
    if field.read is read_activation:
        return {"$ref": "#/$defs/activation"}
    if field.read is read_version:
        versions = [json.loads(v) for v in LANGUAGE_VERSIONS]
        if not all(_accepts(read_version, _plain(v)) for v in LANGUAGE_VERSIONS):
            raise SchemaGap("nnspec refuses a version of LANGUAGE_VERSIONS")
        return {"enum": versions}
    own = getattr(field.read, "json_schema", None)  # a reader of nested lists states its schema itself
    if own is not None:
        return dict(own)
    return value_schema(field.read)


def _described(schema: Schema, text: str | None, default: Any = None) -> Schema:
    result = {"description": text, **schema} if text else dict(schema)
    if default is not None:
        result["default"] = default
    return result


def _json_default(value: Any, schema: Schema) -> Any:
    """A default as a spec writes it: ``(2, 2)`` as ``2`` where a single integer is accepted, an
    initialiser by name (with its arguments only when they differ from the name's defaults)."""
    if isinstance(value, Initializer):
        args = dict(value.args)
        return value.name if args == INITIALIZER_ARGS.get(value.name, {}) else {value.name: args}
    if isinstance(value, Activation):
        return value.spec_form()
    if isinstance(value, tuple):
        integer_ok = any(form.get("type") == "integer" for form in schema.get("anyOf", [schema]))
        if len(value) == 2 and value[0] == value[1] and integer_ok:
            return value[0]
        return list(value)
    return value


def _may_be_empty(path: str) -> bool:
    """Whether the front end accepts ``path`` left empty (``train:`` with nothing after it) in a valid spec."""
    graph, _ = analyse_text(_MINIMAL_SPEC, overrides={path: None})
    return graph is not None


def _input() -> Schema:
    return _section(INPUT_FIELDS, "input", "input")


def _layers() -> Schema:
    # An empty list is E0607.
    return {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/layer"}}


def _layer_entry() -> Schema:
    """One item of ``layers``: a bare type, or a one-key mapping ``{type: params}``."""
    bare = [name for name, op in OPS.items() if _may_be_bare(op)]
    return {
        "description": "A layer: a type name (- flatten), {type: {params}} (- dense: {units: 10}), or a type with its "
        "main parameter (- dropout: 0.5).",
        "anyOf": [
            {"enum": bare},
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "properties": {name: {"$ref": f"#/$defs/layer.{name}"} for name in OPS},
                "additionalProperties": False,
            },
        ],
    }


def _may_be_bare(op: OpDef) -> bool:
    """Layers that need no parameter; merge layers need ``inputs``."""
    return not op.required and not op.merge


def _layer_type(op: OpDef) -> Schema:
    """The value under a layer's type: its parameters, its main parameter alone, or nothing."""
    params = _section(op.fields, "layer", f"layers.{op.name}", defaults=op.defaults, op=op)
    common = {"name": _layer_name(), "inputs": _layer_inputs(op)}
    if set(common) != set(COMMON_KEYS):
        raise SchemaGap(f"layers accept {', '.join(COMMON_KEYS)}; the schema generator describes {', '.join(common)}")
    for key, schema in common.items():
        params["properties"][key] = _described(schema, _doc("layer", key, op=op))
    if op.merge:
        params["required"] = [*params.get("required", []), "inputs"]
    forms = [params]
    if op.shorthand:
        forms.append(_field_value(op.fields[op.shorthand]))
    if _may_be_bare(op):
        forms.append({"type": "null"})
    return _described(forms[0] if len(forms) == 1 else {"anyOf": forms}, op.doc)


def _layer_name() -> Schema:
    return {**value_schema(read_identifier), "not": {"const": INPUT}}


def _layer_inputs(op: OpDef) -> Schema:
    names: Schema = {"type": "array", "items": {"type": "string"}}
    if op.merge:
        return {**names, "minItems": _MERGE_MIN_INPUTS}
    return {"anyOf": [{"type": "string"}, {**names, "minItems": 1, "maxItems": 1}]}


def _train() -> Schema:
    return _section(
        TRAIN_FIELDS,
        "train",
        "train",
        {
            "optimizer": lambda: _named_choice(
                "optimizer", OPTIMIZERS, OPTIMIZER_FIELDS, OPTIMIZER_DEFAULTS, TrainConfig().optimizer.name
            ),
            "schedule": lambda: _named_choice(
                "schedule", SCHEDULES, SCHEDULE_FIELDS, SCHEDULE_DEFAULTS, ScheduleConfig().name
            ),
            "checkpoint": lambda: _section(CHECKPOINT_FIELDS, "checkpoint", "train.checkpoint"),
            "early_stopping": lambda: _section(EARLY_STOPPING_FIELDS, "early_stopping", "train.early_stopping"),
        },
    )


def _named_choice(
    what: str,
    names: Iterable[str],
    fields: Mapping[str, Mapping[str, Field]],
    defaults: Mapping[str, Mapping[str, Any]],
    default: str,
) -> Schema:
    """``name`` or ``{name: {params}}`` (an optimiser, a schedule); a name alone only when no parameter is required."""
    options: Schema = {}
    bare = []
    for name in names:
        if name not in fields:
            raise SchemaGap(f"{what} {name} has no table of parameters")
        params = _section(fields[name], what, f"train.{what}.{name}", defaults=defaults.get(name, {}))
        if "required" in params:
            options[name] = _described(params, _name_doc(what, name))
        else:
            bare.append(name)
            options[name] = _described({"anyOf": [params, {"type": "null"}]}, _name_doc(what, name))
    mapping = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "properties": options,
        "additionalProperties": False,
    }
    return {"type": ["string", "object"], "anyOf": [{"enum": bare}, mapping], "default": default}


def _data() -> Schema:
    schema = _section(DATA_FIELDS, "data", "data")
    schema["allOf"] = [
        {
            "if": {"required": ["dataset"], "properties": {"dataset": {"not": {"const": kind}}}},
            "then": {"properties": {key: False for key in keys}},
        }
        for kind, keys in DATASET_OPTIONS.items()
    ]
    return schema


def _path_needed() -> Schema:
    """The data sets read from a file (those with options of their own) need ``path`` (E0504)."""
    return {
        "if": {"required": ["dataset"], "properties": {"dataset": {"enum": list(DATASET_OPTIONS)}}},
        "then": {"required": ["path"]},
    }


def _initializer() -> Schema:
    """A name, or ``{name: {args}}`` with the arguments of :data:`INITIALIZER_ARGS`."""
    refused = [name for name in INITIALIZERS if not _accepts(read_initializer, _plain(name))]
    if refused:
        raise SchemaGap(f"read_initializer refuses {', '.join(refused)}")
    options: Schema = {}
    for name in INITIALIZERS:
        args = INITIALIZER_ARGS.get(name, {})
        properties = {
            arg: _described(_initializer_arg(name, arg), _initializer_arg_doc(arg), default)
            for arg, default in args.items()
        }
        params = {"type": "object", "properties": properties, "additionalProperties": False}
        options[name] = _described({"anyOf": [params, {"type": "null"}]}, _name_doc("initializer", name))
    mapping = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "properties": options,
        "additionalProperties": False,
    }
    return {"anyOf": [{"enum": list(INITIALIZERS)}, mapping]}


def _activation() -> Schema:
    """A name, or ``{name: {args}}`` with the arguments of :data:`ACTIVATION_ARGS`."""
    plain = [name for name in ACTIVATIONS if _accepts(read_activation, _plain(name))]
    options: Schema = {}
    for name in ACTIVATIONS:
        args = ACTIVATION_ARGS.get(name, {})
        properties = {arg: _described(_activation_arg(name, arg), spec.doc, spec.default) for arg, spec in args.items()}
        params: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
        required = [arg for arg, spec in args.items() if spec.required]
        if required:
            params["required"] = required
        options[name] = _described(
            params if required else {"anyOf": [params, {"type": "null"}]}, _name_doc("activation", name)
        )
    mapping = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "properties": options,
        "additionalProperties": False,
    }
    return {"anyOf": [{"enum": plain}, mapping]}


def _activation_arg(name: str, arg: str) -> Schema:
    """An activation argument's schema, probed with the other required arguments given."""
    context = {k: _plain("0.0") for k, spec in ACTIVATION_ARGS[name].items() if spec.required and k != arg}
    return value_schema(lambda node: read_activation(_map({name: _map({**context, arg: node})})))


def _initializer_arg_doc(arg: str) -> str:
    text = INITIALIZER_ARG_DOCS.get(arg)
    if not text:
        raise SchemaGap(f"no description of initializer argument {arg!r}: add one to opset.INITIALIZER_ARG_DOCS")
    return text


def _initializer_arg(name: str, arg: str) -> Schema:
    """An initialiser argument's schema, probed with the other arguments at their defaults and again
    moved by 1: a bound that moves with them (uniform's ``minval < maxval``) relates two arguments,
    which JSON Schema cannot say, and is left out."""
    others = {k: v for k, v in INITIALIZER_ARGS[name].items() if k != arg}

    def probe(shift: float) -> Schema:
        context = {k: _plain(repr(v + shift)) for k, v in others.items()}
        return value_schema(lambda node: read_initializer(_map({name: _map({**context, arg: node})})))

    steady, moved = probe(0.0), probe(1.0)
    return {key: value for key, value in steady.items() if moved.get(key) == value}
