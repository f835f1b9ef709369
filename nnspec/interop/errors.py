"""The error raised when a Keras model cannot become a spec: it names the file, the place in the model's
config (``config.layers[3].config.units``) when there is one, the Keras layer and the reason."""

from __future__ import annotations

from ..errors import NnspecError

#: How much of a value from a hostile file a message shows.
SHOWN_CHARS = 80


def short(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about values read from a file."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # a very deep structure, or an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: object) -> str:
    """A JSON value as messages name it: ``null``, ``the number 5``, ``the string 'x'``, ``a list [1, 2]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {short(value)}"
    if isinstance(value, str):
        return f"the string {short(value)}"
    if isinstance(value, list):
        return f"a list {short(value)}"
    if isinstance(value, dict):
        return f"an object {short(value)}"
    return f"a {type(value).__name__}"


class KerasImportError(NnspecError, ValueError):
    """A Keras model (or its file) cannot be turned into an nnspec spec.

    ``message`` says what is wrong; ``where`` is the place in the model config (``config.layers[3].config.units``)
    and ``file`` the model file, when known. ``str()`` gives ``file: where: message``.
    """

    def __init__(self, message: str, where: str | None = None, file: str | None = None, layer: str | None = None):
        self.message, self.where, self.file, self.layer = message, where, file, layer
        super().__init__(": ".join(part for part in (file, where, message) if part))

    def in_file(self, file: str) -> "KerasImportError":
        """This error with ``file`` named (unless it already names one)."""
        return self if self.file else KerasImportError(self.message, self.where, file, self.layer)


class UnsupportedLayers(KerasImportError):
    """Every layer or option of a Keras model that nnspec cannot import, found in one pass (exit code 2, as a spec
    error): one line per problem, ``where: message``, and what nnspec imports."""

    exit_code = 2

    def __init__(self, problems: list[KerasImportError], total: int, known: list[str], file: str | None = None):
        self.problems, self.total, self.known = problems, total, known
        lines = [": ".join(part for part in (p.where, p.message) if part) for p in problems]
        layers = len({p.layer for p in problems if p.layer} or lines)
        head = f"{layers} of {total} layers cannot be imported ({len(problems)} problem{'s' * (len(problems) != 1)}):"
        unknown = any((p.where or "").endswith(".class_name") for p in problems)
        hint = f"\n  hint: nnspec imports {', '.join(known)}" if unknown else ""
        super().__init__(head + "".join(f"\n  {line}" for line in lines) + hint, None, file)

    def in_file(self, file: str) -> "KerasImportError":
        """This error with ``file`` named (unless it already names one)."""
        return self if self.file else UnsupportedLayers(self.problems, self.total, self.known, file)
