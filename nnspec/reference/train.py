"""The NumPy float64 reference optimiser step and K-step training trajectory.

Built only from the shared definitions: :func:`nnspec.reference.backward.loss_and_gradients` for the
gradients, :func:`nnspec.runtime.schedules.learning_rate` and :func:`nnspec.runtime.optimizers.apply_updates`
with :class:`~nnspec.runtime.numpy_ops.NumpyOps` for the update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from ..compiler.ir import Graph
from ..runtime.numpy_ops import NumpyOps
from ..runtime.optimizers import apply_updates, init_state
from ..runtime.schedules import learning_rate
from .backward import loss_and_gradients

_OPS = NumpyOps("float64")


@dataclass
class ReferenceTrainer:
    """Reference training state: float64 weights, optimiser slots and the step counter."""

    graph: Graph
    weights: dict[str, np.ndarray]
    state: dict[str, np.ndarray] = field(default_factory=dict)
    step: int = 0

    @classmethod
    def start(cls, graph: Graph, weights: Mapping[str, np.ndarray], step: int = 0) -> "ReferenceTrainer":
        """A trainer at ``weights`` (cast to float64) with fresh optimiser slots."""
        w64 = {k: np.array(v, dtype=np.float64) for k, v in weights.items()}
        return cls(graph, w64, init_state(graph.train.optimizer, w64), step)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimiser step on batch ``(x, y)`` (dropout on, masks of the current step); returns its loss.

        Mirrors :meth:`nnspec.backends.base.CompiledModel.train_step`: the loss is the one computed with the
        weights before the update, and :attr:`step` advances by one.
        """
        cfg = self.graph.train
        loss, grads = loss_and_gradients(self.graph, self.weights, x, y, step=self.step, training=True)
        lr = learning_rate(_OPS, cfg.schedule, cfg.optimizer.learning_rate, self.step)
        params, state = apply_updates(_OPS, cfg.optimizer, lr, self.step, self.weights, grads, self.state, cfg.weight_decay)
        self.weights = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        self.state = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
        self.step += 1
        return loss


@dataclass(frozen=True)
class Trajectory:
    """Loss per step and the weights after each step (``weights[k]`` is after step ``k``)."""

    losses: list[float]
    weights: list[dict[str, np.ndarray]]


def reference_trajectory(graph: Graph, weights: Mapping[str, np.ndarray], batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> Trajectory:
    """Train the reference from ``weights`` over ``batches`` (one optimiser step each), from step 0."""
    trainer = ReferenceTrainer.start(graph, weights)
    losses: list[float] = []
    snapshots: list[dict[str, np.ndarray]] = []
    for x, y in batches:
        losses.append(trainer.train_step(x, y))
        snapshots.append({k: v.copy() for k, v in trainer.weights.items()})
    return Trajectory(losses, snapshots)
