"""``nnspec profile``: per-layer forward and backward times on real engines (no speed is asserted)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnspec import load
from nnspec.cli import main
from nnspec.runtime.profiling import (
    EXTRA_ROWS,
    EngineProfile,
    LayerTiming,
    Profile,
    layer_inputs,
    profile_frame,
    profile_spec,
    render,
)

CONV = """\
nnspec: 1
name: tiny_conv
input: {shape: [8, 8, 1]}
layers:
  - conv2d: {filters: 4, kernel: 3, padding: same, activation: relu}
  - max_pool2d: {size: 2}
  - flatten
  - dropout: {rate: 0.3}
  - dense: {units: 10}
  - softmax
train: {batch_size: 16, seed: 1}
data: {dataset: digits}
"""

GRAPH = """\
nnspec: 1.1
name: tiny_graph
input: {shape: [8, 8, 1]}
layers:
  - conv2d: {filters: 4, kernel: 3, padding: same, use_bias: false, name: stem}
  - batch_norm: {name: bn}
  - activation: {activation: relu, name: relu}
  - add: {inputs: [relu, stem], name: join}
  - global_avg_pool2d: {name: pool}
  - dense: {units: 10, name: head}
  - softmax
train: {batch_size: 8, seed: 2}
data: {dataset: digits}
"""

MLP = """\
nnspec: 1
name: tiny_mlp
input: {shape: [8, 8, 1]}
layers: [flatten, {dense: {units: 10}}, softmax]
train: {batch_size: 32}
data: {dataset: digits}
"""

ENGINES = ["jax", "tensorflow", "theano"]


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("profile")
    paths = {name: folder / f"{name}.yaml" for name in ("conv", "graph", "mlp")}
    for name, text in (("conv", CONV), ("graph", GRAPH), ("mlp", MLP)):
        paths[name].write_text(text)
    return paths


@pytest.fixture(scope="module")
def conv_profile(specs: dict[str, Path]) -> Profile:
    return profile_spec(load(str(specs["conv"])), ENGINES, warmup=1, repeats=3, device="cpu")


@pytest.fixture(scope="module")
def graph_profile(specs: dict[str, Path]) -> Profile:
    return profile_spec(load(str(specs["graph"])), ["jax", "tensorflow"], warmup=1, repeats=3, device="cpu")


@pytest.mark.parametrize("which", ["conv", "graph"])
def test_every_layer_has_a_positive_forward_and_backward_time_on_every_engine(
    which: str, conv_profile: Profile, graph_profile: Profile
) -> None:
    profile = conv_profile if which == "conv" else graph_profile
    frame = profile_frame(profile)
    layers = [n.name for n in profile.graph.nodes]
    assert list(frame["layer"]) == layers + [name for name, _ in EXTRA_ROWS]
    assert [e.backend for e in profile.profiled] == [e.backend for e in profile.engines]
    per_layer = frame.iloc[: len(layers)]
    time_columns = [c for c in frame.columns if c.endswith(" ms")]
    assert len(time_columns) == 2 * len(profile.engines)
    values = per_layer[time_columns].to_numpy(dtype=float)
    assert np.all(np.isfinite(values)) and np.all(values > 0), per_layer
    extra = frame.set_index("layer")
    for e in profile.engines:
        fwd, bwd = f"{e.backend} fwd ms", f"{e.backend} bwd ms"
        assert math.isclose(extra.loc["total", fwd], per_layer[fwd].sum(), rel_tol=1e-9)
        assert math.isclose(extra.loc["total", bwd], per_layer[bwd].sum(), rel_tol=1e-9)
        assert extra.loc["step", fwd] > 0 and extra.loc["dispatch", fwd] > 0 and extra.loc["dispatch", bwd] > 0
        assert math.isnan(extra.loc["step", bwd])


def test_a_merge_layer_is_timed_with_all_its_inputs(graph_profile: Profile) -> None:
    graph = graph_profile.graph
    join = graph.node("join")
    inputs = layer_inputs(graph, join, graph_profile.batch, "float32")
    assert [x.shape for x in inputs] == [(8, 8, 8, 4), (8, 8, 8, 4)]
    assert all(0.0 <= x.min() and x.max() < 1.0 for x in inputs)
    assert not np.array_equal(inputs[0], inputs[1])
    assert all(e.layers[3].name == "join" and e.layers[3].error is None for e in graph_profile.engines)


def markdown_cells(text: str) -> list[list[str]]:
    """The cells of the Markdown table in ``text``, row by row."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]


def test_markdown_parses_with_one_row_per_layer(conv_profile: Profile) -> None:
    cells = markdown_cells(render(conv_profile, "md"))
    assert cells[0] == ["layer", "type", "output"] + [f"{e} {d} ms" for e in ENGINES for d in ("fwd", "bwd")]
    assert set(cells[1]) == {"---"}
    body = cells[2:]
    assert [r[0] for r in body] == [
        "conv2d_1",
        "max_pool2d_1",
        "flatten_1",
        "dropout_1",
        "dense_1",
        "softmax_1",
        "total",
        "dispatch",
        "step",
    ]
    assert all(float(v) > 0 for r in body[:-1] for v in r[3:])
    assert all(float(v) > 0 for v in body[-1][3::2]) and set(body[-1][4::2]) == {""}


def test_cli_prints_the_table_and_draws_a_png_chart(
    specs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chart = tmp_path / "profile.png"
    args = [
        "--backends",
        "jax",
        "--repeats",
        "2",
        "--warmup",
        "0",
        "--batch",
        "5",
        "--format",
        "md",
        "--plot",
        str(chart),
    ]
    code = main(["profile", str(specs["mlp"]), *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cells = markdown_cells(captured.out)
    assert cells[0] == ["layer", "type", "output", "jax fwd ms", "jax bwd ms"]
    assert [r[:3] for r in cells[2:5]] == [
        ["flatten_1", "flatten", "5x64"],
        ["dense_1", "dense", "5x10"],
        ["softmax_1", "softmax", "5x10"],
    ]
    assert "profile: jax: 3 layers" in captured.err and f"chart written to {chart}" in captured.err


def test_csv_parses_with_one_row_per_layer(conv_profile: Profile) -> None:
    frame = pd.read_csv(io.StringIO(render(conv_profile, "csv")))
    assert list(frame.columns[:3]) == ["layer", "type", "output"]
    assert list(frame["type"][:6]) == ["conv2d", "max_pool2d", "flatten", "dropout", "dense", "softmax"]
    assert (frame.iloc[:6, 3:] > 0).all().all()
    assert frame["output"][0] == "16x8x8x4"


def test_text_table_names_the_settings_and_the_engines(conv_profile: Profile) -> None:
    text = render(conv_profile, "text")
    assert "batch 16, training mode" in text and "median of 3 calls after 1 + 1 untimed calls" in text
    assert all(f"{name} fwd ms" in text for name in ENGINES)


def test_an_unknown_backend_is_a_clear_error(specs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", str(specs["conv"]), "--backends", "jax,jaxx"]) == 1
    err = capsys.readouterr().err
    assert "unknown backend 'jaxx'" in err and "did you mean 'jax'" in err and "Traceback" not in err


def test_a_cell_an_engine_cannot_measure_says_so(conv_profile: Profile) -> None:
    real = conv_profile.engines[0]
    broken = EngineProfile(
        "broken", "0", [LayerTiming(t.name, t.op, error="no lowering") for t in real.layers], step_error="cannot train"
    )
    skipped = EngineProfile("absent", skipped="backend 'absent' is not available: not installed")
    profile = Profile("x.yaml", conv_profile.graph, 16, 3, 1, "cpu", [real, broken, skipped])
    text = render(profile, "md")
    row = next(line for line in text.splitlines() if line.startswith("| conv2d_1 "))
    assert row.rstrip(" |").endswith("| n/a | n/a")
    assert "- note: broken: layer 'conv2d_1' (conv2d): no lowering" in text
    assert "- note: broken: step: cannot train" in text
    assert "- note: absent: skipped: backend 'absent' is not available" in text
    assert "absent fwd ms" not in text
