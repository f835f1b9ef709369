"""Where an export may write its file: checked before anything is built, the same for every format."""

from __future__ import annotations

import os

from ..errors import NnspecError


def check_output_file(path: str | os.PathLike[str], suffix: str, kind: str, error: type[NnspecError]) -> str:
    """Refuse a path an export cannot write ``kind`` to (no ``suffix``, NUL byte, missing or read-only folder, an
    existing folder), raising ``error``; returns the path as a string."""
    path = os.fspath(path)
    if "\0" in path:
        shown = path.replace("\0", "\\0")
        raise error(f"{shown}: not a usable path (it contains a NUL byte)")
    if not path.endswith(suffix):
        raise error(f"{path}: {kind} must end in {suffix}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise error(f"{path}: the folder {parent} does not exist")
    if os.path.isdir(path):
        raise error(f"{path}: is a folder; give the name of the {suffix} file to write")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise error(f"{path}: the folder {parent} is not writable")
    return path
