"""The engine-free meaning of a model, below the engines.

The :class:`~nnspec.semantics.ops.Ops` interface and its NumPy form, activations, losses, optimisers,
schedules, precision policies, dropout masks, normalisation, the training recipe, the lowering contract
and the lowerings every engine shares; the training state with its history, and weights files checked
against the spec. Nothing here imports an engine, a backend or the run machinery.
"""
