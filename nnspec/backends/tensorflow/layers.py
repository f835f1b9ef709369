"""TensorFlow's lowerings: the shared ones, evaluated with :class:`~.ops.TensorFlowOps`, and its own dropout.

Every lowering has the signature shared by all engines and the reference (see
:mod:`nnspec.semantics.lowering`): ``fn(ctx, node, inputs) -> output``. The registry starts from
:func:`nnspec.semantics.shared_lowerings.engine_registry`; TensorFlow's own forms of the shared ones are its
``Ops`` (``tf.nn`` convolutions and pools in :mod:`.windows`, ``tf.nn.bias_add`` and ``tf.nn.relu``: see
:mod:`.ops`). One lowering is replaced by a faster form that computes the same numbers:

* ``dropout``: the keep-mask (the shared ``keep_mask``: a dozen uint32 passes over the layer's elements)
  is compiled with XLA on its own, a function of the step only, so it runs as one loop instead of a dozen
  kernels (docs/benchmarks.md, "Measurements behind design choices"). Integer arithmetic, so bit for bit
  the same; the mask is applied as :func:`nnspec.semantics.dropout.apply_dropout` applies it. It needs the
  batch size statically (``ctx.batch``, else the static first axis of the input): TensorFlow's training
  programs gather batches of a fixed size, so it is known there.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ...compiler.ir import Node
from ...errors import BackendError
from ...semantics.dropout import keep_mask, layer_mask_shape, scale
from ...semantics.lowering import Lowering, LoweringContext, OpRegistry
from ...semantics.shared_lowerings import engine_registry
from .engine import load_tensorflow
from .ops import TensorFlowOps

tf = load_tensorflow()

Context = LoweringContext
#: The shared lowerings (:mod:`nnspec.semantics.shared_lowerings`) plus TensorFlow's own (module docstring).
LOWERINGS: OpRegistry[Lowering] = engine_registry("tensorflow")
lowering = LOWERINGS.register


@lowering("dropout", "spatial_dropout2d")
def _dropout(ctx: Context, node: Node, inputs: list) -> Any:
    x = inputs[0]
    if not ctx.training:
        return x
    rate = float(node.attrs["rate"])
    if rate <= 0.0:
        return x
    batch = ctx.batch if ctx.batch is not None else x.shape[0]
    if batch is None:
        raise BackendError(
            f"layer {node.index} '{node.name}' (dropout): training needs a static batch size; "
            f"got shape {tuple(x.shape)}"
        )
    shape = layer_mask_shape(node, int(batch), spatial=node.op == "spatial_dropout2d")
    keep = compiled_keep_mask(ctx.seed, node.index, shape, rate)(tf.cast(ctx.step, tf.int64))
    return ctx.ops.where(keep, x * ctx.ops.constant(scale(rate, ctx.ops.float_dtype)), ctx.ops.constant(0.0))


@lru_cache(maxsize=None)
def compiled_keep_mask(seed: int, layer_index: int, shape: tuple[int, ...], rate: float) -> Any:
    """The shared ``keep_mask`` for one dropout layer as an XLA-compiled function of the (int64) step."""
    ops = TensorFlowOps("float32")  # the mask uses only the uint32 operations

    def mask(step: Any) -> Any:
        return keep_mask(ops, seed, layer_index, step, shape, rate)

    return tf.function(mask, input_signature=[tf.TensorSpec((), tf.int64)], jit_compile=True, autograph=False)
