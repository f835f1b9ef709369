"""Raw data sources: each reads one kind of data set into train and test arrays, before any splitting
of a validation set or normalisation (see :mod:`nnspec.data.load`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import DataError
from .arrays import NpzFile
from .files import Found, locate
from .idx import read_idx
from .safety import check_features, check_path, class_indices, shown
from .table import read_csv_table

#: Seed of the fixed test split of data sets that have no official one (digits, npz and csv without a
#: test part). It does not depend on ``train.seed``, so every spec is scored on the same examples.
TEST_SPLIT_SEED = 20240601


@dataclass(frozen=True)
class LabelOrigin:
    """Where labels came from, to name a bad one: the file, how to name its position ``i`` in that file, and
    (after a shuffled split) the position in the file of each label kept (None: the labels are in file order)."""

    path: str
    at: Callable[[int], str]
    rows: np.ndarray | None = None


@dataclass(frozen=True)
class RawData:
    """Train and test arrays as read; ``max_value`` is what ``normalize: scale`` divides by (None: min-max).

    ``origins`` says where the train and test labels came from (None when not from a user file)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    max_value: float | None = None
    origins: tuple[LabelOrigin | None, LabelOrigin | None] = field(default=(None, None), compare=False)


def _indexed(name: str) -> Callable[[int], str]:
    """``i -> 'name[i]'``: how a label's place in a file is shown."""
    return lambda i: f"{name}[{i}]"


Source = Callable[[str | None, Mapping[str, Any], float], RawData]
SOURCES: dict[str, Source] = {}


def source(name: str) -> Callable[[Source], Source]:
    """Register the reader of data set ``name``."""

    def register(fn: Source) -> Source:
        SOURCES[name] = fn
        return fn

    return register


def split_order(n: int, fraction: float, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the train and test examples of a fixed, seeded test split of ``fraction`` of ``n`` examples."""
    n_test = int(round(n * fraction))
    if n_test < 1 or n_test >= n:
        raise DataError(f"{shown(what)}: test_split {fraction} of {n} examples leaves an empty train or test split")
    order = np.random.default_rng(TEST_SPLIT_SEED).permutation(n)
    return order[n_test:], order[:n_test]


def split_test(
    x: np.ndarray, y: np.ndarray, fraction: float, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split off a fixed, seeded test part of ``fraction`` of the examples: ``x_train, y_train, x_test, y_test``."""
    train, test = split_order(len(x), fraction, what)
    return x[train], y[train], x[test], y[test]


def _split_raw(x: np.ndarray, y: np.ndarray, fraction: float, path: str, at: Callable[[int], str]) -> RawData:
    """Split ``x, y`` read from ``path`` into train and test parts that remember where each label came from."""
    train, test = split_order(len(x), fraction, path)
    origins = (LabelOrigin(path, at, train), LabelOrigin(path, at, test))
    return RawData(x[train], y[train], x[test], y[test], origins=origins)


@lru_cache(maxsize=16)
def _read_idx_cached(path: str, mtime: float, size: int, ndim: int, what: str) -> np.ndarray:
    array = read_idx(path, ndim=ndim, what=what)
    array.setflags(write=False)
    return array


def _read_idx(path: str, ndim: int, what: str) -> np.ndarray:
    st = check_path(path, "file")
    return _read_idx_cached(path, st.st_mtime, st.st_size, ndim, what)


def _read_npz(path: str, names: Callable[[list[str]], list[str]]) -> dict[str, np.ndarray]:
    """Open the npz at ``path`` and read the arrays ``names(available names)`` chooses (checked, no pickles)."""
    with NpzFile(path) as archive:
        return archive.read(names(archive.names))


def _keras_npz(path: str) -> RawData:
    keys = ("x_train", "y_train", "x_test", "y_test")

    def choose(names: list[str]) -> list[str]:
        missing = [k for k in keys if k not in names]
        if missing:
            raise DataError(
                f"{shown(path)}: expected arrays {', '.join(keys)}; missing {', '.join(missing)} (has: "
                f"{', '.join(names) or 'none'})"
            )
        return list(keys)

    arrays = _read_npz(path, choose)
    return _mnist_like(
        path, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], names=dict(zip(keys, keys))
    )


def _mnist_like(
    where: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    paths: Mapping[str, str] | None = None,
    names: Mapping[str, str] | None = None,
) -> RawData:
    """Check image and label arrays of an MNIST-like data set; ``paths`` (IDX) or ``names`` (npz) locate each one."""
    paths = paths or {}
    names = names or {}
    xs, ys, origins = [], [], []
    for part, x_name, y_name, x, y in (
        ("train", "x_train", "y_train", x_train, y_train),
        ("t10k", "x_test", "y_test", x_test, y_test),
    ):
        images, labels = paths.get(f"{part}-images", where), paths.get(f"{part}-labels", where)
        label_name = names.get(y_name, "labels")
        check_features(x, images, names.get(x_name, "images"))
        y = class_indices(y, labels, label_name)
        if len(x) != len(y):
            raise DataError(
                f"{shown(labels)}: {len(y)} labels, but {shown(images)} holds {len(x)} images; the counts must match"
            )
        if x.ndim not in (3, 4):
            raise DataError(f"{shown(images)}: images must have shape (N, H, W); got {x.shape}")
        xs.append(x if x.ndim == 4 else x[..., None])
        ys.append(y)
        origins.append(LabelOrigin(labels, _indexed(label_name)))
    return RawData(xs[0], ys[0], xs[1], ys[1], max_value=255.0, origins=(origins[0], origins[1]))


def _mnist_files(dataset: str, path: str | None) -> RawData:
    found: Found = locate(dataset, path)
    if found.npz:
        return _keras_npz(found.npz)
    idx = found.idx or {}
    arrays = {part: _read_idx(p, 3 if part.endswith("images") else 1, part.split("-")[1]) for part, p in idx.items()}
    return _mnist_like(
        found.where, arrays["train-images"], arrays["train-labels"], arrays["t10k-images"], arrays["t10k-labels"], idx
    )


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
    keys = ("x_train", "y_train", "x_test", "y_test")
    xk, yk = str(options.get("x", "x")), str(options.get("y", "y"))
    split = "x" in options or "y" in options

    def choose(names: list[str]) -> list[str]:
        nonlocal split
        if not split and set(keys) <= set(names):
            return list(keys)
        split = True
        missing = [k for k in (xk, yk) if k not in names]
        if missing:
            raise DataError(
                f"{shown(path)}: no array named {', '.join(repr(k) for k in missing)} (has: "
                f"{', '.join(names) or 'none'}); set x: and y: to the array names"
            )
        return [xk, yk]

    arrays = _read_npz(path, choose)
    if not split:
        parts = []
        for xn, yn in (("x_train", "y_train"), ("x_test", "y_test")):
            x, y = check_features(arrays[xn], path, xn), class_indices(arrays[yn], path, yn)
            if len(x) != len(y):
                raise DataError(f"{shown(path)}: '{xn}' holds {len(x)} examples but '{yn}' holds {len(y)} labels")
            parts += [x, y]
        origins = (LabelOrigin(path, lambda i: f"y_train[{i}]"), LabelOrigin(path, lambda i: f"y_test[{i}]"))
        raw = RawData(parts[0], parts[1], parts[2], parts[3], origins=origins)
    else:
        x = check_features(arrays[xk], path, xk)
        y = class_indices(arrays[yk], path, yk)
        if len(x) != len(y):
            raise DataError(f"{shown(path)}: '{xk}' holds {len(x)} examples but '{yk}' holds {len(y)} labels")
        raw = _split_raw(x, y, test_split, path, lambda i: f"{yk}[{i}]")
    max_value = 255.0 if raw.x_train.dtype == np.uint8 else None
    return RawData(raw.x_train, raw.y_train, raw.x_test, raw.y_test, max_value=max_value, origins=raw.origins)


@source("csv")
def _csv(path: str | None, options: Mapping[str, Any], test_split: float) -> RawData:
    path = _need_path(path, "csv")
    x, y, at = read_csv_table(path, str(options.get("label", "label")))
    return _split_raw(x, y, test_split, path, at)
