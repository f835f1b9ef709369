"""The per-epoch metrics history as ``metrics.csv`` (the frame itself: :mod:`nnspec.semantics.history`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import DataError
from ..semantics.history import COLUMNS, make_history

if TYPE_CHECKING:
    import pandas as pd


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
