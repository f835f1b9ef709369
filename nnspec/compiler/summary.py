"""The layer table of a model: name, type, output shape, parameters, FLOPs and inputs per layer, and totals."""

from __future__ import annotations

from ..tables import Table, plain_text
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
    title = f"{graph.name}" + (f": {graph.description}" if graph.description else "")
    total = ["", "total", "", "", f"{graph.num_params:,}", f"{graph.flops:,}", ""]
    table = Table(title, list(HEADERS), [list(r) for r in summary_rows(graph)], frozenset({0, 4, 5}), totals=[total])
    counted = f"{graph.num_params:,} parameters" + (f" ({graph.num_trainable:,} trainable)" if graph.has_state else "")
    footer = f"{counted}, {graph.flops:,} forward FLOPs per example; loss {graph.train.loss}" + (
        " computed from the logits (fused softmax)" if graph.loss_from_logits else ""
    )
    if graph.output is not None:
        footer += f"; output {graph.output!r}"
    return f"{plain_text(table)}\n\n{footer}"
