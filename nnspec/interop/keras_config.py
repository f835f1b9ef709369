"""Reading a Keras 3 model description: the ``.keras`` archive's ``config.json`` (or a bare config JSON), and
the walk from its input to its output as one chain of layers. No Keras, no code from the file, is loaded.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from typing import Any

from .errors import KerasImportError

#: Largest config.json read (a model description, not weights).
MAX_CONFIG_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class KerasLayer:
    """One layer of the chain: its Keras name, class name and config (as in ``config.json``)."""

    name: str
    class_name: str
    config: dict[str, Any]

    @property
    def label(self) -> str:
        """How messages name it: ``'dense_1' (Dense)``."""
        return f"Keras layer '{self.name}' ({self.class_name})"


@dataclass(frozen=True)
class KerasChain:
    """A model as nnspec sees it: a name, the per-example input shape and dtype, and the layers in order."""

    name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    layers: tuple[KerasLayer, ...]
    compile_config: dict[str, Any] | None


def read_config(path: str) -> tuple[dict[str, Any], bool]:
    """The model config of a ``.keras`` archive or a config ``.json`` file, and whether it came with weights."""
    if not os.path.isfile(path):
        raise KerasImportError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if "config.json" not in names:
                    raise KerasImportError(f"{path}: a zip file without config.json is not a Keras 3 .keras archive")
                if archive.getinfo("config.json").file_size > MAX_CONFIG_BYTES:
                    raise KerasImportError(f"{path}: config.json is larger than {MAX_CONFIG_BYTES} bytes")
                text = archive.read("config.json")
                has_weights = any(n.startswith("model.weights") for n in names)
        except zipfile.BadZipFile as exc:
            raise KerasImportError(f"{path}: not a readable .keras archive ({exc})") from None
    else:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if head.startswith(b"\x89HDF"):
                raise KerasImportError(
                    f"{path}: a legacy HDF5 (Keras 2) model file; load it in Keras and save it as .keras, then import that"
                )
            if os.path.getsize(path) > MAX_CONFIG_BYTES:
                raise KerasImportError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; expected a model config JSON")
            text = head + fh.read()
        has_weights = False
    try:
        config = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise KerasImportError(f"{path}: not a JSON model config ({exc})") from None
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise KerasImportError(f"{path}: not a Keras model config (expected an object with 'class_name' and 'config')")
    return config, has_weights


def model_chain(config: dict[str, Any]) -> KerasChain:
    """The layers of a Sequential model, or of a functional model that is one chain, in order."""
    kind = config.get("class_name")
    body = config.get("config") or {}
    name = str(body.get("name") or "model")
    if kind == "Sequential":
        shape, dtype, layers = _sequential(body, config)
    elif kind in ("Functional", "Model"):
        shape, dtype, layers = _functional(body)
    else:
        raise KerasImportError(f"the top-level object is a '{kind}', not a Keras Sequential or functional model")
    return KerasChain(name, shape, dtype, tuple(layers), config.get("compile_config"))


def _layer(entry: dict[str, Any]) -> KerasLayer:
    cfg = entry.get("config") or {}
    return KerasLayer(str(cfg.get("name") or entry.get("name") or "?"), str(entry.get("class_name")), dict(cfg))


def _input_from_layer(layer: KerasLayer) -> tuple[tuple[int, ...], str]:
    cfg = layer.config
    batch_shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if batch_shape is None:
        raise KerasImportError(f"{layer.label} has no batch_shape")
    return _example_shape(batch_shape, layer.label), _dtype_name(cfg.get("dtype"))


def _example_shape(batch_shape: Any, where: str) -> tuple[int, ...]:
    dims = list(batch_shape)[1:]
    if not dims or any(not isinstance(d, int) or d <= 0 for d in dims):
        raise KerasImportError(f"{where}: the input shape {list(batch_shape)} must give every axis but the batch axis as a positive int")
    return tuple(dims)


def _dtype_name(dtype: Any) -> str:
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    return str(dtype or "float32")


def _sequential(body: dict[str, Any], top: dict[str, Any]) -> tuple[tuple[int, ...], str, list[KerasLayer]]:
    layers = [_layer(e) for e in body.get("layers") or []]
    if layers and layers[0].class_name == "InputLayer":
        shape, dtype = _input_from_layer(layers[0])
        return shape, dtype, layers[1:]
    build = body.get("build_input_shape") or (top.get("build_config") or {}).get("input_shape")
    if build is None and layers:
        cfg = layers[0].config
        build = cfg.get("batch_input_shape") or cfg.get("batch_shape")
    if build is None:
        raise KerasImportError("the Sequential model has no input shape (no InputLayer and it was never built); add keras.Input(shape=...) first")
    return _example_shape(build, "the Sequential model's build_input_shape"), "float32", layers


def _history(arg: Any) -> str | None:
    """The name of the layer that produced one inbound tensor (Keras 3 and Keras 2 config formats)."""
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        return str(arg["config"]["keras_history"][0])
    if isinstance(arg, list) and arg and isinstance(arg[0], str):
        return arg[0]
    return None


def _parents(entry: dict[str, Any], label: str) -> list[str]:
    nodes = entry.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise KerasImportError(f"{label} is called more than once (shared layer); nnspec models are one chain of distinct layers")
    if not nodes:
        return []
    node = nodes[0]
    args = node.get("args", []) if isinstance(node, dict) else node
    found = []
    for arg in args:
        items = arg if isinstance(arg, list) and arg and not isinstance(arg[0], str) else [arg]
        for item in items:
            name = _history(item)
            if name is not None:
                found.append(name)
    return found


def _single(refs: Any, what: str) -> str:
    if isinstance(refs, list) and refs and isinstance(refs[0], str):
        refs = [refs]
    if not isinstance(refs, list) or len(refs) != 1:
        raise KerasImportError(f"the functional model has {len(refs) if isinstance(refs, list) else '?'} {what}s; nnspec models have one")
    return str(refs[0][0])


def _functional(body: dict[str, Any]) -> tuple[tuple[int, ...], str, list[KerasLayer]]:
    entries = {str(e.get("name") or (e.get("config") or {}).get("name")): e for e in body.get("layers") or []}
    first, last = _single(body.get("input_layers"), "input"), _single(body.get("output_layers"), "output")
    chain: list[KerasLayer] = []
    current = last
    while current != first:
        entry = entries.get(current)
        if entry is None:
            raise KerasImportError(f"the functional model refers to a layer '{current}' that its config does not define")
        layer = _layer(entry)
        parents = _parents(entry, layer.label)
        if len(parents) != 1:
            raise KerasImportError(f"{layer.label} takes {len(parents)} inputs; nnspec models are one chain of single-input layers")
        chain.append(layer)
        current = parents[0]
    chain.reverse()
    used = {first, *(layer.name for layer in chain)}
    extra = [n for n in entries if n not in used]
    if extra:
        raise KerasImportError(f"the functional model is not one chain: layers {', '.join(repr(n) for n in extra)} are off the path from input to output")
    shape, dtype = _input_from_layer(_layer(entries[first]))
    return shape, dtype, chain
