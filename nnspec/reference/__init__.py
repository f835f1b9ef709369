"""The NumPy reference: float64 forward (and backward) passes that every engine is checked against."""

from .forward import (
    FORWARD,
    LayerRecord,
    evaluate,
    forward_trace,
    head_index,
    head_of,
    layer_outputs,
    loss,
    loss_of_head,
    predict,
)

__all__ = [
    "FORWARD",
    "LayerRecord",
    "evaluate",
    "forward_trace",
    "head_index",
    "head_of",
    "layer_outputs",
    "loss",
    "loss_of_head",
    "predict",
]
