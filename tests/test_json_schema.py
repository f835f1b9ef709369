"""The JSON Schema of the spec language (``nnspec schema``, ``nnspec.schema.json``) against the front end.

Both directions are checked with ``jsonschema`` on YAML read by nnspec's own loader: every spec the front
end accepts (the example specs, graph specs, generated specs) validates, and every invalid-spec golden
whose error is a schema error (:data:`SCHEMA_CODES`) is refused, at the place the diagnostic names.
"""

from __future__ import annotations

import json
import random
import re
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from nnspec.cli import main
from nnspec.compiler.frontend import analyse_text, diagnose
from nnspec.compiler.ir import ACTIVATIONS, DATASETS, INITIALIZERS, LOSSES, OPTIMIZERS, SCHEDULES
from nnspec.compiler.json_schema import SchemaGap, build_schema, schema_text, value_schema
from nnspec.compiler.loader import YScalar, parse, to_python
from nnspec.compiler.opset import LAYER_TYPES, OPS
from nnspec.compiler.schema import DATA_FIELDS, TRAIN_FIELDS
from nnspec.compiler.values import MAX_INT, Field, Invalid, read_float, read_int
from nnspec.errors import SpecError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "nnspec.schema.json"
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
GOLDENS = sorted((ROOT / "tests" / "specs_invalid").glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=../nnspec.schema.json"

#: Error codes of problems a JSON Schema can state: unknown keys, wrong types, values out of range,
#: unknown words (layer types, activations, initialisers, losses, optimisers, schedules, metrics, data
#: sets, versions), missing keys, malformed layer entries, bad names. Not: the file and its YAML (E01xx),
#: shapes (E03xx), data against the model (E0505), duplicate layer names (E0605), graph wiring (E07xx).
SCHEMA_CODES = frozenset(
    [f"E020{i}" for i in range(1, 8)]
    + [f"E040{i}" for i in range(1, 9)]
    + [f"E050{i}" for i in range(1, 5)]
    + ["E0601", "E0602", "E0603", "E0604", "E0606", "E0607", "E0608"]
)
#: Goldens with a schema error that the schema cannot see, and why.
NOT_EXPRESSIBLE = {
    "units_float": "1e1 is the integral number 10.0 to a JSON validator; only the YAML text shows it is not an integer",
    "initializer_uniform_range": "minval < maxval relates two values, which JSON Schema cannot compare",
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(schema_text())


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema)


def instance(text: str) -> Any:
    """A spec as an editor hands it to its validator: plain JSON data (nnspec's loader, YAML 1.2 values)."""
    return to_python(parse(text))


def errors(validator: jsonschema.Draft202012Validator, text: str) -> list[jsonschema.ValidationError]:
    return list(validator.iter_errors(instance(text)))


def front_end_accepts(text: str, base_dir: str = ".") -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph, _ = analyse_text(text, "spec.yaml", base_dir=base_dir)
    return graph is not None


# --- the schema itself ------------------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_shipped_file_is_the_generated_schema() -> None:
    assert SHIPPED.read_text() == schema_text(), (
        "nnspec.schema.json is stale: run `nnspec schema -o nnspec.schema.json`"
    )


def test_cli_prints_and_writes_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == schema_text()
    out = tmp_path / "editor.schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert out.read_text() == schema_text()
    assert f"wrote {out}" in capsys.readouterr().err


def test_cli_refuses_an_unusable_output_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "-o", str(tmp_path / "missing" / "s.json")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["schema", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "is a folder" in err and "Traceback" not in err


def test_vocabularies_come_from_the_front_end(schema: dict[str, Any]) -> None:
    defs, train = schema["$defs"], schema["properties"]["train"]["properties"]
    assert list(defs["layer"]["anyOf"][1]["properties"]) == list(LAYER_TYPES)
    assert defs["layer"]["anyOf"][0]["enum"] == [
        "max_pool2d",
        "avg_pool2d",
        "flatten",
        "softmax",
        "batch_norm",
        "layer_norm",
        "global_avg_pool2d",
        "global_max_pool2d",
        "max_pool1d",
        "avg_pool1d",
        "global_avg_pool1d",
        "global_max_pool1d",
        "rescaling",
        "layer_scale",
        "zero_pad2d",
        "crop2d",
        "upsample2d",
    ]
    assert defs["layer.dense"]["properties"]["activation"]["$ref"] == "#/$defs/activation"
    assert defs["activation"]["anyOf"][0]["enum"] == [a for a in ACTIVATIONS if a != "threshold"], "threshold needs args"
    assert list(defs["activation"]["anyOf"][1]["properties"]) == list(ACTIVATIONS)
    assert defs["activation"]["anyOf"][1]["properties"]["threshold"]["required"] == ["threshold", "default_value"]
    assert defs["initializer"]["anyOf"][0]["enum"] == list(INITIALIZERS)
    assert train["loss"]["enum"] == list(LOSSES)
    assert list(train["optimizer"]["anyOf"][1]["properties"]) == list(OPTIMIZERS)
    assert train["optimizer"]["anyOf"][0]["enum"] == list(OPTIMIZERS)
    assert list(train["schedule"]["anyOf"][1]["properties"]) == list(SCHEDULES)
    assert train["schedule"]["anyOf"][0]["enum"] == ["constant"], "step, exponential and cosine need a parameter"
    assert schema["properties"]["data"]["properties"]["dataset"]["enum"] == list(DATASETS)
    assert schema["properties"]["nnspec"]["enum"] == [1, 1.1, 1.2, 1.3]
    assert train["early_stopping"]["properties"]["mode"]["enum"] == ["auto", "min", "max"]


def test_every_key_has_a_description_and_layer_types_their_doc(schema: dict[str, Any]) -> None:
    def walk(node: dict[str, Any], path: str) -> int:
        """Count the keys under ``node``, through properties, alternatives and list items (not conditions)."""
        count = 0
        for key, value in node.get("properties", {}).items():
            if "$ref" not in value:
                assert value.get("description"), f"{path}.{key} has no description"
            count += 1 + walk(value, f"{path}.{key}")
        for form in node.get("anyOf", []):
            count += walk(form, path)
        return count + (walk(node["items"], f"{path}[]") if isinstance(node.get("items"), dict) else 0)

    assert walk(schema, "spec") >= 40
    assert sum(walk(d, name) for name, d in schema["$defs"].items()) >= 80
    for name, op in OPS.items():
        assert schema["$defs"][f"layer.{name}"]["description"] == op.doc


def test_defaults_are_values_both_sides_accept(schema: dict[str, Any]) -> None:
    def check(fields: dict[str, Field], properties: dict[str, Any]) -> int:
        count = 0
        for key, prop in properties.items():
            if "default" in prop and key in fields and "$ref" not in prop:
                assert jsonschema.Draft202012Validator({**prop, "$defs": schema["$defs"]}).is_valid(prop["default"]), (
                    key
                )
                fields[key].read(parse(f"v: {json.dumps(prop['default'])}").get("v"))  # type: ignore[union-attr]
                count += 1
        return count

    def params(name: str) -> dict[str, Any]:
        layer = schema["$defs"][f"layer.{name}"]
        return (layer["anyOf"][0] if "anyOf" in layer else layer)["properties"]

    checked = sum(check(dict(op.fields), params(name)) for name, op in OPS.items())
    checked += check(TRAIN_FIELDS, schema["properties"]["train"]["properties"])
    assert checked >= 25


# --- probing readers --------------------------------------------------------------------------------


def test_value_schema_finds_types_and_exact_bounds() -> None:
    assert value_schema(lambda n: read_int(n, 1)) == {"type": "integer", "minimum": 1, "maximum": MAX_INT}
    assert value_schema(lambda n: read_int(n, -3, 7)) == {"type": "integer", "minimum": -3, "maximum": 7}
    assert value_schema(lambda n: read_float(n, 0.0, 1.0, max_open=True)) == {
        "type": "number",
        "minimum": 0,
        "exclusiveMaximum": 1,
    }
    assert value_schema(lambda n: read_float(n, 0.25, 1.0)) == {"type": "number", "minimum": 0.25, "maximum": 1}
    assert value_schema(lambda n: read_float(n, -2.5, min_open=True)) == {"type": "number", "exclusiveMinimum": -2.5}
    assert value_schema(read_float) == {"type": "number"}
    reshape = value_schema(OPS["reshape"].fields["shape"].read)
    assert (
        reshape["items"] == {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_INT}, {"const": -1}]}
        and reshape["minItems"] == 1
    )
    window = {"type": "integer", "minimum": 1, "maximum": MAX_INT}
    assert value_schema(OPS["conv2d"].fields["kernel"].read) == {
        "anyOf": [window, {"type": "array", "items": window, "minItems": 2, "maxItems": 2}]
    }


def test_a_reader_nothing_fits_is_a_schema_gap() -> None:
    def refuses_everything(node: Any) -> None:
        raise Invalid("must be something else")

    with pytest.raises(SchemaGap, match="refuses_everything"):
        value_schema(refuses_everything)


def test_a_new_key_reaches_the_schema_and_needs_a_description(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DATA_FIELDS, "shuffle_seed", Field(lambda n: read_int(n, 0), default=0))
    with pytest.raises(SchemaGap, match="shuffle_seed"):
        build_schema()
    described = Field(lambda n: read_int(n, 0), default=0, doc="Seeds the order of the examples.")
    monkeypatch.setitem(DATA_FIELDS, "shuffle_seed", described)
    added = build_schema()["properties"]["data"]["properties"]["shuffle_seed"]
    assert added == {
        "description": "Seeds the order of the examples.",
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_INT,
        "default": 0,
    }
    monkeypatch.setitem(DATA_FIELDS, "augment", Field(lambda n: n, doc="read elsewhere"))
    with pytest.raises(SchemaGap, match="augment"):
        build_schema()


# --- specs the front end accepts --------------------------------------------------------------------


def test_example_specs_name_the_shipped_schema_in_their_first_line() -> None:
    assert len(SPECS) >= 10
    for spec in SPECS:
        assert spec.read_text().splitlines()[0] == MODELINE, spec.name
        target = MODELINE.split("$schema=", 1)[1]
        assert (spec.parent / target).resolve() == SHIPPED


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_example_spec_validates(spec: Path, validator: jsonschema.Draft202012Validator) -> None:
    assert diagnose(spec)[0] is not None
    assert [e.message for e in errors(validator, spec.read_text())] == []


GRAPH_SPECS = {
    "residual": """
        nnspec: 1.1
        name: digits_residual
        input: {shape: [8, 8, 1]}
        layers:
          - conv2d: {filters: 16, kernel: 3, padding: same, activation: relu, name: stem}
          - conv2d: {filters: 16, kernel: 3, padding: same, use_bias: false, name: conv1}
          - batch_norm: {name: bn1}
          - activation: relu
          - conv2d: {filters: 16, kernel: [3, 3], strides: 1, padding: same, use_bias: false, name: conv2}
          - batch_norm: {momentum: 0.9, epsilon: 1e-5, center: false, scale: true, name: bn2}
          - add: {inputs: [bn2, stem], name: residual}
          - activation: {activation: gelu}
          - global_avg_pool2d
          - dense: {units: 10, kernel_init: {normal: {stddev: 0.01}}, bias_init: {uniform: {minval: 0.1, maxval: 0.2}}}
          - softmax
        train: {optimizer: {sgd: {learning_rate: 0.1, momentum: 0.9, nesterov: true}}, schedule: {step: {every: 500}}}
    """,
    "inception_with_output": """
        nnspec: 1.1
        input: {shape: [8, 8, 1]}
        layers:
          - conv2d: {filters: 8, kernel: 1, name: branch_1x1}
          - conv2d: {filters: 4, kernel: 3, padding: same, inputs: input, name: branch_3x3}
          - max_pool2d: {size: 3, strides: 1, padding: same, inputs: [input], name: pool}
          - conv2d: {filters: 2, kernel: 1, name: pool_proj}
          - concat: {inputs: [branch_1x1, branch_3x3, pool_proj], axis: 2}
          - layer_norm
          - global_max_pool2d:
          - dense: {units: 10, name: logits}
          - dense: {units: 3, inputs: logits, name: unused_head}
        output: logits
        train:
          schedule: {exponential: {decay_steps: 100, staircase: true}}
          checkpoint:
          early_stopping: {monitor: val_accuracy, mode: max, patience: 2, restore_best: true}
        data:
    """,
    "shorthand_and_files": """
        nnspec: 1
        name: tabular-mlp
        description: "1.10"
        input: {shape: [64], dtype: float64}
        layers:
          - reshape: [8, -1]
          - flatten: {name: flat}
          - dropout: 0.25
          - dense: {units: 32, activation: relu, kernel_init: he_normal}
          - activation: tanh
          - dense: {units: 10}
          - softmax:
        train:
          {loss: mse, optimizer: rmsprop, schedule: constant, weight_decay: 5e-4, metrics: [accuracy],
           on_divergence: continue, seed: 3}
        data: {dataset: csv, path: table.csv, label: digit, normalize: standardize, test_split: 0}
    """,
}


@pytest.mark.parametrize("name", list(GRAPH_SPECS))
def test_graph_specs_validate(name: str, validator: jsonschema.Draft202012Validator) -> None:
    text = textwrap.dedent(GRAPH_SPECS[name])
    assert front_end_accepts(text)
    assert [e.message for e in errors(validator, text)] == []


def test_a_spec_that_extends_another_may_leave_the_rest_to_its_base(
    tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    (tmp_path / "base.yaml").write_text(textwrap.dedent(GRAPH_SPECS["residual"]) + "data: {dataset: digits}\n")
    child = "extends: base.yaml\nname: child\ninput: {dtype: float64}\ntrain: {epochs: 3}\ndata: {normalize: none}\n"
    assert front_end_accepts(child, base_dir=str(tmp_path))
    assert errors(validator, child) == []
    alone = child.replace("extends: base.yaml\n", "")
    assert {e.message for e in errors(validator, alone)} == {
        "'nnspec' is a required property",
        "'layers' is a required property",
        "'shape' is a required property",
        "'dataset' is a required property",
    }


def test_generated_specs_the_front_end_accepts_all_validate(validator: jsonschema.Draft202012Validator) -> None:
    """Mutated specs from the front end's fuzzer: an editor never underlines a spec `nnspec check` accepts."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.fuzz_frontend import structured_text

    rng = random.Random(13)
    valid = rejected = 0
    for _ in range(500):
        text, _ = structured_text(rng)
        if front_end_accepts(text, base_dir="/nonexistent"):
            valid += 1
            assert errors(validator, text) == [], text
        else:
            try:
                rejected += not validator.is_valid(instance(text))
            except SpecError:
                pass
    assert valid >= 80 and rejected >= 150


# --- specs the front end refuses --------------------------------------------------------------------

DIAGNOSTIC = re.compile(r"^\S+: error\[(E\d{4})\]: (.*)$", re.MULTILINE)
SECTION = re.compile(r"^(?:layers\[(\d+)\]|(layers|train|data|input)\b|spec\b)")


def schema_errors_of(golden: Path) -> list[tuple[str, str]]:
    return [
        (code, message)
        for code, message in DIAGNOSTIC.findall(golden.with_suffix(".expected").read_text())
        if code in SCHEMA_CODES
    ]


SCHEMA_GOLDENS = [p for p in GOLDENS if schema_errors_of(p)]


def where(message: str) -> tuple[Any, ...]:
    """The part of the spec a diagnostic names: ``("layers", 2)``, ``("train",)``, or ``()`` for the top level."""
    if message.startswith("unsupported spec language version"):
        return ("nnspec",)
    found = SECTION.match(message)
    assert found, message
    index, section = found.groups()
    return ("layers", int(index)) if index is not None else ((section,) if section else ())


def test_schema_codes_cover_enough_goldens() -> None:
    assert len(SCHEMA_GOLDENS) >= 50
    covered = {code for p in SCHEMA_GOLDENS for code, _ in schema_errors_of(p)}
    assert covered >= {f"E020{i}" for i in range(1, 8)} | {
        "E0402",
        "E0404",
        "E0405",
        "E0407",
        "E0501",
        "E0503",
        "E0504",
        "E0601",
        "E0602",
        "E0603",
        "E0604",
        "E0606",
        "E0607",
    }


@pytest.mark.parametrize("golden", SCHEMA_GOLDENS, ids=[p.stem for p in SCHEMA_GOLDENS])
def test_schema_errors_of_the_goldens_are_refused_where_they_are(
    golden: Path, validator: jsonschema.Draft202012Validator
) -> None:
    found = errors(validator, golden.read_text())
    if golden.stem in NOT_EXPRESSIBLE:
        assert found == [], f"the schema now refuses {golden.name}: take it off NOT_EXPRESSIBLE"
        return
    assert found, f"{golden.name} is valid under the schema"
    paths = [tuple(e.absolute_path) for e in found]
    for code, message in schema_errors_of(golden):
        part = where(message)
        assert any(path[: len(part)] == part for path in paths), f"{code} at {part}: schema errors only at {paths}"


def test_a_value_given_as_yaml_1_1_trap_is_refused_as_the_wrong_type(
    validator: jsonschema.Draft202012Validator,
) -> None:
    base = "nnspec: 1\ninput: {shape: [8, 8, 1]}\nlayers: [flatten, {dense: {units: 10, use_bias: %s}}]\n"
    assert errors(validator, base % "true") == []
    for trap in ("yes", "off", '"true"'):
        assert errors(validator, base % trap), trap


def test_plain_loader_values_stay_what_yaml_1_2_says() -> None:
    # The instance an editor validates: 1e-3 a number, yes a word (nnspec refuses both traps too).
    assert instance("a: 1e-3\nb: yes\nc: '10'\n") == {"a": 0.001, "b": "yes", "c": "10"}
    assert isinstance(parse("x: 1").get("x"), YScalar)  # type: ignore[union-attr]
