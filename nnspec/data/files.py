"""Finding MNIST-style data files on disk, and downloading them where the network allows.

Search order for ``mnist`` and ``fashion_mnist``: ``data.path`` (when given, the only place looked at),
then ``$NNSPEC_DATA``, the Keras cache ``~/.keras/datasets``, and for Fashion-MNIST the Debian package's
``/usr/share/datasets/fashion-mnist``. In each place nnspec looks for the four IDX files (``*-ubyte`` or
``*-ubyte.gz``, directly or in a sub-folder named after the data set) and for Keras's npz file.

A download happens only when nothing is found, ``$NNSPEC_OFFLINE`` is not set and the network answers
within a short timeout; every downloaded file is checked against its official SHA-256 sum before use.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .safety import shown

IDX_PARTS: tuple[str, ...] = ("train-images", "train-labels", "t10k-images", "t10k-labels")
_IDX_BASENAMES: dict[str, tuple[str, ...]] = {
    "train-images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train-labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "t10k-images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "t10k-labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}

#: Official SHA-256 sums of the published files.
SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

#: What is downloaded, from where (first mirror that answers), into which folder of the Keras cache layout.
DOWNLOADS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "mnist": (("mnist.npz",), ("https://storage.googleapis.com/tensorflow/tf-keras-datasets/",), ""),
    "fashion_mnist": (
        tuple(f"{b[0]}.gz" for b in _IDX_BASENAMES.values()),
        (
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
            "https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
        ),
        "fashion-mnist",
    ),
}

_SUBDIRS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist", "MNIST", "MNIST/raw"),
    "fashion_mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
}
_NPZ_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist.npz",),
    "fashion_mnist": ("fashion-mnist.npz", "fashion_mnist.npz"),
}
SYSTEM_DIRS: dict[str, tuple[str, ...]] = {"fashion_mnist": ("/usr/share/datasets/fashion-mnist",)}
DOWNLOAD_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Found:
    """Where a data set was found: either an ``npz`` file or the four IDX files by part."""

    npz: str | None = None
    idx: dict[str, str] | None = None

    @property
    def where(self) -> str:
        """A short description for messages."""
        return self.npz or os.path.dirname(next(iter((self.idx or {}).values()), ""))


def search_dirs(dataset: str) -> list[str]:
    """The folders searched for ``dataset`` when ``data.path`` is not given, in order."""
    dirs = []
    if os.environ.get("NNSPEC_DATA"):
        dirs.append(os.environ["NNSPEC_DATA"])
    dirs.append(os.path.join(os.path.expanduser("~"), ".keras", "datasets"))
    dirs.extend(SYSTEM_DIRS.get(dataset, ()))
    return dirs


def _idx_in(folder: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for part, basenames in _IDX_BASENAMES.items():
        for base in basenames:
            for name in (base + ".gz", base):
                if (folder / name).is_file():
                    found.setdefault(part, str(folder / name))
    return found


def find_in(folder: str, dataset: str) -> Found | None:
    """Look for ``dataset`` in ``folder`` (and its data-set sub-folders); ``None`` when nothing is there.

    A folder holding some but not all of the four IDX files is an error that names the missing ones.
    """
    try:
        return _find_in(Path(folder), dataset)
    except OSError as exc:
        raise DataError(f"{shown(folder)}: cannot look for {dataset} data there ({exc.strerror or exc})") from None


def _find_in(root: Path, dataset: str) -> Found | None:
    for sub in ("", *_SUBDIRS.get(dataset, ())):
        d = root / sub if sub else root
        if not d.is_dir():
            continue
        idx = _idx_in(d)
        if len(idx) == len(IDX_PARTS):
            return Found(idx=idx)
        if idx:
            missing = [f"{_IDX_BASENAMES[p][0]}[.gz]" for p in IDX_PARTS if p not in idx]
            raise DataError(
                f"{d}: incomplete IDX data set: found {', '.join(sorted(os.path.basename(v) for v in idx.values()))} "
                f"but not {', '.join(missing)}"
            )
        for name in _NPZ_NAMES.get(dataset, ()):
            if (d / name).is_file():
                return Found(npz=str(d / name))
    return None


def expected_files(dataset: str) -> str:
    """Human-readable list of the file names nnspec accepts for ``dataset``."""
    idx = ", ".join(f"{b[0]}[.gz]" for b in _IDX_BASENAMES.values())
    return f"{idx} (or {' / '.join(_NPZ_NAMES.get(dataset, ()))} with x_train, y_train, x_test, y_test)"


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_allowed() -> bool:
    """False when ``$NNSPEC_OFFLINE`` is on (``1``, ``true``, ``yes``, ``on``); a value that is neither on nor off
    (``0``, ``false``, ``no``, ``off``, empty) is refused naming the variable."""
    from ..compiler.env_settings import env_flag

    return not env_flag("NNSPEC_OFFLINE")


def _fetch(url: str, target: str, sha256: str, timeout: float) -> None:
    """Download ``url`` to ``target`` through a temporary file; refuse it unless its SHA-256 matches."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        got = sha256_file(tmp)
        if got != sha256:
            raise DataError(f"{url}: downloaded file has SHA-256 {got}, expected {sha256}; not used")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def download(dataset: str, cache_dir: str | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Found:
    """Download ``dataset`` into the cache (``$NNSPEC_DATA`` or ``~/.keras/datasets``), checking SHA-256 sums.

    Raises :class:`DataError` when no mirror answers or a checksum differs.
    """
    names, mirrors, sub = DOWNLOADS[dataset]
    base = cache_dir or os.environ.get("NNSPEC_DATA") or os.path.join(os.path.expanduser("~"), ".keras", "datasets")
    folder = os.path.join(base, sub) if sub else base
    os.makedirs(folder, exist_ok=True)
    for name in names:
        target = os.path.join(folder, name)
        if os.path.isfile(target) and sha256_file(target) == SHA256[dataset][name]:
            continue
        errors = []
        for mirror in mirrors:
            try:
                _fetch(mirror + name, target, SHA256[dataset][name], timeout)
                break
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                errors.append(f"{mirror + name}: {getattr(exc, 'reason', exc)}")
        else:
            raise DataError(f"could not download {name}: " + "; ".join(errors))
    found = find_in(folder, dataset)
    if found is None:  # pragma: no cover - the files were just written
        raise DataError(f"{folder}: download finished but the data set is not there")
    return found


def _mode(path: str, dataset: str) -> int:
    """``st_mode`` of ``data.path``, or a DataError for a NUL byte, a missing path or a permission problem."""
    if "\0" in path:
        raise DataError(f"{shown(path)}: the path contains a NUL byte (data.path of data set '{dataset}')")
    try:
        return os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"{shown(path)}: no such file or folder (data.path of data set '{dataset}')") from None
    except OSError as exc:
        raise DataError(
            f"{shown(path)}: cannot read data.path of data set '{dataset}' ({exc.strerror or exc})"
        ) from None


def locate(dataset: str, path: str | None) -> Found:
    """Find ``dataset`` (``mnist`` or ``fashion_mnist``) on disk, or download it; see the module docstring."""
    if path:
        mode = _mode(path, dataset)
        if stat.S_ISREG(mode):
            if path.endswith(".npz"):
                return Found(npz=path)
            raise DataError(f"{shown(path)}: expected a folder holding {expected_files(dataset)}, or an .npz file")
        if not stat.S_ISDIR(mode):
            raise DataError(
                f"{shown(path)}: is not a regular file or folder (a FIFO, device or socket); data.path of data set "
                f"'{dataset}' must name a folder or an .npz file"
            )
        found = find_in(path, dataset)
        if found is None:
            raise DataError(f"{path}: no {dataset} data found; expected {expected_files(dataset)}")
        return found
    looked = search_dirs(dataset)
    for folder in looked:
        found = find_in(folder, dataset)
        if found is not None:
            return found
    how = "set data.path or $NNSPEC_DATA to a folder holding " + expected_files(dataset)
    if dataset == "fashion_mnist":
        how += ", or install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"
    if not download_allowed():
        raise DataError(
            f"data set '{dataset}' not found in {', '.join(looked)} and downloads are off ($NNSPEC_OFFLINE); {how}"
        )
    try:
        return download(dataset)
    except DataError as exc:
        raise DataError(f"data set '{dataset}' not found in {', '.join(looked)}, and {exc}; {how}") from None
