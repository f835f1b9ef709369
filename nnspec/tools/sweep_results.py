"""A sweep's results: one row per run read back from its run directory, written as ``results.csv`` and
``results.md``, and ``val_accuracy.png`` (validation accuracy per epoch, one line per run).

Columns (:func:`columns`): ``run`` (the run directory's name), ``backend``, one column per grid key
with more than one value (named by its ``--set`` path), ``epochs`` (done), the last epoch's ``loss``,
``accuracy``, ``val_loss`` and ``val_accuracy``, ``test_loss`` and ``test_accuracy`` (``test.json``),
``train_seconds`` (``env.json``), ``status`` and ``error`` (the error line of a run that failed).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..tables import Table, markdown
from .sweep_record import Sweep
from .sweep_runner import RunResult

if TYPE_CHECKING:
    import pandas as pd

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
PLOT_FILE = "val_accuracy.png"
_FINAL = ("loss", "accuracy", "val_loss", "val_accuracy")
_STYLES = ("-o", "--s", ":^", "-.D")
_TAIL = ("epochs", *_FINAL, "test_loss", "test_accuracy", "train_seconds", "status", "error")


def columns(sweep: Sweep) -> list[str]:
    """The results table's columns (see the module docstring)."""
    return ["run", "backend", *(a.key for a in sweep.axes if len(a.values) > 1), *_TAIL]


def _history(folder: Path) -> pd.DataFrame | None:
    from ..errors import DataError
    from ..runtime.history import read_metrics

    try:
        return read_metrics(folder / "metrics.csv")
    except DataError:
        return None


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():  # nothing, or a FIFO or device that reading would wait on
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def result_row(sweep: Sweep, result: RunResult) -> dict[str, Any]:
    """One run's row, read from its run directory (blank where it holds nothing yet)."""
    folder = sweep.out / result.run.name
    settings = dict(result.run.settings)
    row: dict[str, Any] = {"run": result.run.name, "backend": result.run.backend}
    row.update({a.key: settings.get(a.key) for a in sweep.axes if len(a.values) > 1})
    history = _history(folder) if result.action != "invalid" else None
    last = history.iloc[-1] if history is not None and len(history) else None
    row["epochs"] = None if history is None else len(history)
    for m in _FINAL:
        row[m] = _number(last[m]) if last is not None else None
    test = _json(folder / "test.json") if result.status == "complete" else {}
    row["test_loss"], row["test_accuracy"] = _number(test.get("loss")), _number(test.get("accuracy"))
    row["train_seconds"] = (
        _number(_json(folder / "env.json").get("train_seconds")) if result.status == "complete" else None
    )
    row["status"], row["error"] = result.status, result.error
    return row


def results_frame(sweep: Sweep, results: Sequence[RunResult]) -> pd.DataFrame:
    """The results table as a DataFrame, one row per run in plan order."""
    import pandas as pd

    return pd.DataFrame([result_row(sweep, r) for r in results], columns=columns(sweep))


def _cell(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column == "train_seconds":
        return f"{value:.1f}"
    if isinstance(value, float) and column != "epochs":
        return f"{value:.4f}"
    if column == "epochs":
        return str(int(value))
    return str(value)


def results_table(sweep: Sweep, frame: pd.DataFrame) -> Table:
    """The results as a :class:`~nnspec.tables.Table`: grid keys by their short names, numbers rounded."""
    shorts = {a.key: a.short for a in sweep.axes}
    names = [shorts.get(c, c) for c in frame.columns]
    numeric = {i for i, c in enumerate(frame.columns) if c in _TAIL[:-2]}
    table = Table("", names, right=frozenset(numeric))
    for record in frame.to_dict("records"):
        table.add(*(_cell(record[c], c) for c in frame.columns))
    return table


def best_line(frame: pd.DataFrame) -> str:
    """Which complete run has the highest validation (else test) accuracy, or an empty string."""
    done = frame[frame["status"] == "complete"]
    for column in ("val_accuracy", "test_accuracy"):
        values = done[column].dropna() if column in done else None
        if values is not None and len(values):
            best = done.loc[values.idxmax()]
            return f"best {column}: {best[column]:.4f} ({best['run']})"
    return ""


def markdown_report(sweep: Sweep, frame: pd.DataFrame) -> str:
    """``results.md``: what was swept, the table, the best run."""
    varied = [a for a in sweep.axes if len(a.values) > 1]
    fixed = [f"`{a.key}={a.values[0]}`" for a in sweep.axes if len(a.values) == 1] + [
        f"`{o}`" for o in sweep.fixed_overrides()
    ]
    lines = [f"# Sweep of {sweep.spec.name}", ""]
    lines += [f"- `{a.short}` = `{a.key}`: {', '.join(a.values)}" for a in varied]
    lines.append(f"- backends: {', '.join(sweep.backends)}")
    if sweep.sample is not None:
        lines.append(f"- a random sample of {sweep.sample} combinations (seed {sweep.seed})")
    if fixed:
        lines.append(f"- fixed: {', '.join(fixed)}")
    lines += ["", markdown(results_table(sweep, frame), level=0)]
    best = best_line(frame)
    if best:
        lines += ["", best]
    return "\n".join(lines) + "\n"


def plot_val_accuracy(sweep: Sweep, results: Sequence[RunResult], path: str | os.PathLike) -> int:
    """Validation accuracy per epoch, one line per run with metrics (training accuracy when a run has no
    validation split); returns how many runs were drawn."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    drawn, fallback = 0, False
    # one colour per combination, one line style per backend: engines that agree draw one curve in two styles
    combos = list(dict.fromkeys(r.run.settings for r in results))
    palette = colormaps["tab10" if len(combos) <= 10 else "tab20"].resampled(max(len(combos), 1))
    for result in results:
        history = _history(sweep.out / result.run.name) if result.action != "invalid" else None
        if history is None or not len(history):
            continue
        column = "val_accuracy" if history["val_accuracy"].notna().any() else "accuracy"
        fallback |= column == "accuracy"
        style = _STYLES[sweep.backends.index(result.run.backend) % len(_STYLES)]
        ax.plot(
            history["epoch"],
            history[column],
            style,
            color=palette(combos.index(result.run.settings)),
            markersize=4 if len(history) <= 40 else 0,
            fillstyle="none",
            label=result.run.name + ("" if column == "val_accuracy" else " (training)"),
        )
        drawn += 1
    ax.set_title(f"{sweep.spec.stem}: validation accuracy per epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy" + (" (training where no validation split)" if fallback else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    if drawn > 12:
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), ncols=1 + drawn // 30)
    elif drawn:
        ax.legend(fontsize="small", loc="best")
    else:
        ax.text(0.5, 0.5, "no run has finished an epoch yet", ha="center", va="center", transform=ax.transAxes)
    fig.savefig(os.fspath(path), dpi=100)
    return drawn


def check_result_files(folder: Path) -> None:
    """Refuse, before any run starts, a sweep folder where a results file's place holds a link, a FIFO, a device
    or a folder (:func:`nnspec.outputs.check_output_file`)."""
    from ..errors import NnspecError
    from ..outputs import check_output_file

    if folder.is_dir():
        for name in (RESULTS_CSV, RESULTS_MD, PLOT_FILE):
            check_output_file(folder / name, "sweep results", error=NnspecError)


def write_results(sweep: Sweep, results: Sequence[RunResult]) -> pd.DataFrame:
    """Write ``results.csv``, ``results.md`` and ``val_accuracy.png`` into the sweep's folder, each whole or not at
    all, never through a link or over a device (:func:`nnspec.outputs.write_outputs`)."""
    from ..errors import NnspecError
    from ..outputs import Content, write_outputs

    frame = results_frame(sweep, results)
    write: list[tuple[Path, Content]] = [
        (sweep.out / RESULTS_CSV, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.8g")),
        (sweep.out / RESULTS_MD, markdown_report(sweep, frame)),
        (sweep.out / PLOT_FILE, lambda tmp: plot_val_accuracy(sweep, results, tmp)),
    ]
    for path, fill in write:
        write_outputs([(path, fill)], "sweep results", error=NnspecError)
    return frame
