"""A Keras 3 model -> an nnspec spec (and its weights): the other half of the door to Keras.

The model's description is read from the ``.keras`` archive's ``config.json`` (or a bare config JSON) and
checked layer by layer (:mod:`.keras_mapping`) before anything else happens: a Lambda layer, an unknown
class or an unsupported option is an error that names the Keras layer, and such a file is never handed to
Keras. Only then are the weights read, with ``keras.saving.load_model(path, safe_mode=True)``.

Sequential models become chains; functional models become graph specs: layers in a topological order,
``inputs: [a, b]`` where a layer reads anything but the layer before it (``input`` is the model's
input), and a top-level ``output: NAME`` when the output is not the last layer. Each spec names the oldest
language version that has every op and key it uses (:func:`nnspec.compiler.versions.version_needed`).

Nothing is trusted: the spec text made from the model must pass nnspec's own check before anything else
happens; the weights member is checked with h5py before Keras opens it (its size against the cap, each
weight's dtype, shape and values, named ``'dense.kernel' (layers/dense/vars/0)``); the model's parameters
must fit the cap and the memory available before Keras builds it. The spec and weights files are written
only when all of that passed, each to a temporary file in the target folder renamed into place, so a
failed import leaves no file behind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..compiler.ir import INPUT, Graph, Shape
from ..compiler.shapes import MERGE_OPS, ShapeProblem, make_graph, make_node
from ..compiler.versions import version_needed
from ..outputs import check_output_file
from ..semantics.weights import expected_shapes, weight_differences
from .errors import KerasImportError, short
from .keras_config import (
    MAX_WEIGHTS_BYTES,
    WEIGHTS_BYTES_ENV,
    WEIGHTS_MEMBER,
    KerasLayer,
    KerasNetwork,
    byte_cap,
    copy_member,
    model_network,
    open_archive,
    read_config,
    saved_layer_groups,
)
from .keras_mapping import SpecLayer, clean_float, map_layer

_OPTIMIZERS = {"adam": "adam", "sgd": "sgd", "rmsprop": "rmsprop"}
_OPTIMIZER_KEYS = {
    "adam": ("learning_rate", "beta_1", "beta_2", "epsilon"),
    "sgd": ("learning_rate", "momentum", "nesterov"),
    "rmsprop": ("learning_rate", "rho", "momentum", "epsilon"),
}
_IGNORED_OPTIMIZER_FLAGS = (
    "amsgrad",
    "centered",
    "use_ema",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "gradient_accumulation_steps",
    "loss_scale_factor",
)
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
    #: the spec text that passed nnspec's check (what :func:`write_spec` writes)
    text: str = ""


def import_keras(path: str) -> ImportedModel:
    """Turn the Keras model in ``path`` (``.keras`` archive or config ``.json``) into a spec and weights.

    Every problem is a :class:`KerasImportError` naming ``path`` and, where it has one, the place in the
    model config; the spec is returned only once its text passes nnspec's check."""
    path = os.fspath(path)
    config, has_weights = read_config(path)
    try:
        net = model_network(config)
        if net.input_dtype not in ("float32", "float64"):
            raise KerasImportError(
                f"the model's input dtype is {short(net.input_dtype)}; nnspec reads float32 or float64 inputs"
            )
        groups = [(layer, map_layer(layer)) for layer in net.layers]
        layers = [spec_layer for _, specs in groups for spec_layer in specs]
        notes = [note for layer in layers for note in layer.notes]
        notes += _assign_names(layers)
        output = _wire(net, groups)
        _graph(net, layers, output)
        spec = _spec_document(net, layers, output, path, notes)
        text = _text(spec, notes, path)
        imported = ImportedModel(spec, _checked_graph(text), None, path, notes, text)
    except KerasImportError as exc:
        raise exc.in_file(path) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError, RecursionError) as exc:
        raise KerasImportError(
            f"a malformed Keras model config ({type(exc).__name__}: {short(str(exc), 160)})", file=path
        ) from None
    if has_weights:
        imported.weights = _read_weights(path, config, layers, imported.graph)
    return imported


def _checked_graph(text: str) -> Graph:
    """The graph of the spec text made from a model, which must pass nnspec's own check (errors listed)."""
    from ..compiler.frontend import analyse_text

    graph, diagnostics = analyse_text(text, "<imported spec>")
    if graph is None:
        errors = [d.format().replace("\n", " ") for d in diagnostics if d.severity == "error"]
        raise KerasImportError(
            "the spec made from this model does not pass nnspec's check:\n  " + "\n  ".join(errors[:10])
        )
    return graph


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
            raise KerasImportError(
                f"{klayer.label} takes {len(klayer.inbound)} inputs; only Add and Concatenate merge several"
            )
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
        raise KerasImportError(
            f"{layer.source.label}: axis={axis} is out of range for its input of rank {batched} (batch axis included)"
        )
    axis %= batched
    if layer.op == "concat":
        if axis == 0:
            raise KerasImportError(
                f"{layer.source.label}: axis={layer.keras_axis} is the batch axis; nnspec concatenates along an axis of each example"
            )
        if axis == batched - 1:
            layer.params.pop("axis", None)
        else:
            layer.params["axis"] = axis - 1
    elif axis != batched - 1:
        raise KerasImportError(
            f"{layer.source.label}: axis={layer.keras_axis} is not supported (nnspec's {layer.op} normalises over the last axis only: axis=-1)"
        )


def _graph(net: KerasNetwork, layers: list[SpecLayer], output: str) -> Graph:
    """Shape-infer the wired layers with nnspec's rules; a layer that does not fit names its Keras layer."""
    shapes: dict[str, Shape] = {INPUT: net.input_shape}
    done: list[tuple[str, dict[str, Any]]] = []
    for index, layer in enumerate(layers):
        given = [shapes[name] for name in layer.inputs]
        _resolve_axis(layer, len(given[0]))
        attrs = _graph_attrs(layer)
        try:
            node = make_node(
                index, layer.name, layer.op, attrs, given if layer.op in MERGE_OPS else given[0], layer.inputs
            )
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


def _spec_document(
    net: KerasNetwork, layers: list[SpecLayer], output: str, path: str, notes: list[str]
) -> dict[str, Any]:
    entries = [_spec_layer_entry(layer, layers[i - 1].name if i else INPUT) for i, layer in enumerate(layers)]
    top_keys = ["output"] if output != layers[-1].name else []
    version = version_needed([next(iter(e.items())) for e in entries], top_keys)
    spec: dict[str, Any] = {
        "nnspec": json.loads(version),
        "name": _model_name(net.name),
        "description": one_line(f"Imported from Keras model '{short(net.name)[1:-1]}' ({os.path.basename(path)})."),
        "input": {"shape": list(net.input_shape)},
        "layers": entries,
    }
    if output != layers[-1].name:
        spec["output"] = output
    if net.input_dtype != "float32":
        spec["input"]["dtype"] = net.input_dtype
    try:
        train = _train_section(net.compile_config, notes)
    except KerasImportError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError) as exc:
        raise KerasImportError(
            f"a malformed compile config ({type(exc).__name__}: {short(str(exc), 160)})", where="compile_config"
        ) from None
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
            notes.append(
                "the Keras loss takes logits; nnspec computes cross-entropy from the logits of a final softmax itself"
            )
    elif loss is not None:
        notes.append(f"Keras loss {short(loss_name)} has no nnspec equivalent; the spec uses nnspec's default loss")
    optimizer = compile_config.get("optimizer")
    if optimizer is not None:
        train.update(_optimizer(optimizer, notes))
    return train


def _optimizer(optimizer: Any, notes: list[str]) -> dict[str, Any]:
    cls = optimizer.get("class_name") if isinstance(optimizer, dict) else optimizer
    cfg = (optimizer.get("config") or {}) if isinstance(optimizer, dict) else {}
    if not isinstance(cfg, dict):
        raise KerasImportError(
            f"the optimizer's config is {short(cfg)}, not an object", where="compile_config.optimizer.config"
        )
    name = _OPTIMIZERS.get(cls.lower()) if isinstance(cls, str) else None
    if name is None:
        notes.append(f"Keras optimizer {short(cls)} has no nnspec equivalent; the spec uses nnspec's default optimizer")
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
            notes.append(f"Keras optimizer option {flag}={short(cfg[flag])} has no nnspec equivalent and is left out")
    if cfg.get("weight_decay"):
        out["weight_decay"] = clean_float(cfg["weight_decay"])
    out["optimizer"] = {name: params}
    return out


def _schedule(schedule: dict[str, Any], out: dict[str, Any], notes: list[str]) -> float | None:
    cls, cfg = schedule.get("class_name"), schedule.get("config") or {}
    if not isinstance(cfg, dict):
        raise KerasImportError(
            f"the learning-rate schedule's config is {short(cfg)}, not an object",
            where="compile_config.optimizer.config.learning_rate.config",
        )
    lr = cfg.get("initial_learning_rate")
    if cls == "ExponentialDecay":
        out["schedule"] = {
            "exponential": {
                "decay_steps": int(cfg["decay_steps"]),
                "decay_rate": clean_float(cfg["decay_rate"]),
                "staircase": bool(cfg.get("staircase", False)),
            }
        }
    elif cls == "CosineDecay" and not cfg.get("warmup_steps"):
        out["schedule"] = {
            "cosine": {"decay_steps": int(cfg["decay_steps"]), "alpha": clean_float(cfg.get("alpha", 0.0))}
        }
    else:
        notes.append(
            f"Keras learning-rate schedule {short(cls)} has no nnspec equivalent; the spec uses a constant rate"
        )
    return lr


def _read_weights(path: str, config: dict[str, Any], layers: list[SpecLayer], graph: Graph) -> dict[str, np.ndarray]:
    """The weights and moving statistics of a checked ``.keras`` archive, keyed ``<layer>.<name>``.

    The model's size and the weights member are checked first (:func:`check_weights_member`); only then
    are they loaded with Keras in safe mode, and checked again against the spec."""
    _check_model_size(path, graph)
    names = _saved_weight_names(config, layers)
    check_weights_member(path, names, expected_shapes(graph))
    import keras

    from ..backends.keras import layers as _registers_counter_dropout  # noqa: F401  (nnspec>CounterDropout)

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many kinds; the user needs the message, not the type
        raise KerasImportError(
            f"Keras could not load the model's weights ({type(exc).__name__}: {short(str(exc), 300)})", file=path
        ) from None
    weights: dict[str, np.ndarray] = {}
    for layer in layers:
        if not layer.weight_names:
            continue
        try:
            klayer = model.get_layer(layer.source.name)
        except ValueError:
            raise KerasImportError(
                f"Keras loaded the model without its {layer.source.label}", where=layer.source.at(), file=path
            ) from None
        for name in layer.weight_names:
            variable = getattr(klayer, name, None)
            if variable is None:
                raise KerasImportError(
                    f"{layer.source.label} holds no '{name}' weights", where=layer.source.at(), file=path
                )
            weights[f"{layer.name}.{name}"] = np.ascontiguousarray(
                keras.ops.convert_to_numpy(variable), dtype=graph.dtype
            )
    problems = weight_differences(graph, weights)
    if problems:
        raise KerasImportError("the weights do not fit the imported spec:\n  " + "\n  ".join(problems), file=path)
    return weights


def _check_model_size(path: str, graph: Graph) -> None:
    """Refuse a model whose weights would not fit the cap or the memory available, before Keras builds it."""
    from ..data.safety import available_memory, human_bytes

    itemsize = 8 if graph.dtype == "float64" else 4
    sizes = {key: int(np.prod(shape, dtype=np.float64)) * itemsize for key, shape in expected_shapes(graph).items()}
    nbytes = sum(sizes.values())
    biggest = max(sizes, key=sizes.__getitem__, default=None)
    largest = f" (the largest, '{biggest}', {human_bytes(sizes[biggest])})" if biggest else ""
    cap = byte_cap(WEIGHTS_BYTES_ENV, MAX_WEIGHTS_BYTES)
    if nbytes > cap:
        raise KerasImportError(
            f"the model's weights take {human_bytes(nbytes)}{largest}, over the limit of {human_bytes(cap)}; set ${WEIGHTS_BYTES_ENV} to a larger number of bytes if the model is genuine",
            file=path,
        )
    free = available_memory()
    if free is not None and 3 * nbytes > free:  # Keras's variables, the file's bytes and nnspec's copy
        raise KerasImportError(
            f"the model's weights take {human_bytes(nbytes)}{largest}, too much for the {human_bytes(free)} of memory available",
            file=path,
        )


def _saved_weight_names(config: dict[str, Any], layers: list[SpecLayer]) -> dict[str, str]:
    """``{'layers/dense/vars/0': 'hidden.kernel'}``: the dataset of each spec weight in ``model.weights.h5``."""
    by_keras_name = {layer.source.name: layer for layer in layers if layer.weight_names}
    names: dict[str, str] = {}
    for group, keras_name in saved_layer_groups(config).items():
        layer = by_keras_name.get(keras_name)
        if layer is not None:
            names.update({f"{group}/vars/{i}": f"{layer.name}.{w}" for i, w in enumerate(layer.weight_names)})
    return names


def check_weights_member(path: str, names: dict[str, str], shapes: dict[str, tuple[int, ...]]) -> None:
    """Check ``model.weights.h5`` of the archive at ``path`` with h5py, before Keras reads it.

    The member is copied in bounded chunks to a temporary file (its size was checked against the cap); the
    sizes its datasets declare must fit the cap too. Each dataset that holds a spec weight (``names`` maps
    dataset paths to spec names, ``shapes`` spec names to shapes) must be floating point, of the spec's
    shape, and finite; any other floating-point dataset must be finite. Errors name the weight and the dataset.
    """
    import h5py

    cap = byte_cap(WEIGHTS_BYTES_ENV, MAX_WEIGHTS_BYTES)
    with open_archive(path) as archive, tempfile.TemporaryFile(prefix="nnspec-import-") as copy:
        copy_member(archive, WEIGHTS_MEMBER, copy, cap, path)
        copy.seek(0)
        try:
            with h5py.File(copy, "r") as h5:
                datasets: list[tuple[str, Any]] = []
                h5.visititems(lambda name, obj: datasets.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
                declared = 0
                for name, dataset in datasets:
                    declared += int(np.prod(dataset.shape, dtype=np.float64)) * dataset.dtype.itemsize
                    if declared > cap:
                        raise KerasImportError(
                            f"the datasets of {WEIGHTS_MEMBER} declare more than {_human(cap)} (at {name}); set ${WEIGHTS_BYTES_ENV} to a larger number of bytes if the file is genuine",
                            file=path,
                        )
                for name, dataset in datasets:
                    _check_dataset(path, name, dataset, names.get(name), shapes)
        except KerasImportError:
            raise
        except Exception as exc:  # h5py and HDF5 raise many kinds for a damaged file
            raise KerasImportError(
                f"the member {WEIGHTS_MEMBER} is not a readable HDF5 file ({type(exc).__name__}: {short(str(exc), 200)})",
                file=path,
            ) from None


def _check_dataset(path: str, name: str, dataset: Any, weight: str | None, shapes: dict[str, tuple[int, ...]]) -> None:
    from ..data.safety import first_bad_value

    label = f"weight '{weight}' ({WEIGHTS_MEMBER}: {name})" if weight else f"dataset {WEIGHTS_MEMBER}: {name}"
    kind = dataset.dtype.kind
    if weight is not None:
        if kind != "f":
            raise KerasImportError(
                f"{label} has dtype {dataset.dtype}; weights must be floating point (float16, float32 or float64)",
                file=path,
            )
        want = shapes.get(weight)
        if want is not None and tuple(dataset.shape) != tuple(want):
            raise KerasImportError(f"{label} has shape {list(dataset.shape)}, the spec needs {list(want)}", file=path)
    if kind != "f":
        return
    bad = first_bad_value(dataset[()] if dataset.ndim == 0 else dataset, float32_range=False)
    if bad is not None:
        raise KerasImportError(
            f"{label} holds a non-finite value: {bad.describe(weight or name)}; nnspec refuses NaN and infinite weights",
            file=path,
        )


def _human(n: int) -> str:
    from ..data.safety import human_bytes

    return human_bytes(n)


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped, so that it stays on one line."""
    return re.sub(
        r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]", lambda m: m.group().encode("unicode_escape").decode("ascii"), text
    )


def _text(spec: dict[str, Any], notes: list[str], source: str) -> str:
    import yaml

    base: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's emitter when there is one

    class Dumper(base):
        """Writes each layer's parameters on one line: ``- add: {name: res, inputs: [a, b]}``."""

    class OneLine(dict):
        pass

    Dumper.add_representer(
        OneLine, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=True)
    )
    layers = [{op: OneLine(params) for op, params in entry.items()} for entry in spec["layers"]]
    header = [f"# Imported from {one_line(os.path.basename(source))} by `nnspec import`."]
    header += [f"# note: {one_line(note)}" for note in notes]
    body = yaml.dump({**spec, "layers": layers}, Dumper=Dumper, sort_keys=False, default_flow_style=None, width=120)
    return "\n".join(header) + "\n" + body


def spec_text(imported: ImportedModel) -> str:
    """The spec as YAML text, with a header saying where it came from and any notes (one comment line each)."""
    return _text(imported.spec, imported.notes, imported.source)


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
        _checked_graph(text)
    jobs: list[tuple[str, Callable[[str], Any]]] = [(path, lambda tmp: _write_text(tmp, text))]
    if weights_path is not None and weights is not None:
        jobs.insert(0, (weights_path, lambda tmp: save_weights(tmp, weights, imported.graph)))
    _write_all(jobs)


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _write_all(jobs: list[tuple[str, Callable[[str], Any]]]) -> None:
    """Write every ``(target, write)`` to a temporary file beside its target, then rename them all into place."""
    from ..runtime.atomic import TEMP_PREFIX, fsync_dir

    temps: list[tuple[str, str]] = []
    done: list[str] = []
    target = ""
    try:
        for target, write in jobs:
            folder = os.path.dirname(os.path.abspath(target))
            stem, suffix = os.path.splitext(os.path.basename(target))
            fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{stem}-", suffix=suffix, dir=folder)
            os.close(fd)
            temps.append((tmp, target))
            write(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        for tmp, target in temps:
            os.replace(tmp, target)
            done.append(target)
    except BaseException as exc:
        for name in [tmp for tmp, _ in temps] + done:
            try:
                os.unlink(name)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise KerasImportError(
                f"{target}: cannot write the import's output ({exc.strerror or exc}); nothing was written"
            ) from None
        raise
    for _, target in temps:
        fsync_dir(os.path.dirname(os.path.abspath(target)))
