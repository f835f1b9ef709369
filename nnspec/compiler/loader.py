"""Safe YAML loading into nodes that remember where they came from.

The loader never constructs Python objects from YAML: it reads the parser's event stream and builds
three plain node types (:class:`YScalar`, :class:`YMap`, :class:`YSeq`), each with its file, line and
column (1-based). Scalars keep their source text and whether they were written plain (unquoted), so the
schema decides what a value means where it is used; this is how YAML 1.1 traps (``1e-3`` read as a
string, ``no`` read as false, ``0777`` read as octal) become a correct value or a clear error.

Refused with a diagnostic (``E01xx``), before anything walks the tree:

* files over :data:`MAX_FILE_BYTES`, unreadable files, anything but a regular file (a FIFO, a device:
  never opened for a blocking read), text that is not UTF-8 (at the line and column of the first invalid
  byte);
* YAML syntax errors; more than one document; an empty document;
* any tag (``!!python/object``, ``!foo``, even ``!!str``);
* duplicate keys; keys that are not plain scalars;
* nesting deeper than :data:`MAX_DEPTH`;
* aliases that would expand the document beyond :data:`MAX_NODES` nodes (a "billion laughs" file
  stops after a few thousand events).
"""

from __future__ import annotations

import os
import re
import stat as stat_module
from dataclasses import dataclass
from typing import Any, Iterator, Union

import yaml

from ..errors import Diagnostic, SpecError

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 20_000
#: Longest integer text converted to an ``int``; a longer one is read as a float (an infinity).
MAX_INT_DIGITS = 4000

_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")

_NULL = re.compile(r"^(~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_SPECIAL_FLOAT = re.compile(r"^([-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$")
#: Plain words that YAML 1.1 reads as booleans but YAML 1.2 as strings.
_YAML11_BOOL = re.compile(r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")
#: Plain numbers that YAML 1.1 reads unlike a reader expects: octal, hex, binary, underscores, base 60.
_YAML11_NUMBER = re.compile(
    r"^[-+]?(0[0-9_]+|0[oO][0-7_]+|0[xX][0-9a-fA-F_]+|0b[01_]+"
    r"|[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?"
    r"|[0-9][0-9_]*_[0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?)$"
)


@dataclass
class YScalar:
    """A scalar as written: its text, whether it was plain (unquoted), and its position."""

    text: str
    plain: bool
    file: str | None
    line: int | None
    column: int | None

    @property
    def kind(self) -> str:
        """What the text means as YAML 1.2 core schema would read it, with YAML 1.1 traps marked.

        One of ``null``, ``bool``, ``int``, ``float``, ``special_float`` (``.inf``/``.nan``),
        ``yaml11_bool`` (``yes``/``no``/``on``/``off``/``y``/``n``), ``yaml11_number`` (``0777``, ``0x1f``,
        ``1_000``, ``1:30``) or ``str``. A quoted or block scalar is always ``str``.
        """
        if not self.plain:
            return "str"
        t = self.text
        for kind, pattern in (
            ("null", _NULL),
            ("bool", _BOOL),
            ("yaml11_bool", _YAML11_BOOL),
            ("yaml11_number", _YAML11_NUMBER),
            ("int", _INT),
            ("float", _FLOAT),
            ("special_float", _SPECIAL_FLOAT),
        ):
            if pattern.match(t):
                return kind
        return "str"

    @property
    def value(self) -> Any:
        """The natural value (YAML 1.2 core schema); YAML 1.1 traps stay strings here."""
        kind = self.kind
        if kind == "null":
            return None
        if kind == "bool":
            return self.text.lower() == "true"
        if kind == "int":
            # Python refuses to convert more than ~4300 digits; such a number is only ever out of range.
            return int(self.text) if len(self.text) <= MAX_INT_DIGITS else float(self.text)
        if kind == "float":
            return float(self.text)
        if kind == "special_float":
            lowered = self.text.lower()
            return float("nan") if "nan" in lowered else float(lowered.replace(".", ""))
        return self.text


@dataclass
class YMap:
    """A mapping; ``items`` maps each key's text to ``(key node, value node)`` in source order."""

    items: dict[str, tuple[YScalar, "YNode"]]
    file: str | None
    line: int | None
    column: int | None

    def get(self, key: str) -> "YNode | None":
        """The value node of ``key``, or None."""
        entry = self.items.get(key)
        return entry[1] if entry else None


@dataclass
class YSeq:
    """A sequence of nodes."""

    items: list["YNode"]
    file: str | None
    line: int | None
    column: int | None


YNode = Union[YScalar, YMap, YSeq]


@dataclass
class _Frame:
    node: YMap | YSeq
    anchor: str | None
    pending_key: YScalar | None = None
    size: int = 1


class _Abort(Exception):
    """Loading cannot go on; the diagnostic says why."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def to_python(node: YNode | None) -> Any:
    """Plain Python data (dicts, lists, natural scalar values) for a node tree."""
    if node is None:
        return None
    if isinstance(node, YScalar):
        return node.value
    if isinstance(node, YSeq):
        return [to_python(item) for item in node.items]
    return {key: to_python(value) for key, (_, value) in node.items.items()}


def read_text(path: str) -> str:
    """Read a spec file as text, refusing (with a :class:`SpecError`) what is missing, too big or not UTF-8.

    Only a regular file is read: a directory, a FIFO, a socket or a device is refused from its
    ``os.stat`` without opening it, and the file is opened non-blocking and checked again, so that
    nothing can make the read wait. An invalid UTF-8 byte is reported at its line and column.
    """
    shown = str(path)
    if "\0" in shown:
        raise _unreadable(shown, "the path contains a NUL byte", "check the path")
    try:
        _require_regular(shown, os.stat(shown).st_mode)
        fd = os.open(shown, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with open(fd, "rb") as handle:
            stat = os.fstat(handle.fileno())
            _require_regular(shown, stat.st_mode)
            if stat.st_size > MAX_FILE_BYTES:
                raise _too_big(shown, stat.st_size)
            data = handle.read(MAX_FILE_BYTES + 1)
    except SpecError:
        raise
    except FileNotFoundError:
        raise _unreadable(shown, "no such file", "check the path") from None
    except IsADirectoryError:
        raise _unreadable(shown, "it is a directory", "give the path of a .yaml file") from None
    except (OSError, ValueError, OverflowError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise _unreadable(shown, reason) from None
    if len(data) > MAX_FILE_BYTES:
        raise _too_big(shown, len(data))
    return decode(data, shown)


def _unreadable(shown: str, reason: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic("E0101", f"cannot read spec {shown!r}: {reason}", printable(shown), hint=hint)])


def printable(text: str) -> str:
    """``text`` with control characters and lone surrogates (undecodable bytes of a file name) as escapes."""
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)


def _require_regular(shown: str, mode: int) -> None:
    if stat_module.S_ISREG(mode):
        return
    if stat_module.S_ISDIR(mode):
        raise _unreadable(shown, "it is a directory", "give the path of a .yaml file")
    kinds = (
        (stat_module.S_ISFIFO, "a FIFO (named pipe)"),
        (stat_module.S_ISSOCK, "a socket"),
        (stat_module.S_ISCHR, "a device"),
        (stat_module.S_ISBLK, "a device"),
    )
    kind = next((name for test, name in kinds if test(mode)), "something else")
    raise _unreadable(
        shown,
        f"it is {kind}, not a regular file",
        "give the path of a .yaml file; to check text from a pipe, save it to a file first",
    )


def decode(data: bytes, filename: str | None = None) -> str:
    """The UTF-8 text of a spec file (a leading BOM dropped); an invalid byte is a diagnostic at its line and column."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # utf-8-sig counts offsets after the BOM
        before = data[start : start + exc.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        message = (
            f"spec is not UTF-8 text: invalid byte 0x{data[start + exc.start]:02x} at line {line}, column {column} "
            f"(offset {start + exc.start})"
        )
        raise SpecError([Diagnostic("E0101", message, filename, line, column, hint="save the file as UTF-8")]) from None


def _too_big(shown: str, size: int) -> SpecError:
    return SpecError(
        [
            Diagnostic(
                "E0102",
                f"spec file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}",
                shown,
                hint="a spec describes a model, not data: keep arrays in a data file",
            )
        ]
    )


def parse(text: str, filename: str | None = None) -> YMap | YSeq | YScalar | None:
    """Parse YAML text into positioned nodes; raises :class:`SpecError` listing what was refused.

    Returns None for an empty document. Aliases are expanded into copies (within :data:`MAX_NODES`).
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise _too_big(filename or "<spec>", len(text))
    bad = _SURROGATE.search(text)
    if bad:
        raise SpecError([_surrogate(text, bad.start(), filename)])
    problems: list[Diagnostic] = []
    try:
        root = _compose(_events(text, filename), filename, problems)
    except _Abort as abort:
        problems.append(abort.diagnostic)
        root = None
    if problems:
        raise SpecError(problems)
    return root


def _surrogate(text: str, index: int, filename: str | None) -> Diagnostic:
    """Where a lone surrogate sits: an undecodable byte of a command-line argument (``surrogateescape``)."""
    code = ord(text[index])
    line = text.count("\n", 0, index) + 1
    column = index - text.rfind("\n", 0, index)
    what = f"invalid byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"lone surrogate U+{code:04X}"
    return Diagnostic(
        "E0101",
        f"text is not valid UTF-8: {what} at line {line}, column {column}",
        filename,
        line,
        column,
        hint="write the value as UTF-8 text",
    )


def _events(text: str, filename: str | None) -> Iterator[Any]:
    parser = _Parser(text)
    try:
        while parser.check_event():
            yield parser.get_event()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if "nesting depth" in problem:
            raise _Abort(
                Diagnostic(
                    "E0106",
                    f"spec is nested more than {MAX_DEPTH} levels deep",
                    filename,
                    *_pos(mark),
                    hint="a spec needs only a few levels; remove the extra nesting",
                )
            ) from None
        context = f" ({exc.context})" if exc.context else ""
        raise _Abort(
            Diagnostic(
                "E0103",
                f"YAML syntax error: {problem}{context}",
                filename,
                *_pos(mark),
                hint="check indentation, colons and brackets on this line and the one before",
            )
        ) from None
    except yaml.YAMLError as exc:
        raise _Abort(Diagnostic("E0103", f"YAML syntax error: {exc}", filename)) from None
    finally:
        parser.dispose()


def _pos(mark: Any) -> tuple[int | None, int | None]:
    if mark is None:
        return None, None
    return mark.line + 1, mark.column + 1


def _compose(events: Iterator[Any], filename: str | None, problems: list[Diagnostic]) -> YNode | None:
    stack: list[_Frame] = []
    anchors: dict[str, tuple[YNode, int]] = {}
    budget = [0]
    root: YNode | None = None
    documents = 0
    for event in events:
        name = type(event).__name__
        line, column = _pos(event.start_mark)
        if name == "DocumentStartEvent":
            documents += 1
            if documents > 1:
                raise _Abort(
                    Diagnostic(
                        "E0108",
                        "a spec holds one YAML document; found a second one",
                        filename,
                        line,
                        column,
                        hint="remove the `---` line and what follows, or split it into its own file",
                    )
                )
            continue
        if name in ("StreamStartEvent", "StreamEndEvent", "DocumentEndEvent"):
            continue
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise _Abort(
                Diagnostic(
                    "E0104",
                    f"YAML tags are not allowed in a spec; found {tag!r}",
                    filename,
                    line,
                    column,
                    hint="remove the tag; write the plain value (quote it to make it a string)",
                )
            )
        if name == "AliasEvent":
            if event.anchor not in anchors:
                raise _Abort(
                    Diagnostic(
                        "E0107",
                        f"alias *{event.anchor} refers to no anchor defined before it",
                        filename,
                        line,
                        column,
                        hint=f"define &{event.anchor} earlier in the file",
                    )
                )
            target, size = anchors[event.anchor]
            _spend(budget, size, filename, line, column)
            node: YNode = _copy(target)
            _attach(stack, node, size, filename, problems)
            if not stack:
                root = node
            continue
        if name == "ScalarEvent":
            _spend(budget, 1, filename, line, column)
            node = YScalar(event.value, event.style in (None, "") and event.implicit[0], filename, line, column)
            if event.anchor:
                anchors[event.anchor] = (node, 1)
            _attach(stack, node, 1, filename, problems)
            if not stack:
                root = node
            continue
        if name in ("MappingStartEvent", "SequenceStartEvent"):
            if len(stack) >= MAX_DEPTH:
                raise _Abort(
                    Diagnostic(
                        "E0106",
                        f"spec is nested more than {MAX_DEPTH} levels deep",
                        filename,
                        line,
                        column,
                        hint="a spec needs only a few levels; remove the extra nesting",
                    )
                )
            _spend(budget, 1, filename, line, column)
            container: YMap | YSeq = (
                YMap({}, filename, line, column) if name == "MappingStartEvent" else YSeq([], filename, line, column)
            )
            stack.append(_Frame(container, event.anchor))
            continue
        if name in ("MappingEndEvent", "SequenceEndEvent"):
            frame = stack.pop()
            if frame.anchor:
                anchors[frame.anchor] = (frame.node, frame.size)
            _attach(stack, frame.node, frame.size, filename, problems)
            if not stack:
                root = frame.node
    return root


def _spend(budget: list[int], size: int, filename: str | None, line: int | None, column: int | None) -> None:
    budget[0] += size
    if budget[0] > MAX_NODES:
        raise _Abort(
            Diagnostic(
                "E0107",
                f"spec expands to more than {MAX_NODES:,} YAML nodes (aliases included)",
                filename,
                line,
                column,
                hint="a spec is small: write it out instead of nesting aliases",
            )
        )


def _attach(stack: list[_Frame], node: YNode, size: int, filename: str | None, problems: list[Diagnostic]) -> None:
    if not stack:
        return
    frame = stack[-1]
    frame.size += size
    parent = frame.node
    if isinstance(parent, YSeq):
        parent.items.append(node)
        return
    if frame.pending_key is None:
        if not isinstance(node, YScalar):
            problems.append(
                Diagnostic(
                    "E0109",
                    "a mapping key must be a plain word, not a list or mapping",
                    filename,
                    node.line,
                    node.column,
                    hint="write `key: value`",
                )
            )
            node = YScalar(f"<complex key at {node.line}:{node.column}>", False, filename, node.line, node.column)
        frame.pending_key = node
        return
    key = frame.pending_key
    frame.pending_key = None
    if key.text in parent.items:
        first = parent.items[key.text][0]
        problems.append(
            Diagnostic(
                "E0105",
                f"duplicate key {key.text!r} (first defined at line {first.line})",
                filename,
                key.line,
                key.column,
                hint="remove one of them; a key may appear once per mapping",
            )
        )
        return
    parent.items[key.text] = (key, node)


def _copy(node: YNode) -> YNode:
    if isinstance(node, YScalar):
        return YScalar(node.text, node.plain, node.file, node.line, node.column)
    if isinstance(node, YSeq):
        return YSeq([_copy(i) for i in node.items], node.file, node.line, node.column)
    return YMap({k: (kn, _copy(v)) for k, (kn, v) in node.items.items()}, node.file, node.line, node.column)
