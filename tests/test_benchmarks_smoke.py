"""The benchmark harness runs end to end on tiny data (JAX only) and produces the documented tables.

Not a timing test: it checks the columns and that the measured times are positive. The run covers the
MLP (nnspec and a hand-written baseline) and the resnet (nnspec only: it has no hand-written baselines);
Keras ``fit`` children are skipped, but the resnet's Keras model is checked to start from nnspec's weights.
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
def test_harness_runs_jax_mlp_and_resnet_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    import pandas as pd

    from benchmarks.report import NO_HAND

    out_csv = tmp_path / "results.csv"
    args = bench_run.parse_args([
        "--models", "mlp,resnet", "--engines", "jax", "--epochs", "2", "--limit", "512", "--test-limit", "256",
        "--skip", "keras fit", "--skip", "scan epoch", "--out", str(out_csv), "--markdown", str(tmp_path / "report.md"),
    ])
    bench_run.prepare_environment(args)
    out = bench_run.run_benchmarks(args)
    bench_run.write_outputs(out, args)

    results = out["results"]
    assert list(results.columns) == RESULT_COLUMNS
    assert set(zip(results["model"], results["implementation"])) == {
        ("mlp", "nnspec"), ("mlp", "hand: jit step"), ("resnet", "nnspec"),
    }
    assert not results["notes"].str.startswith("FAILED").any(), results["notes"].tolist()
    assert (results["median_epoch_s"] > 0).all()
    assert (results["first_epoch_s"] > 0).all()
    assert (results["compile_s"] >= 0).all()
    assert (results["examples_per_s"] > 0).all()
    assert results["test_accuracy"].between(0, 1).all()

    ratios = out["ratios"].set_index("model")
    assert {"nnspec/hand", "nnspec/keras_fit", "fastest_nnspec", "nnspec/fastest_nnspec"} <= set(ratios.columns)
    assert ratios.loc["mlp", "nnspec/hand"] > 0
    assert ratios.loc["resnet", "best_hand"] == NO_HAND
    assert pd.isna(ratios.loc["resnet", "nnspec/hand"])  # nothing to compare with
    assert ratios.loc["resnet", "fastest_nnspec"] == "jax"
    assert ratios.loc["resnet", "nnspec/fastest_nnspec"] == 1.0
    assert {"figure", "ratio", "limit", "status"} <= set(out["targets"].columns)

    assert out_csv.exists() and (tmp_path / "results.ratios.csv").exists()
    assert "| model | engine | implementation |" in (tmp_path / "report.md").read_text()
    for key in ("cpu", "cores", "date", "jax"):
        assert key in out["info"]


@pytest.mark.slow
def test_keras_fit_resnet_starts_from_nnspec_weights() -> None:
    """The Keras ``fit`` baseline's functional resnet takes every nnspec array by name and computes nnspec's outputs."""
    pytest.importorskip("jax")
    pytest.importorskip("keras")
    import numpy as np

    import nnspec
    from benchmarks.keras_fit import _build, assign_by_name
    from benchmarks.settings import BenchConfig, initial_weights, make_model_graph

    config = BenchConfig()
    rng = np.random.default_rng(0)
    norm = ("gamma", "beta", "moving_mean", "moving_variance")
    weights = {  # move the batch norms off their identity start, so that a misplaced array shows
        key: value + rng.uniform(0.1, 0.5, value.shape).astype(value.dtype) if key.split(".")[-1] in norm else value
        for key, value in initial_weights("resnet", config).items()
    }
    model = _build("resnet")
    assign_by_name(model, weights)
    x = rng.uniform(0, 1, (16, 28, 28, 1)).astype(np.float32)
    compiled = nnspec.compile(make_model_graph("resnet", config), backend="jax", weights=weights, device="cpu")
    np.testing.assert_allclose(np.asarray(model.predict(x, verbose=0)), np.asarray(compiled.predict_arrays(compiled.put(x))), atol=1e-5)
