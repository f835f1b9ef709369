"""What each language version added, and the oldest version a spec needs, from the op table.

Each version reads every spec of the versions before it (:data:`~nnspec.compiler.schema.LANGUAGE_VERSIONS`,
oldest first). An op came with ``OpDef.since``; a key came with its ``Field.since``, or with its op or section
when it has none. The JSON Schema's description of ``nnspec`` and the version an import writes are derived here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .opset import COMMON_FIELDS, OPS
from .schema import LANGUAGE_VERSIONS, TOP_FIELDS


@dataclass(frozen=True)
class Additions:
    """What one language version brought: layer types, and keys that came later than their op or section."""

    version: str
    ops: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)


def additions() -> list[Additions]:
    """One :class:`Additions` per language version, oldest first; ``ValueError`` when an op or key names a
    version nnspec does not read (an ``OpDef`` without ``since``, say)."""
    found = {version: Additions(version) for version in LANGUAGE_VERSIONS}

    def at(version: str, what: str) -> Additions:
        if version not in found:
            raise ValueError(f"{what} names language version {version!r}; nnspec reads {', '.join(LANGUAGE_VERSIONS)}")
        return found[version]

    for op in OPS.values():
        at(op.since, f"op {op.name}").ops.append(op.name)
        for key in op.fields:
            if op.key_since(key) != op.since:
                at(op.key_since(key), f"{op.name}.{key}").keys.append(f"{op.name}.{key}")
    for key, entry in [*COMMON_FIELDS.items(), *TOP_FIELDS.items()]:
        if entry.since and entry.since != LANGUAGE_VERSIONS[0]:
            at(entry.since, f"key {key}").keys.append(key)
    return list(found.values())


def version_needed(layers: Iterable[tuple[str, Iterable[str]]], top_keys: Iterable[str] = ()) -> str:
    """The oldest language version that has every layer ``(op, keys given)`` and top-level key of a spec."""
    needed = [LANGUAGE_VERSIONS[0]]
    for op_name, keys in layers:
        op = OPS[op_name]
        needed += [op.since, *(op.key_since(key) for key in keys)]
    needed += [TOP_FIELDS[key].since or LANGUAGE_VERSIONS[0] for key in top_keys]
    return max(needed, key=LANGUAGE_VERSIONS.index)
