"""The frozen, engine-free intermediate representation of a model.

The front end (loader -> schema validation -> resolution -> shape inference) produces a :class:`Graph`;
every backend compiles a :class:`Graph`. Nothing here imports an engine.

Canonical, fully resolved ``Node.attrs`` per op (defaults already filled in):

* ``dense``: ``units: int``, ``activation: str``, ``use_bias: bool``, ``kernel_init: Initializer``,
  ``bias_init: Initializer``
* ``conv2d``: ``filters: int``, ``kernel: (kh, kw)``, ``strides: (sh, sw)``, ``padding: 'valid'|'same'``,
  ``activation: str``, ``use_bias: bool``, ``kernel_init``, ``bias_init``
* ``max_pool2d`` / ``avg_pool2d``: ``size: (ph, pw)``, ``strides: (sh, sw)``, ``padding: 'valid'|'same'``
* ``flatten``: no attributes (row-major over (H, W, C))
* ``reshape``: ``shape: tuple[int, ...]`` (per example, fully resolved, no -1 left)
* ``dropout``: ``rate: float`` (probability of dropping a unit)
* ``activation``: ``activation: str``
* ``softmax``: no attributes (over the last axis)

Shapes are per example (no batch axis), channels last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

LAYER_TYPES: tuple[str, ...] = (
    "dense",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "flatten",
    "reshape",
    "dropout",
    "activation",
    "softmax",
)
ACTIVATIONS: tuple[str, ...] = ("relu", "sigmoid", "tanh", "elu", "gelu", "softplus", "linear")
INITIALIZERS: tuple[str, ...] = (
    "glorot_uniform",
    "glorot_normal",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "zeros",
    "ones",
    "normal",
    "uniform",
)
LOSSES: tuple[str, ...] = ("cross_entropy", "mse")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "rmsprop")
SCHEDULES: tuple[str, ...] = ("constant", "step", "exponential", "cosine")
DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion_mnist", "npz", "csv")
NORMALIZATIONS: tuple[str, ...] = ("scale", "standardize", "none")

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Initializer:
    """A parameter initialiser by name with its numeric arguments (for example ``normal`` with ``stddev``)."""

    name: str
    args: tuple[tuple[str, float], ...] = ()

    def arg(self, key: str, default: float) -> float:
        """Return argument ``key`` or ``default`` when it was not given."""
        return dict(self.args).get(key, default)


@dataclass(frozen=True)
class ParamSpec:
    """One trainable array of a layer: its local name (``kernel`` or ``bias``), shape and initialiser."""

    name: str
    shape: Shape
    init: Initializer
    fan_in: int = 0
    fan_out: int = 0


@dataclass(frozen=True)
class Node:
    """One layer of the sequential model, with its resolved attributes and inferred shapes."""

    index: int
    name: str
    op: str
    attrs: Mapping[str, Any]
    input_shape: Shape
    output_shape: Shape
    params: tuple[ParamSpec, ...] = ()
    flops: int = 0

    def key(self, param: str) -> str:
        """Return the weights-dict key of one of this node's parameters: ``<layer>.<param>``."""
        return f"{self.name}.{param}"

    @property
    def num_params(self) -> int:
        """Number of scalar parameters of this layer."""
        total = 0
        for p in self.params:
            size = 1
            for d in p.shape:
                size *= d
            total += size
        return total


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimiser name and its fully resolved hyper-parameters (Keras's defaults filled in)."""

    name: str
    params: Mapping[str, float | bool] = field(default_factory=dict)

    @property
    def learning_rate(self) -> float:
        """The base learning rate."""
        return float(self.params["learning_rate"])


@dataclass(frozen=True)
class ScheduleConfig:
    """A learning-rate schedule; ``params`` are resolved (see docs/spec.md)."""

    name: str = "constant"
    params: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section, resolved."""

    loss: str = "cross_entropy"
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig("adam", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 10
    seed: int = 0
    metrics: tuple[str, ...] = ("accuracy",)


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` section, resolved. ``options`` holds dataset-specific keys (``file``, ``x``, ``y``, ``label``)."""

    dataset: str = "digits"
    path: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    validation_split: float = 0.1
    test_split: float = 0.2
    normalize: str = "scale"


@dataclass(frozen=True)
class Graph:
    """A whole model: input, the ordered layers, training and data settings, and where it came from."""

    name: str
    input_shape: Shape
    nodes: tuple[Node, ...]
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    description: str = ""
    dtype: str = "float32"
    source: str | None = None
    version: int = 1
    #: source position (line, column) of spec paths such as ``"input.shape"`` or ``"layers[2]"``, for
    #: diagnostics raised after the front end (for example when the data does not fit ``input.shape``).
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    @property
    def output_shape(self) -> Shape:
        """Per-example shape of the model's output."""
        return self.nodes[-1].output_shape if self.nodes else self.input_shape

    @property
    def num_params(self) -> int:
        """Total number of scalar parameters."""
        return sum(n.num_params for n in self.nodes)

    @property
    def flops(self) -> int:
        """Forward FLOPs per example (see docs/spec.md for the counting rules)."""
        return sum(n.flops for n in self.nodes)

    def param_specs(self) -> list[tuple[str, Node, ParamSpec]]:
        """All parameters in model order as ``(key, node, spec)``; keys are ``<layer>.<param>``."""
        return [(n.key(p.name), n, p) for n in self.nodes for p in n.params]

    @property
    def ends_in_softmax(self) -> bool:
        """True when the last layer is ``softmax``."""
        return bool(self.nodes) and self.nodes[-1].op == "softmax"

    @property
    def loss_from_logits(self) -> bool:
        """True when the loss is computed from the logits (softmax output with cross-entropy loss)."""
        return self.ends_in_softmax and self.train.loss == "cross_entropy"

    @property
    def logits_nodes(self) -> tuple[Node, ...]:
        """The nodes that produce the logits: all nodes but a final fused softmax."""
        return self.nodes[:-1] if self.loss_from_logits else self.nodes

    def node(self, name: str) -> Node:
        """Return the node called ``name``."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def replace(self, **changes: Any) -> "Graph":
        """Return a copy with some fields changed."""
        from dataclasses import replace

        return replace(self, **changes)
