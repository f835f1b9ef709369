"""The benchmark's fixed settings and the three models, defined once for every implementation.

Every implementation trains the same model from the same initial weights (nnspec's seeded NumPy
initialisers, in Keras's layouts), on the same data, with batch size 128, Adam (Keras's formula and
defaults, learning rate 1e-3), float32 and cross-entropy computed from the logits.

``mlp`` and ``cnn`` are written here as layer lists; ``resnet`` is the network of
``specs/fashion_mnist_resnet.yaml``, loaded from that file with its training settings replaced by the
benchmark's. Only ``mlp`` and ``cnn`` have hand-written engine baselines (:data:`HAND_MODELS`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from nnspec.compiler.ir import Graph

MODELS: tuple[str, ...] = ("mlp", "cnn", "resnet")
#: Models with hand-written engine baselines; the others are compared with Keras ``fit`` and across engines only.
HAND_MODELS: tuple[str, ...] = ("mlp", "cnn")
ENGINES: tuple[str, ...] = ("jax", "tensorflow", "theano", "keras")
#: ``train.precision`` policies the harness can ask for (nnspec's vocabulary, :data:`nnspec.compiler.ir.PRECISIONS`).
PRECISIONS: tuple[str, ...] = ("float32", "tf32", "mixed_bfloat16", "mixed_float16", "float64")

#: Adam's hyper-parameters (Keras 3 defaults): every hand-written optimiser uses exactly these.
ADAM = {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}

#: Dropout rate of the convnet (probability of dropping a unit).
CNN_DROPOUT = 0.5

#: The residual model's spec file (its layers are the benchmark's; its ``train`` section is replaced).
RESNET_SPEC = Path(__file__).resolve().parent.parent / "specs" / "fashion_mnist_resnet.yaml"


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run's settings, shared by every implementation."""

    epochs: int = 5
    batch_size: int = 128
    seed: int = 0
    limit: int | None = None  # use only the first ``limit`` training examples (smoke runs)
    test_limit: int | None = None
    precision: str = "float32"  # nnspec's ``train.precision``; the hand-written baselines read it where they can

    def steps_per_epoch(self, n: int) -> int:
        """Full batches per epoch; the remainder of the permutation is skipped (nnspec's rule)."""
        return n // min(self.batch_size, n)

    def order(self, n: int, epoch: int) -> np.ndarray:
        """The epoch's example order, the same as nnspec's: ``default_rng([seed, epoch]).permutation(n)``."""
        return np.random.default_rng([self.seed, epoch]).permutation(n).astype(np.int32)


def layer_list(model: str) -> list[tuple[str, dict[str, Any]] | str]:
    """The model as ``(op, attrs)`` pairs for :func:`nnspec.compiler.shapes.make_graph` (``mlp``, ``cnn``)."""
    if model == "mlp":
        return [
            "flatten",
            ("dense", {"units": 128, "activation": "relu"}),
            ("dense", {"units": 10}),
            "softmax",
        ]
    if model == "cnn":
        return [
            ("conv2d", {"filters": 32, "kernel": 3, "activation": "relu"}),
            ("max_pool2d", {"size": 2}),
            ("conv2d", {"filters": 64, "kernel": 3, "activation": "relu"}),
            ("max_pool2d", {"size": 2}),
            "flatten",
            ("dropout", {"rate": CNN_DROPOUT}),
            ("dense", {"units": 10}),
            "softmax",
        ]
    if model == "resnet":
        raise ValueError(f"the resnet is defined by its spec file, {RESNET_SPEC}; use make_model_graph")
    raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")


def make_model_graph(model: str, config: BenchConfig) -> "Graph":
    """The nnspec graph of ``model`` with the benchmark's training settings (``train.precision`` from ``config``)."""
    from nnspec.compiler.ir import OptimizerConfig, TrainConfig
    from nnspec.compiler.shapes import make_graph

    train = TrainConfig(
        loss="cross_entropy",
        optimizer=OptimizerConfig("adam", dict(ADAM)),
        batch_size=config.batch_size,
        epochs=config.epochs,
        seed=config.seed,
    )
    if model == "resnet":
        import nnspec

        graph = nnspec.load(str(RESNET_SPEC))
        if graph.dtype != "float32":
            raise ValueError(f"{RESNET_SPEC}: the benchmark runs in float32, the spec says {graph.dtype}")
        graph = graph.replace(train=train)
    else:
        graph = make_graph((28, 28, 1), layer_list(model), name=f"fashion-mnist-{model}", train=train, dtype="float32")
    return graph.replace(train=dataclasses.replace(graph.train, precision=config.precision))


def initial_weights(model: str, config: BenchConfig) -> dict[str, np.ndarray]:
    """The shared float32 starting weights, ``{'<layer>.<weight>': array}``: trainable weights and, for the
    resnet, the batch norms' moving statistics."""
    from nnspec.compiler.init import initial_weights as nnspec_initial_weights

    return nnspec_initial_weights(make_model_graph(model, config), dtype="float32")


def weight_list(model: str, config: BenchConfig) -> list[np.ndarray]:
    """The trainable starting weights in layer order (kernel, bias, kernel, bias, ...), as Keras's
    ``set_weights`` wants for the ``Sequential`` ``mlp`` and ``cnn`` (the resnet is matched by name)."""
    graph = make_model_graph(model, config)
    weights = initial_weights(model, config)
    return [weights[key] for key, _, _ in graph.param_specs()]
