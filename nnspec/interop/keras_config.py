"""Reading a Keras 3 model description: the ``.keras`` archive's ``config.json`` (or a bare config JSON), and
its layers as a graph: who reads whom, from the one input to the one output, in a topological order.

No Keras, and no code from the file, is loaded. A Sequential model is a chain; a functional model may
branch and merge (``Add``, ``Concatenate``). What nnspec cannot express is refused with a clear
:class:`KerasImportError`: several inputs or outputs, a layer called more than once (shared), a layer of
several outputs, tensors passed as keyword arguments, layers off the path from the input to the output,
references to undefined layers, and cycles (a malformed config).
"""

from __future__ import annotations

import heapq
import json
import os
import zipfile
from dataclasses import dataclass
from typing import Any

from .errors import KerasImportError

#: Largest config.json read (a model description, not weights).
MAX_CONFIG_BYTES = 16 * 1024 * 1024
#: How the layers of a Sequential model without an ``InputLayer`` refer to the model input.
SEQUENTIAL_INPUT = "<sequential input>"


@dataclass(frozen=True)
class KerasLayer:
    """One layer of the model: its Keras name, class name, config (as in ``config.json``) and the names of
    the layers it reads, in order (the input layer's name for the model input)."""

    name: str
    class_name: str
    config: dict[str, Any]
    inbound: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How messages name it: ``Keras layer 'dense_1' (Dense)``."""
        return f"Keras layer '{self.name}' ({self.class_name})"


@dataclass(frozen=True)
class KerasNetwork:
    """A model as nnspec sees it: a name, its input (layer name, per-example shape, dtype), the layers in a
    topological order (the input layer left out), the output layer's name, and the compile config."""

    name: str
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    layers: tuple[KerasLayer, ...]
    output: str
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
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise KerasImportError(f"{path}: not a JSON model config ({type(exc).__name__}: {exc})") from None
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise KerasImportError(f"{path}: not a Keras model config (expected an object with 'class_name' and 'config')")
    return config, has_weights


def model_network(config: dict[str, Any]) -> KerasNetwork:
    """The layers of a Sequential or functional model, wired, in a topological order."""
    kind = config.get("class_name")
    body = config.get("config")
    if not isinstance(body, dict):
        raise KerasImportError("the model config's 'config' is not an object")
    name = str(body.get("name") or "model")
    if kind == "Sequential":
        input_name, shape, dtype, layers = _sequential(body, config)
    elif kind in ("Functional", "Model"):
        input_name, shape, dtype, layers = _functional(body)
    else:
        raise KerasImportError(f"the top-level object is a '{kind}', not a Keras Sequential or functional model")
    if not layers:
        raise KerasImportError("the model has no layers besides its input")
    compile_config = config.get("compile_config")
    return KerasNetwork(name, input_name, shape, dtype, tuple(layers), layers[-1].name, compile_config if isinstance(compile_config, dict) else None)


def _entry_name(entry: Any) -> str:
    if not isinstance(entry, dict):
        raise KerasImportError(f"a layer entry of the model config is not an object: {str(entry)[:80]}")
    cfg = entry.get("config")
    name = entry.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None)
    if not isinstance(name, str) or not name:
        raise KerasImportError(f"a layer entry of the model config ({entry.get('class_name')!r}) has no name")
    return name


def _layer(entry: dict[str, Any], inbound: tuple[str, ...] = ()) -> KerasLayer:
    cfg = entry.get("config")
    if not isinstance(cfg, dict):
        raise KerasImportError(f"Keras layer '{_entry_name(entry)}' ({entry.get('class_name')}) has no config object")
    return KerasLayer(_entry_name(entry), str(entry.get("class_name")), dict(cfg), inbound)


def _input_from_layer(layer: KerasLayer) -> tuple[tuple[int, ...], str]:
    cfg = layer.config
    batch_shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if batch_shape is None:
        raise KerasImportError(f"{layer.label} has no batch_shape")
    return _example_shape(batch_shape, layer.label), _dtype_name(cfg.get("dtype"))


def _example_shape(batch_shape: Any, where: str) -> tuple[int, ...]:
    if not isinstance(batch_shape, (list, tuple)):
        raise KerasImportError(f"{where}: the input shape {batch_shape!r} is not a list")
    dims = list(batch_shape)[1:]
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dims):
        raise KerasImportError(f"{where}: the input shape {list(batch_shape)} must give every axis but the batch axis as a positive int")
    return tuple(dims)


def _dtype_name(dtype: Any) -> str:
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    return str(dtype or "float32")


def _sequential(body: dict[str, Any], top: dict[str, Any]) -> tuple[str, tuple[int, ...], str, list[KerasLayer]]:
    entries = body.get("layers") or []
    if not isinstance(entries, list):
        raise KerasImportError("the Sequential model's 'layers' is not a list")
    layers = [_layer(e) for e in entries]
    if layers and layers[0].class_name == "InputLayer":
        shape, dtype = _input_from_layer(layers[0])
        return layers[0].name, shape, dtype, _chain(layers[0].name, layers[1:])
    build = body.get("build_input_shape") or (top.get("build_config") or {}).get("input_shape")
    if build is None and layers:
        cfg = layers[0].config
        build = cfg.get("batch_input_shape") or cfg.get("batch_shape")
    if build is None:
        raise KerasImportError("the Sequential model has no input shape (no InputLayer and it was never built); add keras.Input(shape=...) first")
    return SEQUENTIAL_INPUT, _example_shape(build, "the Sequential model's build_input_shape"), "float32", _chain(SEQUENTIAL_INPUT, layers)


def _chain(input_name: str, layers: list[KerasLayer]) -> list[KerasLayer]:
    """Sequential layers, each reading the one before it."""
    wired, previous = [], input_name
    for layer in layers:
        wired.append(KerasLayer(layer.name, layer.class_name, layer.config, (previous,)))
        previous = layer.name
    return wired


def _tensor_ref(arg: Any, label: str) -> str | None:
    """The layer that produced one tensor argument (Keras 3 and Keras 2 config formats); None if not a tensor."""
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        history = (arg.get("config") or {}).get("keras_history")
    elif isinstance(arg, list) and len(arg) >= 3 and isinstance(arg[0], str):
        history = arg
    else:
        return None
    if not isinstance(history, list) or len(history) < 3 or not isinstance(history[0], str):
        raise KerasImportError(f"{label}: a malformed tensor reference {str(arg)[:120]}")
    if history[1] != 0:
        raise KerasImportError(f"{label} reads call {history[1]} of layer '{history[0]}', a shared layer; nnspec layers are each called once")
    if history[2] != 0:
        raise KerasImportError(f"{label} reads output {history[2]} of layer '{history[0]}'; nnspec layers have one output")
    return history[0]


def _parents(entry: dict[str, Any], label: str) -> tuple[str, ...]:
    """The layers one layer reads, in argument order (a merge layer's list of inputs in its order)."""
    nodes = entry.get("inbound_nodes") or []
    if not isinstance(nodes, list):
        raise KerasImportError(f"{label}: its inbound_nodes are not a list")
    if len(nodes) > 1:
        raise KerasImportError(f"{label} is called {len(nodes)} times (a shared layer); nnspec layers are each called once")
    if not nodes:
        return ()
    node = nodes[0]
    if isinstance(node, dict):
        args, kwargs = node.get("args") or [], node.get("kwargs") or {}
    else:
        args, kwargs = node, {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise KerasImportError(f"{label}: a malformed inbound node")
    found: list[str] = []
    for arg in args:
        items = arg if isinstance(arg, list) and (not arg or not isinstance(arg[0], str)) else [arg]
        for item in items:
            ref = _tensor_ref(item, label)
            if ref is None:
                raise KerasImportError(f"{label} is called with a non-tensor argument {str(item)[:80]}; nnspec layers read only tensors")
            found.append(ref)
    for key, value in kwargs.items():
        if isinstance(value, (dict, list)) and _tensor_like(value):
            raise KerasImportError(f"{label} is passed a tensor as keyword argument '{key}'; nnspec layers read their inputs only")
        if key == "training" and value is True:
            raise KerasImportError(f"{label} is called with training=True (always in training mode); nnspec decides training mode itself")
    return tuple(found)


def _tensor_like(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get("class_name") == "__keras_tensor__"
    return any(_tensor_like(v) for v in value if isinstance(v, (dict, list)))


def _refs(refs: Any, what: str) -> list[str]:
    """Layer names of a functional model's ``input_layers`` / ``output_layers``."""
    if isinstance(refs, list) and refs and isinstance(refs[0], str):
        refs = [refs]
    if isinstance(refs, dict):
        refs = list(refs.values())
    if not isinstance(refs, list) or not all(isinstance(r, list) and r and isinstance(r[0], str) for r in refs):
        raise KerasImportError(f"the functional model's {what}_layers are malformed: {str(refs)[:120]}")
    return [r[0] for r in refs]


def _functional(body: dict[str, Any]) -> tuple[str, tuple[int, ...], str, list[KerasLayer]]:
    entries_list = body.get("layers") or []
    if not isinstance(entries_list, list):
        raise KerasImportError("the functional model's 'layers' is not a list")
    entries: dict[str, dict[str, Any]] = {}
    for entry in entries_list:
        name = _entry_name(entry)
        if name in entries:
            raise KerasImportError(f"the functional model defines two layers named '{name}'")
        entries[name] = entry
    inputs, outputs = _refs(body.get("input_layers"), "input"), _refs(body.get("output_layers"), "output")
    if len(inputs) != 1:
        raise KerasImportError(f"the functional model has {len(inputs)} inputs ({', '.join(inputs)}); nnspec models have one input")
    if len(outputs) != 1:
        raise KerasImportError(f"the functional model has {len(outputs)} outputs ({', '.join(outputs)}); nnspec models have one output")
    first, last = inputs[0], outputs[0]
    for name, what in ((first, "input"), (last, "output")):
        if name not in entries:
            raise KerasImportError(f"the functional model's {what} is a layer '{name}' that its config does not define")
    if entries[first].get("class_name") != "InputLayer":
        raise KerasImportError(f"the functional model's input '{first}' is a {entries[first].get('class_name')}, not an InputLayer")
    layers: dict[str, KerasLayer] = {}
    for name, entry in entries.items():
        if name == first:
            continue
        label = f"Keras layer '{name}' ({entry.get('class_name')})"
        if entry.get("class_name") == "InputLayer":
            raise KerasImportError(f"{label} is a second input; nnspec models have one input")
        parents = _parents(entry, label)
        if not parents:
            raise KerasImportError(f"{label} reads no tensor (it is not connected to the model's input)")
        for parent in parents:
            if parent not in entries:
                raise KerasImportError(f"{label} reads a layer '{parent}' that the model's config does not define")
        layers[name] = _layer(entry, parents)
    if last == first:
        raise KerasImportError("the functional model's output is its input; it has no layers")
    order = _topological(layers, first, last)
    shape, dtype = _input_from_layer(_layer(entries[first]))
    return first, shape, dtype, order


def _topological(layers: dict[str, KerasLayer], first: str, last: str) -> list[KerasLayer]:
    """The layers the output depends on, in a topological order (config order among equals).

    Refuses layers that the output does not depend on, an output that does not depend on the input, and
    cycles (which a well-formed config never has).
    """
    needed: set[str] = set()
    stack = [last]
    while stack:
        name = stack.pop()
        if name in needed or name == first:
            continue
        needed.add(name)
        stack.extend(layers[name].inbound)
    extra = [n for n in layers if n not in needed]
    if extra:
        shown = ", ".join(repr(n) for n in extra[:6]) + (f" and {len(extra) - 6} more" if len(extra) > 6 else "")
        raise KerasImportError(f"layers {shown} do not lead to the model's output; nnspec models have one output")
    position = {name: i for i, name in enumerate(layers)}
    waiting = {name: len(set(layer.inbound) - {first}) for name, layer in layers.items()}
    readers: dict[str, list[str]] = {}
    for name, layer in layers.items():
        for parent in set(layer.inbound) - {first}:
            readers.setdefault(parent, []).append(name)
    ready = [(position[n], n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[KerasLayer] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(layers[name])
        for reader in readers.get(name, ()):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, (position[reader], reader))
    if len(order) != len(layers):
        stuck = ", ".join([repr(n) for n, count in waiting.items() if count > 0][:6])
        raise KerasImportError(f"the functional model's layers {stuck} form a cycle (a malformed config)")
    return order
