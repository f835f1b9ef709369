"""Settings that cannot take effect are refused or warned about (issue 24, item 6 and the environment's
internal errors of item 7).

* environment variables nnspec reads (``NNSPEC_*`` sizes, switches and paths, thread counts) with a bad
  value: a one-line error naming the variable, never ignored;
* PyTensor's flags (``PYTENSOR_FLAGS``, ``THEANO_FLAGS``, ``NNSPEC_BLAS_LDFLAGS``): malformed values refused,
  and no value can add another PyTensor setting; an unwritable compile cache named;
* early stopping on a metric the run does not compute: one warning, and training goes on (Keras's rule);
* ``--set extends=BASE``: used like ``extends:`` in the file, a missing base named;
* non-UTF-8 paths under an ASCII locale, and ``ulimit -v`` read by the memory check.

Tests that need a fresh process start one that loads no engine (about a second each) unless marked slow.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnspec.backends.theano import config
from nnspec.cli import main
from nnspec.compiler.ir import EarlyStoppingConfig
from nnspec.data.files import download_allowed
from nnspec.data.safety import max_bytes
from nnspec.errors import BackendError, SpecError
from nnspec.interop.keras_archive import byte_cap
from nnspec.runtime.early_stopping import EarlyStopping, monitored_value
from nnspec.runtime.env import SETTINGS, EnvironmentSettingError, check_environment, env_flag, env_size
from nnspec.runtime.specfile import absolute_extends, dump_spec, load_spec_file

ROOT = Path(__file__).resolve().parent.parent

LINEAR = """\
nnspec: 1
name: linear
input: {shape: [8, 8, 1]}
layers: [flatten, {dense: {units: 10}}, softmax]
train: {epochs: 3, batch_size: 64, seed: 1}
data: {dataset: digits}
"""

#: 6 GiB of training memory (two 20000-unit dense layers with Adam).
BIG = """\
nnspec: 1
name: big
input: {shape: [8, 8, 1]}
layers: [flatten, {dense: {units: 20000}}, {dense: {units: 20000}}, {dense: {units: 10}}, softmax]
train: {epochs: 1, batch_size: 64}
data: {dataset: digits}
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "linear.yaml"
    path.write_text(LINEAR)
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting of :data:`SETTINGS` from the test's own environment."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _bare_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh nnspec process: this checkout importable, no settings of the caller."""
    caller = ("LC_", "LANG", "PYTHON", "PYTENSOR", "THEANO")  # PYTENSOR_FLAGS: set by an earlier test's Theano setup
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and not k.startswith(caller)}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _nnspec(*args: str | bytes, env: dict[str, str], cwd: Path, limit_kib: int | None = None) -> tuple[int, str, str]:
    """Run ``python -m nnspec ARGS`` in a fresh process; ``limit_kib`` runs it under ``ulimit -v`` (RLIMIT_AS)."""
    command: list[str | bytes] = [sys.executable, "-m", "nnspec", *args]
    if limit_kib is not None:
        command = ["bash", "-c", f'ulimit -v {limit_kib} && exec "$0" "$@"', *command]
    result = subprocess.run(command, capture_output=True, cwd=cwd, env=env, timeout=300)
    return result.returncode, result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace")


# ---- environment variables ----------------------------------------------------------------------------

BAD_SETTINGS = [
    ("NNSPEC_MEMORY_LIMIT", "plenty"),
    ("NNSPEC_MEMORY_LIMIT", "-5G"),
    ("NNSPEC_MAX_DATA_BYTES", "lots"),
    ("NNSPEC_MAX_DATA_BYTES", "0"),
    ("NNSPEC_MAX_KERAS_CONFIG_BYTES", "12e"),
    ("NNSPEC_MAX_KERAS_WEIGHTS_BYTES", "1e999"),
    ("NNSPEC_DEBUG", "maybe"),
    ("NNSPEC_OFFLINE", "sometimes"),
    ("NNSPEC_THEANO_MODE", "cuda"),
    ("NNSPEC_BLAS_LDFLAGS", "-lopenblas,linker=py"),
    ("NNSPEC_BLAS_LDFLAGS", "openblas"),
    ("NNSPEC_NUM_PROCESSES", "two"),
    ("NNSPEC_PROCESS_ID", "-1"),
    ("OMP_NUM_THREADS", "abc"),
    ("OPENBLAS_NUM_THREADS", "0"),
    ("NUMBA_NUM_THREADS", "\u0664"),  # an Arabic-Indic digit: str.isdigit says yes, int() would accept it
    ("TF_NUM_INTRAOP_THREADS", "99999999"),
]


@pytest.mark.parametrize("name,value", BAD_SETTINGS)
def test_a_bad_setting_is_refused_naming_the_variable(
    name: str, value: str, spec: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv(name, value)
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert f"environment variable {name}=" in err and "internal error" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_settings_that_name_a_file_as_a_folder_are_refused(
    spec: Path, tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("NNSPEC_DATA", "NNSPEC_PYTENSOR_CACHE"):
        clean_env.setenv(name, str(spec))
        assert main(["check", str(spec)]) == 1
        assert f"environment variable {name}=" in capsys.readouterr().err
        clean_env.delenv(name)


@pytest.mark.parametrize(
    "name,value",
    [
        ("NNSPEC_MEMORY_LIMIT", "8G"),
        ("NNSPEC_MAX_DATA_BYTES", "1000000"),
        ("NNSPEC_DEBUG", "0"),
        ("NNSPEC_OFFLINE", "true"),
        ("NNSPEC_THEANO_MODE", "C"),
        ("NNSPEC_BLAS_LDFLAGS", ""),
        ("NNSPEC_BLAS_LDFLAGS", "-L/opt/lib -lopenblas -Wl,-rpath,/opt/lib"),
        ("OMP_NUM_THREADS", "4,2"),
        ("NNSPEC_MEMORY_LIMIT", ""),
    ],
)
def test_a_good_setting_is_taken(name: str, value: str, spec: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(name, value)
    check_environment()
    assert main(["check", "-q", str(spec)]) == 0


def test_readers_refuse_what_they_used_to_ignore(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NNSPEC_MAX_DATA_BYTES", "4GB")
    assert max_bytes() == 4_000_000_000
    clean_env.setenv("NNSPEC_MAX_DATA_BYTES", "garbage")
    with pytest.raises(EnvironmentSettingError, match="NNSPEC_MAX_DATA_BYTES"):
        max_bytes()
    clean_env.setenv("NNSPEC_MAX_KERAS_WEIGHTS_BYTES", "none")
    with pytest.raises(EnvironmentSettingError, match="NNSPEC_MAX_KERAS_WEIGHTS_BYTES"):
        byte_cap("NNSPEC_MAX_KERAS_WEIGHTS_BYTES", 1)
    clean_env.setenv("NNSPEC_OFFLINE", "0")
    assert download_allowed()
    clean_env.setenv("NNSPEC_OFFLINE", "off-ish")
    with pytest.raises(EnvironmentSettingError, match="NNSPEC_OFFLINE"):
        download_allowed()
    assert env_flag("X", {"X": "Yes"}) and not env_flag("X", {"X": "off"})
    assert env_size("X", 7, {"X": " "}) == 7 and env_size("X", 7, {"X": "1KiB"}) == 1024


# ---- PyTensor's flags ---------------------------------------------------------------------------------


def test_flags_written_back_cannot_add_a_setting() -> None:
    values = {
        "base_compiledir": "/tmp/a,linker=py,floatX=float64",
        "blas__ldflags": "-L/x -Wl,-rpath,/x it's",
        "floatX": "float32",
    }
    assert config.parse_flags(config.flags_string(values)) == values
    with pytest.raises(ValueError):
        config.flags_string({"a,linker": "py"})


@pytest.mark.parametrize("text", ["garbage", "=float32", "floatX float32=1", "floatX='float32", "a=1,,b"])
def test_malformed_pytensor_flags_are_refused(text: str) -> None:
    if text == "a=1,,b":  # an empty item is skipped, as PyTensor does; the keyless 'b' is not
        with pytest.raises(BackendError, match="'b' is not a PyTensor setting"):
            config.parse_flags(text)
        return
    with pytest.raises(BackendError, match="THEANO_FLAGS"):
        config.parse_flags(text, "THEANO_FLAGS")


@pytest.mark.parametrize(
    "flags,fine",
    [
        ("-lopenblas", True),
        ("-L/usr/lib -lblas -Wl,-rpath,/usr/lib", True),
        ("/usr/lib/libopenblas.so.0", True),
        ("", True),
        ("-lopenblas,linker=py", False),
        ("-lblas floatX=float64", False),
        ("openblas", False),
        ("-l'blas'", False),
        ("-lblas\n-lm", False),
        ("-lblas; rm -rf /", False),
    ],
)
def test_blas_flags_must_look_like_linker_flags(flags: str, fine: bool) -> None:
    assert (config.blas_flags_problem(flags) is None) == fine


def test_a_cache_folder_nnspec_cannot_write_in_is_named(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    assert config.folder_problem(tmp_path / "new" / "cache") is None
    assert "not a folder" in (config.folder_problem(file) or "")
    assert "cannot be created" in (config.folder_problem(file / "below") or "")
    if os.geteuid() != 0:  # root writes in a read-only folder
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        assert "nothing can be written" in (config.folder_problem(locked) or "")


def test_setup_refuses_an_unusable_cache_before_pytensor_is_imported(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    code = (
        "import sys\nfrom nnspec.backends.theano import config\nfrom nnspec.errors import BackendError\n"
        "try:\n    config.setup()\nexcept BackendError as exc:\n    print(exc)\nprint('pytensor' in sys.modules)\n"
    )
    for variable, value in (
        ("NNSPEC_PYTENSOR_CACHE", str(file / "cache")),
        ("PYTENSOR_FLAGS", f"base_compiledir={file / 'cache'}"),
    ):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=_bare_env(**{variable: value}),
            timeout=120,
        )
        lines = result.stdout.splitlines()
        assert lines[-1] == "False", result.stderr
        assert "compile cache" in lines[0] and str(file / "cache") in lines[0] and variable in lines[0]


@pytest.mark.slow
def test_pytensor_refusals_name_the_variable(tmp_path: Path) -> None:
    """A setting PyTensor does not know or refuses, BLAS flags that do not link: messages, no internal error."""
    from pytensor.configparser import parse_config_string

    values = {"base_compiledir": "/tmp/a,linker=py", "blas__ldflags": "-lblas it's"}
    assert parse_config_string(config.flags_string(values)) == values
    spec_path = tmp_path / "linear.yaml"
    spec_path.write_text(LINEAR)
    cache = str(tmp_path / "cache")
    cases = [
        ({"PYTENSOR_FLAGS": "device=cuda"}, "PyTensor has no setting device (in PYTENSOR_FLAGS)"),
        ({"THEANO_FLAGS": "floatX=float99"}, "THEANO_FLAGS"),
        ({"NNSPEC_BLAS_LDFLAGS": "-lno_such_blas_library"}, "NNSPEC_BLAS_LDFLAGS: BLAS flags '-lno_such_blas_library'"),
    ]
    for extra, expected in cases:
        code, _, err = _nnspec(
            "run", str(spec_path), "--backend", "theano", "--out", str(tmp_path / "run"), "--overwrite",
            env=_bare_env(NNSPEC_PYTENSOR_CACHE=cache, **extra), cwd=tmp_path,
        )  # fmt: skip
        assert code == 1 and expected in err and "internal error" not in err, err


# ---- early stopping on a metric that is not computed --------------------------------------------------


def _row(epoch: int, **values: float) -> dict[str, float]:
    nan = math.nan
    return {"epoch": epoch, "loss": nan, "accuracy": nan, "val_loss": nan, "val_accuracy": nan, **values}


def test_a_metric_not_computed_warns_once_and_never_stops(capsys: pytest.CaptureFixture[str]) -> None:
    early = EarlyStopping(EarlyStoppingConfig(monitor="val_loss", patience=0))
    for epoch in range(1, 6):
        assert early.update(_row(epoch, loss=1.0 / epoch, accuracy=0.5)) == (False, False)
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "val_loss" in err and "loss, accuracy" in err
    assert early.wait == 0 and early.stopped_epoch == 0
    absent = EarlyStopping(EarlyStoppingConfig(monitor="val_accuracy", patience=0))
    assert absent.update({"epoch": 1, "loss": 1.0}) == (False, False) and "val_accuracy" in capsys.readouterr().err


def test_a_diverged_loss_still_counts_as_no_improvement() -> None:
    early = EarlyStopping(EarlyStoppingConfig(monitor="val_loss", patience=1))
    assert early.update(_row(1, val_loss=2.0, val_accuracy=0.1)) == (True, False)
    assert monitored_value(_row(2, val_accuracy=0.1), "val_loss") is not None  # NaN, but computed
    assert early.update(_row(2, val_accuracy=0.1)) == (False, True)


def test_run_with_validation_off_trains_every_epoch(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    sets = ["--set", "data.validation_split=0", "--set", "train.early_stopping={monitor: val_loss, patience: 0}"]
    assert main(["run", str(spec), "--backend", "jax", "--out", str(out), *sets]) == 0
    err = capsys.readouterr().err
    assert err.count("early stopping monitors val_loss, which is not computed") == 1
    assert "early stopping after" not in err
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 3


# ---- --set extends= -----------------------------------------------------------------------------------


@pytest.fixture
def family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``base.yaml`` (the whole model), ``other.yaml`` (another one), ``child.yaml`` (only a name and epochs),
    ``own.yaml`` (extends other.yaml); the current directory is ``tmp_path``."""
    (tmp_path / "base.yaml").write_text(LINEAR)
    (tmp_path / "other.yaml").write_text(LINEAR.replace("units: 10", "units: 10, use_bias: false"))
    (tmp_path / "child.yaml").write_text("nnspec: 1\nname: child\ntrain: {epochs: 2}\n")
    (tmp_path / "own.yaml").write_text("nnspec: 1\nname: own\nextends: other.yaml\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_set_extends_is_used_like_extends_in_the_file(family: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "child.yaml"]) == 2
    assert main(["check", "child.yaml", "--set", "extends=base.yaml"]) == 0
    graph = load_spec_file(family / "child.yaml", ["extends=base.yaml"])
    assert graph.name == "child" and graph.train.epochs == 2 and graph.train.batch_size == 64
    assert load_spec_file("own.yaml").num_params == 640  # its own base: no bias
    assert load_spec_file("own.yaml", ["extends=base.yaml"]).num_params == 650  # the override takes its place
    import nnspec

    assert nnspec.load("child.yaml", {"extends": "base.yaml"}).num_params == 650
    capsys.readouterr()


@pytest.mark.parametrize(
    "setting,code,expected",
    [
        ("extends=missing.yaml", "E0110", "missing.yaml"),
        ("extends=", "E0110", "extends must be the path of a base spec"),
        ("extends.x=1", "E0111", "extends holds the path of one base spec"),
    ],
)
def test_a_bad_set_extends_is_a_spec_error(
    family: Path, setting: str, code: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "base.yaml", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert f"--set {setting}" in err and code in err and expected in err
    if code == "E0110" and "missing" in setting:
        assert str(family / "missing.yaml") in err


def test_absolute_extends_for_processes_started_elsewhere(family: Path) -> None:
    assert absolute_extends(["train.epochs=1", "extends=base.yaml"]) == [
        "train.epochs=1",
        f'extends="{family / "base.yaml"}"',
    ]
    assert load_spec_file(family / "child.yaml", absolute_extends(["extends=base.yaml"])).num_params == 650
    with pytest.raises(SpecError, match="missing.yaml"):
        absolute_extends(["extends=missing.yaml"])


# ---- paths that are not UTF-8, an ASCII locale --------------------------------------------------------

ASCII_LOCALE = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}


def test_non_utf8_and_non_ascii_paths_under_an_ascii_locale(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/sp\xe9c.yaml"
    with open(raw, "w", encoding="utf-8") as handle:
        handle.write(LINEAR.replace("name: linear", "description: caf\u00e9 \u2615"))
    env = _bare_env(**ASCII_LOCALE)
    code, out, err = _nnspec("check", raw, env=env, cwd=tmp_path)
    assert code == 0 and "sp\\udce9c.yaml: ok" in out, err
    code, out, err = _nnspec("check", "missing-\u00e9\u2615.yaml", env=env, cwd=tmp_path)
    assert code == 2 and "internal error" not in err and "missing-" in err
    code, out, err = _nnspec("summary", raw, env=env, cwd=tmp_path)
    assert code == 0 and "internal error" not in err
    (tmp_path / "caf\u00e9.yaml").write_text(LINEAR)  # a name stdout's encoding cannot print: escaped
    code, out, err = _nnspec("check", "caf\u00e9.yaml", env=_bare_env(PYTHONIOENCODING="ascii:strict"), cwd=tmp_path)
    assert code == 0 and out == "caf\\xe9.yaml: ok (3 layers, 650 parameters)\n", err


def test_spec_yaml_header_with_an_undecodable_path_is_utf8() -> None:
    graph = load_spec_file(ROOT / "specs" / "digits_mlp.yaml")
    text = dump_spec(graph, "from /tmp/sp\udce9c.yaml")
    assert "# from /tmp/sp\\udce9c.yaml" in text
    text.encode("utf-8")


def test_text_with_undecodable_bytes_that_cannot_be_written_is_named_escaped() -> None:
    from nnspec.cli import _undecodable

    exc = UnicodeEncodeError("utf-8", "runs/r\udce9/spec.yaml", 6, 7, "surrogates not allowed")
    assert _undecodable(exc) == "runs/r\\udce9/spec.yaml"
    assert _undecodable(UnicodeEncodeError("ascii", "caf\u00e9", 3, 4, "ordinal not in range")) is None


@pytest.mark.slow
def test_a_run_into_a_non_utf8_folder_under_an_ascii_locale(tmp_path: Path) -> None:
    spec_path = tmp_path / "linear.yaml"
    spec_path.write_text(LINEAR.replace("epochs: 3", "epochs: 1"))
    out = os.fsencode(tmp_path) + b"/r\xe9"
    code, stdout, err = _nnspec(
        "run", str(spec_path), "--backend", "jax", "--out", out, env=_bare_env(**ASCII_LOCALE), cwd=tmp_path
    )
    assert code == 0 and "internal error" not in err, err
    assert "r\\udce9" in stdout and os.path.isfile(out + b"/weights.safetensors")


# ---- ulimit -v ----------------------------------------------------------------------------------------


def test_the_memory_check_reads_the_address_space_limit(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text(BIG)
    env = _bare_env()
    limit = 3 << 20  # KiB: 3 GiB
    code, out, err = _nnspec("check", "big.yaml", env=env, cwd=tmp_path, limit_kib=limit)
    assert code == 0 and "W0801" in err and "ulimit -v" in err, err
    code, out, err = _nnspec(
        "run", "big.yaml", "--backend", "jax", "--out", "run", env=env, cwd=tmp_path, limit_kib=limit
    )
    assert code == 1 and "the model needs" in err and "ulimit -v" in err and "internal error" not in err, err
    code, out, err = _nnspec("check", "big.yaml", env=env, cwd=tmp_path)
    assert "ulimit -v" not in err
