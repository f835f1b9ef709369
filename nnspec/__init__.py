"""nnspec: write a neural network once as a YAML spec; check it, infer its shapes, and compile it to
JAX, TensorFlow, Theano (PyTensor) or Keras 3. Importing nnspec imports no engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from . import fit_driver
from .errors import BackendError, DataError, Diagnostic, NnspecError, SpecError, WeightsError
from .version import __version__

if TYPE_CHECKING:
    import numpy as np

    from .backends.base import CompiledModel
    from .compiler.ir import Graph


def load(path: str, overrides: Mapping[str, Any] | list[str] | None = None) -> "Graph":
    """Load, check and shape-infer a spec file; raises :class:`SpecError` listing every problem.

    ``overrides`` are ``key=value`` settings (``{'train.epochs': 3}`` or ``['train.epochs=3']``), as
    ``--set`` on the command line.
    """
    from .compiler.frontend import load_spec

    return load_spec(path, overrides=overrides)


def compile(
    spec: "Graph | str",
    backend: str = "jax",
    weights: "Mapping[str, np.ndarray] | str | None" = None,
    *,
    device: str = "auto",
    dtype: str | None = None,
) -> "CompiledModel":
    """Compile a spec (a loaded graph or a path) on ``backend``; ``weights`` may be a dict or a safetensors path."""
    from .backends import get_backend
    from .semantics.weights import load_weights

    graph = load(spec) if isinstance(spec, str) else spec
    if isinstance(weights, str):
        weights = load_weights(weights, graph)
    return get_backend(backend).compile(graph, weights, device=device, dtype=dtype)


def _fit(model: "CompiledModel", dataset: Any = None, *, epochs: int | None = None, progress: Any = None) -> Any:
    """``CompiledModel.fit``'s loop: :func:`nnspec.runtime.loop.fit`, imported on first use."""
    from .runtime.loop import fit

    return fit(model, dataset, epochs=epochs, progress=progress)


fit_driver.install(_fit)

__all__ = [
    "BackendError",
    "DataError",
    "Diagnostic",
    "NnspecError",
    "SpecError",
    "WeightsError",
    "__version__",
    "compile",
    "load",
]
