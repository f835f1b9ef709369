"""The benchmark harness runs end to end on tiny data (JAX only) and produces the documented tables.

Not a timing test: it checks the columns and that the measured times are positive.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import run as bench_run  # noqa: E402

RESULT_COLUMNS = [
    "model", "engine", "implementation", "epochs", "compile_s", "compile_warm_s", "first_epoch_s",
    "median_epoch_s", "examples_per_s", "final_train_loss", "test_accuracy", "notes",
]


@pytest.mark.slow
def test_harness_runs_jax_mlp_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    out_csv = tmp_path / "results.csv"
    args = bench_run.parse_args([
        "--models", "mlp", "--engines", "jax", "--epochs", "2", "--limit", "512", "--test-limit", "256",
        "--skip", "keras fit", "--skip", "scan epoch", "--out", str(out_csv), "--markdown", str(tmp_path / "report.md"),
    ])
    bench_run.prepare_environment(args)
    out = bench_run.run_benchmarks(args)
    bench_run.write_outputs(out, args)

    results = out["results"]
    assert list(results.columns) == RESULT_COLUMNS
    assert set(results["implementation"]) == {"nnspec", "hand: jit step"}
    assert not results["notes"].str.startswith("FAILED").any(), results["notes"].tolist()
    assert (results["median_epoch_s"] > 0).all()
    assert (results["first_epoch_s"] > 0).all()
    assert (results["compile_s"] >= 0).all()
    assert (results["examples_per_s"] > 0).all()
    assert results["test_accuracy"].between(0, 1).all()

    ratios = out["ratios"]
    assert {"nnspec/hand", "nnspec/keras_fit"} <= set(ratios.columns)
    assert ratios.loc[0, "nnspec/hand"] > 0
    assert {"figure", "ratio", "limit", "status"} <= set(out["targets"].columns)

    assert out_csv.exists() and (tmp_path / "results.ratios.csv").exists()
    assert "| model | engine | implementation |" in (tmp_path / "report.md").read_text()
    for key in ("cpu", "cores", "date", "jax"):
        assert key in out["info"]
