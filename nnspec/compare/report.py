"""Rendering a :class:`~nnspec.compare.core.CompareResult`: terminal text, Markdown, CSV and a trajectory plot.

The report's tables are pivots of the result's long DataFrames: one row per layer (or weight, or step),
one column per engine, holding the relative error; a ``!`` marks a value over its tolerance.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..tables import from_frame, plain_text
from ..tables import markdown as md_table
from .parity import KINK_FACTOR

if TYPE_CHECKING:
    from .core import CompareResult


def fmt_error(value: float) -> str:
    """An error measure in short scientific notation (``0`` for exact agreement)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    if math.isinf(value):
        return "inf"
    return f"{value:.1e}"


def _cell(value: float, ok: bool) -> str:
    return fmt_error(value) + ("" if ok else " !")


def _pivot(df: pd.DataFrame, keys: list[str], backends: list[str]) -> pd.DataFrame:
    """Rows ``keys``, one column per engine with its marked relative error."""
    table = df.assign(cell=[_cell(v, ok) for v, ok in zip(df["max_rel"], df["ok"])])
    wide = table.pivot_table(index=keys, columns="backend", values="cell", aggfunc="first", sort=False)
    wide = wide.reindex(columns=[b for b in backends if b in wide.columns]).reset_index()
    wide.columns.name = None
    return wide.fillna("-")


def forward_table(result: "CompareResult", mode: str) -> pd.DataFrame:
    """Forward relative error per layer and engine in ``mode`` (``inference`` or ``training``), plus argmax
    agreement."""
    df = result.forward[result.forward["mode"] == mode]
    if df.empty:
        return pd.DataFrame()
    wide = _pivot(df, ["index", "layer", "op"], result.backends)
    agree = {"index": "", "layer": "argmax agreement", "op": ""}
    for b in wide.columns[3:]:
        values = df[(df["backend"] == b)]["argmax_agreement"].dropna()
        agree[b] = f"{100 * values.iloc[-1]:.0f}%" if len(values) else "-"
    return pd.concat([wide, pd.DataFrame([agree])], ignore_index=True)


def gradients_table(result: "CompareResult") -> pd.DataFrame:
    """Loss and gradient relative error per weight and engine."""
    return _pivot(result.gradients, ["item"], result.backends) if len(result.gradients) else pd.DataFrame()


def trajectory_table(result: "CompareResult") -> pd.DataFrame:
    """Per step: the reference loss and, per engine, the relative errors of the loss, the weights and (when
    the model has any) the running statistics."""
    df = result.trajectory
    if df.empty:
        return pd.DataFrame()
    first = df[df["backend"] == df["backend"].iloc[0]]
    out = pd.DataFrame({"step": first["step"].to_numpy(), "ref loss": [f"{v:.6f}" for v in first["ref_loss"]]})
    for b in [b for b in result.backends if b in set(df["backend"])]:
        part = df[df["backend"] == b].set_index("step").reindex(out["step"])
        out[f"{b} loss"] = [_cell(v, v <= t) for v, t in zip(part["loss_rel"], part["tolerance"])]
        out[f"{b} weights"] = [_cell(v, v <= t) for v, t in zip(part["weights_rel"], part["tolerance"])]
        if "state_rel" in part and part["state_rel"].notna().any():
            out[f"{b} running stats"] = [_cell(v, v <= t) for v, t in zip(part["state_rel"], part["tolerance"])]
    flips = df[df["kink_flip"].fillna("").astype(bool)] if "kink_flip" in df else df.iloc[:0]
    if len(flips):
        out["kink flips"] = [
            "; ".join(
                f"{b}: {f}"
                for b, f in zip(flips[flips["step"] == s]["backend"], flips[flips["step"] == s]["kink_flip"])
            )
            for s in out["step"]
        ]
    return out


def timing_table(result: "CompareResult") -> pd.DataFrame:
    """Timing per engine in readable units."""
    t = result.timing
    if t.empty:
        return pd.DataFrame()
    return pd.DataFrame(
        {
            "backend": t["backend"],
            "device": t["device"],
            "compile s": t["compile_s"].map(lambda v: f"{v:.2f}"),
            "first step s": t["first_step_s"].map(lambda v: f"{v:.2f}"),
            "step ms": t["step_s"].map(lambda v: f"{1000 * v:.2f}"),
            "epoch s": t["epoch_s"].map(lambda v: f"{v:.3f}"),
            "examples": t["epoch_examples"].astype(int),
            "examples/s": t["examples_per_s"].map(lambda v: f"{v:,.0f}"),
        }
    )


def summary_table(result: "CompareResult") -> pd.DataFrame:
    """One row per engine: status, the first layer / weight / step over tolerance, argmax agreement, message."""
    s = result.summary
    out = pd.DataFrame(
        {
            "backend": s["backend"],
            "status": s["status"],
            "first layer over tol": s["first_forward"].fillna("-"),
            "first gradient over tol": s["first_gradient"].fillna("-"),
            "first step over tol": s["first_step"].fillna("-").astype(str),
            "argmax": s["argmax_agreement"].map(lambda v: "-" if pd.isna(v) else f"{100 * v:.0f}%"),
        }
    )
    messages = s["message"].fillna("")
    if messages.astype(bool).any():
        out["message"] = messages
    return out


def sections(result: "CompareResult") -> list[tuple[str, pd.DataFrame]]:
    """The report's titled tables, in order."""
    t = result.tolerances
    parts = [
        (
            f"Forward per layer, inference (max relative error vs NumPy float64; tolerance {t.forward:g})",
            forward_table(result, "inference"),
        ),
        (
            f"Forward per layer, training: dropout masks of step 0 (tolerance {t.forward:g})",
            forward_table(result, "training"),
        ),
        (f"Loss and gradients, first batch, dropout on (tolerance {t.gradients:g})", gradients_table(result)),
        (
            f"Training trajectory, {result.steps} steps: relative error of the loss, the weights and the running "
            f"statistics (tolerance {t.trajectory:g}; "
            f"x{KINK_FACTOR:g} for an engine from a step where it took the other side of a kink)",
            trajectory_table(result),
        ),
        ("Timing (medians, warm-up excluded)", timing_table(result)),
        ("Summary", summary_table(result)),
    ]
    return [(title, df) for title, df in parts if len(df)]


def header_lines(result: "CompareResult") -> list[str]:
    """What was compared, on what data, with which tolerances."""
    t = result.tolerances
    return [
        f"spec {result.spec}: {', '.join(result.backends)} vs the NumPy float64 reference",
        f"dtype {result.dtype}, batch {result.batch}, {result.steps} training steps; data: {result.data_source}",
        f"tolerances (relative): forward {t.forward:g}, gradients {t.gradients:g}, trajectory {t.trajectory:g}; '!' "
        "marks a value over it",
    ]


def render(result: "CompareResult", markdown: bool = False) -> str:
    """The whole report as text (``markdown=True``: as a Markdown document)."""
    lines: list[str] = []
    if markdown:
        lines += [f"# nnspec compare: {result.spec}", ""] + [f"- {h}" for h in header_lines(result)] + [""]
    else:
        lines += header_lines(result) + [""]
    for title, df in sections(result):
        lines += [f"## {title}" if markdown else title, ""] if markdown else [title]
        lines += [
            md_table(from_frame(df, numbers_right=False), level=0) if markdown else plain_text(from_frame(df)),
            "",
        ]
    verdict = "all engines agree with the reference" if result.ok else "some engines DISAGREE with the reference"
    lines.append(f"**Result: {verdict}.**" if markdown else f"Result: {verdict} (exit code {result.exit_code}).")
    return "\n".join(lines) + "\n"


def plot_trajectory(result: "CompareResult", path: str | os.PathLike) -> None:
    """Loss per step (reference and engines) and the weights' relative distance to the reference per step."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    df = result.trajectory
    fig, (ax_loss, ax_dist) = plt.subplots(1, 2, figsize=(11, 4))
    if len(df):
        first = df[df["backend"] == df["backend"].iloc[0]]
        ax_loss.plot(first["step"], first["ref_loss"], "k-", linewidth=3, alpha=0.4, label="NumPy float64 reference")
        for b in [b for b in result.backends if b in set(df["backend"])]:
            part = df[df["backend"] == b]
            ax_loss.plot(part["step"], part["loss"], marker="o", markersize=3, label=b)
            ax_dist.plot(part["step"], part["weights_rel"].clip(lower=1e-18), marker="o", markersize=3, label=b)
        ax_dist.axhline(result.tolerances.trajectory, color="red", linestyle="--", linewidth=1, label="tolerance")
        ax_dist.set_yscale("log")
    ax_loss.set(title=f"{result.spec}: training loss per step ({result.dtype})", xlabel="step", ylabel="loss")
    ax_dist.set(title="weights: relative distance to the reference", xlabel="step", ylabel="||w - w_ref|| / ||w_ref||")
    for ax in (ax_loss, ax_dist):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: The files of a compare report, in the report's folder.
REPORT_FILES: tuple[str, ...] = ("compare.csv", "summary.csv", "compare.md", "trajectory.png")


def check_report_folder(out_dir: str | os.PathLike) -> Path:
    """Refuse, before comparing, a report folder that is not a folder, or where a report file's place holds a link,
    a FIFO, a device or a folder (:mod:`nnspec.outputs`); returns the folder."""
    from ..outputs import check_output_file, check_output_folder

    out = Path(check_output_folder(out_dir, "report folder (--out)"))
    if out.is_dir():
        for name in REPORT_FILES:
            check_output_file(out / name, "report")
    return out


def write_report(result: "CompareResult", out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``compare.csv`` (every row, long format), ``summary.csv``, ``compare.md`` and ``trajectory.png``, all or
    none, never through a link or over a device (:func:`nnspec.outputs.write_outputs`)."""
    from ..outputs import Content, write_outputs

    out = check_report_folder(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in REPORT_FILES}
    jobs: list[tuple[Path, Content]] = [
        (paths["compare.csv"], lambda tmp: result.to_frame().to_csv(tmp, index=False)),
        (
            paths["summary.csv"],
            lambda tmp: result.summary.drop(columns=["traceback"], errors="ignore").to_csv(tmp, index=False),
        ),
        (paths["compare.md"], render(result, markdown=True)),
    ]
    if len(result.trajectory):
        jobs.append((paths["trajectory.png"], lambda tmp: plot_trajectory(result, tmp)))
    else:
        del paths["trajectory.png"]
    write_outputs(jobs, "report")
    return paths
