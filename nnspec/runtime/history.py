"""The per-epoch metrics history: a pandas DataFrame with the contract columns, and its CSV form."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable, Mapping

from ..errors import DataError

if TYPE_CHECKING:
    import pandas as pd

#: Columns of ``metrics.csv`` and of the DataFrame ``fit`` returns, in order (contract).
COLUMNS: tuple[str, ...] = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")


def make_history(rows: Iterable[Mapping[str, float]]) -> "pd.DataFrame":
    """A history DataFrame from per-epoch rows (missing validation values become NaN)."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(COLUMNS))
    frame["epoch"] = frame["epoch"].astype("int64")
    for column in COLUMNS[1:]:
        frame[column] = frame[column].astype("float64")
    return frame


def concat_history(first: "pd.DataFrame | None", second: "pd.DataFrame") -> "pd.DataFrame":
    """Append ``second`` to ``first`` (either may be empty)."""
    import pandas as pd

    if first is None or first.empty:
        return second.reset_index(drop=True)
    return pd.concat([first, second], ignore_index=True)


def write_metrics(frame: "pd.DataFrame", path: str | os.PathLike) -> None:
    """Write a history as ``metrics.csv`` (the contract columns, one row per epoch)."""
    frame.loc[:, list(COLUMNS)].to_csv(path, index=False, float_format="%.8g")


def read_metrics(path: str | os.PathLike) -> "pd.DataFrame":
    """Read a ``metrics.csv``; a missing file or missing columns is a :class:`DataError` naming the path."""
    import pandas as pd

    if not os.path.isfile(path):
        raise DataError(f"{path}: no such metrics file")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable metrics CSV ({exc})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: metrics file lacks column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    return make_history(frame.to_dict("records"))
