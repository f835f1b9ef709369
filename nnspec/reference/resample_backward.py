"""The float64 reference backward rules of ``zero_pad2d``, ``crop2d`` and ``upsample2d``.

Padding and cropping are each other's adjoints; upsampling's adjoint is the transpose of its interpolation
matrices (:mod:`nnspec.reference.resample`). ``spatial_dropout2d`` uses ``dropout``'s rule (its keep-mask
broadcasts over the image).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from . import resample
from .forward import LayerRecord

Grads = dict[str, np.ndarray]
Rule = Callable[[LayerRecord, Mapping[str, np.ndarray], np.ndarray], tuple[object, Grads]]


def _zero_pad2d(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[object, Grads]:
    return resample.crop(dy, rec.node.attrs["padding"]), {}


def _crop2d(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[object, Grads]:
    return resample.pad(dy, rec.node.attrs["cropping"]), {}


def _upsample2d(rec: LayerRecord, w: Mapping[str, np.ndarray], dy: np.ndarray) -> tuple[object, Grads]:
    a = rec.node.attrs
    spatial = (rec.input.shape[1], rec.input.shape[2])
    return resample.upsample_backward(dy, spatial, tuple(a["size"]), a["interpolation"]), {}  # type: ignore[arg-type]


#: The rules, by op.
RULES: dict[str, Rule] = {"zero_pad2d": _zero_pad2d, "crop2d": _crop2d, "upsample2d": _upsample2d}
