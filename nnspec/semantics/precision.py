"""Precision policies: ``train.precision``, the same meaning on every engine that supports it.

=================  ==========  ==========  =================================================================
policy             weights     compute     notes
=================  ==========  ==========  =================================================================
``float32``        float32     float32     the parity setting: matrix products and convolutions in full
                                           float32 (TF32 off, JAX ``Precision.HIGHEST``)
``tf32``           float32     float32     matrix products and convolutions may round their inputs to TF32
                                           (10-bit mantissa) where the device has it (NVIDIA Ampere and
                                           later); elsewhere the same numbers as ``float32``
``mixed_bfloat16`` float32     bfloat16    weights, optimiser slots and batch-norm statistics stay float32;
                                           each forward pass casts weights and inputs to bfloat16; batch and
                                           layer normalisation compute in float32 (as Keras's layers do);
                                           the loss is computed in float32 from the head cast to float32
``mixed_float16``  float32     float16     as ``mixed_bfloat16``, with dynamic loss scaling (Keras's
                                           ``LossScaleOptimizer`` rule, below)
``float64``        float64     float64     the model's dtype becomes float64
=================  ==========  ==========  =================================================================

Which ops compute in the storage type under a mixed policy is a fact of the op table (``OpDef.wide``:
:data:`WIDE_OPS`, the normalisation layers); their weights are not cast (:func:`wide_keys`).

Loss scaling (``mixed_float16``): the loss is multiplied by a scale before differentiation and the
gradients divided by it. The scale starts at 2**15; a step whose gradients are not all finite changes
no weight, slot or statistic and halves the scale; after 2000 consecutive finite steps it doubles. The
scale and the count of finite steps are kept with the optimiser slots (``loss_scale/scale``,
``loss_scale/good_steps``), so checkpoints carry them. A skipped step still counts as a step (the
optimiser step and the dropout masks move on), as in Keras's optimizer iterations under ``fit``.

What ``nnspec compare`` allows per precision, relative to the float64 reference, is in
:data:`nnspec.compare.tolerances.DEFAULT_TOLERANCES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..compiler.ir import PRECISIONS, Graph
from ..compiler.opset import WIDE_OPS
from .optimizers import init_state

#: slot keys of the loss scale (``<weight>/<slot>`` form, with ``loss_scale`` in the weight's place)
LOSS_SCALE = "loss_scale/scale"
GOOD_STEPS = "loss_scale/good_steps"
#: Keras's ``LossScaleOptimizer`` defaults
INITIAL_LOSS_SCALE = 2.0**15
GROWTH_INTERVAL = 2000


@dataclass(frozen=True)
class Policy:
    """How one precision setting computes: storage and compute dtypes, TF32, loss scaling."""

    name: str
    storage: str
    compute: str
    tf32: bool = False
    loss_scaling: bool = False

    @property
    def mixed(self) -> bool:
        """Whether the forward pass computes in a narrower type than the weights are stored in."""
        return self.compute != self.storage

    @property
    def full_precision_matmul(self) -> bool:
        """Whether matrix products and convolutions must run in full float32 (or float64)."""
        return not (self.tf32 or self.mixed)


POLICIES: dict[str, Policy] = {
    "float32": Policy("float32", "float32", "float32"),
    "tf32": Policy("tf32", "float32", "float32", tf32=True),
    "mixed_bfloat16": Policy("mixed_bfloat16", "float32", "bfloat16"),
    "mixed_float16": Policy("mixed_float16", "float32", "float16", loss_scaling=True),
    "float64": Policy("float64", "float64", "float64"),
}
assert tuple(POLICIES) == PRECISIONS


def policy_for(graph: Graph, dtype: str) -> Policy:
    """The policy a model of ``graph`` compiled in ``dtype`` runs under.

    A float64 model is always ``float64`` (``--dtype float64`` overrides the spec's precision, as a
    parity run should); a float32 model takes the spec's ``train.precision``, except that ``float64``
    there means plain ``float32`` once the dtype was forced to float32.
    """
    if dtype == "float64":
        return POLICIES["float64"]
    name = graph.train.precision
    return POLICIES["float32" if name == "float64" else name]


def wide_keys(graph: Graph) -> frozenset[str]:
    """The weights that stay in the storage type under a mixed policy: those of the ops that compute in it
    (``OpDef.wide``: the normalisation layers, as in Keras)."""
    return frozenset(key for key, node, _ in graph.param_specs() if node.op in WIDE_OPS)


def training_slots(graph: Graph, params: Mapping[str, np.ndarray], policy: Policy) -> dict[str, np.ndarray]:
    """Initial optimiser slots of ``params`` (host arrays), with the loss scale when ``policy`` scales the loss."""
    slots = init_state(graph.train.optimizer, params)
    if policy.loss_scaling:
        slots[LOSS_SCALE] = np.asarray(INITIAL_LOSS_SCALE, dtype=policy.storage)
        slots[GOOD_STEPS] = np.asarray(0.0, dtype=policy.storage)
    return slots
