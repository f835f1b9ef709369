"""A spec and its weights -> a standard Keras 3 ``.keras`` file (imports Keras).

The file holds a functional model of standard Keras layers only (no Lambda, nothing of nnspec's), wired as
the graph is (``Add``, ``Concatenate`` for merges; ``BatchNormalization`` holding its moving statistics):
plain Keras loads it with ``keras.saving.load_model(path, safe_mode=True)``. ``dropout`` becomes
``keras.layers.Dropout``: inference is the identity either way, but training the exported model in Keras
draws Keras's own masks, not nnspec's. The model is compiled with the spec's optimiser, schedule, weight decay and
loss, so that ``model.fit`` in Keras trains it with the same settings.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Mapping

import numpy as np

from ..compiler.ir import Graph
from ..compiler.training_defaults import OPTIMIZER_DEFAULTS, SCHEDULE_DEFAULTS
from ..errors import NnspecError
from ..outputs import check_output_file, write_outputs
from ..semantics.weights import check_weights


class KerasExportError(NnspecError, ValueError):
    """A spec cannot be written as a ``.keras`` file (a bad path, or a setting Keras cannot express)."""


@contextlib.contextmanager
def _dtype_scope(dtype: str) -> Iterator[None]:
    """On Keras-JAX, float64 variables need JAX's x64 mode while they are made."""
    import keras

    if keras.backend.backend() == "jax" and dtype == "float64":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


def keras_learning_rate(graph: Graph) -> Any:
    """The spec's learning rate as Keras sees it: a float or a ``keras.optimizers.schedules`` object."""
    import keras

    lr = graph.train.optimizer.learning_rate
    schedule = graph.train.schedule
    p = {**SCHEDULE_DEFAULTS.get(schedule.name, {}), **dict(schedule.params)}
    schedules = keras.optimizers.schedules
    if schedule.name == "constant":
        return lr
    if schedule.name == "step":  # lr * factor ** floor(step / every)
        return schedules.ExponentialDecay(
            lr, decay_steps=int(p["every"]), decay_rate=float(p["factor"]), staircase=True
        )
    if schedule.name == "exponential":
        return schedules.ExponentialDecay(
            lr, decay_steps=int(p["decay_steps"]), decay_rate=float(p["decay_rate"]), staircase=bool(p.get("staircase"))
        )
    if schedule.name == "cosine":
        return schedules.CosineDecay(lr, decay_steps=int(p["decay_steps"]), alpha=float(p["alpha"]))
    raise KerasExportError(f"schedule '{schedule.name}' has no Keras equivalent")


def keras_optimizer(graph: Graph) -> Any:
    """The Keras optimiser with the spec's hyper-parameters (Keras semantics are nnspec's)."""
    import keras

    cfg = graph.train.optimizer
    hp = {**OPTIMIZER_DEFAULTS[cfg.name], **dict(cfg.params)}
    hp["learning_rate"] = keras_learning_rate(graph)
    wd = graph.train.weight_decay or None
    if cfg.name == "adam":
        return keras.optimizers.Adam(
            learning_rate=hp["learning_rate"],
            beta_1=hp["beta_1"],
            beta_2=hp["beta_2"],
            epsilon=hp["epsilon"],
            weight_decay=wd,
        )
    if cfg.name == "sgd":
        return keras.optimizers.SGD(
            learning_rate=hp["learning_rate"], momentum=hp["momentum"], nesterov=bool(hp["nesterov"]), weight_decay=wd
        )
    if cfg.name == "rmsprop":
        return keras.optimizers.RMSprop(
            learning_rate=hp["learning_rate"],
            rho=hp["rho"],
            momentum=hp["momentum"],
            epsilon=hp["epsilon"],
            weight_decay=wd,
        )
    raise KerasExportError(f"optimizer '{cfg.name}' has no Keras equivalent")


def keras_loss(graph: Graph) -> tuple[Any, list[str]]:
    """The Keras loss and metrics of the spec: sparse cross-entropy (from logits when there is no final softmax)
    or MSE."""
    import keras

    if graph.train.loss == "cross_entropy":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=not graph.ends_in_softmax), [
            "sparse_categorical_accuracy"
        ]
    return keras.losses.MeanSquaredError(), []


def build_keras_model(graph: Graph, weights: Mapping[str, np.ndarray], *, compile: bool = True) -> Any:
    """The standard functional ``keras.Model`` of ``graph`` holding ``weights`` and moving statistics
    (dropout as ``keras.layers.Dropout``)."""
    from ..backends.keras.layers import BuildOptions, build_graph

    check_weights(graph, weights)
    with _dtype_scope(graph.dtype):
        kgraph = build_graph(graph, BuildOptions(dtype=graph.dtype, seed=graph.train.seed, export=True))
        kgraph.assign(weights)
        model = kgraph.model
        if compile:
            loss, metrics = keras_loss(graph)
            model.compile(optimizer=keras_optimizer(graph), loss=loss, metrics=metrics)
            model.optimizer.build(model.trainable_variables)  # save its slots, so that loading matches them
    return model


def check_export_path(path: str | os.PathLike[str]) -> str:
    """Refuse a path ``export`` cannot write a ``.keras`` file to (wrong suffix, NUL byte, missing or
    read-only folder, an existing folder); returns it as a string."""
    return check_output_file(path, "Keras 3 model file", error=KerasExportError, suffix=".keras", example="model.keras")


def export_keras(graph: Graph, weights: Mapping[str, np.ndarray], path: str | os.PathLike[str]) -> Any:
    """Write ``graph`` with ``weights`` to the ``.keras`` file ``path``, whole or not at all (a temporary
    file in the same folder, renamed into place); returns the Keras model."""
    path = check_export_path(path)
    model = build_keras_model(graph, weights)

    def save(tmp: str) -> None:
        with _dtype_scope(graph.dtype):
            model.save(tmp)

    write_outputs([(path, save)], "Keras 3 model file", error=KerasExportError)
    return model
