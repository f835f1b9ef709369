"""A Keras 3 model -> an nnspec spec (and its weights): the other half of the door to Keras.

The model's description is read from the ``.keras`` archive's ``config.json`` (or a bare config JSON) and
checked layer by layer (:mod:`.keras_mapping`) before anything else happens: a Lambda layer, an unknown
class or an unsupported option is an error that names the Keras layer, and such a file is never handed to
Keras. Only then are the weights read, with ``keras.saving.load_model(path, safe_mode=True)``.

Sequential models become chains; functional models become graph specs: layers in a topological order,
``inputs: [a, b]`` where a layer reads anything but the layer before it (``input`` is the model's
input), and a top-level ``output: NAME`` when the output is not the last layer. Specs that use graph
wiring or the ops of language 1.1 are written as ``nnspec: 1.1``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..compiler.ir import INPUT, Graph, Shape
from ..compiler.shapes import MERGE_OPS, ShapeProblem, make_graph, make_node
from ..runtime.weights import weight_differences
from .errors import KerasImportError
from .keras_config import KerasLayer, KerasNetwork, model_network, read_config
from .keras_mapping import SpecLayer, clean_float, map_layer

#: Ops that exist from language version 1.1 on.
V11_OPS = frozenset({"add", "concat", "batch_norm", "layer_norm", "global_avg_pool2d", "global_max_pool2d"})

_OPTIMIZERS = {"adam": "adam", "sgd": "sgd", "rmsprop": "rmsprop"}
_OPTIMIZER_KEYS = {
    "adam": ("learning_rate", "beta_1", "beta_2", "epsilon"),
    "sgd": ("learning_rate", "momentum", "nesterov"),
    "rmsprop": ("learning_rate", "rho", "momentum", "epsilon"),
}
_IGNORED_OPTIMIZER_FLAGS = ("amsgrad", "centered", "use_ema", "clipnorm", "clipvalue", "global_clipnorm", "gradient_accumulation_steps", "loss_scale_factor")
_LOSSES = {
    "sparse_categorical_crossentropy": "cross_entropy",
    "sparsecategoricalcrossentropy": "cross_entropy",
    "mse": "mse",
    "mean_squared_error": "mse",
    "meansquarederror": "mse",
}


@dataclass
class ImportedModel:
    """The result of an import: the spec document, its graph, the weights (from a ``.keras`` archive) and notes."""

    spec: dict[str, Any]
    graph: Graph
    weights: dict[str, np.ndarray] | None
    source: str
    notes: list[str] = field(default_factory=list)


def import_keras(path: str) -> ImportedModel:
    """Turn the Keras model in ``path`` (``.keras`` archive or config ``.json``) into a spec and weights."""
    config, has_weights = read_config(path)
    try:
        net = model_network(config)
        if net.input_dtype not in ("float32", "float64"):
            raise KerasImportError(f"the model's input dtype is {net.input_dtype}; nnspec reads float32 or float64 inputs")
        groups = [(layer, map_layer(layer)) for layer in net.layers]
        layers = [spec_layer for _, specs in groups for spec_layer in specs]
        notes = [note for layer in layers for note in layer.notes]
        notes += _assign_names(layers)
        output = _wire(net, groups)
        graph = _graph(net, layers, output)
        spec = _spec_document(net, layers, output, path, notes)
        graph = graph.replace(train=_resolved_train(spec))
    except KerasImportError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError, RecursionError) as exc:
        raise KerasImportError(f"{path}: a malformed Keras model config ({type(exc).__name__}: {exc})") from None
    weights = _read_weights(path, layers, graph) if has_weights else None
    return ImportedModel(spec, graph, weights, path, notes)


def _identifier(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", text)[:64] or "layer"
    return cleaned if re.match(r"^[A-Za-z_]", cleaned) else ("_" + cleaned)[:64]


def _assign_names(layers: list[SpecLayer]) -> list[str]:
    """Make every name a valid, unique nnspec identifier other than ``input``; returns notes for the names that changed."""
    notes, taken = [], {INPUT}
    for layer in layers:
        name = _identifier(layer.name)
        base, n = name, 1
        while name in taken:
            n += 1
            name = f"{base[:60]}_{n}"
        taken.add(name)
        if name != layer.name and layer.name == layer.source.name:
            notes.append(f"{layer.source.label} is named '{name}' in the spec")
        layer.name = name
    return notes


def _wire(net: KerasNetwork, groups: list[tuple[KerasLayer, list[SpecLayer]]]) -> str:
    """Fill in what each spec layer reads; returns the spec name of the model's output."""
    last = {net.input_name: INPUT}
    for klayer, specs in groups:
        first = specs[0]
        if first.op not in MERGE_OPS and len(klayer.inbound) != 1:
            raise KerasImportError(f"{klayer.label} takes {len(klayer.inbound)} inputs; only Add and Concatenate merge several")
        first.inputs = tuple(last[name] for name in klayer.inbound)
        for before, after in zip(specs, specs[1:]):
            after.inputs = (before.name,)
        last[klayer.name] = specs[-1].name
    return last[net.output]


def _graph_attrs(layer: SpecLayer) -> dict[str, Any]:
    return {k: v for k, v in layer.params.items() if k not in ("kernel_init", "bias_init")}


def _resolve_axis(layer: SpecLayer, rank: int) -> None:
    """Check (normalisation) or convert (concatenation) the Keras axis, now that the per-example ``rank`` is known."""
    if layer.keras_axis is None:
        return
    batched = rank + 1
    axis = layer.keras_axis
    if not -batched <= axis < batched:
        raise KerasImportError(f"{layer.source.label}: axis={axis} is out of range for its input of rank {batched} (batch axis included)")
    axis %= batched
    if layer.op == "concat":
        if axis == 0:
            raise KerasImportError(f"{layer.source.label}: axis={layer.keras_axis} is the batch axis; nnspec concatenates along an axis of each example")
        if axis == batched - 1:
            layer.params.pop("axis", None)
        else:
            layer.params["axis"] = axis - 1
    elif axis != batched - 1:
        raise KerasImportError(f"{layer.source.label}: axis={layer.keras_axis} is not supported (nnspec's {layer.op} normalises over the last axis only: axis=-1)")


def _graph(net: KerasNetwork, layers: list[SpecLayer], output: str) -> Graph:
    """Shape-infer the wired layers with nnspec's rules; a layer that does not fit names its Keras layer."""
    shapes: dict[str, Shape] = {INPUT: net.input_shape}
    done: list[tuple[str, dict[str, Any]]] = []
    for index, layer in enumerate(layers):
        given = [shapes[name] for name in layer.inputs]
        _resolve_axis(layer, len(given[0]))
        attrs = _graph_attrs(layer)
        try:
            node = make_node(index, layer.name, layer.op, attrs, given if layer.op in MERGE_OPS else given[0], layer.inputs)
        except ShapeProblem as exc:
            hint = f" ({exc.hint})" if exc.hint else ""
            if layer.op == "dense":
                hint = " (Keras's Dense acts on the last axis of any input; nnspec's dense needs a rank-1 input: add Flatten before it)"
            raise KerasImportError(f"{layer.source.label}: nnspec's {layer.op} {exc.message}{hint}") from None
        shapes[layer.name] = node.output_shape
        done.append((layer.op, {**attrs, "name": layer.name, "inputs": list(layer.inputs)}))
    explicit = output if output != layers[-1].name else None
    return make_graph(net.input_shape, done, name=_model_name(net.name), dtype=net.input_dtype, output=explicit)


def _model_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "model"
    return cleaned if re.match(r"^[A-Za-z_]", cleaned) else ("_" + cleaned)[:64]


def _spec_layer_entry(layer: SpecLayer, default_input: str) -> dict[str, Any]:
    entry: dict[str, Any] = {**layer.params, "name": layer.name}
    if layer.inputs != (default_input,):
        entry["inputs"] = list(layer.inputs)
    return {layer.op: entry}


def _spec_document(net: KerasNetwork, layers: list[SpecLayer], output: str, path: str, notes: list[str]) -> dict[str, Any]:
    entries = [_spec_layer_entry(layer, layers[i - 1].name if i else INPUT) for i, layer in enumerate(layers)]
    wired = any("inputs" in next(iter(e.values())) for e in entries) or output != layers[-1].name
    spec: dict[str, Any] = {
        "nnspec": 1.1 if wired or any(layer.op in V11_OPS for layer in layers) else 1,
        "name": _model_name(net.name),
        "description": f"Imported from Keras model '{net.name}' ({os.path.basename(path)}).",
        "input": {"shape": list(net.input_shape)},
        "layers": entries,
    }
    if output != layers[-1].name:
        spec["output"] = output
    if net.input_dtype != "float32":
        spec["input"]["dtype"] = net.input_dtype
    train = _train_section(net.compile_config, notes)
    if train:
        spec["train"] = train
    return spec


def _train_section(compile_config: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    """``train`` keys from a ``.keras`` file's compile config (optimiser, schedule, weight decay, loss)."""
    if not compile_config:
        return {}
    train: dict[str, Any] = {}
    loss = compile_config.get("loss")
    loss_name = loss.get("class_name") if isinstance(loss, dict) else loss
    if isinstance(loss_name, str) and loss_name.lower() in _LOSSES:
        train["loss"] = _LOSSES[loss_name.lower()]
        if isinstance(loss, dict) and (loss.get("config") or {}).get("from_logits"):
            notes.append("the Keras loss takes logits; nnspec computes cross-entropy from the logits of a final softmax itself")
    elif loss is not None:
        notes.append(f"Keras loss {loss_name!r} has no nnspec equivalent; the spec uses nnspec's default loss")
    optimizer = compile_config.get("optimizer")
    if optimizer is not None:
        train.update(_optimizer(optimizer, notes))
    return train


def _optimizer(optimizer: Any, notes: list[str]) -> dict[str, Any]:
    cls = optimizer.get("class_name") if isinstance(optimizer, dict) else optimizer
    cfg = (optimizer.get("config") or {}) if isinstance(optimizer, dict) else {}
    name = _OPTIMIZERS.get(str(cls).lower())
    if name is None:
        notes.append(f"Keras optimizer {cls!r} has no nnspec equivalent; the spec uses nnspec's default optimizer")
        return {}
    out: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for key in _OPTIMIZER_KEYS[name]:
        value = cfg.get(key)
        if key == "learning_rate" and isinstance(value, dict):
            value = _schedule(value, out, notes)
        if isinstance(value, bool):
            params[key] = value
        elif isinstance(value, (int, float)):
            params[key] = clean_float(value)
    for flag in _IGNORED_OPTIMIZER_FLAGS:
        if cfg.get(flag) not in (None, False, 0, 0.0):
            notes.append(f"Keras optimizer option {flag}={cfg[flag]!r} has no nnspec equivalent and is left out")
    if cfg.get("weight_decay"):
        out["weight_decay"] = clean_float(cfg["weight_decay"])
    out["optimizer"] = {name: params}
    return out


def _schedule(schedule: dict[str, Any], out: dict[str, Any], notes: list[str]) -> float | None:
    cls, cfg = schedule.get("class_name"), schedule.get("config") or {}
    lr = cfg.get("initial_learning_rate")
    if cls == "ExponentialDecay":
        out["schedule"] = {"exponential": {"decay_steps": int(cfg["decay_steps"]), "decay_rate": clean_float(cfg["decay_rate"]), "staircase": bool(cfg.get("staircase", False))}}
    elif cls == "CosineDecay" and not cfg.get("warmup_steps"):
        out["schedule"] = {"cosine": {"decay_steps": int(cfg["decay_steps"]), "alpha": clean_float(cfg.get("alpha", 0.0))}}
    else:
        notes.append(f"Keras learning-rate schedule {cls!r} has no nnspec equivalent; the spec uses a constant rate")
    return lr


def _resolved_train(spec: dict[str, Any]) -> Any:
    """The TrainConfig of the spec's ``train`` section (for the graph returned with the import)."""
    from ..compiler.ir import OptimizerConfig, ScheduleConfig, TrainConfig
    from ..runtime.optimizers import OPTIMIZER_DEFAULTS
    from ..runtime.schedules import SCHEDULE_DEFAULTS

    train = spec.get("train") or {}
    kwargs: dict[str, Any] = {}
    if "loss" in train:
        kwargs["loss"] = train["loss"]
    if "optimizer" in train:
        (name, params), = train["optimizer"].items()
        kwargs["optimizer"] = OptimizerConfig(name, {**OPTIMIZER_DEFAULTS[name], **params})
    if "schedule" in train:
        (name, params), = train["schedule"].items()
        kwargs["schedule"] = ScheduleConfig(name, {**SCHEDULE_DEFAULTS[name], **params})
    if "weight_decay" in train:
        kwargs["weight_decay"] = train["weight_decay"]
    return TrainConfig(**kwargs)


def _read_weights(path: str, layers: list[SpecLayer], graph: Graph) -> dict[str, np.ndarray]:
    """The weights and moving statistics of a checked ``.keras`` archive, loaded with Keras in safe mode,
    keyed ``<layer>.<name>``."""
    import keras

    from ..backends.keras import layers as _registers_counter_dropout  # noqa: F401  (nnspec>CounterDropout)

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many kinds; the user needs the message, not the type
        raise KerasImportError(f"{path}: Keras could not load the model's weights ({type(exc).__name__}: {exc})") from None
    weights: dict[str, np.ndarray] = {}
    for layer in layers:
        if not layer.weight_names:
            continue
        klayer = model.get_layer(layer.source.name)
        for name in layer.weight_names:
            variable = getattr(klayer, name, None)
            if variable is None:
                raise KerasImportError(f"{layer.source.label} holds no '{name}' weights")
            weights[f"{layer.name}.{name}"] = np.ascontiguousarray(keras.ops.convert_to_numpy(variable), dtype=graph.dtype)
    problems = weight_differences(graph, weights)
    if problems:
        raise KerasImportError(f"{path}: the weights do not fit the imported spec:\n  " + "\n  ".join(problems))
    return weights


def spec_text(imported: ImportedModel) -> str:
    """The spec as YAML text, with a header saying where it came from and any notes."""
    import yaml

    class Dumper(yaml.SafeDumper):
        """Writes each layer's parameters on one line: ``- add: {name: res, inputs: [a, b]}``."""

    class OneLine(dict):
        pass

    Dumper.add_representer(OneLine, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=True))
    layers = [{op: OneLine(params) for op, params in entry.items()} for entry in imported.spec["layers"]]
    header = [f"# Imported from {os.path.basename(imported.source)} by `nnspec import`."]
    header += [f"# note: {note}" for note in imported.notes]
    body = yaml.dump({**imported.spec, "layers": layers}, Dumper=Dumper, sort_keys=False, default_flow_style=None, width=120)
    return "\n".join(header) + "\n" + body


def write_spec(imported: ImportedModel, path: str, weights_path: str | None = None) -> None:
    """Write the spec (and the weights as safetensors) and check that nnspec loads the spec back."""
    from ..runtime.weights import save_weights

    with open(path, "w", encoding="utf-8") as fh:
        fh.write(spec_text(imported))
    if weights_path is not None:
        if imported.weights is None:
            raise KerasImportError(f"{imported.source} holds no weights (a config JSON); import a .keras archive to get weights")
        save_weights(weights_path, imported.weights, imported.graph)
    try:
        from ..compiler.frontend import load_spec
    except ImportError:  # the front end is optional here; the graph was already shape-checked
        return
    load_spec(path)
