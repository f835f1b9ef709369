"""Training progress on stderr.

Three modes:

* ``bar`` (stderr is a terminal): a live bar for the epoch in progress, drawn by :mod:`rich.progress`:
  steps done, examples per second, time elapsed and time left. rich redraws it from its own thread
  several times a second, so it keeps moving while an engine's fused program runs; the training loop
  feeds it the steps done after each chunk of the epoch (:func:`nnspec.runtime.loop.fit`). When an epoch
  ends its bar gives way to the epoch's plain line, which stays above the next bar.
* ``lines`` (logs, CI): one plain line per epoch, ``epoch 3/30  loss 0.1234  accuracy ...  0.02 s``.
* ``off``: nothing.
"""

from __future__ import annotations

import math
import sys
from typing import IO, TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

#: How often the live bar is redrawn (per second), whatever the training does meanwhile. Each redraw costs
#: CPU time taken from training: about 0.3 % of a core per redraw a second (measured).
REFRESH_PER_SECOND = 2.0


def _fmt(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def describe(row: Mapping[str, Any]) -> str:
    """``loss 0.1234  accuracy 0.9561  val_loss ...  1.23 s`` for one history row."""
    parts = [f"loss {_fmt(row['loss'])}", f"accuracy {_fmt(row['accuracy'])}"]
    if not math.isnan(row.get("val_loss", math.nan)):
        parts += [f"val_loss {_fmt(row['val_loss'])}", f"val_accuracy {_fmt(row['val_accuracy'])}"]
    parts.append(f"{row['seconds']:.3g} s")
    return "  ".join(parts)


def _bar_columns() -> list[Any]:
    """The live bar's columns: what, how far, how fast, how long."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class ExamplesPerSecond(ProgressColumn):
        """rich's step rate (``task.speed``) times the batch size."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            if speed is None:
                return Text("- ex/s", style="progress.data.speed")
            return Text(f"{speed * task.fields.get('batch_size', 1):,.0f} ex/s", style="progress.data.speed")

    return [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        ExamplesPerSecond(),
        TimeElapsedColumn(),
        TextColumn("elapsed"),
        TimeRemainingColumn(),
        TextColumn("left"),
    ]


class Progress:
    """Reports training as it goes. ``mode`` is ``'bar'``, ``'lines'`` or ``'off'`` (see the module docstring).

    ``stream`` is where lines and the bar go (default: stderr); ``console`` (a :class:`rich.console.Console`)
    draws the bar instead of one made for ``stream``, which is always treated as a terminal in ``bar`` mode.
    """

    def __init__(
        self,
        total: int,
        mode: str = "lines",
        stream: IO[str] | None = None,
        *,
        console: "Console | None" = None,
        refresh_per_second: float = REFRESH_PER_SECOND,
    ):
        self.total = total
        self.mode = mode
        self.stream = stream
        self.console = console
        self.refresh_per_second = refresh_per_second
        self.first = 1
        self._bar: "RichProgress | None" = None
        self._task: "TaskID | None" = None

    @property
    def live(self) -> bool:
        """Whether the steps inside an epoch are shown (the loop then trains the epoch in chunks)."""
        return self.mode == "bar"

    def start(self, first_epoch: int) -> None:
        """Called before the first epoch of a ``fit`` call (starts the live display on a terminal)."""
        self.first = first_epoch
        if self.mode == "bar" and self._bar is None:
            from rich.console import Console
            from rich.progress import Progress as RichProgress

            console = self.console or Console(file=self.stream or sys.stderr, force_terminal=True)
            # stdout stays where it goes (a file, a pipe); stderr's other messages print above the bar
            self._bar = RichProgress(
                *_bar_columns(), console=console, refresh_per_second=self.refresh_per_second, redirect_stdout=False
            )
            self._bar.start()

    def begin_epoch(self, epoch: int, steps: int, batch_size: int) -> None:
        """Called before epoch ``epoch`` (counted from 1) trains ``steps`` batches of ``batch_size``."""
        if self._bar is not None:
            self._task = self._bar.add_task(f"epoch {epoch}/{self._last}", total=steps, batch_size=batch_size)

    def advance(self, steps_done: int) -> None:
        """Called after each chunk of the epoch with the number of its steps trained so far."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=steps_done)

    def epoch(self, row: Mapping[str, Any]) -> None:
        """Called after each epoch with its history row."""
        line = f"epoch {int(row['epoch'])}/{self._last}  {describe(row)}"
        if self._bar is not None:
            self._drop_task()
            self._bar.refresh()
            self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        elif self.mode == "lines":
            print(line, file=self.stream or sys.stderr, flush=True)

    def close(self) -> None:
        """Stop the live display (an unfinished epoch's bar is removed)."""
        if self._bar is not None:
            self._drop_task()
            self._bar.stop()
            self._bar = None

    @property
    def _last(self) -> int:
        return self.first + self.total - 1

    def _drop_task(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.remove_task(self._task)
            self._task = None


def make_progress(progress: Any, total: int) -> Progress:
    """Turn ``fit``'s ``progress`` argument into a :class:`Progress`.

    ``None``: a bar when stderr is a terminal, else plain lines; ``True``: the same; ``False``: nothing;
    ``'bar'``/``'lines'``/``'off'``: that mode; a :class:`Progress` is used as given.
    """
    if isinstance(progress, Progress):
        return progress
    if progress is False or progress == "off":
        return Progress(total, "off")
    if progress in ("bar", "lines"):
        return Progress(total, progress)
    tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return Progress(total, "bar" if tty else "lines")
