"""The benchmark harness runs end to end on tiny data (JAX only) and produces the documented tables.

Not a timing test: it checks the columns and that the measured times are positive. The run covers the
MLP (nnspec and a hand-written baseline) and the resnet (nnspec only: it has no hand-written baselines),
each nnspec row at two precisions (float32 and mixed_bfloat16) with its cold and warm compile times from a
child process; Keras ``fit`` children are skipped, but the resnet's Keras model is checked to start from
nnspec's weights.
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
    "model",
    "engine",
    "implementation",
    "precision",
    "epochs",
    "compile_s",
    "compile_cold_s",
    "compile_warm_s",
    "first_epoch_s",
    "median_epoch_s",
    "examples_per_s",
    "final_train_loss",
    "test_accuracy",
    "notes",
]


@pytest.mark.slow
def test_harness_runs_jax_mlp_and_resnet_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    import pandas as pd

    from benchmarks.report import NO_HAND

    out_csv = tmp_path / "results.csv"
    args = bench_run.parse_args(
        [
            "--models",
            "mlp,resnet",
            "--engines",
            "jax",
            "--epochs",
            "2",
            "--limit",
            "512",
            "--test-limit",
            "256",
            "--precision",
            "float32,mixed_bfloat16",
            "--skip",
            "keras fit",
            "--skip",
            "scan epoch",
            "--out",
            str(out_csv),
            "--markdown",
            str(tmp_path / "report.md"),
        ]
    )
    bench_run.prepare_environment(args)
    out = bench_run.run_benchmarks(args)
    bench_run.write_outputs(out, args)

    results = out["results"]
    assert list(results.columns) == RESULT_COLUMNS
    assert sorted(zip(results["model"], results["implementation"], results["precision"])) == [
        ("mlp", "hand: jit step", "float32"),
        ("mlp", "nnspec", "float32"),
        ("mlp", "nnspec", "mixed_bfloat16"),
        ("resnet", "nnspec", "float32"),
        ("resnet", "nnspec", "mixed_bfloat16"),
    ]
    assert not results["notes"].str.startswith(("FAILED", "REFUSED")).any(), results["notes"].tolist()
    nnspec_rows = results[results["implementation"] == "nnspec"]
    assert (nnspec_rows["compile_cold_s"] > 0).all() and (nnspec_rows["compile_warm_s"] > 0).all(), nnspec_rows[
        "notes"
    ].tolist()
    assert nnspec_rows["notes"].str.contains("engine import").all()
    assert (results["median_epoch_s"] > 0).all()
    assert (results["first_epoch_s"] > 0).all()
    assert (results["compile_s"] >= 0).all()
    assert (results["examples_per_s"] > 0).all()
    assert results["test_accuracy"].between(0, 1).all()

    by_precision = out["ratios"].set_index(["model", "precision"])
    assert (
        by_precision.loc[("mlp", "mixed_bfloat16"), "best_hand"] == "hand: jit step (float32)"
    )  # the float32 baseline
    assert by_precision.loc[("mlp", "mixed_bfloat16"), "nnspec/hand"] > 0
    ratios = out["ratios"][out["ratios"]["precision"] == "float32"].set_index("model")
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
    np.testing.assert_allclose(
        np.asarray(model.predict(x, verbose=0)), np.asarray(compiled.predict_arrays(compiled.put(x))), atol=1e-5
    )


def test_refusals_are_rows_with_the_reason() -> None:
    """An engine declining a precision (nnspec's BackendError) or a baseline declining a device is a REFUSED row
    naming every line of the reason; other errors are FAILED rows."""
    from benchmarks.result import Refused, failed
    from benchmarks.run import baseline_precisions
    from nnspec.errors import BackendError

    row = failed(
        "mlp", "theano", "nnspec", BackendError("train.precision 'tf32' is not supported\nby backend 'theano'"), "tf32"
    )
    assert row["precision"] == "tf32" and row["median_epoch_s"] is None
    assert row["notes"] == "REFUSED: BackendError: train.precision 'tf32' is not supported / by backend 'theano'"
    assert failed("mlp", "jax", "hand: jit step", Refused("CPU only"))["notes"] == "REFUSED: Refused: CPU only"
    assert failed("mlp", "jax", "nnspec", RuntimeError("boom\ntrace"))["notes"] == "FAILED: RuntimeError: boom"
    assert baseline_precisions(("float32", "tf32"), ["tf32", "mixed_bfloat16"]) == ["tf32"]
    assert baseline_precisions(("float32", "tf32"), ["mixed_bfloat16"]) == ["float32"]


def test_gpu_plan_refuses_cpu_only_baselines_and_passes_precisions() -> None:
    """``--device gpu --precision ...``: every nnspec engine runs once per precision, PyTensor's C and Numba
    baselines are refused rows on the GPU, and Keras ``fit`` runs the precisions it can set."""
    from benchmarks.settings import BenchConfig

    args = bench_run.parse_args(
        ["--device", "gpu", "--precision", "float32,tf32,mixed_bfloat16", "--engines", "theano,keras"]
    )
    assert args.precision == ["float32", "tf32", "mixed_bfloat16"]
    theano = bench_run.plan("mlp", "theano", None, BenchConfig(), args, {})
    assert [(name, p) for name, p, _ in theano if name == "nnspec"] == [
        ("nnspec", "float32"),
        ("nnspec", "tf32"),
        ("nnspec", "mixed_bfloat16"),
    ]
    refused = [name for name, _, _ in theano if name.endswith(("(C)", "(Numba)"))]
    assert refused == ["hand: function+updates (C)", "hand: function+updates (Numba)"]
    for name, _, runner in theano:
        if name in refused:
            with pytest.raises(bench_run.Refused, match="CPU only"):
                runner()
    keras = bench_run.plan("mlp", "keras", None, BenchConfig(), args, {})
    assert [(name, p) for name, p, _ in keras if name == "keras fit"] == [
        ("keras fit", "float32"),
        ("keras fit", "tf32"),
        ("keras fit", "mixed_bfloat16"),
    ]
    with pytest.raises(SystemExit):
        bench_run.parse_args(["--precision", "float16"])
