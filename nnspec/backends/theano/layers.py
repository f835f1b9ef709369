"""PyTensor's lowerings: the shared ones (:mod:`nnspec.semantics.shared_lowerings`) over :class:`~.ops.PyTensorOps`.

With static batch sizes they build the same typed graph the earlier PyTensor-only lowerings built (a reshape
to ``(-1, n)`` of a static-shaped input gets the static shape ``(batch, n)``). Convolution and pooling are
PyTensor graphs of patches, matrix products and reductions (:mod:`nnspec.backends.theano.windows`).
Importing this module imports no PyTensor (``TheanoBackend.capabilities()`` reads the registry's keys, and
PyTensor must be configured by :func:`nnspec.backends.theano.config.setup` before its first import).
"""

from __future__ import annotations

from ...semantics.lowering import Lowering, LoweringContext, OpRegistry
from ...semantics.shared_lowerings import engine_registry

Context = LoweringContext
#: The shared lowerings, evaluated with PyTensor's Ops.
LOWERINGS: OpRegistry[Lowering] = engine_registry("theano")
