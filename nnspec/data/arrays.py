"""Checked readers of NumPy ``.npy`` and ``.npz`` files: no pickles, no allocation a header only claims.

NumPy's own loader allocates the array a ``.npy`` header declares before reading a byte of data, and an
``.npz`` member may inflate far beyond its compressed size. Here every header is read first; its declared
size is checked against what the file (or zip member) holds, the cap and the memory available
(:func:`nnspec.data.safety.check_size`), and arrays of Python objects are refused, before anything is
read. Only the arrays asked for are read from an ``.npz``. Every problem is a :class:`DataError` (or the
error class the caller passes) naming the file.
"""

from __future__ import annotations

import os
import warnings
import zipfile
import zlib
from typing import IO, Iterable

import numpy as np
from numpy.lib import format as npy_format

from ..errors import DataError
from .safety import ErrorType, check_size, open_regular, shown

_MAX_HEADER = 10_000
_ZIP_MAGIC = b"PK"
_READ_ERRORS = (
    ValueError,
    EOFError,
    OSError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    SyntaxError,
)


def _read_header(fp: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Parse a ``.npy`` header from ``fp``: ``(shape, fortran_order, dtype, bytes of header read)``."""
    version = npy_format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = npy_format.read_array_header_1_0(fp, max_header_size=_MAX_HEADER)
    elif version in ((2, 0), (3, 0)):  # 3.0 differs from 2.0 only in a UTF-8 header (names in structured dtypes)
        shape, fortran, dtype = npy_format.read_array_header_2_0(fp, max_header_size=_MAX_HEADER)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype), fp.tell()


def _read_exactly(fp: IO[bytes], buffer: np.ndarray) -> int:
    """Fill ``buffer`` (uint8) from ``fp``; returns the number of bytes read (fewer at end of file)."""
    view = memoryview(buffer).cast("B")  # type: ignore[arg-type]  # NumPy arrays are buffers
    got = 0
    while got < len(view):
        chunk = fp.read(min(len(view) - got, 1 << 24))
        if not chunk:
            break
        view[got : got + len(chunk)] = chunk
        got += len(chunk)
    return got


def read_array(fp: IO[bytes], holds: int, path: str, label: str, error: ErrorType = DataError) -> np.ndarray:
    """Read one ``.npy`` array from ``fp``, which holds ``holds`` bytes in all; ``label`` names it in messages."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged header makes NumPy's parser warn as well as fail
            shape, fortran, dtype, offset = _read_header(fp)
    except Exception as exc:  # NumPy's parser of a hostile header can raise many kinds of exception
        raise error(f"{shown(path)}: {label} is not a NumPy array ({type(exc).__name__}: {exc})") from None
    if any(size < 0 for size in shape):
        raise error(f"{shown(path)}: {label} is not a NumPy array (its header says shape {shape})")
    if dtype.hasobject:
        raise error(
            f"{shown(path)}: {label} holds Python objects (a pickle); nnspec reads numeric arrays only, no pickles"
        )
    if dtype.itemsize == 0:
        raise error(f"{shown(path)}: {label} has dtype {dtype}, which holds no data")
    count = 1
    for size in shape:
        count *= size
    nbytes = count * dtype.itemsize
    if nbytes > holds - offset:
        raise error(
            f"{shown(path)}: {label} is truncated: its header says shape {shape} of {dtype} ({nbytes} bytes), but only "
            f"{max(holds - offset, 0)} bytes follow the header"
        )
    check_size(nbytes, path, label, error)
    buffer = np.empty(nbytes, dtype=np.uint8)
    try:
        got = _read_exactly(fp, buffer)
    except _READ_ERRORS as exc:
        raise error(f"{shown(path)}: {label} cannot be read ({exc})") from None
    if got != nbytes:
        raise error(f"{shown(path)}: {label} is truncated: expected {nbytes} bytes of data, found {got}")
    array = buffer.view(dtype).reshape(shape, order="F" if fortran else "C")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def read_npy(path: str | os.PathLike, what: str = "file", error: ErrorType = DataError) -> np.ndarray:
    """Read an ``.npy`` file (refusing pickles, ``.npz`` archives and sizes its header only claims)."""
    path = os.fspath(path)
    with open_regular(path, what, error) as f:
        size = os.fstat(f.fileno()).st_size
        try:
            head = f.read(2)
            f.seek(0)
        except OSError as exc:
            raise error(f"{shown(path)}: cannot read the {what} ({exc.strerror or exc})") from None
        if head == _ZIP_MAGIC:
            raise error(
                f"{shown(path)}: expected one array in an .npy file, found an .npz archive; save it with numpy.save"
            )
        return read_array(f, size, path, "the array", error)


class NpzFile:
    """An open ``.npz`` archive: :attr:`names` lists its arrays, :meth:`read` reads some of them (checked)."""

    def __init__(self, path: str | os.PathLike, error: ErrorType = DataError):
        self.path = os.fspath(path)
        self.error = error
        self._file = open_regular(self.path, "file", error)
        try:
            self._zip = zipfile.ZipFile(self._file)
            infos = self._zip.infolist()
        except _READ_ERRORS as exc:
            self._file.close()
            raise error(f"{shown(self.path)}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
        self._members = {i.filename[:-4]: i for i in infos if i.filename.endswith(".npy") and not i.is_dir()}

    @property
    def names(self) -> list[str]:
        """Names of the arrays in the archive (members ending in ``.npy``, without the suffix)."""
        return list(self._members)

    def read(self, names: Iterable[str]) -> dict[str, np.ndarray]:
        """Read the arrays ``names``; their declared total size is checked before any is read."""
        names = list(names)
        total = 0
        for name in names:
            info = self._members[name]
            total += info.file_size
        check_size(total, self.path, f"uncompressed size of {', '.join(n + '.npy' for n in names)}", self.error)
        out = {}
        for name in names:
            info = self._members[name]
            label = f"array '{name}'"
            try:
                with self._zip.open(info) as member:
                    out[name] = read_array(member, info.file_size, self.path, label, self.error)
            except _READ_ERRORS as exc:
                raise self.error(f"{shown(self.path)}: {label} cannot be read ({type(exc).__name__}: {exc})") from None
        return out

    def close(self) -> None:
        """Close the archive."""
        self._zip.close()
        self._file.close()

    def __enter__(self) -> "NpzFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
