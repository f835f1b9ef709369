"""``load_dataset(graph)``: read the spec's data set, split off validation data, normalise, check shapes.

* Validation: the last ``round(n * validation_split)`` examples of the training data after a shuffle
  seeded by ``train.seed`` (``numpy.random.default_rng([seed, VALIDATION_STREAM])``).
* ``normalize``: ``scale`` divides by the data's maximum value (255 for images, 16 for digits; min-max from
  the training split for other data), ``standardize`` subtracts the per-feature mean and divides by the
  per-feature standard deviation of the training split (1 where it is 0), ``none`` leaves values alone.
* Inputs come out float32 (images ``(N, H, W, C)``), labels int32.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..compiler.ir import Graph
from ..errors import DataError, Diagnostic, SpecError
from .dataset import Dataset
from .safety import shown
from .sources import SOURCES, LabelOrigin, RawData

VALIDATION_STREAM = 0x76616C69  # a fixed second seed word, so the shuffle differs from the epoch orders


def resolve_path(path: str | None, graph: Graph, base_dir: str | None) -> str | None:
    """A relative ``data.path`` is taken relative to ``base_dir`` (default: the spec's folder), else the cwd."""
    if not path:
        return None
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    base = (
        base_dir if base_dir is not None else (os.path.dirname(os.path.abspath(graph.source)) if graph.source else None)
    )
    if base is not None:
        candidate = os.path.join(base, path)
        if os.path.exists(candidate) or base_dir is not None:
            return candidate
    return path


def _data_path(graph: Graph) -> str | None:
    cfg = graph.data
    if cfg.path:
        return cfg.path
    for key in ("file", cfg.dataset):
        value = cfg.options.get(key)
        if isinstance(value, str):
            return value
    return None


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle (seeded) and take the last ``round(n * fraction)`` examples as validation data."""
    n = len(x)
    n_val = int(round(n * fraction))
    if n_val >= n:
        raise DataError(f"validation_split {fraction} of {n} training examples leaves no training data")
    order = np.random.default_rng([seed, VALIDATION_STREAM]).permutation(n)
    train, val = order[: n - n_val], order[n - n_val :]
    return x[train], y[train], x[val], y[val]


def normalize(kind: str, x_train: np.ndarray, others: list[np.ndarray], max_value: float | None) -> list[np.ndarray]:
    """Normalise ``x_train`` and ``others`` with statistics of ``x_train`` only; returns float32 arrays."""
    arrays = [np.asarray(a, dtype=np.float32) for a in (x_train, *others)]
    if kind == "none":
        return arrays
    if kind == "scale":
        if max_value is not None:
            lo, span = 0.0, float(max_value)
        else:
            lo = float(arrays[0].min()) if arrays[0].size else 0.0
            span = (float(arrays[0].max()) - lo) if arrays[0].size else 1.0
            span = span or 1.0
        return [(a - np.float32(lo)) / np.float32(span) for a in arrays]
    if kind == "standardize":
        mean = arrays[0].mean(axis=0, dtype=np.float64).astype(np.float32)
        std = arrays[0].std(axis=0, dtype=np.float64).astype(np.float32)
        std[std == 0] = 1.0
        return [(a - mean) / std for a in arrays]
    raise DataError(f"unknown normalize {kind!r}; expected scale, standardize or none")


def _fit_rank(x: np.ndarray, want: tuple[int, ...]) -> np.ndarray:
    """Add the channel axis to single-channel (N, H, W) data when the spec asks for (H, W, 1)."""
    if x.shape[1:] != want and x.ndim == 3 and want == (*x.shape[1:], 1):
        return x[..., None]
    return x


def _diagnostic(graph: Graph, path: str, code: str, message: str, hint: str) -> SpecError:
    line, column = graph.positions.get(path, (None, None))
    return SpecError([Diagnostic(code, message, file=graph.source, line=line, column=column, path=path, hint=hint)])


def first_label_at_least(raw: RawData, limit: int) -> str | None:
    """``FILE: y[i] is L`` for the first label ``>= limit`` in file order (train labels first); None if none is."""
    found: tuple[LabelOrigin, int, int] | None = None
    for y, origin in zip((raw.y_train, raw.y_test), raw.origins):
        bad = np.flatnonzero(y >= limit)
        if origin is None or bad.size == 0:
            continue
        positions = bad if origin.rows is None else origin.rows[bad]
        k = int(np.argmin(positions))
        if found is None or (found[0].at is origin.at and int(positions[k]) < found[1]):
            found = (origin, int(positions[k]), int(y[bad[k]]))
    if found is None:
        return None
    origin, position, label = found
    return f"{shown(origin.path)}: {origin.at(position)} is {label}"


def check_fits(
    graph: Graph, name: str, example_shape: tuple[int, ...], num_classes: int, culprit: str | None = None
) -> None:
    """Raise :class:`SpecError` when the data's example shape or class count does not fit the spec.

    ``culprit`` (e.g. ``data.npz: y[17] is 12``) names the first label beyond the model's outputs."""
    want = tuple(graph.input_shape)
    if example_shape != want:
        raise _diagnostic(
            graph,
            "input.shape",
            "E0505",
            f"input.shape {list(want)} does not match data set '{name}', whose examples have shape "
            f"{list(example_shape)}",
            f"use input: {{shape: {list(example_shape)}}}, or change the data set",
        )
    outputs = graph.output_shape[-1] if graph.output_shape else 0
    if num_classes > outputs:
        last = len(graph.nodes) - 1
        raise _diagnostic(
            graph,
            f"layers[{last}]",
            "E0505",
            f"data set '{name}' has {num_classes} classes but the model's output has {outputs} units"
            + (f" (first label beyond: {culprit})" if culprit else ""),
            f"give the last dense layer units: {num_classes}",
        )


def load_dataset(graph: Graph, base_dir: str | None = None) -> Dataset:
    """Load the data set of ``graph.data``: train, validation and test splits, normalised and checked.

    Raises :class:`DataError` for a missing or malformed file and :class:`SpecError` (with a positioned
    diagnostic) when ``input.shape`` does not match the data.
    """
    cfg = graph.data
    reader = SOURCES.get(cfg.dataset)
    if reader is None:
        raise DataError(f"unknown data set {cfg.dataset!r}; expected one of {', '.join(SOURCES)}")
    options: dict[str, Any] = dict(cfg.options)
    path = resolve_path(_data_path(graph), graph, base_dir)
    raw: RawData = reader(path, options, cfg.test_split)
    want = tuple(graph.input_shape)
    x_train, x_test = _fit_rank(raw.x_train, want), _fit_rank(raw.x_test, want)
    labels = [raw.y_train, raw.y_test]
    num_classes = int(max((int(y.max()) + 1 for y in labels if y.size), default=0))
    outputs = graph.output_shape[-1] if graph.output_shape else 0
    culprit = first_label_at_least(raw, outputs) if num_classes > outputs else None
    check_fits(graph, cfg.dataset, tuple(x_train.shape[1:]), num_classes, culprit)
    x_tr, y_tr, x_val, y_val = split_validation(x_train, raw.y_train, cfg.validation_split, graph.train.seed)
    with np.errstate(over="ignore", invalid="ignore"):
        x_tr, x_val, x_te = normalize(cfg.normalize, x_tr, [x_val, x_test], raw.max_value)
    for part, x in (("training", x_tr), ("validation", x_val), ("test", x_te)):
        if x.size and not np.isfinite(x).all():
            where = shown(path) if path else f"data set '{cfg.dataset}'"
            raise DataError(
                f"{where}: normalize: {cfg.normalize} turns finite {part} values into NaN or infinity (the values "
                "overflow float32); rescale the data"
            )
    i32 = np.int32
    return Dataset(
        cfg.dataset, x_tr, y_tr.astype(i32), x_val, y_val.astype(i32), x_te, raw.y_test.astype(i32), num_classes
    )
