"""The NumPy float64 reference optimiser step and K-step training trajectory.

Built only from the shared definitions: :func:`nnspec.reference.backward.loss_gradients_and_state` for the
gradients and the new state, :func:`nnspec.semantics.schedules.learning_rate` and
:func:`nnspec.semantics.optimizers.apply_updates` with :class:`~nnspec.semantics.numpy_ops.NumpyOps` for the
update. A step follows the order of every engine's step: forward in training mode (dropout masks of the
step, batch statistics) with the weights before the update, loss, gradients, optimiser update of the
trainable weights; the state after the step is what the forward pass wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from ..compiler.ir import Graph
from ..semantics.numpy_ops import NumpyOps
from ..semantics.optimizers import apply_updates, init_state
from ..semantics.schedules import learning_rate
from .backward import loss_gradients_and_state
from .forward import split_weights

_OPS = NumpyOps("float64")


def _f64(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v, dtype=np.float64) for k, v in arrays.items()}


@dataclass
class ReferenceTrainer:
    """Reference training state, in float64: trainable ``params``, non-trainable ``state`` (running
    statistics), optimiser ``slots`` (keyed ``<weight>/<slot>``) and the step counter.

    :attr:`weights` is the weights-file view: ``params`` and ``state`` in one dict.
    """

    graph: Graph
    params: dict[str, np.ndarray]
    state: dict[str, np.ndarray] = field(default_factory=dict)
    slots: dict[str, np.ndarray] = field(default_factory=dict)
    step: int = 0

    @classmethod
    def start(
        cls,
        graph: Graph,
        weights: Mapping[str, np.ndarray],
        step: int = 0,
        state: Mapping[str, np.ndarray] | None = None,
    ) -> "ReferenceTrainer":
        """A trainer at ``weights`` (cast to float64) with fresh optimiser slots.

        ``weights`` may hold state keys; ``state`` overrides them, and missing state starts from the
        graph's initial state.
        """
        trainable = {k for k, _, _ in graph.param_specs()}
        params, start_state = split_weights(graph, weights, state)
        params = {k: v for k, v in params.items() if k in trainable}
        return cls(graph, _f64(params), _f64(start_state), init_state(graph.train.optimizer, params), step)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """Trainable weights and state in one dict (what ``CompiledModel.get_weights`` gives)."""
        return {**self.params, **self.state}

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimiser step on batch ``(x, y)`` (dropout on, masks of the current step); returns its loss.

        Mirrors :meth:`nnspec.backends.base.CompiledModel.train_step`: the loss is the one computed with the
        weights before the update, the state becomes what the training forward pass wrote, and :attr:`step`
        advances by one.
        """
        cfg = self.graph.train
        loss, grads, new_state = loss_gradients_and_state(
            self.graph, self.params, x, y, step=self.step, training=True, state=self.state
        )
        lr = learning_rate(_OPS, cfg.schedule, cfg.optimizer.learning_rate, self.step)
        params, slots = apply_updates(
            _OPS, cfg.optimizer, lr, self.step, self.params, grads, self.slots, cfg.weight_decay
        )
        self.params, self.slots, self.state = _f64(params), _f64(slots), _f64(new_state)
        self.step += 1
        return loss


@dataclass(frozen=True)
class Trajectory:
    """Loss per step and the weights (trainable and state) after each step (``weights[k]`` is after step ``k``)."""

    losses: list[float]
    weights: list[dict[str, np.ndarray]]


def reference_trajectory(
    graph: Graph, weights: Mapping[str, np.ndarray], batches: Iterable[tuple[np.ndarray, np.ndarray]]
) -> Trajectory:
    """Train the reference from ``weights`` (which may hold state) over ``batches`` (one optimiser step each),
    from step 0."""
    trainer = ReferenceTrainer.start(graph, weights)
    losses: list[float] = []
    snapshots: list[dict[str, np.ndarray]] = []
    for x, y in batches:
        losses.append(trainer.train_step(x, y))
        snapshots.append({k: v.copy() for k, v in trainer.weights.items()})
    return Trajectory(losses, snapshots)
