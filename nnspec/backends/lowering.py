"""What every engine's lowering module shares: the per-op registry and the forward-pass context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

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
