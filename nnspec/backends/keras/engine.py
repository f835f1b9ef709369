"""Keras 3 itself for nnspec: the engine it runs on here, and its multi-process start (on JAX only).

Nothing here imports Keras before it is asked to start several processes.
"""

from __future__ import annotations

import json
import os
import sys

from ...errors import NnspecError
from ..cluster import Cluster


def configured_engine() -> str:
    """The engine Keras uses or will use here, found without importing Keras when it is not loaded yet."""
    if "keras" in sys.modules:
        try:
            return sys.modules["keras"].backend.backend()
        except Exception:  # a half-imported keras: fall through to the configuration
            pass
    env = os.environ.get("KERAS_BACKEND")
    if env:
        return env.strip().lower()
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as fh:
            return str(json.load(fh).get("backend", "tensorflow")).lower()
    except (OSError, ValueError):
        return "tensorflow"


def start_processes(cluster: Cluster) -> None:
    """``keras.distribution.initialize`` for ``cluster`` on Keras's JAX engine; refused on any other.

    JAX's distributed runtime is started with nnspec's time limits (as for the jax backend), then Keras seeds its
    random generator across the processes as ``keras.distribution.initialize`` does (which would start JAX with
    JAX's own limits).
    """
    if configured_engine() != "jax":
        raise NnspecError("backend 'keras' cannot train in several processes; use the jax or tensorflow backend")
    from ..jax.engine import start_processes as start_jax

    start_jax(cluster)
    try:
        from keras.src.backend.jax.distribution_lib import initialize_rng
    except ImportError:  # another Keras layout: nnspec seeds every weight and mask itself
        return
    initialize_rng()
