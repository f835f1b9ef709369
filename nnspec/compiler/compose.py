"""Spec composition: ``extends: base.yaml`` and ``--set key=value`` overrides, on positioned nodes.

``extends`` names a base spec relative to the extending file; the base is loaded with the same safe
loader. The top-level sections ``input``, ``train`` and ``data`` merge key by key (the extending file
wins); every other value, ``layers`` and ``train.optimizer`` included, is replaced as a whole. Chains
are allowed up to :data:`MAX_EXTENDS` files; a cycle is an error. ``extends`` given as an override
(``--set extends=base.yaml``) takes the place of the file's own ``extends`` (:func:`take_extends`) and is
resolved the same way, a relative path from the current directory; a missing base is the same ``E0110`` error.

Overrides address the mapping by dotted paths (``train.epochs``, ``layers.0.dense.units`` or
``layers[0].dense.units``); values given as text are read as YAML (``3``, ``1e-3``, ``[28, 28, 1]``,
``sgd``), other Python values (ints, floats, bools, lists, dicts) are taken as they are. Keys
that do not exist yet are created, so a misspelt key is reported by the schema like one in the file.
An override that cannot be used is an ``E0111`` diagnostic named after it (``--set key=value``, cut when
long): no ``=``, a path that is not dotted, longer than :data:`MAX_PATH_CHARS` or deeper than the
loader's ``MAX_DEPTH``, text that is not valid YAML or not valid UTF-8, a Python value nested too deep
(or holding itself), an integer beyond :data:`MAX_OVERRIDE_INT`.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, NoReturn, Sequence

from ..errors import SpecError
from .loader import MAX_DEPTH, MAX_NODES, YMap, YNode, YScalar, YSeq, parse, read_text
from .report import Report
from .values import MAX_INT, Invalid, shorten

MAX_EXTENDS = 8
MERGED_SECTIONS: tuple[str, ...] = ("input", "train", "data")

_SEGMENT = re.compile(r"([^.\[\]]+)|\[([0-9]+)\]")
_PATH = re.compile(r"^[^.\[\]=\s]+(\.[^.\[\]=\s]+|\[[0-9]+\])*$")
_INDEX = re.compile(r"^[0-9]{1,9}$")
#: Largest magnitude of a Python integer given as an override (beyond it, the value is refused as such).
MAX_OVERRIDE_INT = 2**63
#: Longest dotted path of an override.
MAX_PATH_CHARS = 256
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def apply_extends(
    root: YMap, base_dir: str, report: Report, chain: tuple[str, ...] = (), relative_to: str = "the extending file"
) -> YMap:
    """Resolve ``extends`` in ``root`` (recursively); returns the merged mapping without ``extends``.

    A base that cannot be used (missing, unreadable, invalid YAML, a cycle) stops the check: the
    :class:`SpecError` raised lists what was found so far, so that the keys the base would have
    provided are not reported as missing. ``relative_to`` says in a hint what ``base_dir`` is.
    """
    entry = root.items.get("extends")
    if entry is None:
        return root
    _, value = entry
    rest = YMap({k: v for k, v in root.items.items() if k != "extends"}, root.file, root.line, root.column)
    if not isinstance(value, YScalar) or (value.kind != "str" and value.plain):
        _stop(report, "extends must be the path of a base spec (a string)", value, "write extends: base.yaml")
    shown = shorten(value.text)
    if "\0" in value.text:
        _stop(
            report,
            f"extends: the path {shown!r} contains a NUL byte",
            value,
            "write the path of a base spec without control characters",
        )
    if not value.text.strip():
        _stop(report, "extends: the path is empty", value, "write extends: base.yaml")
    path = os.path.normpath(os.path.join(base_dir, value.text))
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError) as exc:
        _stop(report, f"extends: cannot resolve {shown!r}: {getattr(exc, 'strerror', None) or exc}", value)
    if real in chain:
        _stop(
            report,
            f"extends forms a cycle: {shown!r} is already being loaded",
            value,
            "remove the extends line from one of the files",
        )
    if len(chain) >= MAX_EXTENDS:
        _stop(report, f"extends chain is longer than {MAX_EXTENDS} files", value, "flatten the chain")
    if not os.path.lexists(path):
        _stop(
            report,
            f"extends: base spec {shown!r} not found (looked for {shorten(os.path.abspath(path), 200)})",
            value,
            f"paths in extends are relative to {relative_to}",
        )
    try:
        base = parse(read_text(path), path)
    except SpecError as exc:
        report.diagnostics.extend(exc.diagnostics)
        report.raise_if_any()
    if not isinstance(base, YMap):
        _stop(report, f"extends: base spec {value.text!r} is not a mapping of sections", value)
    base = apply_extends(base, os.path.dirname(path), report, chain + (real,))
    return merge(base, rest)


def _override_key(item: Any) -> str | None:
    """The dotted path an override sets (``key`` of ``key=value``), or None when it has none."""
    if isinstance(item, str) and "=" in item:
        return item.split("=", 1)[0].strip()
    return None


def take_extends(
    overrides: Mapping[str, Any] | Sequence[str] | None, report: Report
) -> tuple[YNode | None, Mapping[str, Any] | Sequence[str] | None]:
    """Split an ``extends`` override from the others: ``(its value node or None, the other overrides)``.

    The value node is labelled by its override (``--set extends=base.yaml``) for diagnostics; the last of several
    wins. A path below ``extends`` (``extends.x``) is reported as ``E0111``: ``extends`` holds one path.
    """
    if not overrides:
        return None, overrides
    if isinstance(overrides, Mapping):
        keys = {k: (k.strip() if isinstance(k, str) else k) for k in overrides}
        chosen: Any = {k: v for k, v in overrides.items() if keys[k] == "extends"}
        rest: Any = {k: v for k, v in overrides.items() if keys[k] != "extends"}
        below = [k for k in rest if isinstance(keys[k], str) and _below_extends(keys[k])]
        rest = {k: v for k, v in rest.items() if k not in below}
        chosen = dict(list(chosen.items())[-1:])
    else:
        items = [overrides] if isinstance(overrides, str) else list(overrides)
        chosen = [i for i in items if _override_key(i) == "extends"][-1:]
        below = [i for i in items if _below_extends(_override_key(i))]
        rest = [i for i in items if _override_key(i) != "extends" and i not in below]
    for item in below:
        label = _label(item if isinstance(item, str) else f"{item}=...")
        report.diagnostics.append(
            _plain(label, "E0111", "extends holds the path of one base spec; it has no keys below it", _EXTENDS_HINT)
        )
    found = normalize_overrides(chosen, report) if chosen else []
    return (found[-1][2] if found else None), rest


_EXTENDS_HINT = "write --set extends=base.yaml (a path from the current directory)"


def _below_extends(key: str | None) -> bool:
    return key is not None and key.startswith(("extends.", "extends["))


def with_extends(root: YMap, value: YNode) -> YMap:
    """``root`` with its ``extends`` set to ``value`` (an override's node), replacing the file's own."""
    key = YScalar("extends", True, value.file, None, None)
    items = {k: v for k, v in root.items.items() if k != "extends"}
    return YMap({"extends": (key, value), **items}, root.file, root.line, root.column)


def _stop(report: Report, message: str, node: YNode, hint: str | None = None) -> NoReturn:
    report.add("E0110", message, node, hint)
    report.raise_if_any()
    raise AssertionError("unreachable")


def merge(base: YMap, child: YMap) -> YMap:
    """``child`` over ``base``: the sections in :data:`MERGED_SECTIONS` merge key by key, the rest replace."""
    items = dict(base.items)
    for key, (key_node, value) in child.items.items():
        below = items.get(key)
        if key in MERGED_SECTIONS and below is not None and isinstance(below[1], YMap) and isinstance(value, YMap):
            value = YMap({**below[1].items, **value.items}, value.file, value.line, value.column)
        items[key] = (key_node, value)
    return YMap(items, child.file, child.line, child.column)


def normalize_overrides(
    overrides: Mapping[str, Any] | Sequence[str] | None, report: Report
) -> list[tuple[str, str, YNode]]:
    """``[(label, dotted path, value node)]`` from a dict or from ``key=value`` strings.

    An override that cannot be used (no ``=``, a value that is not valid YAML, a Python value too deep,
    too big or of a kind a spec cannot hold) is reported as ``E0111`` and left out.
    """
    result: list[tuple[str, str, YNode]] = []
    if not overrides:
        return result
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            key_text = key if isinstance(key, str) else _show(key)
            label = _label(f"{key_text}={_show(value)}")
            try:
                node = _parse_value(value, label, report) if isinstance(value, str) else from_python(value, label)
            except Invalid as exc:
                report.diagnostics.append(_plain(label, "E0111", f"override value {exc.message}", exc.hint))
                continue
            if node is not None:
                result.append((label, key_text, node))
        return result
    for item in [overrides] if isinstance(overrides, str) else overrides:
        label = _label(item if isinstance(item, str) else _show(item))
        if not isinstance(item, str) or "=" not in item:
            report.diagnostics.append(
                _plain(
                    label,
                    "E0111",
                    f"override {shorten(item if isinstance(item, str) else _show(item))!r} must look like key=value",
                    "write e.g. --set train.epochs=3",
                )
            )
            continue
        key, text = item.split("=", 1)
        node = _parse_value(text, label, report)
        if node is not None:
            result.append((label, key.strip(), node))
    return result


def _label(setting: str) -> str:
    """How diagnostics name an override: ``--set key=value``, cut when it is long."""
    return f"--set {shorten(setting, 80)}"


def _parse_value(text: str, label: str, report: Report) -> YNode | None:
    """An override's value text read as YAML (safely, with the file's limits); None when it is not valid."""
    try:
        value = parse(text, label)
    except SpecError as exc:
        first = exc.diagnostics[0]
        report.diagnostics.append(
            _plain(label, "E0111", f"override value {shorten(text)!r} is not valid YAML: {first.message}", first.hint)
        )
        return None
    return _strip_positions(value, label) if value is not None else YScalar("", True, label, None, None)


def _show(value: Any) -> str:
    """A Python value as text for a label; never fails, never huge."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) and abs(value) >= MAX_OVERRIDE_INT:
        return f"<an integer of {value.bit_length():,} bits>"
    try:
        text = str(value)
    except Exception:  # a value whose __str__ fails still gets a label
        text = f"<{type(value).__name__}>"
    return shorten(text, 80)


def _plain(label: str, code: str, message: str, hint: str | None = None) -> Any:
    from ..errors import Diagnostic

    return Diagnostic(code, message, label, hint=hint)


def from_python(value: Any, label: str) -> YNode:
    """A node for a Python value given as an override (a string here counts as a quoted YAML string).

    Raises :class:`~nnspec.compiler.values.Invalid` for an integer beyond 2**63 (no setting is that
    big, and Python cannot print one of thousands of digits), text that is not valid Unicode, nesting
    deeper than a spec allows (a list that holds itself included) or more values than a spec file may have.
    """
    budget = [0]
    return _from_python(value, label, 0, budget)


def _from_python(value: Any, label: str, depth: int, budget: list[int]) -> YNode:
    budget[0] += 1
    if budget[0] > MAX_NODES:
        raise Invalid(f"holds more than {MAX_NODES:,} values", "a setting is a number, a word or a short list")
    if depth > MAX_DEPTH:
        raise Invalid(f"is nested more than {MAX_DEPTH} levels deep", "a setting is a number, a word or a short list")
    if isinstance(value, bool):
        return YScalar("true" if value else "false", True, label, None, None)
    if value is None:
        return YScalar("null", True, label, None, None)
    if isinstance(value, int):
        if abs(value) >= MAX_OVERRIDE_INT:
            raise Invalid(f"{_show(value)} is too large", f"integers in a spec are at most {MAX_INT:,}")
        return YScalar(str(int(value)), True, label, None, None)
    if isinstance(value, float):
        return YScalar(repr(float(value)), True, label, None, None)
    if isinstance(value, Mapping):
        items: dict[str, tuple[YScalar, YNode]] = {}
        for k, v in value.items():
            key = k if isinstance(k, str) else _show(k)
            items[_text(key)] = (
                YScalar(_text(key), True, label, None, None),
                _from_python(v, label, depth + 1, budget),
            )
        return YMap(items, label, None, None)
    if isinstance(value, (list, tuple)):
        return YSeq([_from_python(v, label, depth + 1, budget) for v in value], label, None, None)
    return YScalar(_text(value if isinstance(value, str) else _show(value)), False, label, None, None)


def _text(text: str) -> str:
    """``text`` if it is valid Unicode (no lone surrogates, no NUL byte); raises Invalid otherwise."""
    if _BAD_TEXT.search(text):
        raise Invalid(
            f"{shorten(ascii(text))} holds a NUL byte or a lone surrogate (an undecodable byte)",
            "give valid UTF-8 text",
        )
    return text


def _strip_positions(node: YNode, label: str) -> YNode:
    if isinstance(node, YScalar):
        return YScalar(node.text, node.plain, label, None, None)
    if isinstance(node, YSeq):
        return YSeq([_strip_positions(i, label) for i in node.items], label, None, None)
    items = {
        k: (YScalar(kn.text, kn.plain, label, None, None), _strip_positions(v, label))
        for k, (kn, v) in node.items.items()
    }
    return YMap(items, label, None, None)


def apply_overrides(root: YMap, overrides: Mapping[str, Any] | Sequence[str] | None, report: Report) -> YMap:
    """Set each override's value at its dotted path in ``root`` (in place); bad paths are reported."""
    for label, path, value in normalize_overrides(overrides, report):
        if len(path) > MAX_PATH_CHARS:
            report.diagnostics.append(
                _plain(
                    label,
                    "E0111",
                    f"override path {shorten(path)!r} is longer than {MAX_PATH_CHARS} characters",
                    "write e.g. train.epochs or layers.0.dense.units",
                )
            )
            continue
        if not _PATH.match(path):
            report.diagnostics.append(
                _plain(
                    label,
                    "E0111",
                    f"override path {shorten(path)!r} is not a dotted path",
                    "write e.g. train.epochs or layers.0.dense.units",
                )
            )
            continue
        segments: list[Any] = [m.group(1) if m.group(1) is not None else m.group(2) for m in _SEGMENT.finditer(path)]
        segments = [int(s) if _INDEX.match(s) else s for s in segments]
        if len(segments) > MAX_DEPTH:
            report.diagnostics.append(
                _plain(
                    label,
                    "E0111",
                    f"override path {shorten(path)!r} is more than {MAX_DEPTH} levels deep",
                    "a setting is a few keys deep, e.g. train.optimizer.adam.learning_rate",
                )
            )
            continue
        _set(root, segments, value, label, shorten(path), report)
    return root


def _set(root: YMap, segments: list[Any], value: YNode, label: str, path: str, report: Report) -> None:
    node: YNode = root
    for depth, segment in enumerate(segments):
        last = depth == len(segments) - 1
        where = shorten(".".join(str(s) for s in segments[:depth])) or "the spec"
        if isinstance(node, YSeq):
            if not isinstance(segment, int) or not 0 <= segment < len(node.items):
                report.diagnostics.append(
                    _plain(
                        label,
                        "E0111",
                        f"override path {path!r}: {where} is a list of {len(node.items)}; {shorten(str(segment))!r} "
                        "is not an index in it",
                        f"use an index from 0 to {len(node.items) - 1}",
                    )
                )
                return
            if last:
                node.items[segment] = value
                return
            node = node.items[segment]
            continue
        if not isinstance(node, YMap):
            report.diagnostics.append(
                _plain(
                    label,
                    "E0111",
                    f"override path {path!r}: {where} is a single value, not a mapping",
                    "set the value itself instead",
                )
            )
            return
        key = str(segment)
        entry = node.items.get(key)
        if last:
            key_node = entry[0] if entry else YScalar(key, True, label, None, None)
            node.items[key] = (key_node, value)
            return
        if entry is None or (isinstance(entry[1], YScalar) and entry[1].kind == "null"):
            child = YMap({}, label, None, None)
            node.items[key] = (entry[0] if entry else YScalar(key, True, label, None, None), child)
            node = child
        else:
            node = entry[1]
