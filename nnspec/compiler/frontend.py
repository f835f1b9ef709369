"""The front end of the compiler: spec text -> checked, shape-inferred, frozen :class:`Graph`.

Pipeline: load (safe YAML -> positioned nodes) -> compose (``extends``, overrides) -> validate and
resolve each section (vocabulary, types, ranges, defaults, names) -> infer (shapes, parameters,
FLOPs, via :func:`nnspec.compiler.shapes.make_node`) -> :class:`Graph`. Every problem found on the way
is collected; if there is any, one :class:`SpecError` lists them all, sorted by position.

Nothing here imports an engine.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from typing import Any, Mapping, Sequence

from ..errors import Diagnostic, SpecError, SpecWarning
from .compose import apply_extends, apply_overrides, take_extends, with_extends
from .graph import Wiring, wire
from .ir import INPUT, Graph, Node, Shape, TrainConfig
from .loader import YMap, YNode, YScalar, YSeq, parse, read_text
from .opset import MERGE_OPS
from .report import Report
from .resolve import LayerDraft, resolve_data, resolve_input, resolve_layers, resolve_train
from .schema import LANGUAGE_VERSIONS, TOP_FIELDS, read_section
from .shapes import MAX_ELEMENTS, ShapeProblem, make_node
from .values import describe, shorten, words

Overrides = Mapping[str, Any] | Sequence[str] | None

#: Examples per image of the built-in data sets and their number of classes, checked against the spec.
KNOWN_DATASETS: dict[str, tuple[Shape, int]] = {
    "digits": ((8, 8, 1), 10),
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
}


def load_spec(path: str | os.PathLike[str], overrides: Overrides = None) -> Graph:
    """Load, check and shape-infer the spec file at ``path``; raises :class:`SpecError` listing every problem.

    ``overrides`` are settings applied on top of the file: ``{'train.epochs': 3}`` or
    ``['train.epochs=3']`` (as ``--set`` on the command line). Warnings (a valid spec with, say, an
    unused layer) are issued as :class:`~nnspec.errors.SpecWarning` through Python's ``warnings``;
    :func:`diagnose` returns them instead.
    """
    graph, diagnostics = _analyse_file(path, overrides)
    return _accept(graph, diagnostics)


def check_text(text: str, filename: str = "<spec>", overrides: Overrides = None, base_dir: str | None = None) -> Graph:
    """Check spec ``text`` (named ``filename`` in diagnostics) and return its :class:`Graph`.

    ``base_dir`` is where ``extends`` paths are looked up (default: the current directory). Raises
    :class:`SpecError` when there is an error; warnings are issued as for :func:`load_spec`.
    """
    graph, diagnostics = analyse_text(text, filename, overrides, base_dir)
    return _accept(graph, diagnostics)


def diagnose(path: str | os.PathLike[str], overrides: Overrides = None) -> tuple[Graph | None, list[Diagnostic]]:
    """Check a spec file without raising: ``(graph, warnings)`` when valid, ``(None, diagnostics)`` otherwise.

    The list is sorted by position and holds errors and warnings (``Diagnostic.severity``); a spec is
    valid when none of them is an error.
    """
    return _analyse_file(path, overrides)


def diagnose_text(text: str, filename: str = "<spec>", overrides: Overrides = None) -> list[Diagnostic]:
    """The diagnostics of spec ``text``, errors and warnings (an empty list when it is clean)."""
    return analyse_text(text, filename, overrides)[1]


def analyse_text(
    text: str, filename: str = "<spec>", overrides: Overrides = None, base_dir: str | None = None
) -> tuple[Graph | None, list[Diagnostic]]:
    """Check spec ``text`` without raising: the graph (None when there is an error) and every diagnostic, sorted."""
    report = Report(filename)
    try:
        root = parse(text, filename)
        if root is None:
            report.add("E0108", "spec is empty", None, "start with `nnspec: 1`, then input, layers, train and data")
            report.raise_if_any()
        if not isinstance(root, YMap):
            report.add(
                "E0108",
                f"a spec is a mapping of sections (nnspec, name, input, layers, train, data); got {describe(root)}",
                root,
                "start with `nnspec: 1`",
            )
            report.raise_if_any()
        assert isinstance(root, YMap)
        extends, overrides = take_extends(overrides, report)
        chain = (os.path.realpath(filename),) if os.path.exists(filename) else ()
        if extends is None:
            root = apply_extends(root, base_dir or ".", report, chain)
        else:  # --set extends=PATH: in place of the file's own, from the current directory
            root = apply_extends(with_extends(root, extends), ".", report, chain, "the current directory")
        root = apply_overrides(root, overrides, report)
        graph = build_graph(root, report, filename)
    except SpecError as exc:
        return None, exc.diagnostics
    diagnostics = sorted(report.diagnostics, key=Diagnostic.sort_key)
    return (None if report else graph), diagnostics


def _analyse_file(path: str | os.PathLike[str], overrides: Overrides) -> tuple[Graph | None, list[Diagnostic]]:
    shown = os.fsdecode(path)
    try:
        text = read_text(shown)
    except SpecError as exc:
        return None, exc.diagnostics
    return analyse_text(text, shown, overrides, base_dir=os.path.dirname(shown) or ".")


def _accept(graph: Graph | None, diagnostics: list[Diagnostic]) -> Graph:
    """The graph of a valid spec, after issuing its warnings; raises :class:`SpecError` otherwise."""
    if graph is None:
        raise SpecError(diagnostics)
    for d in diagnostics:
        warnings.warn_explicit(SpecWarning(d), SpecWarning, d.file or "<spec>", d.line or 0)
    return graph


def build_graph(root: YMap, report: Report, source: str) -> Graph | None:
    """Validate, resolve, wire and infer a composed spec mapping; problems go to ``report``.

    Returns None when there is an error. Layers whose output reaches nothing are left out of the graph
    (``wire`` warns about them); ``Node.index`` keeps each layer's position in the spec.
    """
    top = read_section(
        root, TOP_FIELDS, report, where="spec", sep=".", codes=("E0601", "E0608", "E0602"), section="top"
    )
    version = top.get("nnspec")
    if isinstance(version, str) and version not in LANGUAGE_VERSIONS:
        known = words(LANGUAGE_VERSIONS)
        report.add(
            "E0603",
            f"unsupported spec language version {shorten(version)}; this nnspec reads versions {known}",
            root.get("nnspec"),
            f"write nnspec: {LANGUAGE_VERSIONS[-1]}",
        )
    name = top.get("name")
    if not isinstance(name, str):
        name = _name_from_file(source)
    description = top.get("description")
    input_shape, dtype = resolve_input(top["input"], report) if "input" in top else (None, "float32")
    if input_shape is not None and math.prod(input_shape) > MAX_ELEMENTS:
        report.add(
            "E0606",
            f"input.shape {shorten(str(list(input_shape)))} holds {math.prod(input_shape):,} values per example, more "
            f"than {MAX_ELEMENTS:,} (2^48)",
            _at(root, "input", "shape"),
            "no machine can hold such an input; give the shape of one example",
        )
        input_shape = None
    drafts = resolve_layers(top["layers"], report) if "layers" in top else []
    output = top.get("output")
    wiring = wire(
        drafts,
        output if isinstance(output, str) else None,
        root.get("output"),
        report,
        find_unused=output is None or isinstance(output, str),
    )
    train = resolve_train(top.get("train"), report)
    data = resolve_data(top.get("data"), report)
    dtype = _settle_precision(root, train, dtype, report)
    if isinstance(data.path, str) and "\0" in data.path:
        report.add(
            "E0502",
            f"data.path {shorten(data.path)!r} contains a NUL byte",
            _at(root, "data", "path"),
            "write the path of a file or directory, without control characters",
        )
    nodes = infer_nodes(drafts, wiring, input_shape, report)
    out = next((n for n in nodes or () if n.name == wiring.output), None)
    if out is not None:
        _check_head(out, drafts[out.index], train, report)
    chosen = _at(root, "data", "dataset")
    if (
        input_shape is not None
        and data.dataset in KNOWN_DATASETS
        and isinstance(chosen, YScalar)
        and chosen.text == data.dataset
    ):
        _check_dataset(input_shape, out, data.dataset, root, report)
    if report or nodes is None or input_shape is None:
        return None
    return Graph(
        name=name,
        input_shape=input_shape,
        nodes=tuple(n for n in nodes if n.name in wiring.used),
        train=train,
        data=data,
        description=description if isinstance(description, str) else "",
        dtype=dtype,
        source=source,
        version=_version_number(version),
        positions=positions(root, source),
        output=wiring.output if wiring.explicit else None,
    )


def _version_number(text: object) -> int | float:
    """``1`` or ``1.1`` as a number (1 when the version was not readable)."""
    if not isinstance(text, str):
        return 1
    return int(text) if text.isdigit() else float(text)


def _settle_precision(root: YMap, train: TrainConfig, dtype: str, report: Report) -> str:
    """The model dtype once ``train.precision`` is read: ``float64`` precision makes an unstated dtype
    float64; a stated dtype that contradicts the precision is an error (mixed and tf32 keep float32 weights)."""
    stated = _at(root, "input", "dtype")
    where = _at(root, "train", "precision")
    if train.precision == "float64":
        if stated is not None and dtype != "float64":
            report.add(
                "E0402",
                f"train.precision float64 contradicts input.dtype {dtype}",
                where,
                "remove input.dtype (precision float64 sets it), or choose another precision",
            )
        return "float64"
    if dtype == "float64" and train.precision != "float32":
        report.add(
            "E0402",
            f"train.precision {train.precision} keeps weights in float32 and contradicts input.dtype float64",
            where,
            "remove input.dtype, or write precision: float64",
        )
    return dtype


def _name_from_file(source: str) -> str:
    stem = os.path.splitext(os.path.basename(source))[0]
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", stem).strip("_-")[:64]
    return cleaned if re.match(r"^[A-Za-z_]", cleaned or "") else f"model_{cleaned}".rstrip("_")


def infer_nodes(
    drafts: list[LayerDraft], wiring: Wiring, input_shape: Shape | None, report: Report
) -> list[Node] | None:
    """Shape-infer every layer in declaration order (used or not).

    A layer that fails, or whose wiring is wrong, makes its output unknown; layers that read an unknown
    output are skipped silently (no cascade). Returns None when any layer could not be inferred.
    """
    nodes: list[Node] = []
    shapes: dict[str, Shape | None] = {INPUT: input_shape}
    complete = input_shape is not None and bool(drafts)
    for draft in drafts:
        inputs = wiring.inputs.get(draft.index)
        found = [shapes.get(name) for name in inputs or ()]
        given = [shape for shape in found if shape is not None]
        if draft.attrs is None or inputs is None or len(given) < len(found):
            shapes[draft.name], complete = None, False
            continue
        merge = draft.op in MERGE_OPS
        try:
            node = make_node(draft.index, draft.name, draft.op, draft.attrs, given if merge else given[0], inputs)
        except ShapeProblem as problem:
            report.add(problem.code, _shape_message(draft, problem, inputs, merge), draft.node, problem.hint)
            shapes[draft.name], complete = None, False
            continue
        nodes.append(node)
        shapes[draft.name] = node.output_shape
    return nodes if complete else None


def _shape_message(draft: LayerDraft, problem: ShapeProblem, inputs: tuple[str, ...], merge: bool) -> str:
    if merge:
        return f"{draft.label}: {problem.message}"
    source = "input.shape" if inputs[0] == INPUT else repr(inputs[0])
    if problem.message.startswith("needs"):
        return f"{draft.label} {problem.message} from {source}"
    return f"{draft.label}: {problem.message}; its input comes from {source}"


def _check_head(out: Node, draft: LayerDraft, train: TrainConfig, report: Report) -> None:
    """The loss compares the output with integer class labels: it needs a rank-1 output."""
    if len(out.output_shape) != 1:
        report.add(
            "E0304",
            f"{draft.label}: the model's output must be rank-1 (one score per class) for loss {train.loss}; got "
            f"{out.output_shape}",
            draft.node,
            "end the model with `- flatten` and `- dense: {units: <classes>}`",
        )
    elif train.loss == "cross_entropy" and out.op != "activation" and out.attrs.get("activation") == "softmax":
        report.add(
            "E0304",
            f"{draft.label}: loss cross_entropy is computed from the logits, so the output layer's activation must "
            "not be softmax (it would be applied twice)",
            draft.node,
            "write activation: linear and end the model with `- softmax`, which the loss fuses with its logits",
        )
    elif train.loss == "cross_entropy" and out.output_shape[0] < 2:
        report.add(
            "E0304",
            f"{draft.label}: loss cross_entropy needs at least 2 output units (classes); got {out.output_shape[0]}",
            draft.node,
            "use one unit per class",
        )


def _check_dataset(input_shape: Shape, out: Node | None, dataset: str, root: YMap, report: Report) -> None:
    expected, classes = KNOWN_DATASETS[dataset]
    if tuple(input_shape) != expected:
        node = _at(root, "input", "shape")
        report.add(
            "E0505",
            f"input.shape {list(input_shape)} does not match dataset {dataset}, whose examples are {list(expected)}",
            node,
            f"write input: {{shape: {list(expected)}}}",
        )
    elif out is not None and len(out.output_shape) == 1 and out.output_shape[0] < classes:
        node = _at(root, "layers")
        if isinstance(node, YSeq) and len(node.items) > out.index:
            node = node.items[out.index]
        report.add(
            "E0505",
            f"dataset {dataset} has {classes} classes but the model outputs {out.output_shape[0]} scores",
            node,
            f"make the last dense layer units: {classes}",
        )


def _at(root: YMap, *keys: str) -> YNode | None:
    node: YNode | None = root
    for key in keys:
        node = node.get(key) if isinstance(node, YMap) else None
    return node


def positions(root: YMap, source: str) -> dict[str, tuple[int, int]]:
    """``{"input.shape": (line, column), "layers[2]": ..., "layers[2].units": ..., "train.batch_size": ...}``.

    Values' positions, for nodes that come from ``source`` itself (not a base spec or an override).
    """
    found: dict[str, tuple[int, int]] = {}

    def record(path: str, node: YNode | None, key: YScalar | None = None) -> None:
        target = node if node is not None and not (isinstance(node, YScalar) and node.kind == "null") else key
        if target is not None and target.file == source and target.line is not None and target.column is not None:
            found[path] = (target.line, target.column)

    def walk(path: str, node: YNode | None, key: YScalar | None = None) -> None:
        record(path, node, key)
        if isinstance(node, YMap):
            for k, (kn, v) in node.items.items():
                walk(f"{path}.{k}" if path else k, v, kn)
        elif isinstance(node, YSeq) and path != "layers":
            for i, item in enumerate(node.items):
                walk(f"{path}[{i}]", item)

    walk("", root)
    layers = root.get("layers")
    if isinstance(layers, YSeq):
        for i, item in enumerate(layers.items):
            record(f"layers[{i}]", item)
            if isinstance(item, YMap) and len(item.items) == 1:
                _, params = next(iter(item.items.values()))
                if isinstance(params, YMap):
                    for k, (kn, v) in params.items.items():
                        record(f"layers[{i}].{k}", v, kn)
    found.pop("", None)
    return found
