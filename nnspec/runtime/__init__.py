"""What is the same on every engine: losses, optimisers, schedules, dropout masks, the loop driver,
metrics history, run directories and plots. Definitions here are written once against a small
array-operations interface (:mod:`nnspec.runtime.ops`) that each backend implements."""
