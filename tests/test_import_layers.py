"""The layers of the house: nnspec's modules import each other without cycles, and never upwards.

Every import counts, at module level or inside a function, except those under ``if TYPE_CHECKING:`` (they
never run). The layers, bottom to top, are :data:`LAYERS`; a module may import its own layer and the
layers below it. The package facade (``nnspec/__init__.py``) is in the top layer and may import anything.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nnspec"

#: Bottom to top: (layer name, the modules and packages in it). A name covers the module and everything under it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("leaves", ("nnspec.errors", "nnspec.version", "nnspec.strict_json", "nnspec.tables", "nnspec.outputs")),
    ("seams", ("nnspec.fit_driver",)),
    ("compiler", ("nnspec.compiler",)),
    ("data", ("nnspec.data",)),
    ("semantics", ("nnspec.semantics",)),
    ("reference", ("nnspec.reference",)),
    ("backends", ("nnspec.backends",)),
    ("runtime", ("nnspec.runtime",)),
    (
        "front",
        (
            "nnspec.compare",
            "nnspec.interop",
            "nnspec.tools",
            "nnspec.commands",
            "nnspec.cli",
            "nnspec.__main__",
            "nnspec",
        ),
    ),
)


@dataclass(frozen=True)
class Import:
    """One import of an nnspec module by another, where it is written."""

    importer: str
    imported: str
    line: int


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by the name of its ``__init__``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Ids of every node under an ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) block."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The nnspec modules ``name`` imports, each as written (``from .. import x`` of a submodule names it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = _type_checking_nodes(tree)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name and target.split(".")[0] == "nnspec":
                found.append(Import(name, target, node.lineno))
    return found


def import_graph() -> dict[str, list[Import]]:
    """Each module's imports of other nnspec modules."""
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer_of(module: str) -> int | None:
    """The index in :data:`LAYERS` of the most specific entry that covers ``module``."""
    best: tuple[int, int] | None = None
    for index, (_, names) in enumerate(LAYERS):
        for prefix in names:
            if module == prefix or (prefix != "nnspec" and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    return None if best is None else best[0]


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """One import cycle (``a -> b -> ... -> a``) for every strongly connected group of modules (Tarjan)."""
    edges = {m: sorted({i.imported for i in imports}) for m, imports in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return [_cycle_through(group, edges) for group in groups]


def _cycle_through(group: list[str], edges: dict[str, list[str]]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in edges[v]:
                if w == start:
                    return paths[v] + [start]
                if w in members and w not in paths:
                    paths[w] = paths[v] + [w]
                    following.append(w)
        frontier = following
    return group


def test_every_module_has_a_layer() -> None:
    """A new module or package is placed in the table, so that its imports are checked."""
    missing = [m for m in module_files() if layer_of(m) is None]
    assert not missing, f"modules without a layer in tests/test_import_layers.py LAYERS: {missing}"


def test_no_import_cycles() -> None:
    """No module imports itself through others, counting imports inside functions."""
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_module_imports_a_higher_layer() -> None:
    """Compiler, data, semantics, reference, backends and runtime import only their own layer and lower ones."""
    upward = []
    for imports in import_graph().values():
        for imp in imports:
            low, high = layer_of(imp.importer), layer_of(imp.imported)
            if low is not None and high is not None and high > low:
                upward.append(
                    f"{imp.importer} ({LAYERS[low][0]}) imports {imp.imported} ({LAYERS[high][0]}) at line {imp.line}"
                )
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_the_checks_see_function_level_imports_and_skip_type_checking(tmp_path: Path) -> None:
    """The walker finds an import inside a function and ignores one under ``if TYPE_CHECKING:``."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from nnspec.runtime import loop\n"
        "def f():\n    from nnspec.backends import base\n    from .. import version\n"
    )
    modules = module_files()
    found = {i.imported for i in imports_of("nnspec.semantics.probe", source, modules)}
    assert found == {"nnspec.backends.base", "nnspec.version"}
    assert layer_of("nnspec.backends.jax.model") > layer_of("nnspec.semantics.recipe")  # type: ignore[operator]
    assert cycles({"a": [Import("a", "b", 1)], "b": [Import("b", "a", 2)]}) == [["a", "b", "a"]]
