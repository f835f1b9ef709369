"""Hostile spec text, files and ``--set`` values: each class is refused with a positioned diagnostic
(``SpecError`` from ``nnspec.load``), never another exception, never a block, never a huge message."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nnspec
from nnspec.cli import main
from nnspec.compiler.frontend import analyse_text, diagnose, diagnose_text
from nnspec.compiler.rules import MAX_ELEMENTS
from nnspec.errors import Diagnostic, SpecError

ROOT = Path(__file__).parent.parent
HEAD = "nnspec: 1\ninput: {shape: [8]}\n"
VALID = HEAD + "layers: [{dense: {units: 10}}, softmax]\n"
DIGITS = "9" * 5000  # more than Python's 4,300-digit limit of int() on text


def errors(text: str, overrides: object = None) -> list[Diagnostic]:
    found = [d for d in diagnose_text(text, "spec.yaml", overrides) if d.severity == "error"]  # type: ignore[arg-type]
    assert found, "expected an error"
    for d in found:
        assert len(d.format()) < 400, d.format()[:200]
    return found


def write(folder: Path, text: str | bytes, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# --- integers with thousands of digits, values that overflow -----------------------------------------------


@pytest.mark.parametrize(
    "text, code, line",
    [
        (HEAD + f"layers: [{{dense: {{units: {DIGITS}}}}}]\n", "E0203", 3),
        (HEAD + f"layers: [{{dense: {{units: -{DIGITS}}}}}]\n", "E0203", 3),
        (f"nnspec: 1\ninput: {{shape: [{DIGITS}, 8]}}\nlayers: [flatten]\n", "E0606", 2),
        (HEAD + f"layers: [{{reshape: [{DIGITS}, -1]}}]\n", "E0203", 3),
        (
            HEAD
            + f"layers: [{{dense: {{units: 3, name: a}}}}, {{dense: {{units: 3, name: b, inputs: input}}}}, "
              f"{{concat: {{inputs: [a, b], axis: -{DIGITS}}}}}]\n",
            "E0203",
            3,
        ),
        (
            "nnspec: 1\ninput: {shape: [8, 8, 1]}\n" + f"layers: [{{conv2d: {{filters: 2, kernel: [3, {DIGITS}]}}}}]\n",
            "E0203",
            3,
        ),
        (VALID + f"train: {{epochs: {DIGITS}}}\n", "E0402", 4),
        (VALID + f"train: {{seed: -{DIGITS}}}\n", "E0402", 4),
        (VALID + f"train: {{checkpoint: {{every: {DIGITS}}}}}\n", "E0402", 4),
        (VALID + f"train: {{optimizer: {{adam: {{learning_rate: {DIGITS}}}}}}}\n", "E0402", 4),
        (VALID + f"train: {{optimizer: {{adam: {{learning_rate: 1{'0' * 400}.5}}}}}}\n", "E0402", 4),
        (VALID + f"train: {{weight_decay: 1e{DIGITS}}}\n", "E0402", 4),
        (VALID + f"data: {{dataset: npz, path: d.npz, validation_split: 0.{'0' * 5000}1}}\n", None, None),
        (HEAD + f"layers: [{{dropout: {DIGITS}}}]\n", "E0203", 3),
        (HEAD + f"layers: [{{dense: {{units: 3, kernel_init: {{normal: {{stddev: {DIGITS}}}}}}}}}]\n", "E0207", 3),
        (f"nnspec: {DIGITS}\ninput: {{shape: [8]}}\nlayers: [softmax]\n", "E0603", 1),
    ],
    ids=[
        "units",
        "negative-units",
        "input-shape",
        "reshape",
        "concat-axis",
        "kernel",
        "epochs",
        "seed",
        "checkpoint",
        "learning-rate",
        "long-float",
        "exponent",
        "split-ok",
        "dropout",
        "stddev",
        "version",
    ],
)
def test_integers_with_thousands_of_digits_are_diagnostics(text: str, code: str | None, line: int | None) -> None:
    found = diagnose_text(text, "spec.yaml")
    if code is None:
        assert not [d for d in found if d.severity == "error"]  # 0.000...1 is a fine split, just long
        return
    bad = errors(text)
    assert [(d.code, d.line) for d in bad] == [(code, line)]
    assert "characters)" in bad[0].message or "..." in bad[0].message or DIGITS not in bad[0].message


@pytest.mark.parametrize(
    "overrides, code",
    [
        ([f"train.epochs={DIGITS}"], "E0402"),
        ([f"train.epochs=-{DIGITS}"], "E0402"),
        ([f"input.shape=[{DIGITS}]"], "E0606"),
        ([f"layers.0.dense.units={DIGITS}"], "E0203"),
        ([f"layers[{DIGITS}].dense.units=3"], "E0111"),
        ([f"layers.{DIGITS}=3"], "E0111"),
        (["train.epochs=1e999999"], "E0402"),
        ({"train.epochs": 10**5000}, "E0111"),
        ({"train.epochs": -(10**5000)}, "E0111"),
        ({"train.epochs": float("inf")}, "E0402"),
        ({"train.optimizer.adam.learning_rate": float("nan")}, "E0402"),
        ({10**5000: 3}, "E0111"),
    ],
    ids=[
        "epochs",
        "negative",
        "shape",
        "units",
        "index",
        "dotted-index",
        "float-overflow",
        "py-int",
        "py-negative",
        "py-inf",
        "py-nan",
        "py-key",
    ],
)
def test_huge_set_values_are_diagnostics(overrides: object, code: str) -> None:
    found = errors(VALID, overrides)
    assert code in {d.code for d in found}
    assert all(d.file and d.file.startswith("--set ") for d in found if d.line is None)


def test_huge_values_through_load_raise_only_spec_error(tmp_path: Path) -> None:
    spec = write(tmp_path, VALID)
    with pytest.raises(SpecError) as caught:
        nnspec.load(str(spec), overrides=[f"train.epochs={DIGITS}", f"train.batch_size={DIGITS}"])
    assert sorted(d.code for d in caught.value.diagnostics) == ["E0402", "E0402"]


@pytest.mark.parametrize(
    "text, code, where",
    [
        ("nnspec: 1\ninput: {shape: [2147483647, 2147483647, 2147483647]}\nlayers: [flatten]\n", "E0606", (2, 16)),
        (
            "nnspec: 1\ninput: {shape: [65536, 65536]}\nlayers:\n  - flatten\n  - dense: {units: 2147483647}\n",
            "E0306",
            (5, 5),
        ),
        (
            "nnspec: 1\ninput: {shape: [1048576, 1048576, 1]}\nlayers:\n  - conv2d: {filters: 1024, kernel: 1}\n",
            "E0306",
            (4, 5),
        ),
    ],
    ids=["input", "dense-kernel", "conv-output"],
)
def test_sizes_beyond_any_machine_are_errors(text: str, code: str, where: tuple[int, int]) -> None:
    found = errors(text)
    assert [(d.code, (d.line, d.column)) for d in found] == [(code, where)]
    assert f"{MAX_ELEMENTS:,}" in found[0].message


def test_a_size_just_under_the_cap_is_valid_and_counted_exactly() -> None:
    graph = nnspec.compiler.frontend.check_text(
        "nnspec: 1\ninput: {shape: [16777216, 16777216]}\nlayers: [flatten]\ntrain: {loss: mse}\n"
    )
    assert graph.nodes[0].output_shape == (2**48,)


# --- NUL bytes in paths ---------------------------------------------------------------------------------


def test_nul_in_data_path_is_positioned() -> None:
    found = errors(VALID + 'data: {dataset: npz, path: "runs/a\\0b.npz"}\n')
    assert [(d.code, d.line, d.column) for d in found] == [("E0502", 4, 28)]
    assert "NUL byte" in found[0].message and "\\x00" in found[0].message


def test_nul_in_data_path_from_set_is_named_by_the_setting() -> None:
    found = errors(VALID, ['data.path="a\\0b"', "data.dataset=npz"])
    assert [(d.code, d.file) for d in found] == [("E0502", '--set data.path="a\\0b"')]


def test_nul_in_extends_is_positioned(tmp_path: Path) -> None:
    spec = write(tmp_path, 'extends: "base\\0.yaml"\n' + VALID)
    graph, found = diagnose(spec)
    assert graph is None and [(d.code, d.line, d.column) for d in found] == [("E0110", 1, 10)]
    assert "NUL byte" in found[0].message


def test_nul_in_the_spec_path_names_the_file() -> None:
    graph, found = diagnose("runs/a\0b.yaml")
    assert graph is None and [d.code for d in found] == ["E0101"]
    assert found[0].file == "runs/a\\x00b.yaml" and "NUL byte" in found[0].message


# --- FIFOs, directories, devices: refused from their type, never opened for a blocking read -----------------


def test_fifo_spec_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    start = time.perf_counter()
    graph, found = diagnose(fifo)
    assert time.perf_counter() - start < 1.0
    assert graph is None and [d.code for d in found] == ["E0101"]
    assert found[0].file == str(fifo) and "FIFO" in found[0].message


def test_check_of_a_fifo_exits_2_in_a_subprocess(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    result = subprocess.run(
        [sys.executable, "-m", "nnspec", "check", str(fifo)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"{fifo}: error[E0101]: cannot read spec {str(fifo)!r}: it is a FIFO (named pipe)")
    assert "Traceback" not in result.stderr


def test_symlink_to_a_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "spec.yaml").symlink_to(tmp_path / "pipe")
    graph, found = diagnose(tmp_path / "spec.yaml")
    assert graph is None and "FIFO" in found[0].message


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_devices_are_refused(device: str) -> None:
    start = time.perf_counter()
    graph, found = diagnose(device)
    assert time.perf_counter() - start < 1.0
    assert graph is None and [(d.code, d.file) for d in found] == [("E0101", device)]
    assert "a device, not a regular file" in found[0].message


def test_directory_is_refused(tmp_path: Path) -> None:
    graph, found = diagnose(tmp_path)
    assert graph is None and "it is a directory" in found[0].message


def test_fifo_and_directory_as_extends_bases_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "folder").mkdir()
    for base, words in (("pipe.yaml", "FIFO"), ("folder", "directory")):
        spec = write(tmp_path, f"extends: {base}\n" + VALID)
        graph, found = diagnose(spec)
        assert graph is None and [d.code for d in found] == ["E0101"], found
        assert words in found[0].message and found[0].file == str(tmp_path / base)


# --- invalid UTF-8: the line and column of the first invalid byte -------------------------------------------


@pytest.mark.parametrize(
    "data, line, column, byte",
    [
        (b"nnspec: 1\nname: \xff\n", 2, 7, "0xff"),
        (b"nnspec: 1\ndescription: '\xc3\xa9t\xc3\xa9 \xe2\x82'\n", 2, 19, "0xe2"),
        (b"\xef\xbb\xbfnnspec: 1\n\xfe\n", 2, 1, "0xfe"),
        (b"nnspec: 1\r\ninput:\r\n  shape: [8\xc0\xaf]\n", 3, 12, "0xc0"),
        (b"nnspec: 1\ndescription: '\xed\xa0\x80'\n", 2, 15, "0xed"),
    ],
    ids=["plain", "after-multibyte", "after-bom", "crlf", "encoded-surrogate"],
)
def test_invalid_utf8_is_reported_at_its_position(
    tmp_path: Path, data: bytes, line: int, column: int, byte: str
) -> None:
    graph, found = diagnose(write(tmp_path, data))
    assert graph is None
    assert [(d.code, d.line, d.column) for d in found] == [("E0101", line, column)]
    assert f"invalid byte {byte} at line {line}, column {column}" in found[0].message


def test_invalid_utf8_in_an_extends_base_names_the_base(tmp_path: Path) -> None:
    write(tmp_path, b"nnspec: 1\n\n  x: \x80\n", "base.yaml")
    graph, found = diagnose(write(tmp_path, "extends: base.yaml\n" + VALID))
    assert graph is None and [(d.file, d.line, d.column) for d in found] == [(str(tmp_path / "base.yaml"), 3, 6)]


def test_undecodable_set_value_is_reported_with_the_byte() -> None:
    value = b"3\xff".decode("utf-8", "surrogateescape")  # what Python makes of such a command-line argument
    found = errors(VALID, [f"train.epochs={value}"])
    assert [d.code for d in found] == ["E0111"]
    assert "invalid byte 0xff at line 1, column 2" in found[0].message


def test_lone_surrogate_in_text_is_a_diagnostic() -> None:
    found = errors("nnspec: 1\nname: a\ud800b\n")
    assert [(d.code, d.line, d.column) for d in found] == [("E0101", 2, 8)]


def test_check_prints_an_undecodable_path_without_crashing(tmp_path: Path) -> None:
    name = os.fsdecode(b"sp\xffec.yaml")
    write(tmp_path, VALID, name)
    result = subprocess.run(
        [sys.executable, "-m", "nnspec", "check", os.fsencode(tmp_path / name)],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert b"sp\\udcffec.yaml: ok (2 layers" in result.stdout


# --- deep recursion: nesting, extends chains and cycles, overrides --------------------------------------------


def test_long_extends_chain_is_a_diagnostic(tmp_path: Path) -> None:
    for i in range(200):
        write(tmp_path, f"extends: s{i + 1}.yaml\n" if i < 199 else VALID, f"s{i}.yaml")
    graph, found = diagnose(tmp_path / "s0.yaml")
    assert graph is None and [d.code for d in found] == ["E0110"]
    assert "chain is longer than" in found[0].message


@pytest.mark.parametrize(
    "files", [{"a.yaml": "extends: a.yaml\n"}, {"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: ./c/../a.yaml\n"}]
)
def test_extends_cycles_are_diagnostics(tmp_path: Path, files: dict[str, str]) -> None:
    (tmp_path / "c").mkdir()
    for name, text in files.items():
        write(tmp_path, text + VALID, name)
    graph, found = diagnose(tmp_path / "a.yaml")
    assert graph is None and [d.code for d in found] == ["E0110"] and "cycle" in found[0].message


def test_extends_through_a_symlink_loop_is_a_diagnostic(tmp_path: Path) -> None:
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    graph, found = diagnose(write(tmp_path, "extends: loop1\n" + VALID))
    assert graph is None and [d.code for d in found] in (["E0101"], ["E0110"])


@pytest.mark.parametrize(
    "overrides",
    [
        ["train.epochs=" + "[" * 10_000 + "]" * 10_000],
        ["train.epochs=" + "{a: " * 5_000 + "1" + "}" * 5_000],
        [".".join(["a"] * 5_000) + "=1"],
        ["layers" + "[0]" * 5_000 + "=1"],
    ],
    ids=["flow-lists", "flow-maps", "dotted", "indexed"],
)
def test_deep_set_values_and_paths_are_diagnostics(overrides: list[str]) -> None:
    start = time.perf_counter()
    found = errors(VALID, overrides)
    assert time.perf_counter() - start < 2.0
    assert [d.code for d in found] == ["E0111"]


def test_deep_and_self_containing_python_overrides_are_diagnostics() -> None:
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    loop: list = [1]
    loop.append(loop)
    found = errors(VALID, {"train.metrics": deep, "train.seed": loop})
    assert [d.code for d in found] == ["E0111", "E0111"]
    assert all("nested more than" in d.message for d in found)


# --- malformed --set ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "item, words",
    [
        ("train.epochs", "must look like key=value"),
        ("=3", "is not a dotted path"),
        (" =3", "is not a dotted path"),
        ("train..epochs=3", "is not a dotted path"),
        ("[0]=3", "is not a dotted path"),
        ("layers[=3", "is not a dotted path"),
        ("train epochs=3", "is not a dotted path"),
        ("train.epochs=[", "is not valid YAML"),
        ("train.epochs=a: b: c", "is not valid YAML"),
        ("train.epochs=!!python/object:os.system", "is not valid YAML"),
        ("layers.7.dense.units=3", "is a list of 2"),
        ("layers.²=3", "is not an index"),
        ("nnspec.x=1", "is a single value"),
        ("x" * 100_000 + "=1", "is longer than 256 characters"),
    ],
)
def test_malformed_set_items_are_diagnostics(item: str, words: str) -> None:
    found = errors(VALID, [item])
    assert [d.code for d in found] == ["E0111"]
    assert words in found[0].message
    assert len(found[0].file or "") < 120


def test_a_single_set_string_is_one_override() -> None:
    graph, found = analyse_text(VALID, "spec.yaml", "train.epochs=3")  # type: ignore[arg-type]
    assert graph is not None and graph.train.epochs == 3 and found == []


def test_non_string_set_items_are_diagnostics() -> None:
    found = errors(VALID, [3, None, 10**5000])  # type: ignore[list-item]
    assert [d.code for d in found] == ["E0111"] * 3


def test_check_with_hostile_set_values_exits_2_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(ROOT / "specs" / "digits_mlp.yaml")
    assert main(["check", spec, "--set", f"train.epochs={DIGITS}", "--set", "=1", "--set", "data.path=a\x00b"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error[") == 3
    assert len(err) < 2000
