"""The training vocabulary's defaults, which the front end fills in and the engines compute with.

Optimisers (Keras 3's defaults) and learning-rate schedules: each name's default hyper-parameters, the
keys a schedule requires, and the slots an optimiser keeps per trainable weight. The formulas that use
them are in :mod:`nnspec.semantics.optimizers` and :mod:`nnspec.semantics.schedules`.
"""

from __future__ import annotations

from .ir import OptimizerConfig

OPTIMIZER_DEFAULTS: dict[str, dict[str, float | bool]] = {
    "sgd": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
    "adam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "rmsprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7},
}

SCHEDULE_DEFAULTS: dict[str, dict[str, float]] = {
    "constant": {},
    "step": {"factor": 0.1},
    "exponential": {"decay_rate": 0.96, "staircase": False},
    "cosine": {"alpha": 0.0},
}
SCHEDULE_REQUIRED: dict[str, tuple[str, ...]] = {
    "constant": (),
    "step": ("every",),
    "exponential": ("decay_steps",),
    "cosine": ("decay_steps",),
}


def slot_names(config: OptimizerConfig) -> tuple[str, ...]:
    """Names of the per-weight slots the optimiser keeps."""
    p = config.params
    if config.name == "sgd":
        return ("momentum",) if p.get("momentum", 0.0) else ()
    if config.name == "adam":
        return ("m", "v")
    if config.name == "rmsprop":
        return ("velocity", "momentum") if p.get("momentum", 0.0) else ("velocity",)
    raise ValueError(f"unknown optimizer {config.name!r}")
