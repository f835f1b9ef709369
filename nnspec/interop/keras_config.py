"""A Keras 3 model config as a graph of Keras layers: who reads whom, from the one input to the one output,
in a topological order (:func:`model_network`). The config comes from :mod:`.keras_archive`, already read
within its limits; mapping each layer to nnspec's is :mod:`.keras_mapping`'s.

No Keras, and no code from the file, is loaded. A Sequential model is a chain; a functional model may
branch and merge (``Add``, ``Concatenate``). What nnspec cannot express is refused with a clear
:class:`KerasImportError`: several inputs or outputs, a layer called more than once (shared), a layer of
several outputs, tensors passed as keyword arguments, layers off the path from the input to the output,
references to undefined layers, and cycles (a malformed config, named as ``a -> b -> a``). Values of the
wrong type are errors naming their place in the config (``config.layers[3].config.units``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from .errors import KerasImportError, describe, short

#: Largest size of an axis (nnspec's integers are int32).
MAX_DIM = 2**31 - 1
#: How the layers of a Sequential model without an ``InputLayer`` refer to the model input.
SEQUENTIAL_INPUT = "<sequential input>"


@dataclass(frozen=True)
class KerasLayer:
    """One layer of the model: its Keras name, class name, config (as in ``config.json``), the names of
    the layers it reads, in order (the input layer's name for the model input), and where its entry is
    in the config (``config.layers[3]``)."""

    name: str
    class_name: str
    config: dict[str, Any]
    inbound: tuple[str, ...] = ()
    path: str = ""

    @property
    def label(self) -> str:
        """How messages name it: ``Keras layer 'dense_1' (Dense)``."""
        return f"Keras layer '{self.name}' ({self.class_name})"

    def at(self, key: str | None = None) -> str:
        """The config path of this layer, or of one key of its config: ``config.layers[3].config.units``."""
        return f"{self.path}.config.{key}" if key else self.path


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


def model_network(config: dict[str, Any]) -> KerasNetwork:
    """The layers of a Sequential or functional model, wired, in a topological order."""
    kind = config.get("class_name")
    body = config.get("config")
    if not isinstance(body, dict):
        raise KerasImportError(f"the model's config is {describe(body)}, not an object", where="config")
    raw_name = body.get("name")
    name = raw_name if isinstance(raw_name, str) and raw_name else "model"
    if kind == "Sequential":
        input_name, shape, dtype, layers = _sequential(body, config)
    elif kind in ("Functional", "Model"):
        input_name, shape, dtype, layers = _functional(body)
    else:
        raise KerasImportError(
            f"the model's class_name is {describe(kind)}, not 'Sequential' or 'Functional' (nnspec imports those)",
            where="class_name",
        )
    if not layers:
        raise KerasImportError("the model has no layers besides its input", where="config.layers")
    compile_config = config.get("compile_config")
    return KerasNetwork(
        name,
        input_name,
        shape,
        dtype,
        tuple(layers),
        layers[-1].name,
        compile_config if isinstance(compile_config, dict) else None,
    )


def _entry_name(entry: Any, where: str) -> str:
    if not isinstance(entry, dict):
        raise KerasImportError(
            f"a layer entry of the model config is not an object: it is {describe(entry)}", where=where
        )
    cfg = entry.get("config")
    name = entry.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None)
    if not isinstance(name, str) or not name:
        raise KerasImportError(
            f"the layer entry ({short(entry.get('class_name'))}) has no name (a non-empty string)",
            where=f"{where}.name",
        )
    return name


def _layer(entry: dict[str, Any], where: str, inbound: tuple[str, ...] = ()) -> KerasLayer:
    name = _entry_name(entry, where)
    class_name = entry.get("class_name")
    if not isinstance(class_name, str) or not class_name:
        raise KerasImportError(
            f"Keras layer '{name}' has no class_name (a string); got {describe(class_name)}",
            where=f"{where}.class_name",
        )
    cfg = entry.get("config")
    if not isinstance(cfg, dict):
        raise KerasImportError(
            f"Keras layer '{name}' ({class_name}) has no config object; got {describe(cfg)}", where=f"{where}.config"
        )
    return KerasLayer(name, class_name, dict(cfg), inbound, where)


def _input_from_layer(layer: KerasLayer) -> tuple[tuple[int, ...], str]:
    cfg = layer.config
    key = "batch_shape" if cfg.get("batch_shape") is not None else "batch_input_shape"
    batch_shape = cfg.get(key)
    if batch_shape is None:
        raise KerasImportError(f"{layer.label} has no batch_shape", where=layer.at())
    return _example_shape(batch_shape, layer.label, layer.at(key)), _dtype_name(cfg.get("dtype"), layer.at("dtype"))


def _example_shape(batch_shape: Any, what: str, where: str) -> tuple[int, ...]:
    if not isinstance(batch_shape, (list, tuple)):
        raise KerasImportError(f"{what}: the input shape is {describe(batch_shape)}, not a list", where=where)
    dims = list(batch_shape)[1:]
    for i, d in enumerate(dims, start=1):
        if isinstance(d, bool) or not isinstance(d, int) or not 0 < d <= MAX_DIM:
            raise KerasImportError(
                f"{what}: every axis of the input shape but the batch axis must be a positive int of at most "
                f"{MAX_DIM:,}; got {describe(d)}",
                where=f"{where}[{i}]",
            )
    if not dims:
        raise KerasImportError(
            f"{what}: the input shape {short(batch_shape)} has no axis besides the batch axis", where=where
        )
    return tuple(dims)


def _dtype_name(dtype: Any, where: str) -> str:
    if isinstance(dtype, dict):
        cfg = dtype.get("config")
        dtype = cfg.get("name") if isinstance(cfg, dict) else None
    if dtype is None:
        return "float32"
    if not isinstance(dtype, str):
        raise KerasImportError(f"the input dtype is {describe(dtype)}, not a name", where=where)
    return dtype


def _layer_list(body: dict[str, Any], kind: str) -> list[Any]:
    entries = body.get("layers")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise KerasImportError(f"the {kind} model's layers are {describe(entries)}, not a list", where="config.layers")
    return entries


def _sequential(body: dict[str, Any], top: dict[str, Any]) -> tuple[str, tuple[int, ...], str, list[KerasLayer]]:
    layers = [_layer(e, f"config.layers[{i}]") for i, e in enumerate(_layer_list(body, "Sequential"))]
    if layers and layers[0].class_name == "InputLayer":
        shape, dtype = _input_from_layer(layers[0])
        return layers[0].name, shape, dtype, _chain(layers[0].name, layers[1:])
    build, where = body.get("build_input_shape"), "config.build_input_shape"
    build_config = top.get("build_config")
    if build is None and isinstance(build_config, dict):
        build, where = build_config.get("input_shape"), "build_config.input_shape"
    if build is None and layers:
        cfg = layers[0].config
        key = "batch_input_shape" if cfg.get("batch_input_shape") is not None else "batch_shape"
        build, where = cfg.get(key), layers[0].at(key)
    if build is None:
        raise KerasImportError(
            "the Sequential model has no input shape (no InputLayer and it was never built); add "
            "keras.Input(shape=...) first"
        )
    return (
        SEQUENTIAL_INPUT,
        _example_shape(build, "the Sequential model's input", where),
        "float32",
        _chain(SEQUENTIAL_INPUT, layers),
    )


def _chain(input_name: str, layers: list[KerasLayer]) -> list[KerasLayer]:
    """Sequential layers, each reading the one before it."""
    wired, previous = [], input_name
    for layer in layers:
        if layer.class_name == "InputLayer":
            raise KerasImportError(f"{layer.label} is a second input; nnspec models have one input", where=layer.path)
        wired.append(KerasLayer(layer.name, layer.class_name, layer.config, (previous,), layer.path))
        previous = layer.name
    return wired


def _tensor_ref(arg: Any, label: str, where: str) -> str | None:
    """The layer that produced one tensor argument (Keras 3 and Keras 2 config formats); None if not a tensor."""
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        cfg = arg.get("config")
        history = cfg.get("keras_history") if isinstance(cfg, dict) else None
    elif isinstance(arg, list) and len(arg) >= 3 and isinstance(arg[0], str):
        history = arg
    else:
        return None
    if not isinstance(history, list) or len(history) < 3 or not isinstance(history[0], str):
        raise KerasImportError(f"{label}: a malformed tensor reference {short(arg, 120)}", where=where)
    if history[1] != 0:
        raise KerasImportError(
            f"{label} reads call {short(history[1])} of layer '{history[0]}', a shared layer; nnspec layers are each "
            "called once",
            where=where,
        )
    if history[2] != 0:
        raise KerasImportError(
            f"{label} reads output {short(history[2])} of layer '{history[0]}'; nnspec layers have one output",
            where=where,
        )
    return history[0]


def _parents(entry: dict[str, Any], label: str, where: str) -> tuple[str, ...]:
    """The layers one layer reads, in argument order (a merge layer's list of inputs in its order)."""
    where = f"{where}.inbound_nodes"
    nodes = entry.get("inbound_nodes") or []
    if not isinstance(nodes, list):
        raise KerasImportError(f"{label}: its inbound_nodes are {describe(nodes)}, not a list", where=where)
    if len(nodes) > 1:
        raise KerasImportError(
            f"{label} is called {len(nodes)} times (a shared layer); nnspec layers are each called once", where=where
        )
    if not nodes:
        return ()
    node, where = nodes[0], f"{where}[0]"
    if isinstance(node, dict):
        args, kwargs = node.get("args") or [], node.get("kwargs") or {}
        args_at = f"{where}.args"
    else:
        args, kwargs, args_at = node, {}, where
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise KerasImportError(f"{label}: a malformed inbound node {short(node, 120)}", where=where)
    found: list[str] = []
    for i, arg in enumerate(args):
        several = isinstance(arg, list) and (not arg or not isinstance(arg[0], str))
        items = (
            [(item, f"{args_at}[{i}][{j}]") for j, item in enumerate(arg)] if several else [(arg, f"{args_at}[{i}]")]
        )
        for item, at in items:
            ref = _tensor_ref(item, label, at)
            if ref is None:
                raise KerasImportError(
                    f"{label} is called with a non-tensor argument {short(item)}; nnspec layers read only tensors",
                    where=at,
                )
            found.append(ref)
    for key, value in kwargs.items():
        if isinstance(value, (dict, list)) and _tensor_like(value):
            raise KerasImportError(
                f"{label} is passed a tensor as keyword argument '{key}'; nnspec layers read their inputs only",
                where=f"{where}.kwargs.{key}",
            )
        if key == "training" and value is True:
            raise KerasImportError(
                f"{label} is called with training=True (always in training mode); nnspec decides training mode itself",
                where=f"{where}.kwargs.{key}",
            )
    return tuple(found)


def _tensor_like(value: Any) -> bool:
    """Whether a keyword argument holds a tensor anywhere inside (iteratively: depth is bounded but large)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "__keras_tensor__":
                return True
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))
    return False


def _refs(refs: Any, what: str) -> list[str]:
    """Layer names of a functional model's ``input_layers`` / ``output_layers``."""
    where = f"config.{what}_layers"
    if isinstance(refs, list) and refs and isinstance(refs[0], str):
        refs = [refs]
    if isinstance(refs, dict):
        refs = list(refs.values())
    if not isinstance(refs, list) or not all(isinstance(r, list) and r and isinstance(r[0], str) for r in refs):
        raise KerasImportError(f"the functional model's {what}_layers are malformed: {short(refs, 120)}", where=where)
    return [r[0] for r in refs]


def _functional(body: dict[str, Any]) -> tuple[str, tuple[int, ...], str, list[KerasLayer]]:
    entries: dict[str, tuple[dict[str, Any], str]] = {}
    for i, entry in enumerate(_layer_list(body, "functional")):
        where = f"config.layers[{i}]"
        name = _entry_name(entry, where)
        if name in entries:
            raise KerasImportError(
                f"the functional model defines two layers named '{name}' ({entries[name][1]} and {where})", where=where
            )
        entries[name] = (entry, where)
    inputs, outputs = _refs(body.get("input_layers"), "input"), _refs(body.get("output_layers"), "output")
    if len(inputs) != 1:
        raise KerasImportError(
            f"the functional model has {len(inputs)} inputs ({', '.join(inputs)}); nnspec models have one input",
            where="config.input_layers",
        )
    if len(outputs) != 1:
        raise KerasImportError(
            f"the functional model has {len(outputs)} outputs ({', '.join(outputs)}); nnspec models have one output",
            where="config.output_layers",
        )
    first, last = inputs[0], outputs[0]
    for name, what in ((first, "input"), (last, "output")):
        if name not in entries:
            raise KerasImportError(
                f"the functional model's {what} is a layer '{name}' that its config does not define",
                where=f"config.{what}_layers",
            )
    input_layer = _layer(*entries[first])
    if input_layer.class_name != "InputLayer":
        raise KerasImportError(
            f"the functional model's input '{first}' is a {input_layer.class_name}, not an InputLayer",
            where="config.input_layers",
        )
    if entries[first][0].get("inbound_nodes"):
        raise KerasImportError(
            f"{input_layer.label} is the model's input but reads other layers (a malformed config)",
            where=f"{input_layer.path}.inbound_nodes",
        )
    layers: dict[str, KerasLayer] = {}
    for name, (entry, where) in entries.items():
        if name == first:
            continue
        layer = _layer(entry, where)
        if layer.class_name == "InputLayer":
            raise KerasImportError(f"{layer.label} is a second input; nnspec models have one input", where=where)
        parents = _parents(entry, layer.label, where)
        if not parents:
            raise KerasImportError(
                f"{layer.label} reads no tensor (it is not connected to the model's input)",
                where=f"{where}.inbound_nodes",
            )
        for parent in parents:
            if parent not in entries:
                raise KerasImportError(
                    f"{layer.label} reads a layer '{parent}' that the model's config does not define",
                    where=f"{where}.inbound_nodes",
                )
        layers[name] = KerasLayer(layer.name, layer.class_name, layer.config, parents, where)
    if last == first:
        raise KerasImportError(
            "the functional model's output is its input; it has no layers", where="config.output_layers"
        )
    order = _topological(layers, first, last)
    shape, dtype = _input_from_layer(input_layer)
    return first, shape, dtype, order


def _topological(layers: dict[str, KerasLayer], first: str, last: str) -> list[KerasLayer]:
    """The layers the output depends on, in a topological order (config order among equals).

    Refuses layers that the output does not depend on, and cycles (which a well-formed config never has),
    naming one cycle. Every loop here visits each layer and each edge once, so it ends on any input.
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
        raise KerasImportError(
            f"layers {shown} do not lead to the model's output; nnspec models have one output",
            where=layers[extra[0]].path,
        )
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
        cycle = _a_cycle(layers, {n for n, count in waiting.items() if count > 0}, position)
        raise KerasImportError(
            f"the functional model's layers form a cycle: {' -> '.join(repr(n) for n in cycle)} (each reads the one "
            "before it; a malformed config)",
            where=layers[cycle[0]].path,
        )
    return order


def _a_cycle(layers: dict[str, KerasLayer], stuck: set[str], position: dict[str, int]) -> list[str]:
    """One cycle among the layers a topological sort could not place, in reading order (first name repeated last).

    Each stuck layer reads at least one stuck layer, so walking back through stuck parents must come back
    to a layer already seen, after at most ``len(stuck)`` steps."""
    name = min(stuck, key=position.__getitem__)
    seen: dict[str, int] = {}
    path: list[str] = []
    while name not in seen:
        seen[name] = len(path)
        path.append(name)
        name = next(p for p in layers[name].inbound if p in stuck)
    cycle = path[seen[name] :]
    cycle.reverse()
    start = cycle.index(min(cycle, key=position.__getitem__))
    cycle = cycle[start:] + cycle[:start]
    return [*cycle, cycle[0]]
