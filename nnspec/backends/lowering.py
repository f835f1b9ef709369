"""The per-op registry every engine's lowering module uses: one function per IR op type."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

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
