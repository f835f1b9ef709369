"""A Keras 3 model -> an nnspec spec (and its weights): the other half of the door to Keras.

The model's description is read from the ``.keras`` archive's ``config.json`` (or a bare config JSON,
:mod:`.keras_archive`), wired into a graph of Keras layers (:mod:`.keras_config`) and checked layer by layer
(:mod:`.keras_mapping`) before anything else happens: a Lambda layer, an unknown class or an unsupported
option is an error that names the Keras layer, and such a file is never handed to Keras. The compile config
becomes the ``train`` section (:mod:`.keras_training`). Only then are the weights read
(:mod:`.keras_weights`); writing the result is :mod:`.keras_import_output`'s.

Sequential models become chains; functional models become graph specs: layers in a topological order,
``inputs: [a, b]`` where a layer reads anything but the layer before it (``input`` is the model's
input), and a top-level ``output: NAME`` when the output is not the last layer. Each spec names the oldest
language version that has every op and key it uses (:func:`nnspec.compiler.versions.version_needed`).
Nothing is trusted: the spec text made from the model must pass nnspec's own check before anything else
happens.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..compiler.ir import INPUT, Graph, Shape
from ..compiler.shapes import MERGE_OPS, ShapeProblem, make_graph, make_node
from ..compiler.versions import version_needed
from .errors import KerasImportError, UnsupportedLayers, short
from .keras_archive import read_config
from .keras_config import KerasLayer, KerasNetwork, model_network
from .keras_mapping import SpecLayer, known_classes, map_layer
from .keras_training import train_section
from .keras_weights import read_weights


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
        groups = _map_layers(net)
        layers = [spec_layer for _, specs in groups for spec_layer in specs]
        notes = [note for layer in layers for note in layer.notes]
        notes += _assign_names(layers)
        output = _wire(net, groups)
        _graph(net, layers, output)
        spec = _spec_document(net, layers, output, path, notes)
        text = _text(spec, notes, path)
        imported = ImportedModel(spec, checked_graph(text), None, path, notes, text)
    except KerasImportError as exc:
        raise exc.in_file(path) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError, RecursionError) as exc:
        raise KerasImportError(
            f"a malformed Keras model config ({type(exc).__name__}: {short(str(exc), 160)})", file=path
        ) from None
    if has_weights:
        imported.weights = read_weights(path, config, layers, imported.graph)
    return imported


def _map_layers(net: KerasNetwork) -> list[tuple[KerasLayer, list[SpecLayer]]]:
    """Every Keras layer's spec layers; every layer that cannot be imported is found before one is reported
    (:class:`UnsupportedLayers`, naming each with its config path, class and name)."""
    groups, problems = [], []
    for layer in net.layers:
        try:
            groups.append((layer, map_layer(layer)))
        except KerasImportError as exc:
            problems.append(KerasImportError(exc.message, exc.where, exc.file, exc.layer or layer.name))
    if problems:
        raise UnsupportedLayers(problems, len(net.layers), known_classes())
    return groups


def checked_graph(text: str) -> Graph:
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
    """Make every name a valid, unique nnspec identifier other than ``input``; returns notes for the names that
    changed."""
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
                f"{layer.source.label}: axis={layer.keras_axis} is the batch axis; nnspec concatenates along an axis "
                "of each example"
            )
        if axis == batched - 1:
            layer.params.pop("axis", None)
        else:
            layer.params["axis"] = axis - 1
    elif axis != batched - 1:
        raise KerasImportError(
            f"{layer.source.label}: axis={layer.keras_axis} is not supported (nnspec's {layer.op} normalises over the "
            "last axis only: axis=-1)"
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
        train = train_section(net.compile_config, notes)
    except KerasImportError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError) as exc:
        raise KerasImportError(
            f"a malformed compile config ({type(exc).__name__}: {short(str(exc), 160)})", where="compile_config"
        ) from None
    if train:
        spec["train"] = train
    return spec


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
