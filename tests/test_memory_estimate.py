"""Memory before allocation: the training estimate (weights, gradients, optimiser slots, activations), the
limit (``MemAvailable`` or ``NNSPEC_MEMORY_LIMIT``), the ``check``/``summary`` warning and ``require_fits``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nnspec
from nnspec.cli import main
from nnspec.compiler.frontend import check_text
from nnspec.compiler.memory import (
    LIMIT_ENV,
    TOO_BIG,
    ModelTooLarge,
    available_memory,
    estimate,
    fit_message,
    format_bytes,
    memory_diagnostic,
    memory_limit,
    parse_size,
    require_fits,
)
from nnspec.errors import NnspecError

ROOT = Path(__file__).parent.parent
HUGE = (
    "nnspec: 1\ninput: {shape: [28, 28, 1]}\nlayers:\n  - flatten\n  - dense: {units: 1000000000}\n"
    "  - dense: {units: 10}\n"
)


def mlp(train: str = "", dtype: str = "float32") -> str:
    return (
        f"nnspec: 1\ninput: {{shape: [8, 8, 1], dtype: {dtype}}}\nlayers: [flatten, {{dense: {{units: 128}}}}, "
        f"{{dense: {{units: 10}}}}, softmax]\n"
        + (f"train: {train}\n" if train else "")
    )


def test_digits_mlp_estimate_is_exact() -> None:
    found = estimate(nnspec.load(str(ROOT / "specs" / "digits_mlp.yaml")))
    params = 64 * 128 + 128 + 128 * 10 + 10
    assert (found.batch_size, found.itemsize, found.optimizer, found.slots) == (32, 4, "adam", 2)
    assert found.weights == found.gradients == params * 4
    assert found.optimizer_slots == 2 * params * 4
    assert found.input == 64 * 32 * 4
    assert found.activations == 64 * 32 * 4 + 2 * (64 + 128 + 10 + 10) * 32 * 4
    assert found.total == 4 * params * 4 + found.activations == 216_224
    assert [layer.name for layer in found.layers] == ["flatten_1", "dense_1", "dense_2", "softmax_1"]
    assert found.layers[1].total == (8320 * 4) * 4 + 2 * 128 * 32 * 4


@pytest.mark.parametrize(
    "optimizer, slots",
    [("adam", 2), ("sgd", 0), ("{sgd: {momentum: 0.9}}", 1), ("rmsprop", 1), ("{rmsprop: {momentum: 0.5}}", 2)],
)
def test_optimiser_slots_follow_the_optimiser(optimizer: str, slots: int) -> None:
    graph = check_text(mlp(f"{{optimizer: {optimizer}}}"))
    found = estimate(graph)
    assert found.slots == slots
    assert found.optimizer_slots == slots * graph.num_trainable * 4


def test_float64_doubles_everything_and_batch_size_scales_activations_only() -> None:
    small, wide = (
        estimate(check_text(mlp("{batch_size: 8}"))),
        estimate(check_text(mlp("{batch_size: 8}", dtype="float64"))),
    )
    assert wide.total == 2 * small.total and wide.itemsize == 8
    big = estimate(check_text(mlp("{batch_size: 80}")))
    assert big.weights == small.weights and big.optimizer_slots == small.optimizer_slots
    assert big.activations == 10 * small.activations
    assert estimate(check_text(mlp("{batch_size: 8}")), batch_size=80, dtype="float64").total == 2 * big.total


def test_batch_norm_state_is_weights_without_gradients_or_slots() -> None:
    graph = check_text(
        "nnspec: 1\ninput: {shape: [4]}\nlayers: [{batch_norm: {}}, {dense: {units: 2}}]\ntrain: {batch_size: 1}\n"
    )
    norm = estimate(graph).layers[0]
    assert norm.weights == 4 * 4 * 4  # gamma, beta, moving mean, moving variance
    assert norm.gradients == 2 * 4 * 4 and norm.optimizer == 2 * norm.gradients


def test_biggest_layers_come_first() -> None:
    found = estimate(check_text(HUGE))
    assert [layer.name for layer in found.biggest()] == ["dense_1", "dense_2", "flatten_1"]
    assert found.biggest(1)[0].label == "layers[1] 'dense_1' (dense)"


def test_the_estimate_of_a_petabyte_model_is_computed_without_allocating() -> None:
    graph = check_text(
        "nnspec: 1\ninput: {shape: [16777216]}\nlayers: [{dense: {units: 16777216}}]\ntrain: {loss: mse}\n"
    )
    found = estimate(graph)
    assert found.weights == (2**48 + 2**24) * 4
    assert format_bytes(found.total).endswith("PiB")


@pytest.mark.parametrize(
    "count, text", [(0, "0 B"), (1023, "1,023 B"), (1536, "1.5 KiB"), (5 * 2**30, "5.0 GiB"), (2**70, "1,024.0 EiB")]
)
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text


@pytest.mark.parametrize(
    "text, value",
    [
        ("1000", 1000),
        ("8G", 8 * 2**30),
        ("8GiB", 8 * 2**30),
        ("8gb", 8 * 10**9),
        ("1.5k", 1536),
        (" 2 M ", 2 * 2**20),
        ("3T", 3 * 2**40),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "x", "-1", "8iB", "1e9", "9" * 30, "8 GB extra"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_available_memory_reads_meminfo() -> None:
    found, source = available_memory()
    assert found is not None and found > 2**20
    assert source in ("MemAvailable in /proc/meminfo", "the cgroup memory limit", "os.sysconf")


def test_environment_sets_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LIMIT_ENV, "512M")
    assert memory_limit() == (512 * 2**20, LIMIT_ENV)
    monkeypatch.setenv(LIMIT_ENV, "lots")
    with pytest.raises(NnspecError, match="NNSPEC_MEMORY_LIMIT='lots' is not a memory size"):
        memory_limit()
    monkeypatch.setenv(LIMIT_ENV, "0")
    with pytest.raises(NnspecError):
        memory_limit()


def test_fit_message_names_the_biggest_layers() -> None:
    graph = check_text(mlp())
    assert fit_message(graph, limit=10**9) is None
    message = fit_message(graph, limit=1000, source="test")
    assert message is not None
    assert "more than the 1,000 B available (test)" in message
    assert "biggest layers: layers[1] 'dense_1' (dense)" in message


def test_require_fits_refuses_before_allocating() -> None:
    graph = check_text(HUGE)
    with pytest.raises(ModelTooLarge) as caught:
        require_fits(graph, limit=64 * 2**30, source="test")
    assert isinstance(caught.value, NnspecError)
    assert "layers[1] 'dense_1' (dense) 11.7 TiB" in str(caught.value)
    assert caught.value.estimate.total > 64 * 2**30
    small = check_text(mlp())
    assert require_fits(small, limit=10**9).total == estimate(small).total


def test_require_fits_uses_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LIMIT_ENV, "1k")
    with pytest.raises(ModelTooLarge, match=r"available \(NNSPEC_MEMORY_LIMIT\)"):
        require_fits(check_text(mlp()))


def test_memory_diagnostic_is_a_warning_at_the_biggest_layer() -> None:
    graph = check_text(HUGE, filename="huge.yaml")
    warning = memory_diagnostic(graph, limit=2**30, source="test")
    assert warning is not None
    assert (warning.severity, warning.code, warning.file, warning.line, warning.column) == (
        "warning",
        TOO_BIG,
        "huge.yaml",
        5,
        5,
    )
    assert memory_diagnostic(check_text(mlp()), limit=2**30) is None


def test_check_warns_on_a_billion_units_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "huge.yaml"
    spec.write_text(HUGE)
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr()
    assert out.out == f"{spec}: ok (3 layers, 795,000,000,010 parameters; 1 warning)\n"
    assert out.err.startswith(
        f"{spec}:5:5: warning[W0801]: the model needs about 11.8 TiB to train on one batch of 32 in float32"
    )
    assert "biggest layers: layers[1] 'dense_1' (dense)" in out.err


def test_check_and_summary_stay_small_under_a_memory_cap(tmp_path: Path) -> None:
    spec = tmp_path / "huge.yaml"
    spec.write_text(HUGE)
    probe = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from nnspec.cli import main
        codes = [main(["check", {str(spec)!r}]), main(["summary", {str(spec)!r}])]
        print("codes", codes)
        """
    )
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "codes [0, 0]" in result.stdout
    assert result.stderr.count("warning[W0801]") == 2


def test_summary_shows_the_memory_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(ROOT / "specs" / "digits_mlp.yaml")]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    last = out.out.splitlines()[-1]
    assert last == (
        "memory: about 211.2 KiB to train on one batch of 32 in float32 "
        "(weights 37.5 KiB, gradients 37.5 KiB, optimiser 75.1 KiB (adam, 2 slots), activations 61.0 KiB)"
    )


def test_summary_warns_over_the_limit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(LIMIT_ENV, "100k")
    assert main(["summary", str(ROOT / "specs" / "digits_mlp.yaml")]) == 0
    err = capsys.readouterr().err
    assert "warning[W0801]" in err and "more than the 100.0 KiB available (NNSPEC_MEMORY_LIMIT)" in err


def test_check_with_a_bad_limit_is_a_one_line_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nnspec", "check", str(ROOT / "specs" / "digits_mlp.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", LIMIT_ENV: "plenty"},
    )
    assert result.returncode == 1
    assert "NNSPEC_MEMORY_LIMIT='plenty' is not a memory size" in result.stderr and "Traceback" not in result.stderr
