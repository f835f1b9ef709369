"""The NumPy reference: float64 forward (and backward) passes that every engine is checked against."""

from .forward import (
    FORWARD,
    LayerRecord,
    ReferenceContext,
    Trace,
    evaluate,
    forward_trace,
    head_index,
    head_of,
    initial_state,
    layer_outputs,
    loss,
    loss_of_head,
    predict,
    run_trace,
    split_weights,
)

__all__ = [
    "FORWARD",
    "LayerRecord",
    "ReferenceContext",
    "Trace",
    "evaluate",
    "forward_trace",
    "head_index",
    "head_of",
    "initial_state",
    "layer_outputs",
    "loss",
    "loss_of_head",
    "predict",
    "run_trace",
    "split_weights",
]
