"""Typed readers for spec values: each takes a positioned node and returns a Python value or raises
:class:`Invalid` saying what was expected and what was found.

This is where YAML 1.1 traps are settled: ``1e-3`` is a number where a number is expected; ``yes``,
``no``, ``on``, ``off``, ``y``, ``n`` are refused where a boolean or a word is expected; a plain
``1.10`` or ``0777`` is refused where a string is expected (quote it); ``0777`` is refused where an
integer is expected (a leading zero means octal in YAML 1.1).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from .loader import YMap, YNode, YScalar, YSeq

#: Largest integer accepted anywhere in a spec (keeps arithmetic on shapes sane).
MAX_INT = 2**31 - 1
#: Longest text of a found value quoted in a message; longer text is cut (see :func:`shorten`).
MAX_SHOWN = 60

IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


class Invalid(Exception):
    """A value does not fit; ``message`` reads after the field name (``must be ...; got ...``)."""

    def __init__(self, message: str, hint: str | None = None, node: YNode | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.node = node
        self.code = code


Reader = Callable[[YNode], Any]


def suggest(word: str, options: Iterable[str]) -> str | None:
    """The closest of ``options`` to ``word`` (difflib, cutoff 0.75), or None when nothing is close."""
    options = list(options)
    if len(word) > 4 * max((len(o) for o in options), default=0) + 8:
        return None  # nothing can be close, and comparing a long text is slow
    lowered = {o.lower(): o for o in options}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[match[0]] if match else None


def plural(word: str) -> str:
    """The plural of a vocabulary word (``loss`` -> ``losses``)."""
    return word + ("es" if word.endswith("s") else "s")


def words(items: Iterable[str], last: str = "and") -> str:
    """``a, b and c`` (or, with ``last="or"``, ``a, b or c``)."""
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest option, or an empty string."""
    best = suggest(word, options)
    return f"; did you mean {best!r}?" if best else ""


def shorten(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` as quoted in a message: cut after ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def describe(node: YNode | None) -> str:
    """How a found value is shown in a message: the text as written, a list, or 'a mapping'."""
    if node is None:
        return "nothing"
    if isinstance(node, YScalar):
        if node.plain:
            return "nothing" if node.kind == "null" else shorten(node.text)
        return repr(shorten(node.text))
    if isinstance(node, YMap):
        keys = ", ".join(shorten(k, 20) for k in list(node.items)[:3])
        return f"a mapping {{{keys}{', ...' if len(node.items) > 3 else ''}}}"
    text = _inline(node).replace("'", "")
    return text if len(text) <= 40 else text[:37] + "..."


def _inline(node: YNode) -> str:
    """A node written on one line as Python shows the plain data, each scalar cut to a few characters."""
    if isinstance(node, YScalar):
        return shorten(node.text if node.kind == "int" else str(node.value), 20)
    if isinstance(node, YSeq):
        return "[" + ", ".join(_inline(item) for item in node.items) + "]"
    return "{" + ", ".join(f"{shorten(k, 20)}: {_inline(v)}" for k, (_, v) in node.items.items()) + "}"


def _scalar(node: YNode | None, expected: str, hint: str | None = None) -> YScalar:
    if isinstance(node, YScalar) and not (node.plain and node.kind == "null"):
        return node
    raise Invalid(f"must be {expected}; got {describe(node)}", hint, node)


def _bool_trap(node: YScalar, expected: str) -> Invalid:
    return Invalid(
        f"must be {expected}; got {node.text} (YAML 1.1 reads it as a boolean, YAML 1.2 as a word)",
        "write true or false" if expected == "true or false" else f'quote it ("{node.text}") if you mean the word',
        node,
    )


def read_int(node: YNode | None, minimum: int | None = None, maximum: int = MAX_INT) -> int:
    """An integer within [minimum, maximum]."""
    expected = _int_range(minimum, maximum)
    s = _scalar(node, expected)
    kind = s.kind
    if kind == "yaml11_number":
        raise Invalid(
            f"must be {expected}; got {shorten(s.text)}, which YAML 1.1 reads as octal, hex or base 60",
            "write a plain decimal number without leading zeros or underscores",
            s,
        )
    if kind == "float":
        value = float(s.text)
        shown = shorten(s.text)
        whole = value.is_integer() and abs(value) <= 1e15
        if whole and re.match(r"^[-+]?[0-9]+[eE]", s.text):
            raise Invalid(f"must be {expected}; got {shown}", f"write it as {int(value)}", s)
        raise Invalid(
            f"must be {expected}; got {shown}", f"write a whole number{f', e.g. {round(value)}' if whole else ''}", s
        )
    if kind != "int":
        raise Invalid(f"must be {expected}; got {describe(s)}", _unquote_hint(s), s)
    digits = s.text.lstrip("+-")
    if len(digits) > len(str(MAX_INT)):
        # Out of any range, and too long for int() (Python refuses ~4300 digits and more).
        raise Invalid(f"must be {expected}; got {shorten(s.text)}", f"integers in a spec are at most {MAX_INT:,}", s)
    value = int(s.text)
    if (minimum is not None and value < minimum) or value > maximum:
        raise Invalid(f"must be {expected}; got {value}", None, s)
    return value


def _int_range(minimum: int | None, maximum: int) -> str:
    if minimum is None:
        return "an integer"
    if maximum == MAX_INT:
        return "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    return f"an integer from {minimum} to {maximum}"


def read_float(
    node: YNode | None,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    min_open: bool = False,
    max_open: bool = False,
) -> float:
    """A finite number within the given bounds (open bounds exclude the endpoint)."""
    expected = _float_range(minimum, maximum, min_open, max_open)
    s = _scalar(node, expected)
    kind = s.kind
    if kind == "special_float":
        raise Invalid(f"must be {expected}; got {s.text}", "use a finite number", s)
    if kind == "yaml11_number":
        raise Invalid(
            f"must be {expected}; got {shorten(s.text)}, which YAML 1.1 reads as octal, hex or base 60",
            "write a plain decimal number",
            s,
        )
    if kind not in ("int", "float"):
        raise Invalid(f"must be {expected}; got {describe(s)}", _unquote_hint(s), s)
    value = float(s.text)
    if not math.isfinite(value):
        raise Invalid(f"must be {expected}; got {shorten(s.text)}", "use a finite number", s)
    low_bad = minimum is not None and (value < minimum or (min_open and value == minimum))
    high_bad = maximum is not None and (value > maximum or (max_open and value == maximum))
    if low_bad or high_bad:
        raise Invalid(f"must be {expected}; got {shorten(s.text)}", None, s)
    return value


def _float_range(minimum: float | None, maximum: float | None, min_open: bool, max_open: bool) -> str:
    if minimum is None and maximum is None:
        return "a number"
    if maximum is None:
        return f"a number {'>' if min_open else '>='} {minimum:g}"
    if minimum is None:
        return f"a number {'<' if max_open else '<='} {maximum:g}"
    left, right = "(" if min_open else "[", ")" if max_open else "]"
    return f"a number in {left}{minimum:g}, {maximum:g}{right}"


def _unquote_hint(s: YScalar) -> str | None:
    return None if s.plain else "remove the quotes"


def read_bool(node: YNode | None) -> bool:
    """``true`` or ``false``; YAML 1.1's ``yes``/``no``/``on``/``off`` are refused."""
    s = _scalar(node, "true or false")
    if s.kind == "bool":
        return s.text.lower() == "true"
    if s.kind == "yaml11_bool":
        raise _bool_trap(s, "true or false")
    raise Invalid(f"must be true or false; got {describe(s)}", "write true or false", s)


def read_str(node: YNode | None, expected: str = "a string") -> str:
    """A string. A plain scalar that YAML would read as a number, boolean or null must be quoted."""
    s = _scalar(node, expected)
    kind = s.kind
    if kind == "yaml11_bool":
        raise _bool_trap(s, expected)
    if kind != "str":
        shown = shorten(s.text)
        raise Invalid(
            f"must be {expected}; got {shown}, which YAML reads as a {_kind_word(kind)}",
            f'quote it ("{shown}") to make it a string',
            s,
        )
    return s.text


def _kind_word(kind: str) -> str:
    return {
        "int": "number",
        "float": "number",
        "special_float": "number",
        "yaml11_number": "number",
        "bool": "boolean",
        "null": "null",
    }.get(kind, kind)


def read_choice(node: YNode | None, options: Sequence[str], what: str, hint: str | None = None) -> str:
    """One of ``options`` (an unknown word gets a did-you-mean)."""
    expected = f"one of {', '.join(options)}"
    s = _scalar(node, expected, hint)
    if s.kind == "yaml11_bool":
        raise _bool_trap(s, expected)
    if s.text not in options:
        best = suggest(s.text, options)
        message = f"unknown {what} {shorten(s.text)!r}" + (
            f"; did you mean {best!r}?" if best else f"; expected one of {', '.join(options)}"
        )
        raise Invalid(message, hint or (f"{plural(what)}: {', '.join(options)}" if best else None), s)
    return s.text


def choice_reader(options: Sequence[str], what: str, code: str | None = None) -> Reader:
    """A reader of one of ``options`` (see :func:`read_choice`) whose problems carry ``code``."""

    def read(node: YNode) -> str:
        try:
            return read_choice(node, options, what)
        except Invalid as exc:
            exc.code = exc.code or code
            raise

    return read


def read_identifier(node: YNode | None, model: bool = False) -> str:
    """A plain name: letters, digits and ``_`` (and ``-`` for a model name), starting with a letter or ``_``."""
    pattern = MODEL_NAME_PATTERN if model else IDENTIFIER_PATTERN
    allowed = "letters, digits, '_' and '-'" if model else "letters, digits and '_'"
    expected = f"a plain name ({allowed}; starting with a letter or '_'; at most 64 characters)"
    text = read_str(node, expected)
    if not pattern.match(text):
        cleaned = re.sub(r"[^A-Za-z0-9_-]" if model else r"[^A-Za-z0-9_]", "_", text).strip("_") or "model"
        if not re.match(r"^[A-Za-z_]", cleaned):
            cleaned = "_" + cleaned
        raise Invalid(f"must be {expected}; got {shorten(text)!r}", f"use a name such as {cleaned[:64]!r}", node)
    return text


def read_pair(node: YNode | None, key: str, example: int = 3) -> tuple[int, int]:
    """A positive int ``n`` (meaning ``(n, n)``) or a list ``[a, b]`` of positive ints, for field ``key``."""
    letter = {"kernel": "k", "strides": "s", "size": "p"}.get(key, "")
    expected = f"a positive int or [{letter}h, {letter}w]"
    hint = f"use {key}: {example} or {key}: [{example}, {example}]"
    if isinstance(node, YSeq):
        if len(node.items) == 2:
            try:
                values = tuple(read_int(item, 1) for item in node.items)
                return values[0], values[1]
            except Invalid:
                pass
        raise Invalid(f"must be {expected}; got {describe(node)}", hint, node)
    try:
        n = read_int(node, 1)
    except Invalid as exc:
        raise Invalid(f"must be {expected}; got {describe(node)}", hint, node) from exc
    return n, n


def read_list(node: YNode | None, expected: str) -> list[YNode]:
    """The items of a sequence."""
    if isinstance(node, YSeq):
        return node.items
    raise Invalid(f"must be {expected}; got {describe(node)}", None, node)


def read_shape(node: YNode | None, allow_infer: bool) -> tuple[int, ...]:
    """A non-empty list of positive ints; with ``allow_infer`` one entry may be ``-1``."""
    expected = "a list of positive ints" + (" (one may be -1)" if allow_infer else "")
    example = "[7, 7, 64] or [-1, 4]" if allow_infer else "[28, 28, 1]"
    if not isinstance(node, YSeq) or not node.items:
        raise Invalid(f"must be {expected}; got {describe(node)}", f"write e.g. {example}", node)
    values: list[int] = []
    for item in node.items:
        try:
            values.append(read_int(item, -1 if allow_infer else 1))
        except Invalid:
            raise Invalid(f"must be {expected}; got {describe(node)}", f"write e.g. {example}", node) from None
    if 0 in values:
        raise Invalid(f"must be {expected}; got {describe(node)} (a zero-length axis)", f"write e.g. {example}", node)
    if values.count(-1) > 1:
        raise Invalid(
            f"may infer at most one axis with -1; got {describe(node)}",
            "give every axis but one explicitly",
            node,
            code="E0303",
        )
    return tuple(values)


def single_key(node: YMap) -> tuple[YScalar, YNode] | None:
    """The only ``(key, value)`` of a one-key mapping, or None."""
    if len(node.items) != 1:
        return None
    return next(iter(node.items.values()))


@dataclass(frozen=True)
class Field:
    """One key of a section: how to read its value, whether it is required, its default, what it means
    (``doc``: the hover text of the JSON Schema) and the language version that introduced it (``since``;
    None: the version of the op or section it belongs to). A ``named_mapping`` value may be written as a
    one-key mapping ``{name: {args}}`` (an activation, an initialiser)."""

    read: Reader
    required: bool = False
    default: Any = None
    doc: str = ""
    since: str | None = None
    named_mapping: bool = False
