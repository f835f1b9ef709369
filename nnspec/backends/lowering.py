"""What every engine's lowering module shares: the per-op registry and the forward-pass context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, TypeVar

from ..compiler.ir import Graph, Node

from ..errors import BackendError

F = TypeVar("F", bound=Callable)


class OpRegistry(dict, Generic[F]):
    """Maps an IR op type to the function that lowers it for one engine.

    ``@registry.register("dense")`` adds a function; looking up an op the engine lacks raises a
    :class:`BackendError` naming the op and the engine.
    """

    def __init__(self, engine: str):
        super().__init__()
        self.engine = engine

    def register(self, op: str) -> Callable[[F], F]:
        """Decorator: register the lowering of ``op``."""

        def add(fn: F) -> F:
            self[op] = fn
            return fn

        return add

    def run_nodes(self, ctx: Any, nodes: tuple[Node, ...], params: Mapping[str, Any], x: Any, *, keep_all: bool = False) -> Any:
        """Apply ``nodes`` in order with lowerings called as ``fn(ctx, node, params, x)``; returns the
        last output, or every node's output when ``keep_all``."""
        outputs = []
        for node in nodes:
            if node.op not in self:
                raise BackendError(f"layer {node.index} '{node.name}' ({node.op}) has no lowering in backend '{self.engine}'")
            x = self[node.op](ctx, node, params, x)
            if keep_all:
                outputs.append(x)
        return outputs if keep_all else x

    def head(self, ctx: Any, graph: Graph, params: Mapping[str, Any], x: Any) -> Any:
        """Output of ``graph.logits_nodes``: the logits when the loss is taken from them."""
        return self.run_nodes(ctx, graph.logits_nodes, params, x)

    def __missing__(self, op: str) -> F:
        raise BackendError(f"backend '{self.engine}' has no lowering for layer type '{op}'")


@dataclass(frozen=True)
class LoweringContext:
    """What a forward pass knows besides the data: the engine's Ops, the mode, the step (an engine
    integer scalar, possibly traced) and the seed of the dropout masks."""

    ops: Any
    training: bool = False
    step: Any = 0
    seed: int = 0


def finish(ctx: LoweringContext, graph: Graph, head_value: Any) -> Any:
    """The model's final output from its head (applies the final softmax that the head left out)."""
    return ctx.ops.softmax(head_value) if graph.loss_from_logits else head_value
