"""Fashion-MNIST for the benchmarks: (N, 28, 28, 1) float32 in [0, 1] and int32 labels.

Read through :func:`nnspec.data.load_dataset` (the whole official training split, no validation
split), or, where that is not available, straight from the IDX files with a small reader here.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Where the IDX files are looked for, in order.
SEARCH_PATHS: tuple[str, ...] = (
    os.environ.get("NNSPEC_DATA", ""),
    str(Path.home() / ".keras" / "datasets" / "fashion-mnist"),
    "/usr/share/datasets/fashion-mnist",
)


@dataclass(frozen=True)
class BenchData:
    """Training and test arrays, and where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def limited(self, limit: int | None, test_limit: int | None = None) -> "BenchData":
        """The first ``limit`` training and ``test_limit`` test examples (all when ``None``)."""
        return BenchData(
            self.x_train[:limit], self.y_train[:limit], self.x_test[:test_limit], self.y_test[:test_limit], self.source
        )


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain) of unsigned bytes into an array of its stated shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} ({int(np.prod(dims))} values), file holds {data.size}")
    return data.reshape(dims)


def _find(stem: str) -> Path:
    for folder in filter(None, SEARCH_PATHS):
        for name in (f"{stem}.gz", stem):
            candidate = Path(folder) / name
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {', '.join(filter(None, SEARCH_PATHS))}; "
        "install Debian's dataset-fashion-mnist or set NNSPEC_DATA to the folder holding the IDX files"
    )


def _load_idx() -> BenchData:
    def images(stem: str) -> np.ndarray:
        return (read_idx(_find(stem)).astype(np.float32) / np.float32(255.0))[..., None]

    def labels(stem: str) -> np.ndarray:
        return read_idx(_find(stem)).astype(np.int32)

    return BenchData(
        images("train-images-idx3-ubyte"),
        labels("train-labels-idx1-ubyte"),
        images("t10k-images-idx3-ubyte"),
        labels("t10k-labels-idx1-ubyte"),
        "IDX files via benchmarks.data",
    )


def _load_nnspec() -> BenchData | None:
    try:
        from nnspec.compiler.ir import DataConfig
        from nnspec.data import load_dataset
    except ImportError:
        return None
    from .settings import BenchConfig, make_model_graph

    graph = make_model_graph("mlp", BenchConfig())
    graph = graph.replace(data=DataConfig(dataset="fashion_mnist", validation_split=0.0))
    ds = load_dataset(graph)
    x_train = np.concatenate([ds.x_train, ds.x_val]) if len(ds.x_val) else ds.x_train
    y_train = np.concatenate([ds.y_train, ds.y_val]) if len(ds.y_val) else ds.y_train
    return BenchData(
        np.ascontiguousarray(x_train, dtype=np.float32).reshape(-1, 28, 28, 1),
        np.asarray(y_train, dtype=np.int32),
        np.ascontiguousarray(ds.x_test, dtype=np.float32).reshape(-1, 28, 28, 1),
        np.asarray(ds.y_test, dtype=np.int32),
        "nnspec.data.load_dataset",
    )


def load_fashion_mnist(prefer_nnspec: bool = True) -> BenchData:
    """Fashion-MNIST's 60,000 training and 10,000 test examples."""
    if prefer_nnspec:
        data = _load_nnspec()
        if data is not None:
            return data
    return _load_idx()
