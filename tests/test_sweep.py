"""``nnspec sweep``: planning a grid, running it as ordinary run directories in worker processes on JAX,
the results table and plot, a restart that skips finished runs, and failures recorded, not fatal."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import nnspec
from nnspec.cli import main
from nnspec.errors import NnspecError
from nnspec.runtime.run_status import read_status
from nnspec.tools.sweep_plan import GridAxis, combinations, parse_grid, plan_runs, short_names, split_values
from nnspec.tools.sweep_record import Sweep
from nnspec.tools.sweep_runner import plan_action, worker_command

SPEC = """\
nnspec: 1
name: tiny_digits
input: {shape: [8, 8, 1]}
layers:
  - flatten
  - dense: {units: 16, activation: relu}
  - dense: {units: 10}
  - softmax
train:
  optimizer: {adam: {learning_rate: 0.01}}
  batch_size: 64
  epochs: 5
  seed: 3
data:
  dataset: digits
"""


def test_values_split_at_top_level_commas() -> None:
    assert split_values("1e-3, 0.01,0.1") == ["1e-3", "0.01", "0.1"]
    assert split_values("[8,8,1],[64]") == ["[8,8,1]", "[64]"]
    assert split_values("{adam: {learning_rate: 0.1}},'a,b',sgd") == ["{adam: {learning_rate: 0.1}}", "'a,b'", "sgd"]


def test_grid_parsing_and_errors() -> None:
    lr, bs = parse_grid(["train.optimizer.adam.learning_rate=0.001,0.01,0.001", "train.batch_size=32"])
    assert (lr.key, lr.values, lr.short) == (
        "train.optimizer.adam.learning_rate",
        ("0.001", "0.01"),
        "lr",
    )  # a repeated value runs once
    assert (bs.values, bs.short) == (("32",), "bs")
    for bad, words in (
        ("train.epochs", "expected KEY=V1,V2"),
        ("=1,2", "expected KEY=V1,V2"),
        ("train.epochs=1,,2", "a value is empty"),
    ):
        with pytest.raises(NnspecError, match=words):
            parse_grid([bad])
    with pytest.raises(NnspecError, match="more than once"):
        parse_grid(["train.epochs=1,2", "train.epochs=3"])
    # two keys ending alike get one more part each
    assert short_names(["layers.1.dense.units", "layers.3.dense.units", "train.seed"]) == [
        "1.dense.units",
        "3.dense.units",
        "seed",
    ]


def test_combinations_and_names() -> None:
    axes = parse_grid(["train.optimizer.adam.learning_rate=0.001,0.01", "input.shape=[8,8,1],[64]", "train.seed=0"])
    runs = plan_runs(axes, ["jax", "tensorflow"])
    assert [r.name for r in runs[:4]] == [
        "lr=0.001_shape=8_8_1-jax",
        "lr=0.001_shape=8_8_1-tensorflow",
        "lr=0.001_shape=64-jax",
        "lr=0.001_shape=64-tensorflow",
    ]
    assert len(runs) == 8 and len({r.name for r in runs}) == 8
    assert runs[2].overrides == ["train.optimizer.adam.learning_rate=0.001", "input.shape=[64]", "train.seed=0"]
    # values that become one name after making them safe get a hash to tell them apart
    clash = plan_runs(parse_grid(["data.path=a b.npz,a_b.npz"]), ["jax"])
    assert len({r.name for r in clash}) == 2 and all(" " not in r.name and "/" not in r.name for r in clash)
    # a random sample: seeded, in grid order, a subset of the grid
    big = (GridAxis("a", tuple(map(str, range(10)))), GridAxis("b", tuple(map(str, range(10)))))
    sample = combinations(big, sample=5, seed=7)
    assert sample == combinations(big, sample=5, seed=7) != combinations(big, sample=5, seed=8)
    assert len(set(sample)) == 5 and sample == sorted(sample, key=lambda c: (int(c[0]), int(c[1])))


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(SPEC)
    return path


def _sweep_args(spec: Path, out: Path) -> list[str]:
    # 2 learning rates x 2 batch sizes, one of them invalid: two real runs, two refused by the spec check
    grid = ["--grid", "train.optimizer.adam.learning_rate=0.01,0.05", "train.batch_size=64,abc"]
    return [
        "sweep",
        str(spec),
        *grid,
        "--epochs",
        "1",
        "--backends",
        "jax",
        "--device",
        "cpu",
        "--jobs",
        "2",
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def swept(spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    out = tmp_path_factory.mktemp("sweeps") / "lr"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(_sweep_args(spec_file, out))
    return out, code, stdout.getvalue(), stderr.getvalue()


def test_sweep_runs_every_valid_combination(swept: tuple[Path, int, str, str], spec_file: Path) -> None:
    out, code, stdout, stderr = swept
    assert code == 1, stderr  # two combinations failed
    assert "2 of 4 runs did not complete (failed)" in stderr
    ran = ["lr=0.01_bs=64-jax", "lr=0.05_bs=64-jax"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "logs") == ran
    for name, lr in zip(ran, (0.01, 0.05), strict=True):
        folder = out / name
        assert read_status(folder) == "complete"  # an ordinary, complete run directory
        graph = nnspec.load(str(folder / "spec.yaml"))
        assert graph.train.optimizer.learning_rate == lr and graph.train.epochs == 1 and graph.train.batch_size == 64
        assert json.loads((folder / "env.json").read_text())["backend"] == "jax"
        assert "run directory:" in (out / "logs" / f"{name}.log").read_text()
    record = json.loads((out / "sweep.json").read_text())
    assert record["grid"] == {"train.optimizer.adam.learning_rate": ["0.01", "0.05"], "train.batch_size": ["64", "abc"]}
    assert record["backends"] == ["jax"] and record["epochs"] == 1 and record["spec"] == str(spec_file.resolve())
    assert (out / "val_accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_results_table(swept: tuple[Path, int, str, str]) -> None:
    out, _, stdout, _ = swept
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert list(table.columns) == [
        "run", "backend", "train.optimizer.adam.learning_rate", "train.batch_size", "epochs", "loss", "accuracy",
        "val_loss", "val_accuracy", "test_loss", "test_accuracy", "train_seconds", "status", "error",
    ]  # fmt: skip
    assert table["run"].tolist() == [
        "lr=0.01_bs=64-jax",
        "lr=0.01_bs=abc-jax",
        "lr=0.05_bs=64-jax",
        "lr=0.05_bs=abc-jax",
    ]
    assert table["status"].tolist() == ["complete", "failed", "complete", "failed"]
    for _, row in table[table["status"] == "complete"].iterrows():
        folder = out / row["run"]
        metrics = pd.read_csv(folder / "metrics.csv")
        test = json.loads((folder / "test.json").read_text())
        assert row["epochs"] == "1" and row["error"] == ""
        assert float(row["val_accuracy"]) == pytest.approx(metrics["val_accuracy"].iloc[-1], rel=1e-6)
        assert float(row["loss"]) == pytest.approx(metrics["loss"].iloc[-1], rel=1e-6)
        assert float(row["test_accuracy"]) == pytest.approx(test["accuracy"], rel=1e-6)
        assert float(row["train_seconds"]) > 0
    failed = table[table["status"] == "failed"]
    assert all("train.batch_size" in e and "positive integer" in e for e in failed["error"])
    assert (failed["train.batch_size"] == "abc").all() and (failed["test_accuracy"] == "").all()
    markdown = (out / "results.md").read_text()
    assert "- `lr` = `train.optimizer.adam.learning_rate`: 0.01, 0.05" in markdown
    assert (
        "| run | backend | lr | bs | epochs | loss | accuracy | val_loss | val_accuracy | test_loss | test_accuracy | "
        "train_seconds | status | error |"
        in markdown
    )
    best = table[table["status"] == "complete"].sort_values("val_accuracy").iloc[-1]
    assert f"best val_accuracy: {float(best['val_accuracy']):.4f} ({best['run']})" in markdown
    assert "lr=0.05_bs=64-jax" in stdout and "results: " in stdout  # the table is printed too


def test_restart_skips_finished_runs(
    swept: tuple[Path, int, str, str], spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = swept[0]
    before = {p.name: (p / "run.json").stat().st_mtime_ns for p in out.iterdir() if (p / "run.json").exists()}
    logs = {p.name: p.read_text() for p in (out / "logs").iterdir()}
    assert main(_sweep_args(spec_file, out)) == 1
    _, err = capsys.readouterr()
    assert "2 of 4 runs already done: skipped" in err and "start " not in err
    assert {p.name: (p / "run.json").stat().st_mtime_ns for p in out.iterdir() if (p / "run.json").exists()} == before
    assert {p.name: p.read_text() for p in (out / "logs").iterdir()} == logs  # no worker started
    assert pd.read_csv(out / "results.csv")["status"].tolist() == ["complete", "failed", "complete", "failed"]
    # other arguments in the same folder are refused, naming what differs
    args = _sweep_args(spec_file, out)
    args[args.index("1")] = "2"
    assert main(args) == 1
    _, err = capsys.readouterr()
    assert "holds a sweep started with other settings" in err and "epochs: 1 then, 2 now" in err


def test_restart_resumes_or_restarts_incomplete_runs(swept: tuple[Path, int, str, str], tmp_path: Path) -> None:
    out = swept[0]
    sweep = Sweep(spec=Path("tiny.yaml"), out=tmp_path, axes=(), backends=("jax",), epochs=1)
    run = plan_runs((), ["jax"])[0]
    assert plan_action(tmp_path / run.name) == "new"
    shutil.copytree(out / "lr=0.01_bs=64-jax", tmp_path / run.name)
    assert plan_action(tmp_path / run.name) == "skip"  # complete
    record = json.loads((tmp_path / run.name / "run.json").read_text())
    (tmp_path / run.name / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    assert plan_action(tmp_path / run.name) == "resume"
    command = worker_command(sweep, run, "resume")
    assert command[command.index("run") :][:3] == ["run", "--resume", str(tmp_path / run.name)]
    (tmp_path / run.name / "spec.yaml").unlink()
    assert plan_action(tmp_path / run.name) == "restart" and "--overwrite" in worker_command(sweep, run, "restart")
    (tmp_path / run.name / "run.json").write_text(json.dumps({**record, "status": "diverged"}))
    assert plan_action(tmp_path / run.name) == "skip"  # a seeded divergence is a result


def test_a_failing_run_does_not_stop_the_sweep(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # valid specs whose data file is missing: each worker fails on its own, the sweep records both
    code = main(
        [
            "sweep",
            str(spec_file),
            "--grid",
            f"data.path={tmp_path}/a.npz,{tmp_path}/b.npz",
            "--set",
            "data.dataset=npz",
            "--jobs",
            "2",
            "--out",
            str(tmp_path / "s"),
        ]
    )
    _, err = capsys.readouterr()
    assert code == 1
    table = pd.read_csv(tmp_path / "s" / "results.csv")
    assert table["status"].tolist() == ["failed", "failed"]
    assert table["error"].tolist() == [
        f"nnspec run: error: {tmp_path}/a.npz: no such file",
        f"nnspec run: error: {tmp_path}/b.npz: no such file",
    ]
    assert "2 of 2 runs did not complete" in err


def test_argument_errors(spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(tmp_path / "none.yaml"), "--grid", "train.seed=1,2"]) == 1
    assert "none.yaml: no such spec file" in capsys.readouterr().err
    assert (
        main(["sweep", str(spec_file), "--grid", "train.seed=1,2", "--backends", "jaxx", "--out", str(tmp_path / "x")])
        == 1
    )
    assert "did you mean 'jax'" in capsys.readouterr().err
    # every combination refused: the spec error itself, before any folder is made
    assert main(["sweep", str(spec_file), "--grid", "train.batch_size=abc,-1", "--out", str(tmp_path / "y")]) == 2
    assert "train.batch_size" in capsys.readouterr().err and not (tmp_path / "y").exists()
