"""What every engine's lowering module shares: the per-op registry, the lowering context and the graph walk.

The lowering signature is the same for every engine and for the NumPy reference::

    lowering(ctx: LoweringContext, node: Node, inputs: list[Array]) -> Array

``inputs`` holds one value per name in ``node.inputs`` (one for every op but the merge ops). A lowering
reads its trainable parameters with :meth:`LoweringContext.param`, its state (running statistics) with
:meth:`LoweringContext.read_state`, and records new state with :meth:`LoweringContext.write_state`
(only in training; the step recipe turns what was written into the next state).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar

from ..compiler.ir import INPUT, Graph, Node
from ..errors import BackendError

F = TypeVar("F", bound=Callable)


@dataclass
class LoweringContext:
    """What a forward pass knows besides the data.

    ``ops``: the engine's :class:`~nnspec.semantics.ops.Ops`; ``params`` / ``state``: the trainable and
    non-trainable arrays keyed ``<layer>.<name>``; ``training``: dropout on, batch statistics used and
    updated; ``step``: the optimiser step (an engine integer scalar, possibly traced), which keys the
    dropout masks; ``seed``: ``train.seed``; ``batch``: the static batch size when the engine needs one
    (PyTensor); ``new_state``: state written by lowerings during this pass.
    """

    ops: Any
    params: Mapping[str, Any] = field(default_factory=dict)
    state: Mapping[str, Any] = field(default_factory=dict)
    training: bool = False
    step: Any = 0
    seed: int = 0
    batch: int | None = None
    new_state: dict[str, Any] = field(default_factory=dict)
    #: the Ops of the storage type under a mixed precision policy (None: ``ops``); normalisation layers
    #: compute in it, with their weights and statistics kept in it (see :mod:`nnspec.semantics.precision`)
    storage_ops: Any = None

    @property
    def wide_ops(self) -> Any:
        """The Ops normalisation layers compute in: the storage type's (float32 under mixed precision)."""
        return self.ops if self.storage_ops is None else self.storage_ops

    def param(self, node: Node, name: str) -> Any:
        """Trainable array ``name`` of ``node`` (``kernel``, ``bias``, ``gamma``, ...)."""
        return self.params[node.key(name)]

    def has_param(self, node: Node, name: str) -> bool:
        """Whether ``node`` has trainable array ``name`` (``use_bias: false`` has no ``bias``)."""
        return node.key(name) in self.params

    def read_state(self, node: Node, name: str) -> Any:
        """Non-trainable array ``name`` of ``node`` (``moving_mean``, ...), as it was before this pass."""
        return self.state[node.key(name)]

    def write_state(self, node: Node, name: str, value: Any) -> None:
        """Record the new value of state array ``name`` of ``node``."""
        self.new_state[node.key(name)] = value

    def updated_state(self) -> dict[str, Any]:
        """The state after this pass: what lowerings wrote, the old value elsewhere."""
        return {k: self.new_state.get(k, v) for k, v in self.state.items()}


Lowering = Callable[[LoweringContext, Node, list], Any]


class OpRegistry(dict, Generic[F]):
    """Maps an IR op type to the function that lowers it for one engine.

    ``@registry.register("dense")`` adds a function; looking up an op the engine lacks raises a
    :class:`BackendError` naming the op and the engine. A backend's supported layers are the keys.
    """

    def __init__(self, engine: str):
        super().__init__()
        self.engine = engine

    def register(self, *ops: str) -> Callable[[F], F]:
        """Decorator: register the lowering of one or more ops."""

        def add(fn: F) -> F:
            for op in ops:
                self[op] = fn
            return fn

        return add

    def lower(self, ctx: LoweringContext, node: Node, inputs: list) -> Any:
        """Apply the lowering of ``node`` to its input values."""
        if node.op not in self:
            raise BackendError(
                f"layer {node.index} '{node.name}' ({node.op}) has no lowering in backend '{self.engine}'"
            )
        return self[node.op](ctx, node, inputs)

    def run_graph(
        self, ctx: LoweringContext, graph: Graph, x: Any, targets: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Values of the nodes ``targets`` depend on (default: every node), keyed by name; ``input`` is ``x``."""
        return run_graph(self.lower, ctx, graph, x, targets)

    def head(self, ctx: LoweringContext, graph: Graph, x: Any) -> Any:
        """The value the loss is computed from (the logits when the output is a fused softmax)."""
        return self.run_graph(ctx, graph, x, (graph.head,))[graph.head]

    def __missing__(self, op: str) -> F:
        raise BackendError(f"backend '{self.engine}' has no lowering for layer type '{op}'")


def run_graph(
    lower: Callable[[LoweringContext, Node, list], Any],
    ctx: LoweringContext,
    graph: Graph,
    x: Any,
    targets: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Walk ``graph`` in declaration order, computing what ``targets`` need; returns every computed value.

    A value read by several nodes is computed once (its gradient is summed by the engine's autodiff).
    """
    nodes = graph.nodes if targets is None else _needed(graph, targets)
    values: dict[str, Any] = {INPUT: x}
    for node in nodes:
        values[node.name] = lower(ctx, node, [values[name] for name in graph.inputs_of(node)])
    return values


def _needed(graph: Graph, targets: Sequence[str]) -> tuple[Node, ...]:
    names: set[str] = set()
    for target in targets:
        names.update(n.name for n in graph.ancestors(target))
    return tuple(n for n in graph.nodes if n.name in names)


def node_outputs(values: Mapping[str, Any], graph: Graph) -> list[Any]:
    """Every node's value in declaration order (for per-layer comparison)."""
    return [values[n.name] for n in graph.nodes]


def finish(ctx: LoweringContext, graph: Graph, head_value: Any) -> Any:
    """The model's final output from its head (applies the final softmax that the head left out)."""
    return ctx.ops.softmax(head_value) if graph.loss_from_logits else head_value
