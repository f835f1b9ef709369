"""The weights of an imported ``.keras`` archive: checked before Keras sees them, then read with Keras.

The model's size must fit the cap (``$NNSPEC_MAX_KERAS_WEIGHTS_BYTES``, 2 GiB) and the memory available;
``model.weights.h5`` is copied out in bounded chunks and checked with h5py (the sizes its datasets declare,
each weight's dtype, shape and values, named ``'dense.kernel' (layers/dense/vars/0)``); only then does
``keras.saving.load_model(path, safe_mode=True)`` read it, and the arrays are checked again against the spec.
"""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

from ..compiler.ir import Graph
from ..data.safety import available_memory, first_bad_value, human_bytes
from ..semantics.weights import expected_shapes, weight_differences
from .errors import KerasImportError, short
from .keras_archive import MAX_WEIGHTS_BYTES, WEIGHTS_BYTES_ENV, WEIGHTS_MEMBER, byte_cap, copy_member, open_archive
from .keras_mapping import SpecLayer


def read_weights(path: str, config: dict[str, Any], layers: list[SpecLayer], graph: Graph) -> dict[str, np.ndarray]:
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
    itemsize = 8 if graph.dtype == "float64" else 4
    sizes = {key: int(np.prod(shape, dtype=np.float64)) * itemsize for key, shape in expected_shapes(graph).items()}
    nbytes = sum(sizes.values())
    biggest = max(sizes, key=sizes.__getitem__, default=None)
    largest = f" (the largest, '{biggest}', {human_bytes(sizes[biggest])})" if biggest else ""
    cap = byte_cap(WEIGHTS_BYTES_ENV, MAX_WEIGHTS_BYTES)
    if nbytes > cap:
        raise KerasImportError(
            f"the model's weights take {human_bytes(nbytes)}{largest}, over the limit of {human_bytes(cap)}; set "
            f"${WEIGHTS_BYTES_ENV} to a larger number of bytes if the model is genuine",
            file=path,
        )
    free = available_memory()
    if free is not None and 3 * nbytes > free:  # Keras's variables, the file's bytes and nnspec's copy
        raise KerasImportError(
            f"the model's weights take {human_bytes(nbytes)}{largest}, too much for the {human_bytes(free)} of memory "
            "available",
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
                            f"the datasets of {WEIGHTS_MEMBER} declare more than {human_bytes(cap)} (at {name}); set "
                            f"${WEIGHTS_BYTES_ENV} to a larger number of bytes if the file is genuine",
                            file=path,
                        )
                for name, dataset in datasets:
                    _check_dataset(path, name, dataset, names.get(name), shapes)
        except KerasImportError:
            raise
        except Exception as exc:  # h5py and HDF5 raise many kinds for a damaged file
            raise KerasImportError(
                f"the member {WEIGHTS_MEMBER} is not a readable HDF5 file ({type(exc).__name__}: "
                f"{short(str(exc), 200)})",
                file=path,
            ) from None


def _check_dataset(path: str, name: str, dataset: Any, weight: str | None, shapes: dict[str, tuple[int, ...]]) -> None:
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
            f"{label} holds a non-finite value: {bad.describe(weight or name)}; nnspec refuses NaN and infinite "
            "weights",
            file=path,
        )


def _snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case``: the group name a saved layer gets from its class name."""
    import re

    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def saved_layer_groups(config: dict[str, Any]) -> dict[str, str]:
    """``{'layers/dense_1': keras layer name}``: where Keras 3 saves each layer's variables in ``model.weights.h5``.

    Keras names a layer's group after its class (``Dense`` -> ``dense``, then ``dense_1``, ...) in the
    order of ``model.layers`` (a Sequential model's input layer left out). Used to name weights in messages
    and check them before Keras reads the file; a layer it misses is still checked once Keras has loaded it."""
    body = config.get("config")
    entries = body.get("layers") if isinstance(body, dict) else None
    groups: dict[str, str] = {}
    used: dict[str, int] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            continue
        if config.get("class_name") == "Sequential" and entry["class_name"] == "InputLayer":
            continue
        group = _snake_case(entry["class_name"])
        if group in used:
            used[group] += 1
            group = f"{group}_{used[group]}"
        else:
            used[group] = 0
        cfg = entry.get("config")
        name = entry.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None)
        if isinstance(name, str):
            groups[f"layers/{group}"] = name
    return groups
