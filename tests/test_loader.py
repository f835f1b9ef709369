"""The safe loader, positions, YAML 1.1 traps, composition (extends, overrides) and name resolution."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import nnspec
from nnspec.compiler.frontend import check_text, diagnose_text, load_spec
from nnspec.compiler.loader import YMap, YScalar, YSeq, parse, to_python
from nnspec.errors import SpecError

BASE = textwrap.dedent(
    """\
    nnspec: 1
    name: tiny
    input: {shape: [8, 8, 1]}
    layers:
      - flatten
      - dense: {units: 16, activation: relu}
      - dense: {units: 10}
      - softmax
    """
)


def codes(text: str, **kw) -> list[tuple[str, int | None, int | None]]:
    return [(d.code, d.line, d.column) for d in diagnose_text(text, **kw)]


def test_nodes_keep_one_based_positions() -> None:
    root = parse("a: 1\nb:\n  - x\n  - {c: 'q'}\n")
    assert isinstance(root, YMap)
    a_key, a = root.items["a"]
    assert (a_key.line, a_key.column, a.line, a.column) == (1, 1, 1, 4)
    b = root.get("b")
    assert isinstance(b, YSeq) and (b.items[0].line, b.items[0].column) == (3, 5)
    c = b.items[1]
    assert isinstance(c, YMap) and c.get("c") == YScalar("q", False, None, 4, 9)


@pytest.mark.parametrize(
    "text, kind, value",
    [
        ("1e-3", "float", 0.001),
        ("3", "int", 3),
        ("-0.5", "float", -0.5),
        ("true", "bool", True),
        ("~", "null", None),
        ("yes", "yaml11_bool", "yes"),
        ("off", "yaml11_bool", "off"),
        ("0777", "yaml11_number", "0777"),
        ("0x1F", "yaml11_number", "0x1F"),
        ("1_000", "yaml11_number", "1_000"),
        ("12:30", "yaml11_number", "12:30"),
        (".inf", "special_float", float("inf")),
        ("relu", "str", "relu"),
        ("'1.10'", "str", "1.10"),
    ],
)
def test_scalar_kinds(text: str, kind: str, value: object) -> None:
    node = parse(f"v: {text}\n").get("v")  # type: ignore[union-attr]
    assert isinstance(node, YScalar)
    assert node.kind == kind
    assert node.value == value


def test_scientific_learning_rate_is_a_number() -> None:
    graph = check_text(BASE + "train:\n  optimizer: {adam: {learning_rate: 1e-3}}\n  weight_decay: 5e-4\n")
    assert graph.train.optimizer.learning_rate == 0.001
    assert graph.train.weight_decay == 0.0005


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "Yes", "OFF"])
def test_yaml11_booleans_are_refused_where_a_bool_is_expected(word: str) -> None:
    found = diagnose_text(BASE + f"train:\n  optimizer: {{sgd: {{nesterov: {word}}}}}\n")
    assert [d.code for d in found] == ["E0402"]
    assert "true or false" in found[0].hint


def test_yaml11_word_is_refused_where_a_word_is_expected() -> None:
    found = diagnose_text(BASE + "data: {dataset: digits, normalize: off}\n")
    assert [d.code for d in found] == ["E0502"]
    assert "quote" in found[0].hint


def test_plain_number_is_refused_where_a_string_is_expected() -> None:
    found = diagnose_text(BASE + "data: {dataset: npz, path: 1.10}\n")
    assert [(d.code, d.line) for d in found] == [("E0502", 9)]
    assert "quote it" in found[0].hint
    graph = check_text(BASE + "data: {dataset: npz, path: '1.10'}\n")
    assert graph.data.path == "1.10"


def test_octal_looking_integer_is_refused() -> None:
    found = diagnose_text(BASE + "train: {epochs: 010}\n")
    assert [d.code for d in found] == ["E0402"]
    assert "octal" in found[0].message


def test_duplicate_keys_are_errors_at_the_second_key() -> None:
    assert codes("nnspec: 1\nnnspec: 1\n") == [("E0105", 2, 1)]


def test_every_tag_is_refused() -> None:
    for tagged in ("!!str 3", "!foo bar", "!!python/object:os.system x", "!!float 1"):
        assert [c for c, _, _ in codes(f"nnspec: 1\nname: {tagged}\n")] == ["E0104"]


def test_aliases_are_expanded_as_copies() -> None:
    root = parse("a: &x {k: [1, 2]}\nb: *x\n")
    assert to_python(root) == {"a": {"k": [1, 2]}, "b": {"k": [1, 2]}}
    assert root.get("a") is not root.get("b")  # type: ignore[union-attr]


def test_all_problems_reported_in_one_pass_sorted() -> None:
    text = (
        BASE.replace("units: 16", "units: 0").replace("name: tiny", "name: a.b")
        + "train: {epochs: 0}\ndata: {dataset: minst}\n"
    )
    found = codes(text)
    assert [c for c, _, _ in found] == ["E0604", "E0203", "E0402", "E0503"]
    assert found == sorted(found, key=lambda t: (t[1], t[2]))


def test_load_spec_fills_defaults_and_names() -> None:
    graph = check_text(BASE, "tiny.yaml")
    assert [n.name for n in graph] == ["flatten_1", "dense_1", "dense_2", "softmax_1"]
    assert graph.train.batch_size == 32 and graph.train.epochs == 10 and graph.train.seed == 0
    assert graph.train.optimizer.name == "adam"
    assert dict(graph.train.optimizer.params) == {
        "learning_rate": 0.001,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-7,
    }
    assert graph.train.metrics == ("accuracy",)
    assert graph.data.dataset == "digits" and graph.data.validation_split == 0.1 and graph.data.test_split == 0.2
    assert graph.dtype == "float32" and graph.source == "tiny.yaml" and graph.version == 1
    dense = graph.nodes[1]
    assert dense.attrs["activation"] == "relu" and dense.attrs["use_bias"] is True
    assert dense.attrs["kernel_init"].name == "glorot_uniform" and dense.attrs["bias_init"].name == "zeros"


def test_default_names_count_every_layer_of_a_type() -> None:
    text = BASE.replace("{units: 16, activation: relu}", "{units: 16, activation: relu, name: hidden}")
    graph = check_text(text)
    assert [n.name for n in graph] == ["flatten_1", "hidden", "dense_2", "softmax_1"]


def test_model_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my model.v2.yaml"
    path.write_text(BASE.replace("name: tiny\n", ""))
    assert load_spec(path).name == "my_model_v2"


def test_shorthand_parameters() -> None:
    text = BASE.replace("  - softmax\n", "  - dropout: 0.25\n  - activation: tanh\n  - softmax\n")
    graph = check_text(text)
    assert graph.nodes[3].attrs == {"rate": 0.25}
    assert graph.nodes[4].attrs == {"activation": "tanh"}


def test_initializer_forms() -> None:
    text = BASE.replace("{units: 10}", "{units: 10, kernel_init: {normal: {stddev: 0.1}}, bias_init: ones}")
    node = check_text(text).nodes[2]
    assert node.attrs["kernel_init"].name == "normal"
    assert dict(node.attrs["kernel_init"].args) == {"mean": 0.0, "stddev": 0.1}
    assert node.attrs["bias_init"].name == "ones"


def test_optimizer_and_schedule_resolution() -> None:
    graph = check_text(
        BASE + "train:\n  optimizer: {sgd: {momentum: 0.9, nesterov: true}}\n  schedule: {step: {every: 100}}\n"
    )
    assert graph.train.optimizer.name == "sgd"
    assert dict(graph.train.optimizer.params) == {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True}
    assert graph.train.schedule.name == "step" and dict(graph.train.schedule.params) == {"factor": 0.1, "every": 100}
    bare = check_text(BASE + "train: {optimizer: rmsprop, schedule: constant}\n")
    assert bare.train.optimizer.params["rho"] == 0.9 and bare.train.schedule.name == "constant"


def test_data_options() -> None:
    npz = check_text(
        BASE.replace("[8, 8, 1]", "[64]").replace("  - flatten\n", "")
        + "data: {dataset: npz, path: d.npz, x: images}\n"
    )
    assert npz.data.options == {"x": "images", "y": "y"} and npz.data.path == "d.npz"
    csv = check_text(
        BASE.replace("[8, 8, 1]", "[64]").replace("  - flatten\n", "") + "data: {dataset: csv, path: d.csv}\n"
    )
    assert csv.data.options == {"label": "label"}
    assert check_text(BASE + "data: {dataset: digits}\n").data.options == {}


def test_positions_are_recorded_for_later_diagnostics() -> None:
    graph = check_text(BASE + "train:\n  batch_size: 64\ndata:\n  dataset: digits\n", "tiny.yaml")
    pos = graph.positions
    assert pos["input.shape"] == (3, 16)
    assert pos["layers[0]"] == (5, 5)
    assert pos["layers[1]"] == (6, 5)
    assert pos["layers[1].units"] == (6, 20)
    assert pos["train.batch_size"] == (10, 15)
    assert pos["data.dataset"] == (12, 12)


def test_overrides_as_dict_and_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(BASE)
    graph = load_spec(
        path, {"train.epochs": 3, "train.optimizer": "sgd", "layers.1.dense.units": 32, "train.seed": "7"}
    )
    assert graph.train.epochs == 3 and graph.train.optimizer.name == "sgd" and graph.nodes[1].output_shape == (32,)
    assert graph.train.seed == 7
    graph = load_spec(
        path,
        {
            "input.shape": [64],
            "layers.0": "dropout: 0.0",
            "train.optimizer": {"sgd": {"nesterov": True, "momentum": 0.5}},
        },
    )
    assert (
        graph.input_shape == (64,)
        and graph.nodes[0].op == "dropout"
        and graph.train.optimizer.params["nesterov"] is True
    )
    graph = nnspec.load(
        str(path),
        [
            "train.epochs=4",
            "train.optimizer={adam: {learning_rate: 1e-2}}",
            "layers[1].dense.units=8",
            "data.dataset=digits",
        ],
    )
    assert (
        graph.train.epochs == 4 and graph.train.optimizer.learning_rate == 0.01 and graph.nodes[1].output_shape == (8,)
    )


def test_override_problems_are_diagnostics(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(BASE)
    with pytest.raises(SpecError) as err:
        load_spec(
            path, ["train.epoch=3", "train.epochs=zero", "layers.9.dense.units=1", "name.x=1", "novalue", "a b=1"]
        )
    found = {(d.code, d.file) for d in err.value.diagnostics}
    assert ("E0401", "--set train.epoch=3") in found
    assert ("E0402", "--set train.epochs=zero") in found
    assert ("E0111", "--set layers.9.dense.units=1") in found
    assert ("E0111", "--set name.x=1") in found
    assert ("E0111", "--set novalue") in found
    assert ("E0111", "--set a b=1") in found
    assert any("did you mean 'epochs'" in d.message for d in err.value.diagnostics)


def test_override_values_are_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(BASE)
    with pytest.raises(SpecError) as err:
        load_spec(path, ["name=!!python/object/apply:os.system ['true']"])
    assert [d.code for d in err.value.diagnostics] == ["E0111"]


def test_extends_merges_sections(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        BASE + "train: {epochs: 20, batch_size: 16, optimizer: {sgd: {momentum: 0.9}}}\ndata: {dataset: digits}\n"
    )
    child = tmp_path / "sub" / "child.yaml"
    child.parent.mkdir()
    child.write_text("extends: ../base.yaml\nname: child\ntrain: {epochs: 2, optimizer: adam}\n")
    graph = load_spec(child)
    assert graph.name == "child"
    assert graph.train.epochs == 2 and graph.train.batch_size == 16
    assert graph.train.optimizer.name == "adam" and "momentum" not in graph.train.optimizer.params
    assert len(graph.nodes) == 4
    assert "train.epochs" in graph.positions and "input.shape" not in graph.positions


def test_extends_cycle_and_missing_base(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n" + BASE)
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n" + BASE)
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path / "a.yaml")
    assert [d.code for d in err.value.diagnostics] == ["E0110"]
    (tmp_path / "c.yaml").write_text("extends: nowhere.yaml\n" + BASE)
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path / "c.yaml")
    assert [(d.code, d.line, d.column) for d in err.value.diagnostics] == [("E0110", 1, 10)]


def test_extends_base_is_loaded_safely(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(BASE.replace("name: tiny", "name: !!python/object/apply:os.system ['true']"))
    (tmp_path / "child.yaml").write_text("extends: base.yaml\n")
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path / "child.yaml")
    assert [(d.code, d.file) for d in err.value.diagnostics] == [("E0104", str(tmp_path / "base.yaml"))]


def test_spec_error_is_a_value_error_with_all_diagnostics() -> None:
    with pytest.raises(ValueError) as err:
        check_text("nnspec: 1\n")
    assert isinstance(err.value, SpecError)
    assert [d.code for d in err.value.diagnostics] == ["E0602", "E0602"]


def test_schema_tables_agree_with_the_ir_and_runtime() -> None:
    from nnspec.compiler import ir, opset, schema
    from nnspec.compiler.training_defaults import OPTIMIZER_DEFAULTS, SCHEDULE_DEFAULTS, SCHEDULE_REQUIRED

    assert tuple(schema.LAYER_FIELDS) == opset.LAYER_TYPES
    assert {k: set(v) for k, v in schema.OPTIMIZER_FIELDS.items()} == {k: set(v) for k, v in OPTIMIZER_DEFAULTS.items()}
    assert set(schema.SCHEDULE_FIELDS) == set(SCHEDULE_DEFAULTS) == set(ir.SCHEDULES)
    for name, fields in schema.SCHEDULE_FIELDS.items():
        assert set(fields) == set(SCHEDULE_DEFAULTS[name]) | set(SCHEDULE_REQUIRED[name])
        assert {k for k, f in fields.items() if f.required} == set(SCHEDULE_REQUIRED[name])
