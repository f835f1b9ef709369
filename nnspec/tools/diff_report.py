"""``nnspec diff`` as a report: the comparison of two sides, then its text, Markdown and CSV forms.

The CSV form is one table of differences with the columns :data:`CSV_COLUMNS`: ``section`` (``layers``,
``totals``, ``settings``, ``environment``, ``metrics``, ``test``), ``item`` (the layer, ``model``,
``spec``, ``env``, the epoch, ``test``), ``key`` (the attribute, total, setting path, env key or
metric), the value in A and in B, ``delta`` (B minus A, for numbers) and ``change`` (``added``,
``removed``, ``changed`` or ``same``). Layers and settings appear only where they differ; totals,
metrics and test scores always do.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..tables import Table, csv_text, markdown
from .run_diff import METRICS, Side, env_differences, metric_deltas, number, open_side, score_deltas
from .spec_diff import MISSING, LayerChange, SpecDiff, diff_specs, plain_value

if TYPE_CHECKING:
    import pandas as pd

CSV_COLUMNS: tuple[str, ...] = ("section", "item", "key", "a", "b", "delta", "change")
_MARKS = {"added": "+", "removed": "-", "changed": "~", "same": ""}
_STYLES = {"added": "green", "removed": "red", "changed": "yellow", "same": ""}


@dataclass(frozen=True)
class Diff:
    """Everything ``nnspec diff`` found: the spec diff and, for two run directories, the run differences."""

    a: Side
    b: Side
    spec: SpecDiff
    metrics: pd.DataFrame | None = None
    test: list[tuple[str, float | None, float | None, float | None]] = field(default_factory=list)
    env: list[tuple[str, Any, Any]] = field(default_factory=list)

    @property
    def runs(self) -> bool:
        """Whether both sides are run directories (metrics, test scores and environments compared)."""
        return self.metrics is not None

    @property
    def changed(self) -> bool:
        """Whether anything differs: a layer, a setting, the environment, a metric or a test score."""
        if self.spec.changed or self.env:
            return True
        if any(_differ(a, b) for _, a, b, _ in self.test):
            return True
        if self.metrics is not None:
            return any(_differ(x, y) for m in METRICS for x, y in zip(self.metrics[f"{m}_a"], self.metrics[f"{m}_b"]))
        return False


def _differ(a: Any, b: Any) -> bool:
    na, nb = number(a), number(b)
    if na is None or nb is None:
        return (na is None) != (nb is None)
    return na != nb


def compare(a_path: str, b_path: str) -> Diff:
    """Open both paths (spec files or run directories) and compare them."""
    a, b = open_side(a_path), open_side(b_path)
    spec = diff_specs(a.graph, b.graph)
    if not (a.run and b.run):
        return Diff(a, b, spec)
    return Diff(
        a,
        b,
        spec,
        metric_deltas(a.run.history, b.run.history),
        score_deltas(a.run.test, b.run.test),
        env_differences(a.env, b.env),
    )


def notes(diff: Diff) -> list[str]:
    """Lines for stderr: incomplete runs, and a run compared with a spec."""
    lines = []
    for side in (diff.a, diff.b):
        if side.run is not None and not side.run.complete:
            lines.append(
                f"note: {side.path} is {side.run.status} ({len(side.run.history)} epochs so far); comparing what it "
                "holds"
            )
    if diff.a.is_run != diff.b.is_run:
        lines.append("note: one side is a spec file: only the specs are compared (metrics need two run directories)")
    return lines


# --- values as text -------------------------------------------------------------------------------


def show(value: Any, precise: bool = False) -> str:
    """A value for a table cell: ``(none)`` when absent, lists in brackets, shapes in parentheses, floats short."""
    if value is MISSING or value is None:
        return "" if precise else "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value) if precise else f"{value:.6g}"
    if isinstance(value, int):
        return str(value) if precise else f"{value:,}"
    if isinstance(value, tuple):
        return "(" + ", ".join(show(v, precise) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(show(v, precise) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v, precise)}" for k, v in value.items()) + "}"
    return str(value)


def delta(a: Any, b: Any, precise: bool = False, digits: int | None = None) -> str:
    """B minus A with its sign, for two numbers (not booleans); empty otherwise."""
    na, nb = number(a), number(b)
    if na is None or nb is None:
        return ""
    d = nb - na
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool):
        return f"{int(d):+d}" if precise else f"{int(d):+,}"
    if precise:
        return f"{d:+.12g}"
    return f"{d:+.{digits}f}" if digits is not None else f"{d:+.6g}"


def _metric(value: Any) -> str:
    n = number(value)
    return "" if n is None else f"{n:.4f}"


def _arrow(a: str, b: str) -> str:
    return a if a == b else f"{a} -> {b}"


def _attr_summary(change: LayerChange) -> str:
    """An added or removed layer's attributes: those required and those not at their defaults."""
    from ..compiler.opset import OPS

    node = change.b or change.a
    assert node is not None
    op = OPS.get(node.op)
    required = set(op.required) if op else set()
    defaults = op.defaults if op else {}
    order = list(op.fields) if op else []
    keys = sorted(node.attrs, key=lambda k: order.index(k) if k in order else len(order))
    parts = [
        f"{k}={show(plain_value(node.attrs[k]))}"
        for k in keys
        if k in required or plain_value(defaults.get(k, MISSING)) != plain_value(node.attrs[k])
    ]
    if len(node.inputs) > 1:
        parts.append(f"inputs=[{', '.join(node.inputs)}]")
    return ", ".join(parts)


def _changes_cell(change: LayerChange) -> str:
    if change.status in ("added", "removed"):
        return _attr_summary(change)
    return "; ".join(f"{k}: {show(a)} -> {show(b)}" for k, a, b in change.fields)


def _params_cell(change: LayerChange) -> str:
    a = change.a.num_params if change.a else None
    b = change.b.num_params if change.b else None
    if a is None or b is None:
        return f"{(a if a is not None else b):,}"
    return f"{a:,}" if a == b else f"{a:,} -> {b:,} ({b - a:+,})"


def _shape_cell(change: LayerChange) -> str:
    shapes = [show(n.output_shape) for n in (change.a, change.b) if n is not None]
    return shapes[0] if len(shapes) == 1 else _arrow(*shapes)


# --- tables ---------------------------------------------------------------------------------------


def _side_line(label: str, side: Side) -> str:
    g = side.graph
    what = f"{label}: {side.path}  ({g.name}: {len(g.nodes)} layers, {g.num_params:,} parameters"
    if side.run is not None:
        what += f"; run on {side.run.backend}, {len(side.run.history)} epochs, {side.run.status}"
    return what + ")"


def layer_table(spec: SpecDiff) -> Table | str:
    """Every layer in matched order with its changes; a single line when all are the same."""
    counts = {s: spec.count(s) for s in ("added", "removed", "changed", "same")}
    if counts["same"] == len(spec.layers):
        return f"layers: all {len(spec.layers)} the same"
    title = "layers: " + ", ".join(f"{n} {'the same' if s == 'same' else s}" for s, n in counts.items() if n)
    table = Table(
        title,
        ["", "layer", "op", "changes", "output shape", "params"],
        right=frozenset({5}),
        note="+ only in B, - only in A, ~ changed",
    )
    for c in spec.layers:
        table.add(
            _MARKS[c.status], c.label, c.op, _changes_cell(c), _shape_cell(c), _params_cell(c), style=_STYLES[c.status]
        )
    return table


def totals_table(spec: SpecDiff) -> Table:
    """Layer count, parameters, trainable parameters, FLOPs and output shape of A and B."""
    table = Table("totals", ["", "A", "B", "B - A"], right=frozenset({1, 2, 3}))
    for what, a, b in spec.totals():
        table.add(what, show(a), show(b), delta(a, b) if a != b else "")
    return table


def settings_table(spec: SpecDiff) -> Table | str:
    """The settings that differ (as ``--set`` paths); a single line when none does."""
    if not spec.settings:
        return "settings: the same"
    table = Table(f"settings: {len(spec.settings)} differ", ["setting", "A", "B", "B - A"], right=frozenset({3}))
    for s in spec.settings:
        table.add(s.key, show(s.a), show(s.b), delta(s.a, s.b))
    return table


def env_table(diff: Diff) -> Table | str:
    """The environment keys that differ between two runs; a single line when none does."""
    if not diff.env:
        env = diff.a.env
        same = ", ".join(str(env.get(k)) for k in ("backend", "dtype", "device") if env.get(k) is not None)
        return f"environment: the same ({same})"
    table = Table("environment", ["", "A", "B"])
    for key, a, b in diff.env:
        table.add(key, show(a), show(b))
    return table


def metric_tables(frame: pd.DataFrame) -> list[Table]:
    """Training and validation metrics per epoch: A, B and B minus A (to 4 decimals)."""
    tables = []
    for title, metrics in (
        ("training per epoch", ("loss", "accuracy")),
        ("validation per epoch", ("val_loss", "val_accuracy")),
    ):
        columns = ["epoch"]
        for m in metrics:
            columns += [f"{m} A", f"{m} B", "B - A"]
        table = Table(title, columns, right=frozenset(range(len(columns))))
        for _, row in frame.iterrows():
            cells: list[str] = [str(int(row["epoch"]))]
            for m in metrics:
                cells += [_metric(row[f"{m}_a"]), _metric(row[f"{m}_b"]), delta(row[f"{m}_a"], row[f"{m}_b"], digits=4)]
            table.add(*cells)
        tables.append(table)
    return tables


def test_table(diff: Diff) -> Table:
    """Test loss and accuracy of both runs (``test.json``)."""
    table = Table("test", ["", "A", "B", "B - A"], right=frozenset({1, 2, 3}))
    for m, a, b, _ in diff.test:
        table.add(m, _metric(a), _metric(b), delta(a, b, digits=4))
    return table


def blocks(diff: Diff) -> list[Table | str]:
    """The report as text lines and tables, in reading order."""
    out: list[Table | str] = [_side_line("A", diff.a) + "\n" + _side_line("B", diff.b)]
    out += [layer_table(diff.spec), totals_table(diff.spec), settings_table(diff.spec)]
    if diff.metrics is not None:
        out += [env_table(diff), *metric_tables(diff.metrics), test_table(diff)]
    out.append("differences found" if diff.changed else "no differences")
    return out


def markdown_report(diff: Diff) -> str:
    """The report as Markdown: the sides as a list, each table as a pipe table under a heading."""
    parts = []
    for block in blocks(diff):
        if isinstance(block, Table):
            parts.append(markdown(block))
        else:
            parts.append(
                "\n".join(f"- {line}" if line.startswith(("A:", "B:")) else line for line in block.splitlines())
            )
    return "\n\n".join(parts) + "\n"


# --- CSV ------------------------------------------------------------------------------------------


def _layer_rows(c: LayerChange) -> Iterator[tuple[str, ...]]:
    if c.status == "same":
        return
    if c.status in ("added", "removed"):
        node = c.b if c.status == "added" else c.a
        assert node is not None
        fields = [
            ("op", node.op),
            *((k, plain_value(v)) for k, v in node.attrs.items()),
            ("output_shape", node.output_shape),
            ("params", node.num_params),
        ]
        for key, value in fields:
            a, b = ("", show(value, True)) if c.status == "added" else (show(value, True), "")
            yield ("layers", node.name, key, a, b, "", c.status)
        return
    assert c.a is not None and c.b is not None
    rows = list(c.fields)
    if c.a.output_shape != c.b.output_shape:
        rows.append(("output_shape", c.a.output_shape, c.b.output_shape))
    if c.a.num_params != c.b.num_params:
        rows.append(("params", c.a.num_params, c.b.num_params))
    for key, a, b in rows:
        yield ("layers", c.label, key, show(a, True), show(b, True), delta(a, b, True), "changed")


def csv_rows(diff: Diff) -> Iterator[tuple[str, ...]]:
    """The rows of the CSV form (see the module docstring)."""
    for c in diff.spec.layers:
        yield from _layer_rows(c)
    for what, a, b in diff.spec.totals():
        yield (
            "totals",
            "model",
            what,
            show(a, True),
            show(b, True),
            delta(a, b, True),
            "same" if a == b else "changed",
        )
    for s in diff.spec.settings:
        change = "added" if s.a is MISSING else "removed" if s.b is MISSING else "changed"
        yield ("settings", "spec", s.key, show(s.a, True), show(s.b, True), delta(s.a, s.b, True), change)
    for key, a, b in diff.env:
        yield ("environment", "env", key, show(a, True), show(b, True), "", "changed")
    if diff.metrics is not None:
        for _, row in diff.metrics.iterrows():
            for m in METRICS:
                a, b = number(row[f"{m}_a"]), number(row[f"{m}_b"])
                yield (
                    "metrics",
                    str(int(row["epoch"])),
                    m,
                    show(a, True),
                    show(b, True),
                    delta(a, b, True),
                    _change(a, b),
                )
    for m, a, b, _ in diff.test:
        yield ("test", "test", m, show(a, True), show(b, True), delta(a, b, True), _change(a, b))


def _change(a: float | None, b: float | None) -> str:
    if a is None and b is not None:
        return "added"
    if b is None and a is not None:
        return "removed"
    return "changed" if _differ(a, b) else "same"


def csv_report(diff: Diff) -> str:
    """The CSV form of the report (:data:`CSV_COLUMNS`)."""
    return csv_text(CSV_COLUMNS, csv_rows(diff))
