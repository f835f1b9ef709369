"""The run machinery, above the engines: the loop driver, checkpoints, the run directory and its status,
progress, TensorBoard, interrupts, early stopping and several processes. The meaning of a model (ops,
losses, optimisers, the training recipe) lives below the engines, in :mod:`nnspec.semantics`."""
