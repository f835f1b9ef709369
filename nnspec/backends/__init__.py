"""Backend registry: the built-in engines plus third-party ones from the ``nnspec.backends`` entry points.

Looking a backend up imports only its small nnspec module; the engine itself is imported when the
backend is first used.
"""

from __future__ import annotations

import difflib
import importlib
from importlib import metadata

from ..errors import BackendError
from .base import Backend, Capabilities, CompiledModel

#: name -> "module:Class" of the built-in backends.
BUILTIN: dict[str, str] = {
    "jax": "nnspec.backends.jax.backend:JaxBackend",
    "tensorflow": "nnspec.backends.tensorflow.backend:TensorFlowBackend",
    "theano": "nnspec.backends.theano.backend:TheanoBackend",
    "keras": "nnspec.backends.keras.backend:KerasBackend",
}
ALIASES: dict[str, str] = {"tf": "tensorflow", "pytensor": "theano"}
ENTRY_POINT_GROUP = "nnspec.backends"

_instances: dict[str, Backend] = {}


def _entry_points() -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # a broken third-party distribution must not break nnspec
        return {}


def backend_names() -> list[str]:
    """Canonical names of every registered backend, built-ins first."""
    return list(BUILTIN) + sorted(n for n in _entry_points() if n not in BUILTIN)


def canonical_name(name: str) -> str:
    """Resolve aliases (``tf``, ``pytensor``); an unknown name is a :class:`BackendError` with a did-you-mean."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in BUILTIN or key in _entry_points():
        return key
    known = backend_names() + list(ALIASES)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise BackendError(f"unknown backend {name!r}{hint} (known: {', '.join(backend_names())})")


def get_backend(name: str) -> Backend:
    """Return the backend called ``name`` (or an alias); raises :class:`BackendError` if unknown or unavailable."""
    key = canonical_name(name)
    if key not in _instances:
        target = BUILTIN.get(key) or _entry_points()[key]
        module_name, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
        ok, why = cls.availability()
        if not ok:
            raise BackendError(f"backend '{key}' is not available: {why}")
        _instances[key] = cls()
    return _instances[key]


def backend_class(name: str) -> type[Backend]:
    """The backend class for ``name`` without checking that its engine imports."""
    key = canonical_name(name)
    target = BUILTIN.get(key) or _entry_points()[key]
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def available_backends() -> list[str]:
    """Names of the backends whose engines can be imported here."""
    names = []
    for name in backend_names():
        try:
            ok, _ = backend_class(name).availability()
        except Exception:
            ok = False
        if ok:
            names.append(name)
    return names


__all__ = [
    "Backend",
    "Capabilities",
    "CompiledModel",
    "available_backends",
    "backend_class",
    "backend_names",
    "canonical_name",
    "get_backend",
]
