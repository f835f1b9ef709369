"""Doors between nnspec and other formats: Keras 3 ``.keras`` files, both ways.

* :func:`nnspec.interop.keras_export.export_keras`: a spec and its weights -> a standard ``.keras`` file
  that plain Keras loads with ``keras.saving.load_model(path, safe_mode=True)``.
* :func:`nnspec.interop.keras_import.import_keras`: a Keras Sequential or functional model (one input, one
  output; branches and merges become a graph spec) made of layers nnspec knows -> a spec document and,
  from a ``.keras`` archive, its weights and moving statistics.

Importing this package imports no engine and no Keras.
"""

from .errors import KerasImportError

__all__ = ["KerasImportError"]
