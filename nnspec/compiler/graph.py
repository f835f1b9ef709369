"""Wiring a spec's layers into a graph: what each layer reads, which layer is the output, which are used.

The rules (docs/spec.md, "Graphs"): a layer reads the layers named in its ``inputs`` (``input`` names
the model's input); without ``inputs`` it reads the layer declared before it, and the first layer reads
``input``, so a chain of layers keeps its meaning. Layers are applied in order: a layer may read only
layers declared before it, which also rules out cycles. Merge layers (``add``, ``concat``) read two or
more inputs, every other layer exactly one. ``output`` names the output layer (default: the last). A
layer whose output reaches neither the output nor a layer leading to it is left out, with a warning.

Every problem is reported at the name that causes it; a layer whose wiring is wrong gets no inputs, so
its output is unknown and later layers are not reported because of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import INPUT
from .loader import YNode
from .opset import MERGE_OPS, OPS
from .report import Report
from .resolve import LayerDraft
from .values import did_you_mean, shorten

#: Code of the warning for a layer whose output reaches nothing.
UNUSED_LAYER = "W0701"


@dataclass(frozen=True)
class Wiring:
    """How the layers connect.

    ``inputs`` maps a layer's index to the names it reads; a layer whose wiring is wrong has no entry.
    ``output`` is the output layer's name (None when ``output:`` names no layer or there are no layers);
    ``explicit`` is True when the spec gave ``output:``. ``used`` holds the names of the layers the
    output depends on, itself included: the layers that go into the IR.
    """

    inputs: dict[int, tuple[str, ...]]
    output: str | None
    explicit: bool
    used: frozenset[str]


def wire(
    drafts: list[LayerDraft], output: str | None, output_node: YNode | None, report: Report, *, find_unused: bool = True
) -> Wiring:
    """Resolve every layer's inputs and the output, report wiring mistakes, and warn about unused layers.

    ``output`` is the name given by ``output:`` (None when absent), ``output_node`` where it is written.
    Unused layers are looked for only when the wiring has no mistake and ``find_unused`` is set (it is
    not when ``output:`` could not be read), so that one mistake does not also make layers look unused.
    """
    first_index: dict[str, int] = {}
    for draft in drafts:
        first_index.setdefault(draft.name, draft.index)
    errors_before = len(report.errors)
    inputs: dict[int, tuple[str, ...]] = {}
    for draft in drafts:
        if draft.inputs_invalid:
            continue
        names = _layer_inputs(draft, drafts, first_index, report)
        if names is not None:
            inputs[draft.index] = names
    chosen = _output(drafts, output, output_node, first_index, report)
    used = frozenset(first_index)
    clean = find_unused and len(report.errors) == errors_before and len(inputs) == len(drafts) == len(first_index)
    if chosen is not None and clean:
        used = _ancestors(chosen, drafts, inputs)
        for draft in drafts:
            if draft.name not in used:
                report.warn(
                    UNUSED_LAYER,
                    f"{draft.label}: its output reaches nothing (neither the output {chosen!r} nor any layer leading "
                    "to it); the layer is left out of the model",
                    draft.node,
                    f"name {draft.name!r} in the inputs of a later layer, or remove it",
                )
    return Wiring(inputs, chosen, output is not None, used)


def _layer_inputs(
    draft: LayerDraft, drafts: list[LayerDraft], first_index: dict[str, int], report: Report
) -> tuple[str, ...] | None:
    """The names ``draft`` reads, or None (after reporting) when its wiring is wrong."""
    if draft.inputs is None:
        names: tuple[str, ...] = (drafts[draft.index - 1].name,) if draft.index else (INPUT,)
    else:
        names = draft.inputs
    ok = True
    for name, node in zip(draft.inputs or (), draft.input_nodes):
        ok = _check_reference(draft, name, node, first_index, report) and ok
    if draft.op in OPS and not _check_count(draft, names, report):
        ok = False
    return names if ok else None


def _check_reference(draft: LayerDraft, name: str, node: YNode, first_index: dict[str, int], report: Report) -> bool:
    """Report an input that names no layer, the layer itself, or a layer declared after it."""
    if name == INPUT:
        return True
    found = first_index.get(name)
    if found is None:
        earlier = [INPUT, *(n for n, i in first_index.items() if i < draft.index)]
        report.add(
            "E0701",
            f"{draft.label}: input {shorten(name)!r} names no layer{did_you_mean(name, earlier)}",
            node,
            "an input is `input` (the model's input) or the name of a layer defined before this one",
        )
        return False
    if found == draft.index:
        report.add(
            "E0702",
            f"{draft.label}: input {name!r} is the layer itself (a cycle)",
            node,
            "layers are applied in order: a layer reads `input` or layers defined before it",
        )
        return False
    if found > draft.index:
        report.add(
            "E0702",
            f"{draft.label}: input {name!r} is layers[{found}], which is defined after it",
            node,
            f"layers are applied in order; define {name!r} before {draft.name!r}",
        )
        return False
    return True


def _check_count(draft: LayerDraft, names: tuple[str, ...], report: Report) -> bool:
    """Report a merge layer with fewer than two inputs, or another layer without exactly one."""
    where = draft.inputs_node or draft.node
    listed = ", ".join(repr(shorten(n)) for n in names)
    if draft.op in MERGE_OPS:
        if len(names) >= 2:
            return True
        got = "none" if not names else f"1 ({listed}{', the layer before it' if draft.inputs is None else ''})"
        report.add(
            "E0703",
            f"{draft.label} merges two or more inputs; got {got}",
            where,
            f"list the layers to merge: `- {draft.op}: {{inputs: [a, b]}}`",
        )
        return False
    if len(names) == 1:
        return True
    if not names:
        report.add(
            "E0704",
            f"{draft.label} reads exactly one input; got none",
            where,
            "name one input, or leave inputs out to read the layer before it",
        )
    else:
        report.add(
            "E0704",
            f"{draft.label} reads exactly one input; got {len(names)} ({listed})",
            where,
            f"merge them first with add or concat (`- add: {{inputs: [{', '.join(shorten(n) for n in names)}]}}`), "
            "then read the merged layer",
        )
    return False


def _output(
    drafts: list[LayerDraft], output: str | None, node: YNode | None, first_index: dict[str, int], report: Report
) -> str | None:
    """The output layer's name: the one ``output:`` names, else the last layer."""
    if output is None:
        return drafts[-1].name if drafts else None
    if output in first_index:
        return output
    last = f" (default: the last layer, {drafts[-1].name!r})" if drafts else ""
    report.add(
        "E0705",
        f"output {shorten(output)!r} names no layer{did_you_mean(output, first_index)}",
        node,
        f"output names one of the layers{last}",
    )
    return None


def _ancestors(output: str, drafts: list[LayerDraft], inputs: dict[int, tuple[str, ...]]) -> frozenset[str]:
    """The names of the layers ``output`` depends on, itself included."""
    needed = {output}
    for draft in reversed(drafts):
        if draft.name in needed:
            needed.update(inputs[draft.index])
    needed.discard(INPUT)
    return frozenset(needed)
