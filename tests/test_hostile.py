"""Hostile spec files: each is refused with a diagnostic, quickly, and without any side effect."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from nnspec.compiler.frontend import diagnose, diagnose_text
from nnspec.compiler.loader import MAX_DEPTH, MAX_FILE_BYTES

VALID_TAIL = "input: {shape: [8, 8, 1]}\nlayers: [flatten, {dense: {units: 10}}, softmax]\n"


def only_codes(path: Path) -> list[str]:
    graph, diagnostics = diagnose(path)
    assert graph is None
    return sorted({d.code for d in diagnostics})


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize(
    "payload",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/new:os.system ['touch {marker}']",
        "!!python/name:os.system",
        "!!python/module:os",
        "!!binary aGVsbG8=",
        "!!set {{a, b}}",
        "!custom 1",
    ],
)
def test_tags_are_refused_without_running_anything(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned"
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"nnspec: 1\nname: {payload.format(marker=marker)}\n{VALID_TAIL}")
    before = snapshot(tmp_path)
    assert only_codes(spec) == ["E0104"]
    assert not marker.exists()
    assert snapshot(tmp_path) == before


def test_billion_laughs_is_refused_fast(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    spec = tmp_path / "laughs.yaml"
    spec.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    codes = only_codes(spec)
    assert time.perf_counter() - start < 0.5
    assert codes == ["E0107"]


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "loop.yaml"
    spec.write_text("a: &x [1, *x]\n")
    assert only_codes(spec) == ["E0107"]


@pytest.mark.parametrize("style", ["flow", "block"])
def test_deep_nesting_is_refused_fast(tmp_path: Path, style: str) -> None:
    depth = 100_000 if style == "flow" else 500
    if style == "flow":
        text = "nnspec: " + "[" * depth + "]" * depth + "\n"
    else:
        text = "".join(" " * i + f"k{i}:\n" for i in range(depth)) + " " * depth + "v: 1\n"
    spec = tmp_path / "deep.yaml"
    spec.write_text(text)
    start = time.perf_counter()
    codes = only_codes(spec)
    assert time.perf_counter() - start < 1.0
    assert codes == ["E0106"]
    assert depth > MAX_DEPTH


def test_twenty_megabyte_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    spec = tmp_path / "big.yaml"
    with open(spec, "wb") as handle:
        handle.write(b"nnspec: 1\ndescription: '")
        handle.seek(20 * 1024 * 1024)
        handle.write(b"'\n")
    assert os.path.getsize(spec) > MAX_FILE_BYTES
    start = time.perf_counter()
    graph, diagnostics = diagnose(spec)
    assert time.perf_counter() - start < 0.5
    assert graph is None and [d.code for d in diagnostics] == ["E0102"]
    assert "bytes" in diagnostics[0].message


@pytest.mark.parametrize(
    "name",
    [
        "os.system",
        "../../etc/passwd",
        "a b",
        "/etc/passwd",
        "..",
        "__import__('os')",
        "x" * 65,
        "$(rm -rf ~)",
        "ok\u2028x",
    ],
)
def test_hostile_model_names_are_refused(tmp_path: Path, name: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"nnspec: 1\nname: {json.dumps(name)}\n{VALID_TAIL}")
    before = snapshot(tmp_path)
    assert only_codes(spec) == ["E0604"]
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["os.system", "../../etc/passwd", "a b", "kernel.bias", "a/b"])
def test_hostile_layer_names_are_refused(name: str) -> None:
    text = f"nnspec: 1\ninput: {{shape: [8]}}\nlayers:\n  - dense: {{units: 10, name: '{name}'}}\n"
    assert [d.code for d in diagnose_text(text)] == ["E0604"]


def test_dataset_and_layer_names_resolve_only_through_the_registry() -> None:
    text = (
        "nnspec: 1\ninput: {shape: [8]}\nlayers:\n  - os.system: {units: 1}\n"
        "  - dense: {units: 10, activation: os.system}\n"
        "train: {optimizer: subprocess.run}\ndata: {dataset: builtins.eval}\n"
    )
    assert sorted(d.code for d in diagnose_text(text)) == ["E0201", "E0206", "E0404", "E0503"]


def test_binary_and_non_utf8_files_are_refused(tmp_path: Path) -> None:
    spec = tmp_path / "bin.yaml"
    spec.write_bytes(b"nnspec: 1\nname: \xff\xfe\x00\x01\n")
    assert only_codes(spec) == ["E0101"]
    spec.write_bytes(b"nnspec: 1\nname: a\x00b\n")
    assert only_codes(spec) == ["E0103"]


def test_huge_numbers_are_diagnostics_not_crashes() -> None:
    text = (
        f"nnspec: 1\ninput: {{shape: [8]}}\nlayers:\n  - dense: {{units: {10**40}}}\n"
        "train: {epochs: 1e400, seed: -1}\n"
    )
    assert sorted(d.code for d in diagnose_text(text)) == ["E0203", "E0402", "E0402"]


def test_merge_keys_are_not_special() -> None:
    text = "base: &b {epochs: 3}\nnnspec: 1\n" + VALID_TAIL + "train:\n  <<: *b\n"
    found = diagnose_text(text)
    assert {d.code for d in found} == {"E0601", "E0401"}


def test_missing_file_and_directory_are_diagnostics(tmp_path: Path) -> None:
    assert only_codes(tmp_path / "nope.yaml") == ["E0101"]
    assert only_codes(tmp_path) == ["E0101"]
