"""Plots of metrics histories: one run (``history.png``) or several runs overlaid (``nnspec plot``).

Figures are drawn with matplotlib's Agg canvas directly, so no global backend is switched and no
display is needed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import pandas as pd

_PANELS = (("loss", "loss"), ("accuracy", "accuracy"))


def _figure(title: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    fig.suptitle(title)
    for ax, (_, label) in zip(axes, _PANELS):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    return fig, axes


def plot_runs(runs: Sequence[tuple[str, "pd.DataFrame"]], path: str | os.PathLike, title: str = "") -> None:
    """Overlay ``(label, history)`` pairs: training solid, validation dashed, one colour per run."""
    from matplotlib import colormaps

    fig, axes = _figure(title)
    colors = colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap
    for i, (label, frame) in enumerate(runs):
        color = colors[i % len(colors)]
        prefix = f"{label} " if label else ""
        for ax, (column, _) in zip(axes, _PANELS):
            ax.plot(frame["epoch"], frame[column], "-o", color=color, markersize=3, label=f"{prefix}train")
            val = frame[f"val_{column}"]
            if val.notna().any():
                ax.plot(frame["epoch"], val, "--s", color=color, markersize=3, label=f"{prefix}validation")
    for ax in axes:
        if ax.has_data():
            ax.legend(fontsize="small")
    fig.savefig(os.fspath(path), dpi=100)


def plot_history(frame: "pd.DataFrame", path: str | os.PathLike, title: str = "") -> None:
    """Loss and accuracy per epoch of one run, train vs validation."""
    plot_runs([("", frame)], path, title)
