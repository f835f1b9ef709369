"""Spec files of the command line: loading one with its ``--set`` overrides (``extends`` included,
:func:`load_spec_file`, :func:`absolute_extends`), and writing a resolved :class:`~nnspec.compiler.ir.Graph` back in
the spec language (every default filled in, every layer named), as ``spec.yaml`` of a run directory. Loading the
text again gives the same graph."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

from ..compiler.ir import INPUT, Activation, Graph, Initializer, Node


def load_spec_file(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Graph:
    """The graph of spec file ``path`` with ``--set`` style ``overrides`` (``key=value`` strings).

    ``extends=BASE`` among them takes the place of the file's own ``extends`` (a relative path is taken from the
    current directory; see :mod:`nnspec.compiler.compose`). Raises :class:`~nnspec.errors.SpecError` listing
    every problem, a missing base file named (``E0110``).
    """
    from ..compiler.frontend import load_spec

    return load_spec(path, list(overrides))


def absolute_extends(overrides: Sequence[str], cwd: str | None = None) -> list[str]:
    """``overrides`` with the path of each ``extends=PATH`` made absolute (from ``cwd``, default the current
    directory), so that a process started elsewhere finds the same base.

    Raises :class:`~nnspec.errors.SpecError` (``E0110``, naming the path looked for) when the base does not
    exist, and (``E0110``/``E0111``) when the value is not a path.
    """
    from ..compiler.compose import normalize_overrides
    from ..compiler.loader import YScalar
    from ..compiler.report import Report
    from ..errors import Diagnostic, SpecError

    result = []
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or key.strip() != "extends":
            result.append(item)
            continue
        report = Report("<overrides>")
        found = normalize_overrides([item], report)
        node = found[0][2] if found else None
        label = f"--set {item[:80]}"
        if not isinstance(node, YScalar) or not node.text.strip() or (node.plain and node.kind != "str"):
            raise SpecError(
                report.diagnostics or [Diagnostic("E0110", "extends must be the path of a base spec", label)]
            )
        path = os.path.abspath(os.path.join(cwd or os.getcwd(), node.text))
        if not os.path.lexists(path):
            raise SpecError(
                [
                    Diagnostic(
                        "E0110",
                        f"extends: base spec {node.text!r} not found (looked for {path})",
                        label,
                        hint="a path given with --set extends= is relative to the current directory",
                    )
                ]
            )
        result.append("extends=" + json.dumps(path, ensure_ascii=False))
    return result


def _plain(value: Any) -> Any:
    if callable(getattr(value, "spec_form", None)):  # an activation with arguments, in its spec form
        return _plain(value.spec_form())
    if isinstance(value, Initializer):
        return value.name if not value.args else {value.name: {k: float(v) for k, v in value.args}}
    if isinstance(value, Activation):
        return value.spec_form()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # NumPy scalars
        return value.item()
    return value


_ORDER = (
    "units",
    "filters",
    "kernel",
    "size",
    "strides",
    "padding",
    "rate",
    "shape",
    "activation",
    "use_bias",
    "kernel_init",
    "bias_init",
)


def _layer(node: Node, previous: str) -> dict[str, Any]:
    """One layer entry; ``inputs`` is written only where it is not the layer before (the default)."""
    keys = sorted(node.attrs, key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k))
    wiring = {"inputs": list(node.inputs)} if node.inputs and tuple(node.inputs) != (previous,) else {}
    return {node.op: {"name": node.name, **wiring, **{k: _plain(node.attrs[k]) for k in keys}}}


def graph_to_spec(graph: Graph) -> dict[str, Any]:
    """The spec (as plain Python data) that describes ``graph``, with every default written out."""
    t, d = graph.train, graph.data
    train: dict[str, Any] = {
        "loss": t.loss,
        "optimizer": {t.optimizer.name: _plain(dict(t.optimizer.params))},
        "schedule": {t.schedule.name: _plain(dict(t.schedule.params))} if t.schedule.params else t.schedule.name,
        "weight_decay": t.weight_decay,
        "batch_size": t.batch_size,
        "epochs": t.epochs,
        "seed": t.seed,
        "metrics": list(t.metrics),
        "on_divergence": t.on_divergence,
        "checkpoint": {"every": t.checkpoint.every, "keep": t.checkpoint.keep},
        "precision": t.precision,
        "devices": t.devices,
    }
    if t.early_stopping is not None:
        train["early_stopping"] = _plain(dataclasses.asdict(t.early_stopping))
    data: dict[str, Any] = {"dataset": d.dataset}
    if d.path:
        data["path"] = d.path
    data.update({k: _plain(v) for k, v in d.options.items()})
    data.update({"validation_split": d.validation_split, "test_split": d.test_split, "normalize": d.normalize})
    spec: dict[str, Any] = {"nnspec": graph.version, "name": graph.name}
    if graph.description:
        spec["description"] = graph.description
    spec["input"] = {"shape": list(graph.input_shape), "dtype": graph.dtype}
    previous = [INPUT] + [n.name for n in graph.nodes[:-1]]
    spec["layers"] = [_layer(n, p) for n, p in zip(graph.nodes, previous)]
    if graph.output is not None:
        spec["output"] = graph.output
    spec["train"] = train
    spec["data"] = data
    return spec


def dump_spec(graph: Graph, header: str | None = None) -> str:
    """YAML text of :func:`graph_to_spec`, one line per layer; ``header`` becomes a leading comment.

    Undecodable bytes of a file name in the header (lone surrogates) are written escaped (``\\udce9``), so the
    text is always valid UTF-8.
    """
    import yaml

    spec = graph_to_spec(graph)
    if header:
        header = header.encode("utf-8", "backslashreplace").decode("utf-8")
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    top = {k: v for k, v in spec.items() if k != "layers"}
    head = yaml.safe_dump(
        {k: top[k] for k in ("nnspec", "name", "description", "input") if k in top},
        sort_keys=False,
        default_flow_style=None,
        width=120,
    )
    layers = "layers:\n" + "".join(
        f"  - {op}: " + yaml.safe_dump(params, sort_keys=False, default_flow_style=True, width=10_000).strip() + "\n"
        for layer in spec["layers"]
        for op, params in layer.items()
    )
    tail = yaml.safe_dump(
        {k: top[k] for k in ("output", "train", "data") if k in top},
        sort_keys=False,
        default_flow_style=False,
        width=120,
    )
    return "\n".join(lines + [head.rstrip(), layers.rstrip(), tail.rstrip()]) + "\n"
