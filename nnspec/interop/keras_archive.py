"""Reading a distrusted ``.keras`` archive (or a bare config JSON) as far as its model config: the zip
container, its size caps, and the JSON with its limits. Nothing here knows what a layer is.

Only regular files are opened; an archive's members are checked against size caps by the size they
declare before anything is decompressed, and read in bounded chunks (``config.json``: 16 MiB,
``$NNSPEC_MAX_KERAS_CONFIG_BYTES``; every other member, and all of them together: 2 GiB,
``$NNSPEC_MAX_KERAS_WEIGHTS_BYTES``). The config must be UTF-8 JSON without NaN or Infinity, integers of at
most :data:`MAX_INT_DIGITS` digits, nested at most :data:`MAX_DEPTH` levels, holding an object with
``class_name`` and ``config``; a legacy HDF5 (Keras 2) file or a damaged archive is a clear
:class:`~nnspec.interop.errors.KerasImportError`.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from typing import Any, BinaryIO

from ..data.safety import human_bytes, open_regular
from .errors import KerasImportError, describe, short

#: Default cap on the size config.json declares (a model description, not weights).
MAX_CONFIG_BYTES = 16 << 20
#: Default cap on the size any other member declares, and on all members together.
MAX_WEIGHTS_BYTES = 2 << 30
CONFIG_BYTES_ENV = "NNSPEC_MAX_KERAS_CONFIG_BYTES"
WEIGHTS_BYTES_ENV = "NNSPEC_MAX_KERAS_WEIGHTS_BYTES"
#: Members an archive may hold (a Keras file has three or four).
MAX_MEMBERS = 1000
#: Deepest nesting of lists and objects accepted in a model config (Keras writes fewer than 15 levels).
MAX_DEPTH = 100
#: Most digits of an integer in a model config (Python refuses more than 4,300; no config needs more than a few).
MAX_INT_DIGITS = 40
#: The member that holds a Keras 3 model's weights.
WEIGHTS_MEMBER = "model.weights.h5"
CONFIG_MEMBER = "config.json"
_CHUNK = 1 << 20


def byte_cap(env: str, default: int) -> int:
    """A size cap: ``$env`` (bytes, or a size such as ``2G``) when set, else ``default``; a value that is not a
    positive size is refused naming the variable (:class:`~nnspec.compiler.env_settings.EnvironmentSettingError`)."""
    from ..compiler.env_settings import env_size

    return env_size(env, default) or default


def _over_cap(path: str, member: str, size: int, cap: int, env: str) -> KerasImportError:
    return KerasImportError(
        f"the member {member} declares {human_bytes(size)} ({size} bytes) uncompressed, over the limit of "
        f"{human_bytes(cap)}; set ${env} to a larger number of bytes if the file is genuine",
        file=path,
    )


def check_members(archive: zipfile.ZipFile, path: str) -> None:
    """Refuse an archive whose members declare more than the caps allow, before any is decompressed."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise KerasImportError(
            f"the archive holds {len(infos)} members; a Keras model file holds a handful (limit {MAX_MEMBERS})",
            file=path,
        )
    config_cap, weights_cap = (
        byte_cap(CONFIG_BYTES_ENV, MAX_CONFIG_BYTES),
        byte_cap(WEIGHTS_BYTES_ENV, MAX_WEIGHTS_BYTES),
    )
    total = 0
    for info in infos:
        if info.filename == CONFIG_MEMBER and info.file_size > config_cap:
            raise _over_cap(path, info.filename, info.file_size, config_cap, CONFIG_BYTES_ENV)
        if info.file_size > weights_cap:
            raise _over_cap(path, info.filename, info.file_size, weights_cap, WEIGHTS_BYTES_ENV)
        total += info.file_size
    if total > weights_cap:
        raise KerasImportError(
            f"the archive's members declare {human_bytes(total)} uncompressed together, over the limit of "
            f"{human_bytes(weights_cap)}; "
            f"set ${WEIGHTS_BYTES_ENV} to a larger number of bytes if the file is genuine",
            file=path,
        )


def copy_member(archive: zipfile.ZipFile, member: str, out: BinaryIO, cap: int, path: str) -> int:
    """Decompress ``member`` into ``out`` in bounded chunks, refusing more than ``cap`` bytes; returns the size.

    A damaged member (bad CRC, truncated data, unsupported compression) is an error naming it."""
    written = 0
    try:
        with archive.open(member) as src:
            while True:
                chunk = src.read(min(_CHUNK, cap + 1 - written))
                if not chunk:
                    return written
                written += len(chunk)
                if written > cap:
                    raise KerasImportError(f"the member {member} inflates to more than {human_bytes(cap)}", file=path)
                out.write(chunk)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        NotImplementedError,
        RuntimeError,
        ValueError,
        OSError,
        struct.error,
    ) as exc:
        raise KerasImportError(
            f"the member {member} is damaged or unreadable ({type(exc).__name__}: {exc})", file=path
        ) from None


def _read_member(archive: zipfile.ZipFile, member: str, cap: int, path: str) -> bytes:
    import io

    buffer = io.BytesIO()
    copy_member(archive, member, buffer, cap, path)
    return buffer.getvalue()


def open_archive(path: str) -> zipfile.ZipFile:
    """The ``.keras`` archive at ``path``, its members checked against the caps (the caller closes it)."""
    handle = open_regular(path, "file", KerasImportError)
    try:
        archive = zipfile.ZipFile(handle)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        ValueError,
        OSError,
        NotImplementedError,
        struct.error,
        IndexError,
    ) as exc:
        handle.close()
        raise KerasImportError(
            f"a damaged or truncated zip archive, not a readable .keras file ({exc})", file=path
        ) from None
    try:
        check_members(archive, path)
    except BaseException:
        archive.close()
        handle.close()
        raise
    return archive


def read_config(path: str) -> tuple[dict[str, Any], bool]:
    """The model config of a ``.keras`` archive or a config ``.json`` file, and whether it came with weights."""
    config_cap = byte_cap(CONFIG_BYTES_ENV, MAX_CONFIG_BYTES)
    with open_regular(path, "file", KerasImportError) as fh:
        head = fh.read(4)
        size = os.fstat(fh.fileno()).st_size
        fh.seek(0)
        is_zip = head.startswith(b"PK") and zipfile.is_zipfile(fh)
        if not is_zip and head.startswith(b"PK\x03\x04"):
            raise KerasImportError(
                "a damaged or truncated zip archive (no central directory), not a readable .keras file", file=path
            )
        if not is_zip:
            if head.startswith(b"\x89HDF"):
                raise KerasImportError(
                    "a legacy HDF5 (Keras 2) model file; load it in Keras and save it as .keras, then import that",
                    file=path,
                )
            if size > config_cap:
                raise KerasImportError(
                    f"{human_bytes(size)}, larger than {human_bytes(config_cap)}; expected a model config JSON (set "
                    f"${CONFIG_BYTES_ENV} to allow more)",
                    file=path,
                )
            text = fh.read(config_cap + 1)
            has_weights = False
    if is_zip:
        with open_archive(path) as archive:
            names = set(archive.namelist())
            if CONFIG_MEMBER not in names:
                raise KerasImportError(f"a zip file without {CONFIG_MEMBER} is not a Keras 3 .keras archive", file=path)
            if WEIGHTS_MEMBER not in names and any(n.startswith("model.weights") for n in names):
                raise KerasImportError(
                    f"the weights are not in {WEIGHTS_MEMBER}; save the model with Keras 3's default .keras format",
                    file=path,
                )
            text = _read_member(archive, CONFIG_MEMBER, config_cap, path)
            has_weights = WEIGHTS_MEMBER in names
    where = CONFIG_MEMBER if is_zip else None
    config = parse_config(text, path, where)
    return config, has_weights


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(
            f"an integer of {len(text.lstrip('-'))} digits ({text[:20]}...); no model config value needs more than "
            f"{MAX_INT_DIGITS}"
        )
    return int(text)


def parse_config(text: bytes, path: str, member: str | None = None) -> dict[str, Any]:
    """The JSON object of a model config (``member`` names the archive member it came from)."""
    what = f"{member} is" if member else "the file is"
    try:
        config = json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int)
    except RecursionError:
        raise KerasImportError(
            f"{what} JSON nested too deeply to read; a model config nests fewer than {MAX_DEPTH} levels", file=path
        ) from None
    except UnicodeDecodeError:
        what = (
            f"{member} is not UTF-8 text"
            if member
            else "the file is neither a .keras (zip) archive nor a JSON model config (it is not UTF-8 text)"
        )
        raise KerasImportError(what, file=path) from None
    except ValueError as exc:
        if member is None and isinstance(exc, json.JSONDecodeError) and text.lstrip()[:1] not in (b"{", b"["):
            raise KerasImportError(
                "the file is neither a .keras (zip) archive nor a JSON model config", file=path
            ) from None
        raise KerasImportError(
            f"{what} not a JSON model config ({type(exc).__name__}: {short(str(exc), 160)})", file=path
        ) from None
    deep = _too_deep(config)
    if deep is not None:
        raise KerasImportError(
            f"JSON nested more than {MAX_DEPTH} levels deep; a model config nests far fewer", where=deep, file=path
        )
    if not isinstance(config, dict):
        raise KerasImportError(
            f"{what} JSON holding {describe(config)}, not a Keras model config (an object with 'class_name' and "
            "'config')",
            file=path,
        )
    for key in ("class_name", "config"):
        if key not in config:
            raise KerasImportError(f"not a Keras model config: the top-level object has no '{key}'", file=path)
    return config


def _too_deep(value: Any) -> str | None:
    """The config path of a value nested more than :data:`MAX_DEPTH` levels deep; None when there is none."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return (where if len(where) <= 120 else where[:100] + "...") or "(top level)"
        if isinstance(item, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k), depth + 1) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))
    return None
