"""IDX files (the MNIST format), plain or gzipped: a checked reader and a writer for tests and tools.

Layout: two zero bytes, a type code (``0x08`` unsigned byte, ...), the number of dimensions ``d``, then
``d`` big-endian uint32 sizes, then the values, big-endian, row-major. Every problem is a
:class:`~nnspec.errors.DataError` that names the file and says what was expected.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import BinaryIO, Sequence

import numpy as np

from ..errors import DataError
from .safety import check_features, check_size, open_regular, shown

#: IDX type code -> big-endian NumPy dtype.
IDX_TYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES: dict[str, int] = {np.dtype(v).newbyteorder("=").str: k for k, v in IDX_TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


class _Gunzip:
    """A gzip stream read with bounded output: :meth:`read` never inflates more than it is asked for."""

    def __init__(self, f: BinaryIO, path: str):
        self._f = f
        self._path = path
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = b""
        self._done = False

    def _damaged(self, why: str) -> DataError:
        return DataError(f"{shown(self._path)}: damaged or truncated gzip file ({why}); download or copy it again")

    def _next_member(self) -> None:
        """After one gzip member ends: start the next one, or finish (trailing zero padding is allowed)."""
        rest = self._d.unused_data + self._input
        while len(rest) < 2:
            more = self._f.read(_CHUNK)
            if not more:
                break
            rest += more
        if rest[:2] == _GZIP_MAGIC:
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._input = rest
            return
        while rest:
            if rest.strip(b"\0"):
                raise self._damaged("unexpected data after the end of the gzip stream")
            rest = self._f.read(_CHUNK)
        self._done = True

    def read(self, n: int) -> bytes:
        """Up to ``n`` decompressed bytes; fewer only at the end of the stream."""
        out = bytearray()
        try:
            while len(out) < n and not self._done:
                if self._d.eof:
                    self._next_member()
                    continue
                if not self._input:
                    self._input = self._f.read(_CHUNK)
                    if not self._input:
                        raise self._damaged("the file ends inside the compressed data")
                out += self._d.decompress(self._input, n - len(out))
                self._input = self._d.unconsumed_tail
        except zlib.error as exc:
            raise self._damaged(str(exc)) from None
        except OSError as exc:
            raise DataError(f"{shown(self._path)}: cannot read ({exc.strerror or exc})") from None
        return bytes(out)


def _read_into(stream: BinaryIO | _Gunzip, buffer: np.ndarray, path: str) -> int:
    """Fill ``buffer`` (uint8) from ``stream``; returns the bytes read (fewer when the stream ends)."""
    view = memoryview(buffer)  # type: ignore[arg-type]  # NumPy arrays are buffers
    got = 0
    while got < len(view):
        try:
            chunk = stream.read(min(len(view) - got, 1 << 24))
        except OSError as exc:
            raise DataError(f"{shown(path)}: cannot read ({exc.strerror or exc})") from None
        if not chunk:
            break
        view[got : got + len(chunk)] = chunk
        got += len(chunk)
    return got


def _read_head(stream: BinaryIO | _Gunzip, n: int, path: str) -> bytes:
    buffer = np.empty(n, dtype=np.uint8)
    return buffer[: _read_into(stream, buffer, path)].tobytes()


def read_idx(path: str | os.PathLike, ndim: int | None = None, what: str = "data") -> np.ndarray:
    """Read an IDX file (gzipped or not); ``ndim`` is the expected number of dimensions (3 images, 1 labels).

    The header is checked against the file's size (plain files), the size cap and the memory available
    before the data is allocated; a gzipped file is inflated in bounded chunks and refused as soon as it
    holds more than its header declares. Float files with NaN or infinity are refused, naming the index.
    """
    path = os.fspath(path)
    with open_regular(path, "file") as f:
        try:
            size = os.fstat(f.fileno()).st_size
            gz = f.read(2) == _GZIP_MAGIC
            f.seek(0)
        except OSError as exc:
            raise DataError(f"{shown(path)}: cannot read ({exc.strerror or exc})") from None
        stream: BinaryIO | _Gunzip = _Gunzip(f, path) if gz else f
        array = _parse(stream, path, ndim, what, None if gz else size)
    if array.dtype.kind == "f":
        check_features(array, path, what)
    return array


def _parse(stream: BinaryIO | _Gunzip, path: str, ndim: int | None, what: str, file_size: int | None) -> np.ndarray:
    raw = _read_head(stream, 4, path)
    expected_magic = f"0x000008{ndim:02x}" if ndim is not None else "0x0000TTDD"
    if len(raw) < 4:
        raise DataError(
            f"{shown(path)}: not an IDX {what} file: only {len(raw)} bytes, expected a 4-byte magic number "
            f"{expected_magic}"
        )
    zero0, zero1, code, dims = raw[0], raw[1], raw[2], raw[3]
    if zero0 or zero1 or code not in IDX_TYPES:
        raise DataError(
            f"{shown(path)}: not an IDX {what} file: magic number 0x{raw[:4].hex()}, expected {expected_magic} (two "
            "zero bytes, a type code such as 0x08, the number of dimensions)"
        )
    if ndim is not None and dims != ndim:
        raise DataError(
            f"{shown(path)}: IDX {what} file has {dims} dimensions, expected {ndim} (magic {expected_magic})"
        )
    header = 4 + 4 * dims
    sizes = _read_head(stream, 4 * dims, path)
    if len(sizes) < 4 * dims:
        raise DataError(
            f"{shown(path)}: truncated IDX header: {4 + len(sizes)} bytes, expected {header} for {dims} dimensions"
        )
    shape = tuple(int.from_bytes(sizes[i : i + 4], "big") for i in range(0, 4 * dims, 4))
    dtype = np.dtype(IDX_TYPES[code])
    want = dtype.itemsize
    for s in shape:
        want *= s
    if file_size is not None and file_size - header != want:
        have = file_size - header
        kind = "truncated" if have < want else "too long"
        raise DataError(
            f"{shown(path)}: IDX {what} file is {kind}: header says shape {shape} ({want} bytes of data), found {have} "
            "bytes"
        )
    check_size(want, path, f"IDX {what} file with shape {shape}")
    buffer = np.empty(want, dtype=np.uint8)
    have = _read_into(stream, buffer, path)
    if have < want:
        raise DataError(
            f"{shown(path)}: IDX {what} file is truncated: header says shape {shape} ({want} bytes of data), found "
            f"{have} bytes"
        )
    if file_size is None and stream.read(1):
        raise DataError(
            f"{shown(path)}: IDX {what} file is too long: header says shape {shape} ({want} bytes of data), it "
            "inflates to more"
        )
    values = buffer.view(dtype).reshape(shape)
    if not dtype.isnative:
        values = values.byteswap(inplace=True)
    return values.view(dtype.newbyteorder("="))


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
    names = names or (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    paths = []
    for name, array in zip(names, (x_train, y_train, x_test, y_test)):
        p = os.path.join(os.fspath(directory), name + suffix)
        write_idx(p, array)
        paths.append(p)
    return paths
