"""The per-epoch metrics history as ``metrics.csv`` (the frame itself: :mod:`nnspec.semantics.history`)."""

from __future__ import annotations

import csv
import io
import os
import stat
from collections import Counter
from typing import TYPE_CHECKING

from ..errors import DataError
from ..semantics.history import COLUMNS, make_history

if TYPE_CHECKING:
    import pandas as pd


def write_metrics(frame: "pd.DataFrame", path: str | os.PathLike) -> None:
    """Write a history as ``metrics.csv`` (the contract columns, one row per epoch)."""
    frame.loc[:, list(COLUMNS)].to_csv(path, index=False, float_format="%.8g")


def read_metrics(path: str | os.PathLike) -> "pd.DataFrame":
    """Read a ``metrics.csv``; anything but a readable, well-formed one is a :class:`DataError` naming the path.

    Refused: a missing file, something that is not a regular file (a FIFO, a device, a folder), a file over
    :data:`MAX_METRICS_BYTES`, binary or non-UTF-8 bytes, text that is not CSV, a missing contract column
    (:data:`~nnspec.semantics.history.COLUMNS`; others are ignored), a value that is not a number (the validation
    columns and ``seconds`` may be empty), and epochs that are not distinct whole numbers from 0 up.
    """
    import pandas as pd

    header, rows = _metrics_rows(path)
    frame = pd.DataFrame(rows, columns=header, dtype=str)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: metrics file lacks column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    values = {column: _numbers(frame[column], path, column) for column in COLUMNS}
    _check_epochs(values["epoch"], path)
    return make_history(pd.DataFrame(values).to_dict("records"))


#: Largest ``metrics.csv`` read (some 300,000 epochs as nnspec writes them), its most columns and rows.
MAX_METRICS_BYTES = 16 * 1024 * 1024
MAX_METRICS_COLUMNS = 256
MAX_METRICS_ROWS = 1_000_000
#: Columns that may hold no value (NaN: a run without a validation split, a loss that diverged).
_MAY_BE_EMPTY = frozenset(COLUMNS) - {"epoch"}


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _metrics_text(path: str | os.PathLike) -> str:
    """The text of a metrics file, checked: a regular file, not too big, UTF-8 without NUL bytes."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such metrics file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the metrics file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path}: not a regular file, so not a metrics file nnspec wrote")
    if info.st_size > MAX_METRICS_BYTES:
        raise DataError(
            f"{path}: {info.st_size:,} bytes, more than a metrics file can be ({MAX_METRICS_BYTES:,} bytes)"
        )
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_METRICS_BYTES + 1)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the metrics file ({exc.strerror or exc})") from None
    if len(data) > MAX_METRICS_BYTES:
        raise DataError(f"{path}: more than a metrics file can be ({MAX_METRICS_BYTES:,} bytes)")
    if b"\0" in data:
        raise DataError(f"{path}: binary data (NUL bytes), not a metrics CSV")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text, so not a metrics CSV (byte {exc.start})") from None
    if not text.strip():
        raise DataError(f"{path}: empty; a metrics file starts with the header line {','.join(COLUMNS)}")
    return text


def _metrics_rows(path: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    """The header and the data rows of a metrics file (blank lines skipped); a row whose number of fields differs
    from the header's, or text the CSV reader cannot split, is a :class:`DataError`."""
    try:
        lines = [row for row in csv.reader(io.StringIO(_metrics_text(path), newline="")) if row]
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable metrics CSV ({_short(exc)})") from None
    if not lines:
        raise DataError(f"{path}: empty; a metrics file starts with the header line {','.join(COLUMNS)}")
    header = [name.strip() for name in lines[0]]
    if len(header) > MAX_METRICS_COLUMNS or len(lines) - 1 > MAX_METRICS_ROWS:
        raise DataError(
            f"{path}: {len(header):,} columns and {len(lines) - 1:,} rows, more than a metrics file holds (at most "
            f"{MAX_METRICS_COLUMNS} columns and {MAX_METRICS_ROWS:,} epochs); not a metrics CSV"
        )
    counts = Counter(header)
    twice = sorted(name for name in COLUMNS if counts[name] > 1)
    if twice:
        raise DataError(f"{path}: the header names {', '.join(twice)} more than once; not a metrics CSV")
    for number, row in enumerate(lines[1:], start=1):
        if len(row) != len(header):
            raise DataError(
                f"{path}: data row {number} has {len(row)} fields, the header {len(header)}; not a metrics CSV"
            )
    return header, lines[1:]


def _numbers(cells: "pd.Series", path: str | os.PathLike, column: str) -> "pd.Series":
    """A column's cells as floats (empty and ``nan`` cells as NaN where the column allows them); a cell that is not a
    number is a :class:`DataError` naming the column, the data row and the value."""
    import numpy as np
    import pandas as pd

    text = cells.astype(str).str.strip()
    empty = text.eq("") | text.str.lower().eq("nan")
    numbers = pd.to_numeric(text.where(~empty, "nan"), errors="coerce").astype("float64")
    bad = numbers.isna() & ~empty
    if column not in _MAY_BE_EMPTY:
        bad |= empty
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = str(cells.iloc[row])[:40]
        raise DataError(
            f"{path}: column {column}, data row {row + 1}: {value!r} is not a number"
            + ("" if column in _MAY_BE_EMPTY else f" ({column} needs a value in every row)")
        )
    return numbers


def _check_epochs(epochs: "pd.Series", path: str | os.PathLike) -> None:
    """Epochs must be whole numbers from 0 up, each once."""
    import numpy as np

    values = epochs.to_numpy()
    wrong = ~np.isfinite(values) | (values < 0) | (values != np.floor(values)) | (values > 2**53)
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise DataError(f"{path}: column epoch, data row {row + 1}: {float(values[row])} is not an epoch number")
    seen = epochs.duplicated()
    if seen.any():
        row = int(np.flatnonzero(seen.to_numpy())[0])
        raise DataError(f"{path}: column epoch, data row {row + 1}: epoch {int(values[row])} appears twice")
