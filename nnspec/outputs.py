"""Where nnspec may write what a user asked for: one check for every output path a command takes.

``nnspec schema -o``, ``plot -o``, ``profile --plot``, ``predict -o``, ``import -o`` / ``--weights-out``,
``export`` and the ONNX export check their file with :func:`check_output_file`, and ``sweep --out`` its
folder with :func:`check_output_folder`, before any work is done, so a run never ends in an unwritable
path. The messages have one form: ``PATH: cannot write the WHAT: REASON``. This module sits beside
:mod:`nnspec.errors` at the bottom of the package (the commands, the interop and the tools all use it) and
imports nothing else from nnspec.
"""

from __future__ import annotations

import os
import stat

from .errors import NnspecError, OutputError


def _shown(path: str) -> str:
    return path.replace("\0", "\\0")


def check_output_file(
    path: str | os.PathLike[str],
    what: str,
    *,
    error: type[NnspecError] = OutputError,
    suffix: str | None = None,
    example: str | None = None,
    keep: tuple[str | os.PathLike[str], str] | None = None,
) -> str:
    """Refuse a path where ``what`` (``"spec"``, ``"chart"``) cannot be written as a new or replaced regular
    file, raising ``error``; returns the path as a string.

    Refused: an empty path or one with a NUL byte; a name without ``suffix`` (when given); a folder (the
    hint names ``example`` inside it); something that exists and is not a regular file (a device, a FIFO);
    a missing or unwritable folder (nnspec creates no folder for a file); and, with ``keep = (path,
    description)``, the file ``keep`` names (an import must not overwrite its model). A symbolic link is
    judged by what it points to.
    """
    path = os.fspath(path)
    shown = _shown(path) or "(empty)"
    cannot = f"{shown}: cannot write the {what}:"
    if not path or "\0" in path:
        raise error(f"{cannot} not a usable path{' (it contains a NUL byte)' if path else ''}")
    if suffix is not None and not path.endswith(suffix):
        raise error(f"{shown}: the {what} must end in {suffix}")
    target = os.path.realpath(path)
    if os.path.isdir(target):
        hint = f", e.g. {os.path.join(shown, example)}" if example else ""
        raise error(f"{cannot} it is a folder; give the name of the file to write{hint}")
    if os.path.lexists(target) and not os.path.isfile(target):
        raise error(f"{cannot} it exists and is not a regular file")
    folder, named = os.path.dirname(target), _shown(os.path.dirname(os.path.abspath(path)))
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
    if keep is not None:
        other, description = keep
        if os.path.exists(path) and os.path.exists(other) and os.path.samefile(path, other):
            raise error(f"{shown}: the {what} would overwrite {description}")
    return path


def check_output_folder(path: str | os.PathLike[str], what: str, *, error: type[NnspecError] = OutputError) -> str:
    """Refuse a path where the folder ``what`` cannot be made or used (a NUL byte, a file or other non-folder
    in its place), raising ``error``; returns the path as a string. What the folder may already hold is the
    caller's rule."""
    path = os.fspath(path)
    shown = _shown(path) or "(empty)"
    if not path or "\0" in path:
        raise error(f"{shown}: cannot use the {what}: not a usable path{' (it contains a NUL byte)' if path else ''}")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise error(f"{shown}: cannot use the {what}: it exists and is not a folder")
    return path
