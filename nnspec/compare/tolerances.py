"""Error measures and the default tolerances of ``nnspec compare`` (documented in docs/backends.md).

Every measure compares an engine's array ``a`` with the NumPy float64 reference ``r``:

* ``max_abs``: ``max |a - r|``
* ``max_rel``: ``max |a - r| / max |r|`` (relative to the largest reference value of the tensor, so that
  elements that are zero or tiny in the reference, like dead ReLUs, do not blow the measure up)

The training trajectory compares, per step, the loss (relative error) and the weights: ``weights_rel`` is
``||w - w_ref|| / ||w_ref||`` over all weights together (Euclidean norms), ``weights_max_abs`` the largest
elementwise difference. A tensor agrees when its relative measure is at most the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

import numpy as np

_TINY = 1e-30


@dataclass(frozen=True)
class Tolerances:
    """Relative tolerances per part of the comparison."""

    forward: float
    gradients: float
    trajectory: float

    def scaled(self, factor: float) -> "Tolerances":
        """All tolerances multiplied by ``factor``."""
        return Tolerances(self.forward * factor, self.gradients * factor, self.trajectory * factor)


#: Defaults per precision (``train.precision``; a float64 model is ``float64``): a few times the errors measured
#: on specs/digits_resnet.yaml, far below those of a wrong lowering (docs/benchmarks.md, "Measurements behind
#: design choices").
DEFAULT_TOLERANCES: Mapping[str, Tolerances] = {
    "float64": Tolerances(forward=1e-10, gradients=1e-9, trajectory=1e-8),
    "float32": Tolerances(forward=1e-5, gradients=1e-4, trajectory=1e-4),
    "tf32": Tolerances(forward=1e-2, gradients=1e-1, trajectory=5e-2),
    "mixed_float16": Tolerances(forward=1e-2, gradients=1e-1, trajectory=5e-2),
    "mixed_bfloat16": Tolerances(forward=5e-2, gradients=3e-1, trajectory=1e-1),
}


def tolerances_for(precision: str, tolerance: float | None = None) -> Tolerances:
    """The default tolerances of ``precision`` (a policy name, or the dtype float32/float64); a single
    ``tolerance`` replaces all three."""
    base = DEFAULT_TOLERANCES[precision]
    if tolerance is None:
        return base
    return replace(base, forward=tolerance, gradients=tolerance, trajectory=tolerance)


def errors(actual: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """``(max_abs, max_rel)`` of ``actual`` against ``reference`` (see the module docstring).

    A shape mismatch or a non-finite value gives infinite errors.
    """
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape:
        return float("inf"), float("inf")
    if a.size == 0:
        return 0.0, 0.0
    if not np.all(np.isfinite(a)):
        return float("inf"), float("inf")
    max_abs = float(np.max(np.abs(a - r)))
    return max_abs, max_abs / max(float(np.max(np.abs(r))), _TINY)


def weights_distance(actual: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """``(max_abs, rel)`` between two weight dicts: largest elementwise difference, and relative Euclidean distance."""
    diff2 = ref2 = 0.0
    max_abs = 0.0
    for key, r in reference.items():
        r = np.asarray(r, dtype=np.float64)
        a = np.asarray(actual[key], dtype=np.float64)
        if a.shape != r.shape or not np.all(np.isfinite(a)):
            return float("inf"), float("inf")
        d = a - r
        diff2 += float(np.sum(d * d))
        ref2 += float(np.sum(r * r))
        if d.size:
            max_abs = max(max_abs, float(np.max(np.abs(d))))
    return max_abs, float(np.sqrt(diff2) / max(np.sqrt(ref2), _TINY))
