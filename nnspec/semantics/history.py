"""The per-epoch metrics history: a pandas DataFrame with the contract columns (part of the training state)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

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
