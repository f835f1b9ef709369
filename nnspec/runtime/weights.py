"""Weights files: safetensors only (no pickle anywhere), checked against the spec on the way in."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from ..compiler.ir import Graph
from ..errors import WeightsError


def expected_shapes(graph: Graph) -> dict[str, tuple[int, ...]]:
    """``{'<layer>.<param>': shape}`` of every array of ``graph``: trainable parameters and state."""
    return {key: tuple(spec.shape) for key, _, spec in (*graph.param_specs(), *graph.state_specs())}


def weight_differences(graph: Graph, weights: Mapping[str, np.ndarray]) -> list[str]:
    """Human-readable differences between ``weights`` and what ``graph`` needs (empty when they match)."""
    want = expected_shapes(graph)
    problems = [f"missing '{k}' (shape {list(s)})" for k, s in want.items() if k not in weights]
    problems += [f"unexpected '{k}' (not a parameter of this spec)" for k in weights if k not in want]
    problems += [
        f"'{k}' has shape {list(np.shape(weights[k]))}, the spec needs {list(s)}"
        for k, s in want.items()
        if k in weights and tuple(np.shape(weights[k])) != s
    ]
    return problems


def check_weights(graph: Graph, weights: Mapping[str, np.ndarray], source: str | None = None) -> None:
    """Raise :class:`WeightsError` listing every difference between ``weights`` and the spec."""
    problems = weight_differences(graph, weights)
    if problems:
        where = f" in {source}" if source else ""
        raise WeightsError(f"weights{where} do not match spec '{graph.name}':\n  " + "\n  ".join(problems))


def save_weights(path: str | os.PathLike, weights: Mapping[str, np.ndarray], graph: Graph | None = None) -> None:
    """Write ``weights`` to a safetensors file (with the spec's name in the metadata)."""
    from safetensors.numpy import save_file

    metadata = {"format": "nnspec", "spec": graph.name} if graph is not None else {"format": "nnspec"}
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(path), metadata=metadata)


def load_weights(path: str | os.PathLike, graph: Graph | None = None) -> dict[str, np.ndarray]:
    """Read a safetensors weights file; with ``graph``, refuse one whose names or shapes differ."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such weights file")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    if graph is not None:
        check_weights(graph, weights, str(path))
    return weights
