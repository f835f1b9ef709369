"""One source for op facts: every op's description, fields, language version and flags live in the op table
(:data:`nnspec.compiler.opset.OPS`), and the schema, the version an import writes, the ops kept in float32
under mixed precision and every list of layer types are derived from it."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest

from nnspec.compiler import opset
from nnspec.compiler.frontend import check_text
from nnspec.compiler.json_schema import SchemaGap, build_schema
from nnspec.compiler.opset import COMMON_FIELDS, OPS, WIDE_OPS
from nnspec.compiler.schema import LANGUAGE_VERSIONS, TOP_FIELDS
from nnspec.compiler.values import Field
from nnspec.compiler.versions import additions, version_needed
from nnspec.semantics.precision import wide_keys

NNSPEC = Path(__file__).resolve().parent.parent / "nnspec"
SPEC_MD = NNSPEC.parent / "docs" / "spec.md"
#: The version-1 vocabulary of /work/shared/DESIGN.md ("The spec language, version 1").
VERSION_1 = ["dense", "conv2d", "max_pool2d", "avg_pool2d", "flatten", "reshape", "dropout", "activation", "softmax"]
VERSION_1_1 = ["add", "concat", "batch_norm", "layer_norm", "global_avg_pool2d", "global_max_pool2d"]


def _older_or_same(a: str, b: str) -> bool:
    return LANGUAGE_VERSIONS.index(a) <= LANGUAGE_VERSIONS.index(b)


@pytest.mark.parametrize("name", list(OPS))
def test_every_op_and_field_has_a_description_and_a_version(name: str) -> None:
    op = OPS[name]
    assert op.doc.strip(), f"{name} has no doc"
    assert op.since in LANGUAGE_VERSIONS, f"{name}: since {op.since!r} is not a language version"
    for key in [*op.fields, *COMMON_FIELDS]:
        assert op.key_doc(key).strip(), f"{name}.{key} has no description"
        since = op.key_since(key)
        assert since in LANGUAGE_VERSIONS, f"{name}.{key}: since {since!r} is not a language version"
        if key in op.fields:
            assert _older_or_same(op.since, since), f"{name}.{key} is older than {name}"
    if op.merge:
        assert op.inputs_doc, f"{name} reads several inputs; say which in inputs_doc"


def test_common_and_top_level_keys_have_versions_nnspec_reads() -> None:
    for key, entry in COMMON_FIELDS.items():
        assert entry.doc and entry.since in LANGUAGE_VERSIONS, key
    for key, entry in TOP_FIELDS.items():
        assert entry.since is None or entry.since in LANGUAGE_VERSIONS, key


def test_versions_hold_the_vocabularies_of_the_design() -> None:
    found = {added.version: added for added in additions()}
    assert list(found) == list(LANGUAGE_VERSIONS) and LANGUAGE_VERSIONS[:3] == ("1", "1.1", "1.2")
    assert found["1"].ops == VERSION_1
    assert found["1.1"].ops == VERSION_1_1
    assert set(found["1.1"].keys) == {"inputs", "output"}
    assert not set(found["1.2"].ops) & set(VERSION_1 + VERSION_1_1)


def test_the_schema_describes_each_version_from_the_op_table() -> None:
    prop = build_schema()["properties"]["nnspec"]
    assert prop["enum"] == [json.loads(v) for v in LANGUAGE_VERSIONS]
    text = prop["description"]
    for added in additions():
        assert all(op in text for op in added.ops), added
    assert "1.1 added the layers add, concat, batch_norm, layer_norm, global_avg_pool2d and global_max_pool2d" in text


def test_layer_descriptions_in_the_schema_are_the_op_tables() -> None:
    defs = build_schema()["$defs"]
    for name, op in OPS.items():
        layer = defs[f"layer.{name}"]
        properties = (layer["anyOf"][0] if "anyOf" in layer else layer)["properties"]
        assert layer["description"] == op.doc
        for key, prop in properties.items():
            assert prop["description"] == op.key_doc(key), f"{name}.{key}"
    assert defs["layer.max_pool2d"]["anyOf"][0]["properties"]["strides"]["description"].endswith("Default: the size.")
    assert defs["layer.add"]["properties"]["inputs"]["description"] == OPS["add"].inputs_doc


def test_a_layer_key_without_description_is_a_schema_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    dense = OPS["dense"]
    fields = {**dense.fields, "units": dataclasses.replace(dense.fields["units"], doc="")}
    monkeypatch.setitem(OPS, "dense", dataclasses.replace(dense, fields=fields))
    with pytest.raises(SchemaGap, match="dense key 'units'"):
        build_schema()


def test_an_op_without_a_version_is_a_schema_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(OPS, "softmax", dataclasses.replace(OPS["softmax"], since=""))
    with pytest.raises(SchemaGap, match="op softmax"):
        build_schema()


def test_a_later_key_of_an_older_op_reaches_the_version_list(monkeypatch: pytest.MonkeyPatch) -> None:
    dense = OPS["dense"]
    extra = Field(lambda n: n, doc="A key that came later.", since="1.2")
    monkeypatch.setitem(OPS, "dense", dataclasses.replace(dense, fields={**dense.fields, "later": extra}))
    assert "dense.later" in {added.version: added for added in additions()}["1.2"].keys
    assert version_needed([("dense", ["units"])]) == "1"
    assert version_needed([("dense", ["units", "later"])]) == "1.2"


def test_the_version_a_spec_needs() -> None:
    assert version_needed([("flatten", []), ("dense", ["units", "name"])]) == "1"
    assert version_needed([("flatten", []), ("batch_norm", ["momentum"])]) == "1.1"
    assert version_needed([("flatten", []), ("dense", ["units", "inputs"])]) == "1.1"
    assert version_needed([("dense", ["units"])], ["name", "description"]) == "1"
    assert version_needed([("dense", ["units"])], ["output"]) == "1.1"


def test_wide_ops_are_the_op_tables_and_keep_their_weights_wide() -> None:
    assert WIDE_OPS == {name for name, op in OPS.items() if op.wide} == {"batch_norm", "layer_norm"}
    graph = check_text(
        "nnspec: 1.1\ninput: {shape: [4]}\n"
        "layers: [{dense: {units: 3, name: d}}, {batch_norm: {name: bn}}, {layer_norm: {name: ln}}]\n"
    )
    assert wide_keys(graph) == {"bn.gamma", "bn.beta", "ln.gamma", "ln.beta"}


def _op_name_collections(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """Literal tuples, lists and sets that hold two or more layer type names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            names = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in OPS]
            if len(names) >= 2:
                found.append((node.lineno, names))
    return found


def test_no_module_keeps_its_own_list_of_layer_types() -> None:
    own = [
        f"{path.relative_to(NNSPEC.parent)}:{line}: {names}"
        for path in sorted(NNSPEC.rglob("*.py"))
        if path.name != "opset.py"
        for line, names in _op_name_collections(ast.parse(path.read_text(), str(path)))
    ]
    assert not own, "derive these from nnspec.compiler.opset.OPS:\n" + "\n".join(own)
    assert opset.LAYER_TYPES == tuple(OPS)


def _reference_sections() -> dict[str, str]:
    """The text under each ``### heading`` of docs/spec.md, by every op name the heading holds."""
    text = SPEC_MD.read_text()
    sections = {}
    for heading in re.finditer(r"^### (.+)$", text, re.M):
        rest = text[heading.end() :]
        end = re.search(r"^#{1,3} ", rest, re.M)
        body = rest[: end.start() if end else len(rest)]
        sections.update({word: body for word in re.findall(r"[a-z_0-9]+", heading.group(1))})
    return sections


def test_the_language_reference_has_a_section_for_every_op_naming_its_fields() -> None:
    sections = _reference_sections()
    for name, op in OPS.items():
        assert name in sections, f"docs/spec.md has no ### section for {name}"
        missing = [key for key in op.fields if not re.search(rf"`{key}\b|\b{key}:", sections[name])]
        assert not missing, f"docs/spec.md's section of {name} does not mention {missing}"
