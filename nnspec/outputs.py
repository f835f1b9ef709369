"""Where nnspec may write what a user asked for, and how: one check and one writer for every output path a
command takes.

``nnspec schema -o``, ``plot -o``, ``profile --plot``, ``predict -o``, ``import -o`` / ``--weights-out``,
``export``, ``compare --out`` and the sweep's files check their file with :func:`check_output_file` before
any work is done, and write it with :func:`write_output` (several files at once, all or none:
:func:`write_outputs`); ``sweep --out`` checks its folder with :func:`check_output_folder`.

The rules (docs/cli.md, "Output files"):

* only a regular file, or a name that does not exist yet, is written: a symbolic link, a FIFO, a device
  (``/dev/null``, ``/dev/full``), a socket or a folder in the file's place is refused with a message naming
  it (exit 1), never followed and never replaced. The folders above the file may be links (the user named them);
* a file is written whole or not at all: into a new temporary file beside it (``.tmp-*``, created exclusively,
  so it is never a link), synced, then put in place by a rename, which never follows a link; the place is
  checked again just before, and a name that did not exist is taken with a hard link, which fails rather than
  replace anything that appeared in the meantime;
* messages have one form, ``PATH: cannot write the WHAT: REASON``.

This module sits beside :mod:`nnspec.errors` at the bottom of the package (the commands, the runtime, the
interop and the tools all use it) and imports nothing else from nnspec.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, Union

from .errors import NnspecError

#: Prefix of the temporary files (the same as :data:`nnspec.runtime.atomic.TEMP_PREFIX`: readers skip such
#: names and cleaners remove them).
TEMP_PREFIX = ".tmp-"
#: Longest part of the target's name kept in its temporary file's name (file names stop at 255 bytes).
_TEMP_STEM = 96

#: What writes a file: ``write(tmp_path)`` fills the temporary file; bytes or text are written as they are.
Content = Union[bytes, str, Callable[[str], Any]]


class OutputPathError(NnspecError, ValueError):
    """An output path nnspec refuses or fails to write (exit 1); the message names the path."""


def _file_mode() -> int:
    """The mode a plain ``open(..., 'w')`` gives a new file (0o666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()


def _shown(path: str) -> str:
    return path.replace("\0", "\\0")


def describe_kind(mode: int) -> str:
    """What a file of ``mode`` (from :func:`os.lstat`) is, in words: ``a symbolic link``, ``a FIFO``, ..."""
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    )
    return next((word for test, word in kinds if test(mode)), "not a regular file")


def _lstat(path: str) -> os.stat_result | None:
    """``os.lstat(path)``, None when nothing is there."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _refusal(path: str, found: os.stat_result, what: str, example: str | None) -> str:
    """Why ``path``, which exists and is ``found``, cannot be written as the ``what``."""
    shown = _shown(path)
    cannot = f"{shown}: cannot write the {what}:"
    if stat.S_ISLNK(found.st_mode):
        try:
            to = f" to {_shown(os.readlink(path))}"
        except OSError:
            to = ""
        return (
            f"{cannot} it is a symbolic link{to}; nnspec never writes through a link: name the file itself, or "
            "remove the link"
        )
    if stat.S_ISDIR(found.st_mode):
        hint = f", e.g. {os.path.join(shown, example)}" if example else ""
        return f"{cannot} it is a folder; give the name of the file to write{hint}"
    return f"{cannot} it exists and is not a regular file ({describe_kind(found.st_mode)}); nnspec never replaces one"


def _check_place(path: str, what: str, error: type[NnspecError], example: str | None) -> None:
    """Refuse ``path`` unless nothing is there or a regular file is (checked without following a link)."""
    cannot = f"{_shown(path)}: cannot write the {what}:"
    try:
        found = _lstat(path)
    except OSError as exc:
        reason = "a part of the path above it is not a folder" if exc.errno == errno.ENOTDIR else exc.strerror
        raise error(f"{cannot} {reason or exc}") from None
    if found is not None and not stat.S_ISREG(found.st_mode):
        raise error(_refusal(path, found, what, example))
    if found is None and path.endswith((os.sep, "/")):
        raise error(f"{cannot} it ends in {os.sep} but no such folder exists; give the name of the file to write")


def _check_folder(path: str, what: str, error: type[NnspecError]) -> None:
    """Refuse ``path`` when the folder it is to be written in is missing or not writable."""
    cannot = f"{_shown(path)}: cannot write the {what}:"
    folder = os.path.dirname(os.path.abspath(path))
    named = _shown(folder)
    try:
        is_folder = stat.S_ISDIR(os.stat(folder).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        is_folder = False
    except OSError as exc:
        raise error(f"{cannot} cannot reach the folder {named} ({exc.strerror or exc})") from None
    if not is_folder:
        raise error(f"{cannot} the folder {named} does not exist; create it first (nnspec creates no folder for it)")
    if not os.access(folder, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        raise error(f"{cannot} the folder {named} is not writable")


def check_output_file(
    path: str | os.PathLike[str],
    what: str,
    *,
    error: type[NnspecError] = OutputPathError,
    suffix: str | None = None,
    example: str | None = None,
    keep: tuple[str | os.PathLike[str] | None, str] | None = None,
) -> str:
    """Refuse a path where ``what`` (``"spec"``, ``"chart"``) cannot be written as a new or replaced regular
    file, raising ``error``; returns the path as a string.

    Refused: an empty path or one with a NUL byte; a name without ``suffix`` (when given); anything in the
    file's place but a regular file -- a symbolic link (whatever it points to), a folder (the hint names
    ``example`` inside it), a FIFO, a device, a socket; a missing or unwritable folder (nnspec creates no
    folder for a file); and, with ``keep = (path, description)``, the file ``keep`` names (an import must not
    overwrite its model).
    """
    path = os.fspath(path)
    shown = _shown(path) or "(empty)"
    if not path or "\0" in path:
        raise error(f"{shown}: cannot write the {what}: not a usable path{' (it contains a NUL byte)' if path else ''}")
    if suffix is not None and not path.endswith(suffix):
        raise error(f"{shown}: the {what} must end in {suffix}")
    _check_place(path, what, error, example)
    _check_folder(path, what, error)
    other, description = keep if keep is not None else (None, "")
    if other is not None:
        if os.path.exists(path) and os.path.exists(other) and os.path.samefile(path, other):
            raise error(f"{shown}: the {what} would overwrite {description}")
    return path


def check_output_folder(path: str | os.PathLike[str], what: str, *, error: type[NnspecError] = OutputPathError) -> str:
    """Refuse a path where the folder ``what`` cannot be made or used (a NUL byte, a file or other non-folder
    in its place), raising ``error``; returns the path as a string. What the folder may already hold is the
    caller's rule. A link to a folder is a folder (the user named it)."""
    path = os.fspath(path)
    shown = _shown(path) or "(empty)"
    if not path or "\0" in path:
        raise error(f"{shown}: cannot use the {what}: not a usable path{' (it contains a NUL byte)' if path else ''}")
    if os.path.lexists(path) and not os.path.isdir(path):
        found = _lstat(path)
        kind = f" ({describe_kind(found.st_mode)})" if found is not None else ""
        raise error(f"{shown}: cannot use the {what}: it exists and is not a folder{kind}")
    return path


def _temp_beside(path: str) -> str:
    """A new, empty temporary file in ``path``'s folder (created exclusively: never a link), with its suffix."""
    folder = os.path.dirname(os.path.abspath(path))
    stem, suffix = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{stem[:_TEMP_STEM]}-", suffix=suffix[:_TEMP_STEM], dir=folder)
    os.close(fd)
    return tmp


def _fill(tmp: str, content: Content) -> None:
    """Write ``content`` into the temporary file ``tmp`` and sync it to disk."""
    if callable(content):
        content(tmp)
    else:
        with open(tmp, "wb") as f:
            f.write(content.encode("utf-8") if isinstance(content, str) else content)
    os.chmod(tmp, _MODE)  # after the writer: some (safetensors) make the file anew, with their own mode
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())


def _sync_folder(path: str) -> None:
    """Flush the entries of the folder holding ``path`` (the rename) to disk, where folders can be opened."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _install(tmp: str, path: str, what: str, error: type[NnspecError]) -> None:
    """Put the finished ``tmp`` in ``path``'s place: never through a link, never over a non-regular file."""
    found = _lstat(path)
    if found is None:
        try:
            os.link(tmp, path, follow_symlinks=False)
        except FileExistsError:  # something appeared since the check: judge it again
            found = _lstat(path)
        except OSError:  # a file system without hard links: the rename below
            pass
        else:
            os.unlink(tmp)
            return
    if found is not None and not stat.S_ISREG(found.st_mode):
        raise error(_refusal(path, found, what, None))
    os.replace(tmp, path)


def write_outputs(
    jobs: Sequence[tuple[str | os.PathLike[str], Content]],
    what: str,
    *,
    error: type[NnspecError] = OutputPathError,
) -> list[str]:
    """Write several files, none put in place before all are written (see the module docstring); returns their
    paths. Each path must have passed :func:`check_output_file`; it is checked again just before its rename.

    On any failure the temporary files, and the files already put in place, are removed, and ``error`` names the
    file being written (``PATH: cannot write the WHAT: REASON; nothing was written``).
    """
    temps: list[tuple[str, str]] = []
    placed: list[str] = []
    target = ""
    try:
        for path, content in jobs:
            target = os.fspath(path)
            tmp = _temp_beside(target)
            temps.append((tmp, target))
            _fill(tmp, content)
        for tmp, target in temps:
            _install(tmp, target, what, error)
            placed.append(target)
    except BaseException as exc:
        for name in [tmp for tmp, _ in temps] + placed:
            try:
                os.unlink(name)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise error(
                f"{_shown(target)}: cannot write the {what}: {exc.strerror or exc}; nothing was written"
            ) from None
        raise
    for path in dict.fromkeys(target for _, target in temps):
        _sync_folder(path)
    return [target for _, target in temps]


def write_output(
    path: str | os.PathLike[str],
    content: Content,
    what: str,
    *,
    error: type[NnspecError] = OutputPathError,
    suffix: str | None = None,
    example: str | None = None,
) -> str:
    """Check ``path`` (:func:`check_output_file`) and write ``content`` to it whole or not at all (bytes, text, or
    ``write(tmp_path)`` filling a temporary file that keeps the path's suffix); returns the path."""
    target = check_output_file(path, what, error=error, suffix=suffix, example=example)
    write_outputs([(target, content)], what, error=error)
    return target
