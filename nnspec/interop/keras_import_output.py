"""Writing an import's result: the spec text and, when asked, the weights as safetensors, each checked
before anything is read (:func:`check_outputs`) and written whole or not at all (:func:`write_spec`).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from ..outputs import check_output_file, write_outputs
from .errors import KerasImportError
from .keras_import import ImportedModel, checked_graph, spec_text


def check_outputs(spec_path: str, weights_path: str | None, model: str | None = None) -> None:
    """Check the spec and weights paths of an import before anything is read or written (neither may be
    ``model``, the file being imported)."""
    keep = (model, "the model being imported") if model is not None else None
    check_output_file(spec_path, "spec", error=KerasImportError, keep=keep)
    if weights_path is not None:
        check_output_file(weights_path, "weights file", error=KerasImportError, keep=keep)
        if os.path.abspath(weights_path) == os.path.abspath(spec_path):
            raise KerasImportError(f"{weights_path}: the spec and the weights cannot be written to the same file")


def write_spec(imported: ImportedModel, path: str, weights_path: str | None = None) -> None:
    """Write the spec (and the weights as safetensors), each whole or not at all.

    Both are written to temporary files in their folders and renamed into place only when both are
    complete; on any failure the temporary files (and a file already renamed) are removed."""
    from ..semantics.weights import save_weights

    check_outputs(path, weights_path, imported.source)
    if weights_path is not None and imported.weights is None:
        raise KerasImportError(
            f"{imported.source} holds no weights (a config JSON); import a .keras archive to get weights"
        )
    weights = imported.weights
    text = spec_text(imported)
    if text != imported.text:  # the spec or notes were changed after the import: check the new text too
        checked_graph(text)
    jobs: list[tuple[str, Callable[[str], Any]]] = [(path, lambda tmp: _write_text(tmp, text))]
    if weights_path is not None and weights is not None:
        jobs.insert(0, (weights_path, lambda tmp: save_weights(tmp, weights, imported.graph)))
    _write_all(jobs)


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _write_all(jobs: list[tuple[str, Callable[[str], Any]]]) -> None:
    """Write every ``(target, write)`` to a temporary file beside its target, then put them all in place
    (:func:`nnspec.outputs.write_outputs`: never through a link, never over a device or FIFO)."""
    write_outputs(jobs, "import's output", error=KerasImportError)
