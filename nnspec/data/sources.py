"""Raw data sources: each reads one kind of data set into train and test arrays, before any splitting
of a validation set or normalisation (see :mod:`nnspec.data.load`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import DataError
from .files import Found, locate
from .idx import read_idx

#: Seed of the fixed test split of data sets that have no official one (digits, npz and csv without a
#: test part). It does not depend on ``train.seed``, so every spec is scored on the same examples.
TEST_SPLIT_SEED = 20240601


@dataclass(frozen=True)
class RawData:
    """Train and test arrays as read; ``max_value`` is what ``normalize: scale`` divides by (None: min-max)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    max_value: float | None = None


Source = Callable[[str | None, Mapping[str, Any], float], RawData]
SOURCES: dict[str, Source] = {}


def source(name: str) -> Callable[[Source], Source]:
    """Register the reader of data set ``name``."""

    def register(fn: Source) -> Source:
        SOURCES[name] = fn
        return fn

    return register


def split_test(x: np.ndarray, y: np.ndarray, fraction: float, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split off a fixed, seeded test part of ``fraction`` of the examples: ``x_train, y_train, x_test, y_test``."""
    n = len(x)
    n_test = int(round(n * fraction))
    if n_test < 1 or n_test >= n:
        raise DataError(f"{what}: test_split {fraction} of {n} examples leaves an empty train or test split")
    order = np.random.default_rng(TEST_SPLIT_SEED).permutation(n)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be one integer per example; got an array of shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DataError(f"{where}: labels must be integer class indices; found non-integer values")
    elif y.dtype.kind not in "iub":
        raise DataError(f"{where}: labels must be integer class indices; got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise DataError(f"{where}: labels must be class indices >= 0; found {y.min()}")
    return y.astype(np.int32)


@lru_cache(maxsize=16)
def _read_idx_cached(path: str, mtime: float, size: int, ndim: int, what: str) -> np.ndarray:
    array = read_idx(path, ndim=ndim, what=what)
    array.setflags(write=False)
    return array


def _read_idx(path: str, ndim: int, what: str) -> np.ndarray:
    st = os.stat(path)
    return _read_idx_cached(path, st.st_mtime, st.st_size, ndim, what)


def _load_npz(path: str) -> Mapping[str, np.ndarray]:
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except ValueError as exc:
        raise DataError(f"{path}: not a usable .npz file ({exc}); nnspec reads numeric arrays only, no pickles") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    except Exception as exc:  # zipfile.BadZipFile and friends
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None


def _keras_npz(path: str) -> RawData:
    arrays = _load_npz(path)
    keys = ("x_train", "y_train", "x_test", "y_test")
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DataError(f"{path}: expected arrays {', '.join(keys)}; missing {', '.join(missing)} (has: {', '.join(arrays) or 'none'})")
    return _mnist_like(path, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


def _mnist_like(where: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, paths: Mapping[str, str] | None = None) -> RawData:
    paths = paths or {}
    for part, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        if len(x) != len(y):
            images, labels = paths.get(f"{part}-images", where), paths.get(f"{part}-labels", where)
            raise DataError(f"{labels}: {len(y)} labels, but {images} holds {len(x)} images; the counts must match")
        if x.ndim not in (3, 4):
            raise DataError(f"{paths.get(f'{part}-images', where)}: images must have shape (N, H, W); got {x.shape}")
    xs = [x if x.ndim == 4 else x[..., None] for x in (x_train, x_test)]
    return RawData(
        xs[0],
        _labels(y_train, paths.get("train-labels", where)),
        xs[1],
        _labels(y_test, paths.get("t10k-labels", where)),
        max_value=255.0,
    )


def _mnist_files(dataset: str, path: str | None) -> RawData:
    found: Found = locate(dataset, path)
    if found.npz:
        return _keras_npz(found.npz)
    idx = found.idx or {}
    arrays = {part: _read_idx(p, 3 if part.endswith("images") else 1, part.split("-")[1]) for part, p in idx.items()}
    return _mnist_like(found.where, arrays["train-images"], arrays["train-labels"], arrays["t10k-images"], arrays["t10k-labels"], idx)


@source("mnist")
def _mnist(path: str | None, options: Mapping[str, Any], test_split: float) -> RawData:
    return _mnist_files("mnist", path)


@source("fashion_mnist")
def _fashion_mnist(path: str | None, options: Mapping[str, Any], test_split: float) -> RawData:
    return _mnist_files("fashion_mnist", path)


@source("digits")
def _digits(path: str | None, options: Mapping[str, Any], test_split: float) -> RawData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    return RawData(*split_test(x, y, test_split, "digits"), max_value=16.0)


def _need_path(path: str | None, kind: str) -> str:
    if not path:
        raise DataError(f"data set '{kind}' needs a file: give data: {{{kind}: FILE}} or data.path")
    return path


@source("npz")
def _npz(path: str | None, options: Mapping[str, Any], test_split: float) -> RawData:
    path = _need_path(path, "npz")
    arrays = _load_npz(path)
    if "x" not in options and "y" not in options and {"x_train", "y_train", "x_test", "y_test"} <= set(arrays):
        raw = [arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    else:
        xk, yk = str(options.get("x", "x")), str(options.get("y", "y"))
        missing = [k for k in (xk, yk) if k not in arrays]
        if missing:
            raise DataError(f"{path}: no array named {', '.join(repr(k) for k in missing)} (has: {', '.join(arrays) or 'none'}); set x: and y: to the array names")
        x, y = arrays[xk], arrays[yk]
        if len(x) != len(y):
            raise DataError(f"{path}: '{xk}' holds {len(x)} examples but '{yk}' holds {len(y)} labels")
        raw = list(split_test(x, _labels(y, path), test_split, path))
    if raw[0].dtype.kind not in "iufb":
        raise DataError(f"{path}: inputs must be numeric; got dtype {raw[0].dtype}")
    max_value = 255.0 if raw[0].dtype == np.uint8 else None
    return RawData(raw[0], _labels(raw[1], path), raw[2], _labels(raw[3], path), max_value=max_value)


@source("csv")
def _csv(path: str | None, options: Mapping[str, Any], test_split: float) -> RawData:
    import pandas as pd

    path = _need_path(path, "csv")
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    label = str(options.get("label", "label"))
    if label not in frame.columns:
        raise DataError(f"{path}: no label column {label!r} (columns: {', '.join(map(str, frame.columns))}); set label: to its name")
    features = frame.drop(columns=[label])
    bad = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if bad:
        raise DataError(f"{path}: feature columns must be numeric; not numeric: {', '.join(bad)}")
    if features.isna().to_numpy().any():
        raise DataError(f"{path}: feature values are missing (empty cells or NaN); fill or drop those rows")
    y_col = frame[label]
    if pd.api.types.is_numeric_dtype(y_col):
        y = _labels(y_col.to_numpy(), f"{path} column {label!r}")
    else:  # class names: numbered in sorted order
        codes, _ = pd.factorize(y_col, sort=True)
        y = codes.astype(np.int32)
    x = features.to_numpy(dtype=np.float64)
    return RawData(*split_test(x, y, test_split, path))
