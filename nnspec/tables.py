"""Every table nnspec prints or writes, rendered one way: text (rich on a terminal, plain aligned columns
otherwise), Markdown (pipe tables) and CSV (the standard library's writer).

The layer summary, ``nnspec backends``, the compare and profile reports, the diff report and sweep results
all build a :class:`Table` (or a DataFrame turned into one by :func:`from_frame`) and render it here. The
module imports nothing from nnspec and no third-party package until a rich table is printed.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any


@dataclass
class Table:
    """A titled table of text cells; ``right`` lists the columns aligned right (numbers); ``totals`` are rows
    set apart below a rule; ``note`` is a line below it; ``styles`` holds a rich style per row (used on a
    terminal only, "" for none)."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    right: frozenset[int] = frozenset()
    note: str = ""
    styles: list[str] = field(default_factory=list)
    totals: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object, style: str = "") -> None:
        """Append one row; cells are turned into text."""
        self.rows.append(["" if c is None else str(c) for c in cells])
        self.styles.append(style)


def from_frame(frame: Any, title: str = "", note: str = "", numbers_right: bool = True) -> Table:
    """A :class:`Table` of a pandas DataFrame's cells as text (None and NaN as empty cells); with ``numbers_right``,
    columns whose every cell reads as a number (``1.5e-03 !``, ``42%``, ``1,024``, ``-``) are aligned right."""
    columns = [str(c) for c in frame.columns]
    rows = [["" if v is None or v != v else str(v) for v in r] for r in frame.itertuples(index=False)]
    numeric = (i for i in range(len(columns)) if rows and all(_looks_numeric(r[i]) for r in rows))
    return Table(title, columns, rows, frozenset(numeric) if numbers_right else frozenset(), note)


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(" !", "").replace("%", "").replace(",", "").strip()
    if stripped in ("-", "", "inf"):
        return True
    try:
        float(stripped)
    except ValueError:
        return False
    return True


def plain_text(table: Table) -> str:
    """The table as aligned columns separated by two spaces, a dashed rule under the header (and above the
    totals), no trailing blanks."""
    everything = [table.columns, *table.rows, *table.totals]
    widths = [max(len(r[i]) for r in everything) for i in range(len(table.columns))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in table.right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    header = line(table.columns)
    rule = "-" * max(len(header), 3)
    lines = [table.title] if table.title else []
    lines += [header, rule, *(line(r) for r in table.rows)]
    if table.totals:
        lines += [rule, *(line(r) for r in table.totals)]
    if table.note:
        lines.append(table.note)
    return "\n".join(lines)


def _escape_md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(table: Table, level: int = 3) -> str:
    """The table as a Markdown pipe table under a heading of ``level`` (0: no heading)."""
    rule = ["---:" if i in table.right else "---" for i in range(len(table.columns))]
    lines = [f"{'#' * level} {table.title}", ""] if level and table.title else []
    lines.append("| " + " | ".join(_escape_md(c) for c in table.columns) + " |")
    lines.append("| " + " | ".join(rule) + " |")
    lines.extend("| " + " | ".join(_escape_md(c) for c in row) + " |" for row in [*table.rows, *table.totals])
    if table.note:
        lines += ["", _escape_md(table.note)]
    return "\n".join(lines)


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV text with a header row (``csv`` module quoting, ``\\n`` line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(["" if c is None else c for c in row] for row in rows)
    return out.getvalue()


def print_tables(blocks: Sequence[Table | str], stream: IO[str] | None = None) -> None:
    """Print text lines and tables separated by blank lines: rich tables on a terminal, plain text otherwise."""
    stream = stream or sys.stdout
    if stream.isatty():
        _print_rich(blocks, stream)
        return
    stream.write("\n\n".join(b if isinstance(b, str) else plain_text(b) for b in blocks) + "\n")


def _print_rich(blocks: Sequence[Table | str], stream: IO[str]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    console = Console(file=stream, highlight=False)
    for i, block in enumerate(blocks):
        if i:
            console.print()
        if isinstance(block, str):
            console.print(Text(block))
            continue
        table = RichTable(
            title=block.title or None,
            title_justify="left",
            title_style="bold",
            box=box.SIMPLE_HEAD,
            caption=block.note or None,
            caption_justify="left",
        )
        for j, name in enumerate(block.columns):
            table.add_column(name, justify="right" if j in block.right else "left", overflow="fold")
        styles = [*block.styles, *[""] * (len(block.rows) - len(block.styles))]
        for row, style in zip(block.rows, styles):
            table.add_row(*(Text(c) for c in row), style=style or None)
        if block.totals:
            table.add_section()
        for row in block.totals:
            table.add_row(*(Text(c) for c in row), style="bold")
        console.print(table)
