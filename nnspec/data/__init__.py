"""Data sets: ``digits`` (embedded in scikit-learn), ``mnist`` and ``fashion_mnist`` (IDX or npz files),
``npz`` and ``csv``. :func:`load_dataset` turns a spec's ``data`` section into a :class:`Dataset`."""

from __future__ import annotations

from .dataset import Dataset
from .idx import read_idx, write_idx, write_idx_dataset
from .load import load_dataset

__all__ = ["Dataset", "load_dataset", "read_idx", "write_idx", "write_idx_dataset"]
