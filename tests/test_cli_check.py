"""``nnspec check`` and ``nnspec summary``: output, exit codes, no traceback, no engine imported."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnspec.cli import main

ROOT = Path(__file__).parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
INVALID = ROOT / "tests" / "specs_invalid"
ENGINES = ("jax", "tensorflow", "pytensor", "theano", "keras", "torch")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nnspec", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_every_example_spec_passes_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert SPECS
    assert main(["check", *map(str, SPECS)]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert len(out.out.splitlines()) == len(SPECS)
    assert f"{ROOT / 'specs' / 'mnist_cnn.yaml'}: ok (8 layers, 34,826 parameters)" in out.out.splitlines()


def test_invalid_spec_exits_2_with_diagnostics_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    bad = INVALID / "many_errors.yaml"
    good = ROOT / "specs" / "digits_mlp.yaml"
    assert main(["check", str(bad), str(good)]) == 2
    out = capsys.readouterr()
    assert out.out == f"{good}: ok (4 layers, 9,610 parameters)\n"
    lines = [line for line in out.err.splitlines() if not line.startswith("  hint:")]
    assert len(lines) == 6
    assert (
        lines[0]
        == f"{bad}:5:35: error[E0203]: layers[0] 'conv2d_1' (conv2d): "
        "kernel must be a positive int or [kh, kw]; got [3, 0]"
    )
    assert "  hint: use kernel: 3 or kernel: [3, 3]" in out.err


def test_check_with_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(ROOT / "specs" / "digits_mlp.yaml")
    assert main(["check", spec, "--set", "layers.1.dense.units=64"]) == 0
    assert "(4 layers, 4,810 parameters)" in capsys.readouterr().out
    assert main(["check", spec, "--set", "train.epoch=3"]) == 2
    assert (
        "--set train.epoch=3: error[E0401]: train: unknown key 'epoch'; did you mean 'epochs'?"
        in capsys.readouterr().err
    )


def test_quiet_prints_only_problems(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-q", str(SPECS[0])]) == 0
    assert capsys.readouterr().out == ""


def test_summary_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(ROOT / "specs" / "mnist_cnn.yaml")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("#"))
    assert header.split() == ["#", "name", "type", "output", "shape", "params", "FLOPs", "inputs"]
    conv2 = next(line for line in lines if line.startswith("2 "))
    assert conv2.split()[:3] == ["2", "conv2d_2", "conv2d"] and "(11, 11, 64)" in conv2 and "18,496" in conv2
    assert conv2.split()[-1] == "max_pool2d_1"
    total = next(line for line in lines if line.split()[:1] == ["total"])
    assert total.split() == ["total", "34,826", "4,970,344"]


def test_summary_of_invalid_spec_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(INVALID / "dense_needs_flatten.yaml")]) == 2
    assert "error[E0304]" in capsys.readouterr().err


def test_missing_file_is_a_clear_error_without_traceback() -> None:
    result = run_cli("check", "no/such/spec.yaml")
    assert result.returncode == 2
    assert (
        result.stderr
        == "no/such/spec.yaml: error[E0101]: cannot read spec 'no/such/spec.yaml': no such file\n"
        "  hint: check the path\n"
    )
    result = run_cli("summary", "no/such/spec.yaml")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "E0101" in result.stderr


def test_hostile_and_invalid_files_never_show_a_traceback() -> None:
    result = run_cli("check", *map(str, sorted(INVALID.glob("*.yaml"))))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_check_imports_no_engine_and_is_fast() -> None:
    probe = (
        "import sys, time\n"
        "start = time.perf_counter()\n"
        "from nnspec.cli import main\n"
        f"rc = main(['check', {str(ROOT / 'specs' / 'mnist_cnn.yaml')!r}])\n"
        "elapsed = time.perf_counter() - start\n"
        f"print(rc, sorted(m for m in {ENGINES!r} if m in sys.modules), elapsed)\n"
    )
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    wall = time.perf_counter() - start
    rc, engines, _ = result.stdout.splitlines()[-1].split(" ", 2)
    assert rc == "0", result.stderr
    assert engines == "[]"
    assert wall < 10.0  # generous: the machine is shared; typically well under a second
