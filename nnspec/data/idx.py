"""IDX files (the MNIST format), plain or gzipped: a checked reader and a writer for tests and tools.

Layout: two zero bytes, a type code (``0x08`` unsigned byte, ...), the number of dimensions ``d``, then
``d`` big-endian uint32 sizes, then the values, big-endian, row-major. Every problem is a
:class:`~nnspec.errors.DataError` that names the file and says what was expected.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import Sequence

import numpy as np

from ..errors import DataError

#: IDX type code -> big-endian NumPy dtype.
IDX_TYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES: dict[str, int] = {np.dtype(v).newbyteorder("=").str: k for k, v in IDX_TYPES.items()}


def _read_bytes(path: str) -> bytes:
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                return gzip.decompress(f.read())
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: damaged or truncated gzip file ({exc}); download or copy it again") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_idx(path: str | os.PathLike, ndim: int | None = None, what: str = "data") -> np.ndarray:
    """Read an IDX file (gzipped or not); ``ndim`` is the expected number of dimensions (3 images, 1 labels)."""
    path = os.fspath(path)
    raw = _read_bytes(path)
    expected_magic = f"0x000008{ndim:02x}" if ndim is not None else "0x0000TTDD"
    if len(raw) < 4:
        raise DataError(f"{path}: not an IDX {what} file: only {len(raw)} bytes, expected a 4-byte magic number {expected_magic}")
    zero0, zero1, code, dims = raw[0], raw[1], raw[2], raw[3]
    if zero0 or zero1 or code not in IDX_TYPES:
        raise DataError(
            f"{path}: not an IDX {what} file: magic number 0x{raw[:4].hex()}, expected {expected_magic} "
            f"(two zero bytes, a type code such as 0x08, the number of dimensions)"
        )
    if ndim is not None and dims != ndim:
        raise DataError(f"{path}: IDX {what} file has {dims} dimensions, expected {ndim} (magic {expected_magic})")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header: {len(raw)} bytes, expected {header} for {dims} dimensions")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=dims, offset=4))
    dtype = np.dtype(IDX_TYPES[code])
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(raw) - header
    if have != want:
        kind = "truncated" if have < want else "too long"
        raise DataError(
            f"{path}: IDX {what} file is {kind}: header says shape {shape} ({want} bytes of data), found {have} bytes"
        )
    values = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzipped when ``path`` ends in ``.gz``."""
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str if array.dtype.byteorder != "|" else array.dtype.str
    code = _CODES.get(key)
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    path = os.fspath(path)
    if path.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=1)
    with open(path, "wb") as f:
        f.write(payload)


def write_idx_dataset(
    directory: str | os.PathLike,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    gz: bool = True,
    names: Sequence[str] | None = None,
) -> list[str]:
    """Write a data set in MNIST's four-file IDX layout into ``directory``; returns the paths written."""
    os.makedirs(directory, exist_ok=True)
    suffix = ".gz" if gz else ""
    names = names or ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    paths = []
    for name, array in zip(names, (x_train, y_train, x_test, y_test)):
        p = os.path.join(os.fspath(directory), name + suffix)
        write_idx(p, array)
        paths.append(p)
    return paths
