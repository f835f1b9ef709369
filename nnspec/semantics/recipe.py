"""The training step, evaluation and prediction of every engine, written once.

An engine supplies only what is its own, through :class:`EngineSeam`: how it walks the graph (by
default its per-op lowerings through :func:`nnspec.semantics.lowering.run_graph`), how it differentiates
(``value_and_grad``), and, outside this module, how it compiles programs and places arrays. Everything
else, in the order a step runs, is here:

1. forward in training mode (dropout masks of ``step``, batch statistics) up to the head;
2. the loss from the head (:func:`nnspec.semantics.losses.loss_from_head`, from the logits when the
   output is a fused softmax);
3. the gradient of the loss with respect to the trainable weights (the engine's autodiff);
4. the learning rate of ``step`` (:func:`nnspec.semantics.schedules.learning_rate`);
5. the optimiser update (:func:`nnspec.semantics.optimizers.apply_updates`);
6. the state update (what stateful lowerings wrote during step 1).

Precision (:mod:`nnspec.semantics.precision`): under a mixed policy the forward pass runs on the engine's
*compute* Ops (bfloat16 or float16): weights, state and inputs are cast to the compute type on entry and
the head and the new state cast back to the storage type on exit, so the loss, the gradients (through the
casts), the optimiser and the evaluation sums are float32. Under ``mixed_float16`` steps 2 and 3 are loss
scaled and step 5 is skipped when a gradient is not finite (:meth:`TrainingRecipe._scaled_update`).

Under the divergence guard (``train.on_divergence: stop``) an epoch runs :meth:`TrainingRecipe.guarded_step`
instead: steps 1 to 3, a test that the loss is finite, and steps 4 to 6 kept only when it is (under
``ops.cond``, or chosen array by array with ``ops.where``). A step whose loss is not finite, and every
later step of the epoch, leaves params, slots and state as they were (the test's boolean is carried from
step to step in a :class:`Guard`). The engine reads the guard back once, with the epoch's sums.

All functions are pure over engine arrays: dicts of trainable ``params``, non-trainable ``state`` and
optimiser ``slots``, each keyed as in the weights contract. JAX and Keras trace them under ``jit``,
TensorFlow inside ``tf.function``, PyTensor builds its symbolic graph from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from ..compiler.ir import Graph
from .losses import correct_count, loss_from_head, per_example_loss
from .lowering import LoweringContext, node_outputs
from .optimizers import apply_updates
from .precision import GOOD_STEPS, GROWTH_INTERVAL, INITIAL_LOSS_SCALE, LOSS_SCALE, POLICIES, Policy, wide_keys
from .schedules import learning_rate

Arrays = Mapping[str, Any]
#: ``walk(ctx, graph, x, targets) -> {name: value}``: an engine's forward pass over the graph.
Walk = Callable[[LoweringContext, Graph, Any, Sequence[str] | None], Mapping[str, Any]]
#: ``value_and_grad(f)`` where ``f(params, *args) -> (loss, aux)`` gives ``g(params, *args) -> ((loss, aux), grads)``.
ValueAndGrad = Callable[[Callable[..., Any]], Callable[..., Any]]


@dataclass(frozen=True)
class EngineSeam:
    """What one engine contributes to the shared recipe: its Ops, its graph walk and its autodiff.

    ``compute_ops``: the engine's Ops in the compute type of a mixed precision policy (None: ``ops``).
    """

    ops: Any
    walk: Walk
    value_and_grad: ValueAndGrad
    compute_ops: Any = None


class StepResult(NamedTuple):
    """The outcome of one optimiser step: new params, slots and state, the batch loss and correct count."""

    params: dict[str, Any]
    slots: dict[str, Any]
    state: dict[str, Any]
    loss: Any
    correct: Any


class Guard(NamedTuple):
    """The divergence guard an epoch carries from step to step (engine scalars).

    ``ok``: boolean, every step of the epoch so far was kept. ``kept``: how many steps were kept (in the
    float dtype: exact up to 2**24 steps an epoch in float32). ``loss``: the loss of the latest step taken
    while ``ok`` held, so once ``ok`` is false, the loss of the first step that was not kept.
    """

    ok: Any
    kept: Any
    loss: Any


class TrainingRecipe:
    """The step recipe and the evaluation / prediction functions of one graph on one engine."""

    def __init__(self, graph: Graph, seam: EngineSeam, precision: Policy | None = None):
        self.graph = graph
        self.seam = seam
        self.ops = seam.ops
        self.precision = precision or POLICIES["float32"]
        self.compute_ops = seam.compute_ops if (self.precision.mixed and seam.compute_ops is not None) else seam.ops
        self.seed = int(graph.train.seed)
        self._wide_keys = wide_keys(graph)

    # ---- forward ----------------------------------------------------------------------------------
    def _to_compute(self, arrays: Arrays) -> dict[str, Any]:
        """``arrays`` in the compute type (unchanged unless the policy is mixed; the weights of
        normalisation layers stay in the storage type, which those layers compute in)."""
        if self.compute_ops is self.ops:
            return dict(arrays)
        return {k: v if k in self._wide_keys else self.compute_ops.to_float(v) for k, v in arrays.items()}

    def _input_to_compute(self, x: Any) -> Any:
        """The input batch in the compute type (unchanged unless the policy is mixed)."""
        return x if self.compute_ops is self.ops else self.compute_ops.to_float(x)

    def _to_storage(self, value: Any) -> Any:
        """``value`` back in the storage type (unchanged unless the policy is mixed)."""
        return value if self.compute_ops is self.ops else self.ops.to_float(value)

    def context(
        self, params: Arrays, state: Arrays, *, training: bool, step: Any = 0, batch: int | None = None
    ) -> LoweringContext:
        """A fresh lowering context for one forward pass (in the compute type; state stays in the storage
        type: only normalisation layers read it, and they compute in the storage type)."""
        storage = None if self.compute_ops is self.ops else self.ops
        return LoweringContext(
            self.compute_ops,
            self._to_compute(params),
            dict(state),
            training,
            step,
            self.seed,
            batch,
            storage_ops=storage,
        )

    def head(
        self, params: Arrays, state: Arrays, x: Any, *, training: bool, step: Any = 0, batch: int | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """The head (logits when the output is a fused softmax) and the state after this pass, in the storage type."""
        ctx = self.context(params, state, training=training, step=step, batch=batch)
        values = self.seam.walk(ctx, self.graph, self._input_to_compute(x), (self.graph.head,))
        new_state = {k: self._to_storage(ctx.new_state[k]) if k in ctx.new_state else v for k, v in state.items()}
        return self._to_storage(values[self.graph.head]), new_state

    def outputs(
        self, params: Arrays, state: Arrays, x: Any, *, training: bool, step: Any = 0, batch: int | None = None
    ) -> list[Any]:
        """Every node's output in declaration order (per-layer comparison), in the storage type."""
        ctx = self.context(params, state, training=training, step=step, batch=batch)
        values = self.seam.walk(ctx, self.graph, self._input_to_compute(x), None)
        return [self._to_storage(v) for v in node_outputs(values, self.graph)]

    def predict(self, params: Arrays, state: Arrays, x: Any, batch: int | None = None) -> Any:
        """The model's final output in inference mode (probabilities when it ends in softmax)."""
        head, _ = self.head(params, state, x, training=False, batch=batch)
        return self.ops.softmax(head) if self.graph.loss_from_logits else head

    # ---- training ---------------------------------------------------------------------------------
    def loss(
        self, params: Arrays, state: Arrays, x: Any, y: Any, step: Any, batch: int | None = None
    ) -> tuple[Any, tuple[Any, dict[str, Any]]]:
        """Training loss of one batch, with ``(head, new_state)`` as auxiliary output. Differentiated in ``params``."""
        head, new_state = self.head(params, state, x, training=True, step=step, batch=batch)
        return loss_from_head(self.ops, self.graph, head, y), (head, new_state)

    def gradients(
        self, params: Arrays, state: Arrays, x: Any, y: Any, step: Any, batch: int | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Training loss of one batch and its gradient per trainable weight, as a training step computes it
        (under loss scaling: with the initial scale, then divided by it)."""
        slots = {LOSS_SCALE: self.ops.constant(INITIAL_LOSS_SCALE)} if self.precision.loss_scaling else {}
        loss, _, _, grads = self._loss_and_grads(params, slots, state, x, y, step, batch)
        return loss, grads

    def _loss_and_grads(
        self, params: Arrays, slots: Arrays, state: Arrays, x: Any, y: Any, step: Any, batch: int | None
    ) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
        """Steps 1 to 3: ``(loss, head, new_state, grads)``; under loss scaling the gradients are of the
        scaled loss divided by the scale (not finite when the scaled loss overflowed)."""
        if not self.precision.loss_scaling:
            (loss, (head, new_state)), grads = self.seam.value_and_grad(self.loss)(params, state, x, y, step, batch)
            return loss, head, dict(new_state), dict(grads)

        def scaled(params: Arrays, scale: Any) -> tuple[Any, tuple[Any, Any, Any]]:
            loss, (head, new_state) = self.loss(params, state, x, y, step, batch)
            return loss * scale, (loss, head, new_state)

        scale = slots[LOSS_SCALE]
        (_, (loss, head, new_state)), grads = self.seam.value_and_grad(scaled)(params, scale)
        inverse = self.ops.constant(1.0) / scale
        return loss, head, dict(new_state), {k: g * inverse for k, g in dict(grads).items()}

    def train_step(
        self, params: Arrays, slots: Arrays, state: Arrays, step: Any, x: Any, y: Any, batch: int | None = None
    ) -> StepResult:
        """One optimiser step on batch ``(x, y)`` at optimiser step ``step`` (see the module docstring)."""
        loss, head, new_state, grads = self._loss_and_grads(params, slots, state, x, y, step, batch)
        new_params, new_slots, new_state = self._scaled_update(params, slots, state, grads, step, new_state)
        return StepResult(new_params, new_slots, new_state, loss, correct_count(self.ops, head, y))

    def _update(self, params: Arrays, slots: Arrays, grads: Arrays, step: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Steps 4 and 5: the learning rate of ``step`` and the optimiser update; new params and slots."""
        train = self.graph.train
        lr = learning_rate(self.ops, train.schedule, train.optimizer.learning_rate, step)
        new_params, new_slots = apply_updates(
            self.ops, train.optimizer, lr, step, dict(params), dict(grads), dict(slots), train.weight_decay
        )
        return dict(new_params), dict(new_slots)

    def _scaled_update(
        self, params: Arrays, slots: Arrays, state: Arrays, grads: Arrays, step: Any, new_state: Arrays
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Steps 4 to 6, under loss scaling when the policy has it: new params, slots and state.

        Without loss scaling this is the plain update. With it, a step whose gradients are not all
        finite keeps params, optimiser slots and state, and halves the scale; a finite step updates and
        counts towards doubling the scale after :data:`GROWTH_INTERVAL` finite steps in a row.
        """
        if not self.precision.loss_scaling:
            return (*self._update(params, slots, grads, step), dict(new_state))
        ops = self.ops
        weight_slots = {k: v for k, v in slots.items() if k not in (LOSS_SCALE, GOOD_STEPS)}
        finite = ops.all_finite(ops.constant(0.0))
        for g in grads.values():
            finite = ops.logical_and(finite, ops.all_finite(g))
        updated_params, updated_slots = self._update(params, weight_slots, grads, step)
        scale, good = slots[LOSS_SCALE], slots[GOOD_STEPS] + ops.constant(1.0)
        grow = ops.equal(good, ops.constant(float(GROWTH_INTERVAL)))
        zero = ops.constant(0.0)
        new_params = {k: ops.where(finite, v, params[k]) for k, v in updated_params.items()}
        new_slots = {k: ops.where(finite, v, slots[k]) for k, v in updated_slots.items()}
        new_slots[LOSS_SCALE] = ops.where(
            finite, ops.where(grow, scale * ops.constant(2.0), scale), scale * ops.constant(0.5)
        )
        new_slots[GOOD_STEPS] = ops.where(finite, ops.where(grow, zero, good), zero)
        kept_state = {k: v if v is state[k] else ops.where(finite, v, state[k]) for k, v in new_state.items()}
        return new_params, new_slots, kept_state

    def guard_start(self) -> Guard:
        """The guard at the start of an epoch: nothing kept yet, nothing wrong yet."""
        zero = self.ops.constant(0.0)
        return Guard(self.ops.all_finite(zero), zero, zero)

    def guarded_step(
        self,
        params: Arrays,
        slots: Arrays,
        state: Arrays,
        step: Any,
        x: Any,
        y: Any,
        guard: Guard,
        batch: int | None = None,
        *,
        lazy: bool = False,
    ) -> tuple[StepResult, Guard]:
        """:meth:`train_step` under the divergence guard.

        The step is kept when ``guard.ok`` holds and its loss is finite; a kept step returns exactly what
        :meth:`train_step` gives, a step that is not kept returns the input params, slots and state, and a
        loss and correct count of zero (the epoch's sums count kept steps only). Forward and gradient run
        as in :meth:`train_step`; the update (schedule, optimiser, new state) either runs under
        ``ops.cond`` on the one boolean (``lazy``), or runs always and each array is chosen with
        ``ops.where``. Which costs less depends on the engine and the program (an engine's ``model.py``
        says what it measured).
        """
        ops = self.ops
        loss, head, new_state, grads = self._loss_and_grads(params, slots, state, x, y, step, batch)
        keep = ops.logical_and(guard.ok, ops.all_finite(loss))

        def update() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
            return self._scaled_update(params, slots, state, grads, step, new_state)

        def hold() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
            return dict(params), dict(slots), dict(state)

        if lazy:
            new_params, new_slots, new_state = ops.cond(keep, update, hold)
        else:
            new_params, new_slots, new_state = (
                {k: v if v is old[k] else ops.where(keep, v, old[k]) for k, v in group.items()}
                for group, old in zip(update(), hold())
            )
        zero = ops.constant(0.0)
        result = StepResult(
            dict(new_params),
            dict(new_slots),
            dict(new_state),
            ops.where(keep, loss, zero),
            ops.where(keep, correct_count(ops, head, y), zero),
        )
        return result, Guard(keep, guard.kept + ops.to_float(keep), ops.where(guard.ok, loss, guard.loss))

    # ---- evaluation -------------------------------------------------------------------------------
    def eval_sums(
        self, params: Arrays, state: Arrays, x: Any, y: Any, valid: Any = None, batch: int | None = None
    ) -> tuple[Any, Any]:
        """Summed loss and correct count of one chunk in inference mode.

        ``valid`` (optional, a boolean vector) marks the real examples of a chunk padded to a fixed size;
        padded rows count for nothing. Without it every row counts.
        """
        ops = self.ops
        head, _ = self.head(params, state, x, training=False, batch=batch)
        losses = per_example_loss(ops, self.graph, head, y)
        hits = ops.to_float(ops.equal(ops.argmax(head), y))
        if valid is not None:
            zero = ops.constant(0.0)
            losses, hits = ops.where(valid, losses, zero), ops.where(valid, hits, zero)
        return ops.sum(losses), ops.sum(hits)


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """``(start, length)`` of the chunks that cover ``n`` examples, ``size`` at a time (the last one shorter)."""
    size = max(1, int(size))
    return [(start, min(size, n - start)) for start in range(0, n, size)]
