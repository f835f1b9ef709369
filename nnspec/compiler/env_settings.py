"""Settings read from environment variables: the yes/no and size readers and the error naming a variable.

They sit in the compiler's layer so that every layer above (data, interop, runtime) reads a setting the same
way; the list of every setting and the check at start-up are in :mod:`nnspec.runtime.env`.
"""

from __future__ import annotations

import os
from typing import Mapping

from ..errors import NnspecError

#: Values a yes/no variable takes (case-insensitive); empty counts as unset.
TRUE_WORDS: tuple[str, ...] = ("1", "true", "yes", "on")
FALSE_WORDS: tuple[str, ...] = ("0", "false", "no", "off")
_MAX_SHOWN = 60


class EnvironmentSettingError(NnspecError, ValueError):
    """An environment variable holds a value nnspec cannot use; the message names the variable."""


def shown_value(value: str) -> str:
    """``value`` quoted for a message: cut when long, control characters and undecodable bytes escaped."""
    text = value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "..."
    return repr(text)


def setting_error(name: str, value: str, expected: str) -> EnvironmentSettingError:
    """The error naming variable ``name``, its value and what it should be."""
    return EnvironmentSettingError(f"environment variable {name}={shown_value(value)} is {expected}")


def size_problem(value: str) -> str | None:
    """Why ``value`` is not a positive memory size (None when it is)."""
    from .memory import parse_size

    try:
        ok = parse_size(value) > 0
    except ValueError:
        ok = False
    return None if ok else "not a memory size; give bytes (8000000000) or a size such as 8G, 512MiB or 2GB"


def flag_problem(value: str) -> str | None:
    """Why ``value`` is neither on nor off (None when it is one of them)."""
    if value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return None
    return f"neither on nor off; give {', '.join(TRUE_WORDS)} (on) or {', '.join(FALSE_WORDS)} (off)"


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether yes/no variable ``name`` is on (unset or empty: off); raises :class:`EnvironmentSettingError` when
    it is neither yes nor no."""
    value = (os.environ if environ is None else environ).get(name, "")
    if not value.strip():
        return False
    problem = flag_problem(value)
    if problem:
        raise setting_error(name, value, problem)
    return value.strip().lower() in TRUE_WORDS


def env_size(name: str, default: int | None, environ: Mapping[str, str] | None = None) -> int | None:
    """The size in bytes variable ``name`` sets (``default`` when unset or empty); raises
    :class:`EnvironmentSettingError` when it is not a positive size."""
    from .memory import parse_size

    value = (os.environ if environ is None else environ).get(name, "")
    if not value.strip():
        return default
    problem = size_problem(value)
    if problem:
        raise setting_error(name, value, problem)
    return parse_size(value)
