"""Plots of metrics histories: one run (``history.png``) or several runs overlaid (``nnspec plot``), and where a
figure a user names goes (:func:`figure_target`, for ``plot -o`` and ``profile --plot``).

Figures are drawn with matplotlib's Agg canvas directly, so no global backend is switched and no
display is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..outputs import OutputPathError, check_output_file

if TYPE_CHECKING:
    import pandas as pd

#: The format of a figure whose file name has no suffix.
DEFAULT_FORMAT = "png"
#: Formats matplotlib can write but nnspec does not offer (pgf needs a LaTeX installation).
_NOT_OFFERED = ("pgf",)


@dataclass(frozen=True)
class FigureTarget:
    """Where a figure goes: the file, its format (from the suffix) and, when the path given was a folder, a note
    saying which file in it is written."""

    path: str
    format: str
    note: str = ""


def figure_formats() -> tuple[str, ...]:
    """The image formats a figure can be written in, as file suffixes without the dot (matplotlib's, less pgf)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    canvas = FigureCanvasAgg(Figure())
    return tuple(sorted(f for f in canvas.get_supported_filetypes() if f not in _NOT_OFFERED))


def figure_target(path: str | os.PathLike[str], what: str, default_name: str) -> FigureTarget:
    """Read a figure argument (``plot -o``, ``profile --plot``): a file whose suffix names the format (PNG when it
    has none), or an existing folder, meaning the file ``default_name`` in it. Checked with
    :func:`nnspec.outputs.check_output_file`; an unknown format is an :class:`~nnspec.outputs.OutputPathError`
    listing the known ones."""
    given = os.fspath(path)
    text, note = given, ""
    if given and "\0" not in given and os.path.isdir(given):
        text = os.path.join(given, default_name)
        note = f"{given} is a folder: the {what} goes to {text}"
    suffix = os.path.splitext(text)[1]
    fmt = suffix[1:].lower() or DEFAULT_FORMAT
    formats = figure_formats()
    if fmt not in formats:
        raise OutputPathError(
            f"{text}: cannot write the {what}: unknown image format {suffix!r}; end the file name in one of "
            f"{', '.join('.' + f for f in formats)} (a name without a suffix is written as PNG)"
        )
    return FigureTarget(check_output_file(text, what, example=default_name), fmt, note)


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


def plot_runs(
    runs: Sequence[tuple[str, "pd.DataFrame"]], path: str | os.PathLike, title: str = "", fmt: str | None = None
) -> None:
    """Overlay ``(label, history)`` pairs: training solid, validation dashed, one colour per run; ``fmt`` is the
    image format (default: from the file's suffix)."""
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
    fig.savefig(os.fspath(path), dpi=100, format=fmt)


def plot_history(frame: "pd.DataFrame", path: str | os.PathLike, title: str = "") -> None:
    """Loss and accuracy per epoch of one run, train vs validation."""
    plot_runs([("", frame)], path, title)
