"""Spec composition: ``extends: base.yaml`` and ``--set key=value`` overrides, on positioned nodes.

``extends`` names a base spec relative to the extending file; the base is loaded with the same safe
loader. The top-level sections ``input``, ``train`` and ``data`` merge key by key (the extending file
wins); every other value, ``layers`` and ``train.optimizer`` included, is replaced as a whole. Chains
are allowed up to :data:`MAX_EXTENDS` files; a cycle is an error.

Overrides address the mapping by dotted paths (``train.epochs``, ``layers.0.dense.units`` or
``layers[0].dense.units``); values given as text are read as YAML (``3``, ``1e-3``, ``[28, 28, 1]``,
``sgd``), other Python values (ints, floats, bools, lists, dicts) are taken as they are. Keys
that do not exist yet are created, so a misspelt key is reported by the schema like one in the file.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, NoReturn, Sequence

from ..errors import SpecError
from .loader import YMap, YNode, YScalar, YSeq, parse, read_text
from .report import Report

MAX_EXTENDS = 8
MERGED_SECTIONS: tuple[str, ...] = ("input", "train", "data")

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_PATH = re.compile(r"^[^.\[\]=\s]+(\.[^.\[\]=\s]+|\[\d+\])*$")


def apply_extends(root: YMap, base_dir: str, report: Report, chain: tuple[str, ...] = ()) -> YMap:
    """Resolve ``extends`` in ``root`` (recursively); returns the merged mapping without ``extends``.

    A base that cannot be used (missing, unreadable, invalid YAML, a cycle) stops the check: the
    :class:`SpecError` raised lists what was found so far, so that the keys the base would have
    provided are not reported as missing.
    """
    entry = root.items.get("extends")
    if entry is None:
        return root
    _, value = entry
    rest = YMap({k: v for k, v in root.items.items() if k != "extends"}, root.file, root.line, root.column)
    if not isinstance(value, YScalar) or (value.kind != "str" and value.plain):
        _stop(report, "extends must be the path of a base spec (a string)", value, "write extends: base.yaml")
    path = os.path.normpath(os.path.join(base_dir, value.text))
    real = os.path.realpath(path)
    if real in chain:
        _stop(report, f"extends forms a cycle: {value.text!r} is already being loaded", value, "remove the extends line from one of the files")
    if len(chain) >= MAX_EXTENDS:
        _stop(report, f"extends chain is longer than {MAX_EXTENDS} files", value, "flatten the chain")
    if not os.path.isfile(path):
        _stop(report, f"extends: base spec {value.text!r} not found (looked for {path})", value, "paths in extends are relative to the extending file")
    try:
        base = parse(read_text(path), path)
    except SpecError as exc:
        report.diagnostics.extend(exc.diagnostics)
        report.raise_if_any()
    if not isinstance(base, YMap):
        _stop(report, f"extends: base spec {value.text!r} is not a mapping of sections", value)
    base = apply_extends(base, os.path.dirname(path), report, chain + (real,))
    return merge(base, rest)


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


def normalize_overrides(overrides: Mapping[str, Any] | Sequence[str] | None, report: Report) -> list[tuple[str, str, YNode]]:
    """``[(label, dotted path, value node)]`` from a dict or from ``key=value`` strings."""
    result: list[tuple[str, str, YNode]] = []
    if not overrides:
        return result
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            label = f"--set {key}={_show(value)}"
            node = _parse_value(value, label, report) if isinstance(value, str) else from_python(value, label)
            if node is not None:
                result.append((label, str(key), node))
        return result
    for item in overrides:
        label = f"--set {item}"
        if not isinstance(item, str) or "=" not in item:
            report.diagnostics.append(_plain(label, "E0111", f"override {item!r} must look like key=value", "write e.g. --set train.epochs=3"))
            continue
        key, text = item.split("=", 1)
        node = _parse_value(text, label, report)
        if node is not None:
            result.append((label, key.strip(), node))
    return result


def _parse_value(text: str, label: str, report: Report) -> YNode | None:
    """An override's value text read as YAML (safely, with the file's limits); None when it is not valid."""
    try:
        value = parse(text, label)
    except SpecError as exc:
        first = exc.diagnostics[0]
        report.diagnostics.append(_plain(label, "E0111", f"override value {text!r} is not valid YAML: {first.message}", first.hint))
        return None
    return _strip_positions(value, label) if value is not None else YScalar("", True, label, None, None)


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _plain(label: str, code: str, message: str, hint: str | None = None) -> Any:
    from ..errors import Diagnostic

    return Diagnostic(code, message, label, hint=hint)


def from_python(value: Any, label: str) -> YNode:
    """A node for a Python value given as an override (a string here counts as a quoted YAML string)."""
    if isinstance(value, bool):
        return YScalar("true" if value else "false", True, label, None, None)
    if value is None:
        return YScalar("null", True, label, None, None)
    if isinstance(value, (int, float)):
        return YScalar(repr(value), True, label, None, None)
    if isinstance(value, Mapping):
        return YMap({str(k): (YScalar(str(k), True, label, None, None), from_python(v, label)) for k, v in value.items()}, label, None, None)
    if isinstance(value, (list, tuple)):
        return YSeq([from_python(v, label) for v in value], label, None, None)
    return YScalar(str(value), False, label, None, None)


def _strip_positions(node: YNode, label: str) -> YNode:
    if isinstance(node, YScalar):
        return YScalar(node.text, node.plain, label, None, None)
    if isinstance(node, YSeq):
        return YSeq([_strip_positions(i, label) for i in node.items], label, None, None)
    return YMap({k: (_strip_positions(kn, label), _strip_positions(v, label)) for k, (kn, v) in node.items.items()}, label, None, None)  # type: ignore[misc]


def apply_overrides(root: YMap, overrides: Mapping[str, Any] | Sequence[str] | None, report: Report) -> YMap:
    """Set each override's value at its dotted path in ``root`` (in place); bad paths are reported."""
    for label, path, value in normalize_overrides(overrides, report):
        segments = [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _SEGMENT.finditer(path)]
        segments = [int(s) if isinstance(s, str) and s.isdigit() else s for s in segments]
        if not _PATH.match(path):
            report.diagnostics.append(_plain(label, "E0111", f"override path {path!r} is not a dotted path", "write e.g. train.epochs or layers.0.dense.units"))
            continue
        _set(root, segments, value, label, path, report)
    return root


def _set(root: YMap, segments: list[Any], value: YNode, label: str, path: str, report: Report) -> None:
    node: YNode = root
    for depth, segment in enumerate(segments):
        last = depth == len(segments) - 1
        where = ".".join(str(s) for s in segments[:depth]) or "the spec"
        if isinstance(node, YSeq):
            if not isinstance(segment, int) or not 0 <= segment < len(node.items):
                report.diagnostics.append(_plain(label, "E0111", f"override path {path!r}: {where} is a list of {len(node.items)}; {segment!r} is not an index in it", f"use an index from 0 to {len(node.items) - 1}"))
                return
            if last:
                node.items[segment] = value
                return
            node = node.items[segment]
            continue
        if not isinstance(node, YMap):
            report.diagnostics.append(_plain(label, "E0111", f"override path {path!r}: {where} is a single value, not a mapping", "set the value itself instead"))
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
