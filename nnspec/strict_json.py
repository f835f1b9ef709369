"""JSON that strict parsers accept: NaN and infinite numbers written as ``null``.

Below every other module (it imports only NumPy), so that engine-free state and the run machinery share it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON ``null``), recursively.

    NumPy scalars and arrays become plain Python numbers and lists.
    """
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value: Any) -> str:
    """Indented JSON text of ``value`` that strict parsers accept: non-finite numbers written as ``null``."""
    return json.dumps(finite_json(value), indent=2, allow_nan=False, default=str) + "\n"
