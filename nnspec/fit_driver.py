"""The seam through which :meth:`nnspec.backends.base.CompiledModel.fit` reaches the training loop.

The loop (:func:`nnspec.runtime.loop.fit`: epochs, validation, history, progress) is run machinery, a layer
above the engines, so the engines do not import it. The package facade (``nnspec/__init__.py``), which runs
before any nnspec module, installs it here; ``CompiledModel.fit`` calls :func:`fit`.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import NnspecError

_driver: Callable[..., Any] | None = None


def install(driver: Callable[..., Any]) -> None:
    """Make ``driver(model, dataset, *, epochs, progress)`` the loop behind ``CompiledModel.fit``."""
    global _driver
    _driver = driver


def fit(model: Any, dataset: Any = None, *, epochs: int | None = None, progress: Any = None) -> Any:
    """Train ``model`` with the installed loop; its result is the loop's (a history DataFrame)."""
    if _driver is None:
        raise NnspecError("no training loop is installed: the nnspec package facade installs nnspec.runtime.loop.fit")
    return _driver(model, dataset, epochs=epochs, progress=progress)
