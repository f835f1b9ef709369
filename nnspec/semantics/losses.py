"""Loss and accuracy definitions, written once against :class:`nnspec.semantics.ops.Ops`.

* ``cross_entropy`` on integer labels. The network's ``head`` is what the last layer before a final
  ``softmax`` produces (the logits); the loss is ``mean(logsumexp(z) - z[label])``, computed with a
  stable log-softmax, never ``log(softmax(z))``. A network that does not end in softmax has its output
  treated as logits in the same way.
* ``mse``: mean over examples and units of ``(output - one_hot(label))**2``, on the model's final output
  (after softmax, when there is one).
"""

from __future__ import annotations

from typing import Any

from ..compiler.ir import Graph
from .ops import Ops


def loss_from_head(ops: Ops, graph: Graph, head: Any, labels: Any) -> Any:
    """Mean loss of one batch. ``head`` is the output of ``graph.logits_nodes`` (logits for cross-entropy)."""
    depth = graph.output_shape[-1]
    if graph.train.loss == "cross_entropy":
        return -ops.mean(ops.sum(ops.one_hot(labels, depth) * ops.log_softmax(head), axis=-1))
    if graph.train.loss == "mse":
        return ops.mean((head - ops.one_hot(labels, depth)) ** 2)
    raise ValueError(f"unknown loss {graph.train.loss!r}")


def per_example_loss(ops: Ops, graph: Graph, head: Any, labels: Any) -> Any:
    """The loss of each example of a batch (a vector); its mean is :func:`loss_from_head`'s value."""
    depth = graph.output_shape[-1]
    if graph.train.loss == "cross_entropy":
        return -ops.sum(ops.one_hot(labels, depth) * ops.log_softmax(head), axis=-1)
    if graph.train.loss == "mse":
        return ops.sum((head - ops.one_hot(labels, depth)) ** 2, axis=-1) / ops.constant(float(depth))
    raise ValueError(f"unknown loss {graph.train.loss!r}")


def correct_count(ops: Ops, head: Any, labels: Any) -> Any:
    """Number of examples whose largest output is the label (as a float)."""
    return ops.sum(ops.to_float(ops.equal(ops.argmax(head), labels)))
