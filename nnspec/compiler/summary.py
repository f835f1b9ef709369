"""The layer table of a model: name, type, output shape, parameters, FLOPs and inputs per layer, and totals."""

from __future__ import annotations

from .ir import Graph

HEADERS: tuple[str, ...] = ("#", "name", "type", "output shape", "params", "FLOPs", "inputs")


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def summary_rows(graph: Graph) -> list[tuple[str, ...]]:
    """One row of strings per layer (the input first), in table order, without the totals.

    ``params`` counts trainable and non-trainable scalars; ``inputs`` names the layers a layer reads.
    """
    rows: list[tuple[str, ...]] = [("", "input", graph.dtype, _shape(graph.input_shape), "0", "0", "")]
    for node in graph.nodes:
        inputs = ", ".join(graph.inputs_of(node))
        rows.append(
            (
                str(node.index),
                node.name,
                node.op,
                _shape(node.output_shape),
                f"{node.num_params:,}",
                f"{node.flops:,}",
                inputs,
            )
        )
    return rows


def format_summary(graph: Graph) -> str:
    """The summary table as text: a title line, one row per layer, a totals row and a footer line."""
    rows = summary_rows(graph)
    total = ("", "total", "", "", f"{graph.num_params:,}", f"{graph.flops:,}", "")
    widths = [max(len(r[i]) for r in [HEADERS, *rows, total]) for i in range(len(HEADERS))]
    right = {0, 4, 5}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "-" * len(line(HEADERS))
    title = f"{graph.name}" + (f": {graph.description}" if graph.description else "")
    counted = f"{graph.num_params:,} parameters" + (f" ({graph.num_trainable:,} trainable)" if graph.has_state else "")
    footer = f"{counted}, {graph.flops:,} forward FLOPs per example; loss {graph.train.loss}" + (
        " computed from the logits (fused softmax)" if graph.loss_from_logits else ""
    )
    if graph.output is not None:
        footer += f"; output {graph.output!r}"
    return "\n".join([title, rule, line(HEADERS), rule, *(line(r) for r in rows), rule, line(total), "", footer])
