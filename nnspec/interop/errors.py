"""The error raised when a Keras model cannot become a spec (it names the Keras layer and the reason)."""

from __future__ import annotations

from ..errors import NnspecError


class KerasImportError(NnspecError, ValueError):
    """A Keras model (or its file) cannot be turned into an nnspec spec."""
