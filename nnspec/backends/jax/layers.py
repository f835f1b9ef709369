"""JAX's lowerings: the shared ones (:mod:`nnspec.semantics.shared_lowerings`), evaluated with :class:`~.ops.JaxOps`.

Every op is written once over the ``Ops`` interface; JAX's own forms (convolution as matrix products on the
CPU with JAX < 0.11, the tiled max pool) are its implementations of the window primitives, in
:mod:`nnspec.backends.jax.windows`.
"""

from __future__ import annotations

from ...semantics.lowering import Lowering, LoweringContext, OpRegistry
from ...semantics.shared_lowerings import engine_registry

Context = LoweringContext
#: The shared lowerings, evaluated with JAX's Ops.
LOWERINGS: OpRegistry[Lowering] = engine_registry("jax")
