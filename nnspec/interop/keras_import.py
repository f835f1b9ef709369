"""A Keras 3 model -> an nnspec spec (and its weights): the other half of the door to Keras.

The model's description is read from the ``.keras`` archive's ``config.json`` (or a bare config JSON) and
checked layer by layer (:mod:`.keras_mapping`) before anything else happens: a Lambda layer, an unknown
class or an unsupported option is an error that names the Keras layer, and such a file is never handed to
Keras. Only then are the weights read, with ``keras.saving.load_model(path, safe_mode=True)``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..compiler.ir import Graph
from ..compiler.shapes import ShapeProblem, make_graph
from ..runtime.weights import weight_differences
from .errors import KerasImportError
from .keras_config import KerasChain, model_chain, read_config
from .keras_mapping import SpecLayer, clean_float, map_layer

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
    chain = model_chain(config)
    if chain.input_dtype not in ("float32", "float64"):
        raise KerasImportError(f"the model's input dtype is {chain.input_dtype}; nnspec reads float32 or float64 inputs")
    layers = [spec_layer for layer in chain.layers for spec_layer in map_layer(layer)]
    notes = [note for layer in layers for note in layer.notes]
    notes += _assign_names(layers)
    graph = _graph(chain, layers)
    spec = _spec_document(chain, layers, path, notes)
    graph = graph.replace(train=_resolved_train(spec))
    weights = _read_weights(path, layers, graph) if has_weights else None
    return ImportedModel(spec, graph, weights, path, notes)


def _identifier(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", text)[:64] or "layer"
    return cleaned if re.match(r"^[A-Za-z_]", cleaned) else ("_" + cleaned)[:64]


def _assign_names(layers: list[SpecLayer]) -> list[str]:
    """Make every name a valid, unique nnspec identifier; returns notes for the names that changed."""
    notes, taken = [], set()
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


def _graph_attrs(layer: SpecLayer) -> dict[str, Any]:
    attrs = {k: v for k, v in layer.params.items() if k not in ("kernel_init", "bias_init")}
    return {**attrs, "name": layer.name}


def _graph(chain: KerasChain, layers: list[SpecLayer]) -> Graph:
    """Shape-infer the chain with nnspec's rules; a layer that does not fit names its Keras layer."""
    done: list[tuple[str, dict[str, Any]]] = []
    for layer in layers:
        done.append((layer.op, _graph_attrs(layer)))
        try:
            make_graph(chain.input_shape, done, dtype=chain.input_dtype)
        except ShapeProblem as exc:
            hint = f" ({exc.hint})" if exc.hint else ""
            if layer.op == "dense":
                hint = " (Keras's Dense acts on the last axis of any input; nnspec's dense needs a rank-1 input: add Flatten before it)"
            raise KerasImportError(f"{layer.source.label}: nnspec's {layer.op} {exc.message}{hint}") from None
    return make_graph(chain.input_shape, done, name=_model_name(chain.name), dtype=chain.input_dtype)


def _model_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "model"
    return cleaned if re.match(r"^[A-Za-z_]", cleaned) else ("_" + cleaned)[:64]


def _spec_layer_entry(layer: SpecLayer) -> dict[str, Any]:
    return {layer.op: {**layer.params, "name": layer.name}}


def _spec_document(chain: KerasChain, layers: list[SpecLayer], path: str, notes: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nnspec": 1,
        "name": _model_name(chain.name),
        "description": f"Imported from Keras model '{chain.name}' ({os.path.basename(path)}).",
        "input": {"shape": list(chain.input_shape)},
        "layers": [_spec_layer_entry(layer) for layer in layers],
    }
    if chain.input_dtype != "float32":
        spec["input"]["dtype"] = chain.input_dtype
    train = _train_section(chain.compile_config, notes)
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
    """The weights of a checked ``.keras`` archive, loaded with Keras in safe mode, keyed ``<layer>.<param>``."""
    import keras

    from ..backends.keras import layers as _registers_counter_dropout  # noqa: F401  (nnspec>CounterDropout)

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many kinds; the user needs the message, not the type
        raise KerasImportError(f"{path}: Keras could not load the model's weights ({type(exc).__name__}: {exc})") from None
    weights: dict[str, np.ndarray] = {}
    for layer in layers:
        if not layer.holds_weights:
            continue
        values = model.get_layer(layer.source.name).get_weights()
        names = ["kernel", "bias"] if layer.params.get("use_bias", True) else ["kernel"]
        if len(values) != len(names):
            raise KerasImportError(f"{layer.source.label} holds {len(values)} weight arrays; expected {len(names)} ({', '.join(names)})")
        for name, value in zip(names, values):
            weights[f"{layer.name}.{name}"] = np.ascontiguousarray(value, dtype=graph.dtype)
    problems = weight_differences(graph, weights)
    if problems:
        raise KerasImportError(f"{path}: the weights do not fit the imported spec:\n  " + "\n  ".join(problems))
    return weights


def spec_text(imported: ImportedModel) -> str:
    """The spec as YAML text, with a header saying where it came from and any notes."""
    import yaml

    header = [f"# Imported from {os.path.basename(imported.source)} by `nnspec import`."]
    header += [f"# note: {note}" for note in imported.notes]
    body = yaml.safe_dump(imported.spec, sort_keys=False, default_flow_style=None, width=120)
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
