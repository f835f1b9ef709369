"""What differs between two loaded specs: layers added, removed or changed, and the settings.

Layers are matched in order with :class:`difflib.SequenceMatcher`, in three rounds, each over what the
previous round left unmatched: first layers alike in op, attributes and any name of their own; then
layers of one op and one own name (their attributes changed); then layers of one op (renamed). A name
of the form ``<op>_<n>`` (what the front end gives an unnamed layer) does not count as the layer's own,
so inserting a layer does not make every later layer of its type look renamed. Settings (``input``,
``train``, ``data``, ``name``, ``output``) are compared as the dotted paths ``--set`` takes.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..compiler.ir import INPUT, Activation, Graph, Initializer, Node

#: Marks a setting or attribute that one side does not have.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__bool__": lambda self: False})()

_AUTO_NAME = re.compile(r"^(?P<op>[a-z0-9_]+)_[0-9]+$")
#: Top-level spec keys compared as settings (``layers`` are compared as layers, ``description`` is prose).
SETTING_SECTIONS: tuple[str, ...] = ("name", "input", "output", "train", "data")


@dataclass(frozen=True)
class LayerChange:
    """One layer of either spec: ``status`` is ``same``, ``changed``, ``added`` (only in B) or ``removed`` (only in A).

    ``fields`` lists what differs as ``(key, value in A, value in B)``: attributes, ``name`` (a name of
    the layer's own), ``inputs`` (graph models); shapes and parameter counts are read from the nodes.
    """

    status: str
    a: Node | None
    b: Node | None
    fields: tuple[tuple[str, Any, Any], ...] = ()

    @property
    def label(self) -> str:
        """The layer's name, ``a -> b`` when the two sides name it differently."""
        if self.a is not None and self.b is not None and self.a.name != self.b.name:
            return f"{self.a.name} -> {self.b.name}"
        node = self.b or self.a
        assert node is not None
        return node.name

    @property
    def op(self) -> str:
        """The layer type."""
        node = self.b or self.a
        assert node is not None
        return node.op


@dataclass(frozen=True)
class SettingChange:
    """A setting that differs: its dotted path and the value on each side (:data:`MISSING` when absent)."""

    key: str
    a: Any
    b: Any


@dataclass(frozen=True)
class SpecDiff:
    """Two graphs compared: every layer in matched order, and the settings that differ."""

    a: Graph
    b: Graph
    layers: tuple[LayerChange, ...]
    settings: tuple[SettingChange, ...]

    @property
    def changed(self) -> bool:
        """Whether the specs differ in any layer or setting."""
        return bool(self.settings) or any(c.status != "same" for c in self.layers)

    def count(self, status: str) -> int:
        """How many layers have ``status``."""
        return sum(1 for c in self.layers if c.status == status)

    def totals(self) -> list[tuple[str, Any, Any]]:
        """``(what, A, B)`` for the layer count, parameters, trainable parameters, FLOPs and output shape."""
        a, b = self.a, self.b
        return [
            ("layers", len(a.nodes), len(b.nodes)),
            ("parameters", a.num_params, b.num_params),
            ("trainable", a.num_trainable, b.num_trainable),
            ("flops", a.flops, b.flops),
            ("output_shape", a.output_shape, b.output_shape),
        ]


def own_name(node: Node) -> str | None:
    """The layer's name when it is its own, None when it has the form a default name has (``dense_2``)."""
    match = _AUTO_NAME.match(node.name)
    return None if match and match.group("op") == node.op else node.name


def _attrs_key(attrs: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in attrs.items()))


#: The keys of the three matching rounds, strictest first.
_ROUNDS: tuple[Callable[[Node], Hashable], ...] = (
    lambda n: (n.op, own_name(n), _attrs_key(n.attrs)),
    lambda n: (n.op, own_name(n)),
    lambda n: n.op,
)


def match_layers(a: Sequence[Node], b: Sequence[Node]) -> list[tuple[Node | None, Node | None]]:
    """Pairs ``(layer of A, layer of B)`` in order; None on the side a layer is missing from (see the module
    docstring)."""
    return _align(list(a), list(b), _ROUNDS)


def _align(
    a: list[Node], b: list[Node], rounds: Sequence[Callable[[Node], Hashable]]
) -> list[tuple[Node | None, Node | None]]:
    if not rounds:
        return [(n, None) for n in a] + [(None, n) for n in b]
    if not a or not b:
        return _align(a, b, ())
    key = rounds[0]
    matcher = difflib.SequenceMatcher(None, [key(n) for n in a], [key(n) for n in b], autojunk=False)
    pairs: list[tuple[Node | None, Node | None]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pairs.extend(zip(a[i1:i2], b[j1:j2]))
        else:
            pairs.extend(_align(a[i1:i2], b[j1:j2], rounds[1:]))
    return pairs


def plain_value(value: Any) -> Any:
    """A value as it reads in a spec: tuples as lists, an initialiser as its name (with arguments)."""
    if isinstance(value, Initializer):
        return value.name if not value.args else {value.name: {k: float(v) for k, v in value.args}}
    if isinstance(value, Activation):
        return value.spec_form()
    if isinstance(value, (tuple, list)):
        return [plain_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain_value(v) for k, v in value.items()}
    return value


def _compare(a: Node, b: Node, names: Mapping[str, str], compare_inputs: bool) -> LayerChange:
    fields: list[tuple[str, Any, Any]] = []
    if a.name != b.name and (own_name(a) or own_name(b)):
        fields.append(("name", a.name, b.name))
    for key in sorted(set(a.attrs) | set(b.attrs)):
        va, vb = plain_value(a.attrs.get(key, MISSING)), plain_value(b.attrs.get(key, MISSING))
        if va != vb:
            fields.append((key, va, vb))
    if compare_inputs:
        mapped = [names.get(n, n) for n in a.inputs]
        if mapped != list(b.inputs):
            fields.append(("inputs", list(a.inputs), list(b.inputs)))
    changed = bool(fields) or a.output_shape != b.output_shape or a.num_params != b.num_params
    return LayerChange("changed" if changed else "same", a, b, tuple(fields))


def _wired(graph: Graph) -> Graph:
    """The graph with every node's inputs written out (a chain's are implicit)."""
    return graph.replace(nodes=tuple(n if n.inputs else _with_inputs(n, graph.inputs_of(n)) for n in graph.nodes))


def _with_inputs(node: Node, inputs: tuple[str, ...]) -> Node:
    from dataclasses import replace

    return replace(node, inputs=inputs)


def diff_layers(a: Graph, b: Graph) -> tuple[LayerChange, ...]:
    """Every layer of both graphs, in matched order, with what changed."""
    pairs = match_layers(a.nodes, b.nodes)
    names = {INPUT: INPUT, **{x.name: y.name for x, y in pairs if x is not None and y is not None}}
    # in two chains, wiring follows from the order: an inserted layer is news enough
    compare_inputs = not (a.is_chain and b.is_chain)
    wa, wb = (_wired(a), _wired(b)) if compare_inputs else (a, b)
    by_name_a = {n.name: n for n in wa.nodes}
    by_name_b = {n.name: n for n in wb.nodes}
    changes: list[LayerChange] = []
    for x, y in pairs:
        if x is None:
            assert y is not None
            changes.append(LayerChange("added", None, y))
        elif y is None:
            changes.append(LayerChange("removed", x, None))
        else:
            changes.append(_compare(by_name_a[x.name], by_name_b[y.name], names, compare_inputs))
    return tuple(changes)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{dotted.path: value}``; lists and scalars are values."""
    if isinstance(data, Mapping) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def settings(graph: Graph) -> dict[str, Any]:
    """The graph's settings (:data:`SETTING_SECTIONS`, every default filled in) as ``{dotted.path: value}``."""
    from ..runtime.specfile import graph_to_spec

    spec = graph_to_spec(graph)
    return flatten({k: spec[k] for k in SETTING_SECTIONS if k in spec})


def diff_settings(a: Graph, b: Graph) -> tuple[SettingChange, ...]:
    """The settings that differ, in the order of A's spec with B's own keys after them."""
    sa, sb = settings(a), settings(b)
    keys = list(sa) + [k for k in sb if k not in sa]
    return tuple(
        SettingChange(k, sa.get(k, MISSING), sb.get(k, MISSING))
        for k in keys
        if sa.get(k, MISSING) != sb.get(k, MISSING)
    )


def diff_specs(a: Graph, b: Graph) -> SpecDiff:
    """Compare two loaded specs (see the module docstring)."""
    return SpecDiff(a, b, diff_layers(a, b), diff_settings(a, b))
