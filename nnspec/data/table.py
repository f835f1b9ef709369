"""CSV data files: one row per example, numeric feature columns and one label column.

Rows are counted from 1, after the header line and without blank lines, as in ``row 17 column 'px3'``.
An empty file, a file without data rows, a cell that is not a number, an empty or NaN cell and an
infinite value are each refused with a :class:`DataError` naming the file and the first bad cell.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from ..errors import DataError
from .safety import FLOAT32_MAX, INT32_MAX, check_path, check_size, class_indices, open_regular, shown


def _read_frame(path: str):
    import pandas as pd

    st = check_path(path, "file")
    if st.st_size == 0:
        raise DataError(
            f"{shown(path)}: empty file; expected a CSV header line naming the columns, then one row per example"
        )
    check_size(st.st_size, path, "CSV file")
    try:
        with open_regular(path, "file") as f:
            frame = pd.read_csv(f)
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{shown(path)}: empty CSV file (no header line); expected a header line naming the columns, then one row "
            "per example"
        ) from None
    except (ValueError, OSError, UnicodeError, OverflowError) as exc:
        raise DataError(f"{shown(path)}: not a readable CSV file ({type(exc).__name__}: {exc})") from None
    if frame.empty:
        raise DataError(
            f"{shown(path)}: no data rows after the header line (columns: {', '.join(map(str, frame.columns))})"
        )
    return frame


def _short(value: object) -> str:
    """``repr(value)`` cut to 40 characters (a cell may hold a huge number)."""
    try:
        text = repr(value)
    except ValueError:  # an integer with more digits than Python converts to text
        return "a number with thousands of digits"
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: object) -> float | None:
    """A (non-missing) cell of a non-numeric column as a float (+-inf when too large); None when not a number."""
    try:
        return float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")  # type: ignore[operator]
    except (TypeError, ValueError):
        return None


def _raw_cell(path: str, row: int, column: int) -> str | None:
    """The text of a cell as written in the file (``row`` counted from 0 after the header); None if unreadable."""
    import pandas as pd

    try:
        with open_regular(path, "file") as f:
            frame = pd.read_csv(f, dtype=str, keep_default_na=False, usecols=[column])
        return str(frame.iat[row, 0])
    except (DataError, ValueError, OSError, IndexError):
        return None


def _why(value: object, number: float | None) -> str:
    """Why a refused cell is refused (``value`` is the cell's text when it could be read again)."""
    if number is None:
        return f"holds {_short(value)}, not a number"
    if isinstance(value, str) and not value.strip():
        return "is empty"
    if np.isnan(number):
        return f"holds {_short(value)}, not finite" if isinstance(value, str) else "is empty or NaN"
    spelled_infinite = isinstance(value, str) and value.strip().lstrip("+-").lower() in ("inf", "infinity")
    if np.isfinite(number) or not (spelled_infinite or isinstance(value, float)):
        return f"holds {_short(value)}, too large for float32"
    return f"holds {_short(value)}, not finite"


def _features(frame, label: str, path: str) -> np.ndarray:
    """The columns of ``frame`` but ``label`` as float64 (rows x columns), or an error naming the first bad cell."""
    import pandas as pd

    columns = [j for j, name in enumerate(frame.columns) if name != label]
    x = np.empty((len(frame), len(columns)), dtype=np.float64)
    not_numeric: list[str] = []
    first: tuple[int, int, float | None] | None = None  # row, column, the value (None: not a number)
    for k, j in enumerate(columns):
        name = frame.columns[j]
        column = frame.iloc[:, j]
        if pd.api.types.is_numeric_dtype(column):
            x[:, k] = column.to_numpy(dtype=np.float64, na_value=np.nan)
            bad_text = np.zeros(len(column), dtype=bool)
        else:
            missing = column.isna().to_numpy()
            numbers = [float("nan") if m else _number(v) for v, m in zip(column.to_numpy(dtype=object), missing)]
            bad_text = np.array([v is None for v in numbers], dtype=bool)
            x[:, k] = [np.nan if v is None else v for v in numbers]
            if bad_text.any():
                not_numeric.append(str(name))
        with np.errstate(invalid="ignore"):
            bad = bad_text | ~np.isfinite(x[:, k]) | (np.abs(x[:, k]) > FLOAT32_MAX)
        if bad.any():
            row = int(np.argmax(bad))
            if first is None or row < first[0]:
                first = (row, j, None if bad_text[row] else float(x[row, k]))
    if first is None:
        return x
    row, j, number = first
    text = _raw_cell(path, row, j)
    value = text if text is not None else frame.iat[row, j]
    why = _why(value, number)
    cell = f"row {row + 1} column {str(frame.columns[j])!r} {why}"
    if not_numeric:
        raise DataError(
            f"{shown(path)}: feature columns must be numeric; not numeric: {', '.join(not_numeric)}; first bad cell: "
            f"{cell}"
        )
    raise DataError(f"{shown(path)}: {cell}; nnspec refuses empty, NaN and infinite feature values")


def _label_codes(column, path: str, at: Callable[[int], str]) -> np.ndarray:
    """Numeric labels as class indices; text labels numbered in sorted order. Empty labels are refused."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan) if column.isna().any() else column.to_numpy()
        return class_indices(values, path, str(column.name), at)
    cells = column.to_numpy(dtype=object)
    missing = column.isna().to_numpy()
    numbers = [float("nan") if m else _number(v) for v, m in zip(cells, missing)]
    if all(n is not None for n in numbers):  # numbers pandas could not hold (huge integers): not class names
        values = np.array(numbers, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (values != np.floor(values)) | (values < 0) | (values > INT32_MAX)
        if not bad.any():
            return values.astype(np.int32)
        i = int(np.argmax(bad))
        shown_value = "empty" if missing[i] else _short(cells[i])
        raise DataError(
            f"{shown(path)}: labels must be class indices 0, 1, 2, ...; {at(i)} is {shown_value}, not a class index "
            f"nnspec can hold (0 to {INT32_MAX})"
        )
    codes, _ = pd.factorize(column, sort=True)
    if (codes < 0).any():
        raise DataError(f"{shown(path)}: {at(int(np.argmax(codes < 0)))} is empty; every example needs a label")
    return codes.astype(np.int32)


def read_csv_table(path: str | os.PathLike, label: str) -> tuple[np.ndarray, np.ndarray, Callable[[int], str]]:
    """Read a CSV data file: ``(x float64 (N, D), y int32 (N,), at)``; ``at(i)`` names label ``i`` in messages."""
    path = os.fspath(path)
    frame = _read_frame(path)
    if label not in frame.columns:
        raise DataError(
            f"{shown(path)}: no label column {label!r} (columns: {', '.join(map(str, frame.columns))}); set label: to "
            "its name"
        )
    if frame.shape[1] < 2:
        raise DataError(f"{shown(path)}: no feature columns besides the label column {label!r}")

    def at(i: int) -> str:
        return f"row {i + 1} column {label!r}"

    x = _features(frame, label, path)
    y = _label_codes(frame[label], path, at)
    return x, y, at
