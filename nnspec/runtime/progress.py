"""Training progress on stderr: a one-line bar redrawn per epoch on a terminal, a plain line per epoch
otherwise (logs, CI), or nothing."""

from __future__ import annotations

import math
import sys
from typing import IO, Any, Mapping


def _fmt(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def describe(row: Mapping[str, Any]) -> str:
    """``loss 0.1234  accuracy 0.9561  val_loss ...  1.23 s`` for one history row."""
    parts = [f"loss {_fmt(row['loss'])}", f"accuracy {_fmt(row['accuracy'])}"]
    if not math.isnan(row.get("val_loss", math.nan)):
        parts += [f"val_loss {_fmt(row['val_loss'])}", f"val_accuracy {_fmt(row['val_accuracy'])}"]
    parts.append(f"{row['seconds']:.3g} s")
    return "  ".join(parts)


class Progress:
    """Reports epochs as they finish. ``mode`` is ``'bar'``, ``'lines'`` or ``'off'``."""

    def __init__(self, total: int, mode: str = "lines", stream: IO[str] | None = None, width: int = 24):
        self.total = total
        self.mode = mode
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._drawn = False

    def start(self, first_epoch: int) -> None:
        """Called before the first epoch of a ``fit`` call (draws an empty bar on a terminal)."""
        self.first = first_epoch
        if self.mode == "bar":
            self._draw(0, "compiling and training ...")

    def epoch(self, row: Mapping[str, Any]) -> None:
        """Called after each epoch with its history row."""
        done = int(row["epoch"]) - self.first + 1
        if self.mode == "bar":
            self._draw(done, describe(row))
        elif self.mode == "lines":
            print(f"epoch {int(row['epoch'])}/{self.first + self.total - 1}  {describe(row)}", file=self.stream, flush=True)

    def close(self) -> None:
        """Finish the bar's line."""
        if self.mode == "bar" and self._drawn:
            print(file=self.stream, flush=True)
            self._drawn = False

    def _draw(self, done: int, text: str) -> None:
        filled = self.width * done // max(self.total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r\x1b[2K[{bar}] {done}/{self.total}  {text}")
        self.stream.flush()
        self._drawn = True


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
