"""Weights files: safetensors only (no pickle anywhere), checked on the way in.

Every weights file is read through :func:`nnspec.data.safety.open_regular` (no folders, FIFOs or devices;
the size is checked against the cap and the memory available before it is read). Each array must be
floating point and finite; with a spec, names and shapes must match it. Problems are
:class:`WeightsError` naming the file, the tensor and, for a NaN or infinity, its first index.

The weights contract (names, shapes, Keras's layouts) is engine-free, and every engine's ``save``/``load``
(:mod:`nnspec.backends.base`) as well as checkpoints and interop use this module, so it sits below the engines.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from ..compiler.ir import Graph
from ..errors import WeightsError


def expected_shapes(graph: Graph) -> dict[str, tuple[int, ...]]:
    """``{'<layer>.<param>': shape}`` of every array of ``graph``: trainable parameters and state."""
    return {key: tuple(spec.shape) for key, _, spec in (*graph.param_specs(), *graph.state_specs())}


def value_problems(weights: Mapping[str, np.ndarray]) -> list[str]:
    """Arrays of ``weights`` that are not floating point, or hold NaN or infinity (naming the first bad index)."""
    from ..data.safety import first_bad_value

    problems = []
    for key, value in weights.items():
        array = np.asarray(value)
        if array.dtype.kind != "f":
            problems.append(
                f"'{key}' has dtype {array.dtype}; weights must be floating point (float16, float32 or float64)"
            )
            continue
        bad = first_bad_value(array, float32_range=False)
        if bad is not None:
            problems.append(f"'{key}' holds a non-finite value: {bad.describe(key)}")
    return problems


def weight_differences(graph: Graph, weights: Mapping[str, np.ndarray]) -> list[str]:
    """Human-readable differences in names and shapes between ``weights`` and what ``graph`` needs (empty when
    they match)."""
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
    """Read a safetensors weights file; refuse a damaged one, non-float or non-finite arrays, and (with
    ``graph``) one whose names or shapes differ from the spec."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    from ..data.safety import check_size, open_regular, shown

    where = shown(path)
    with open_regular(path, "weights file", WeightsError) as f:
        check_size(os.fstat(f.fileno()).st_size, os.fspath(path), "weights file", WeightsError)
        try:
            data = f.read()
        except OSError as exc:
            raise WeightsError(f"{where}: cannot read the weights file ({exc.strerror or exc})") from None
    try:
        weights = load(data)
    except KeyError as exc:
        raise WeightsError(
            f"{where}: a tensor has dtype {exc.args[0]}, which NumPy cannot hold; save the weights as float32 or "
            "float64"
        ) from None
    except (SafetensorError, ValueError, TypeError, OverflowError) as exc:
        raise WeightsError(f"{where}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    problems = value_problems(weights)
    if problems:
        raise WeightsError(f"weights in {where} are not usable:\n  " + "\n  ".join(problems))
    if graph is not None:
        check_weights(graph, weights, where)
    return weights
