"""What an engine's ``profile.py`` gives ``nnspec profile`` (:mod:`nnspec.runtime.profiling`), and the helpers
they share: one layer's compiled programs, its arrays, and the layer alone as a function.

Each engine's ``nnspec/backends/<engine>/profile.py`` has ``layer_programs(model, node, inputs, cotangent)``
and ``dispatch_programs(model)``, both returning :class:`LayerPrograms`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..compiler.ir import Node

if TYPE_CHECKING:
    from .base import CompiledModel


@dataclass(frozen=True)
class LayerPrograms:
    """One layer's two compiled programs on one engine; each call runs its program once and waits for it."""

    forward: Callable[[], object]
    backward: Callable[[], object]


def node_arrays(model: CompiledModel, node: Node) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(params, state)``: host copies of ``node``'s trainable arrays and state as ``model`` holds them now."""
    params, state = model.read_arrays("params"), model.read_arrays("state")
    return {node.key(p.name): params[node.key(p.name)] for p in node.params}, {
        node.key(s.name): state[node.key(s.name)] for s in node.state
    }


def layer_function(model: CompiledModel, node: Node, registry: Any) -> Callable[..., tuple[Any, dict[str, Any]]]:
    """``f(xs, params, state, step) -> (output, new_state)``: ``node`` alone in training mode, through the engine's
    lowering of it in ``registry`` (what JAX and TensorFlow differentiate for the backward)."""
    recipe = model.recipe  # type: ignore[attr-defined]

    def run(xs: list[Any], params: dict[str, Any], state: dict[str, Any], step: Any) -> tuple[Any, dict[str, Any]]:
        ctx = recipe.context(params, state, training=True, step=step)
        out = registry.lower(ctx, node, list(xs))
        return out, dict(ctx.new_state)

    return run
