"""The frozen, engine-free intermediate representation of a model.

The front end (loader -> schema validation -> resolution -> shape inference) produces a :class:`Graph`;
every backend compiles a :class:`Graph`. Nothing here imports an engine.

``Node.attrs`` are canonical and fully resolved: one entry per field of the op's ``OpDef``
(:data:`nnspec.compiler.opset.OPS`, where each field's meaning is written), the default filled in where the
spec left it out. Windows, kernels, strides and dilations are tuples with one entry per sliding axis
(``(kh, kw)`` for ``conv2d``, ``(k,)`` for ``conv1d``); ``reshape``'s ``shape`` has no -1 left; ``concat``'s
``axis`` is a per-example axis normalised to ``0 <= axis < rank``; initialisers are :class:`Initializer`.

Shapes are per example (no batch axis), channels last.

A graph is a DAG with one input (named :data:`INPUT`) and one output. ``Node.inputs`` names the nodes a
node reads (or :data:`INPUT`); nodes are in declaration order, which is a topological order, and
``Node.index`` is the layer's position in the spec (the layer index dropout masks use). Layers whose
output reaches nothing are not in the IR (the front end warns about them).

Each node has trainable ``params`` and non-trainable ``state`` (running statistics), both
:class:`ParamSpec`; their arrays are keyed ``<layer>.<name>`` (Keras's names: ``bn1.gamma``,
``bn1.moving_mean``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

#: The name by which ``inputs`` refer to the model's input (no layer may take it).
INPUT = "input"
#: Keras 3's activations, by the names Keras gives them (``swish`` and ``hard_swish`` are Keras's aliases of
#: ``silu`` and ``hard_silu``). ``softmax`` and ``log_softmax`` act on the last axis; every other is elementwise.
ACTIVATIONS: tuple[str, ...] = (
    "relu",
    "sigmoid",
    "tanh",
    "elu",
    "gelu",
    "softplus",
    "linear",
    "relu6",
    "leaky_relu",
    "selu",
    "celu",
    "silu",
    "swish",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "softsign",
    "mish",
    "exponential",
    "log_sigmoid",
    "tanh_shrink",
    "hard_shrink",
    "soft_shrink",
    "sparse_plus",
    "sparse_sigmoid",
    "squareplus",
    "threshold",
    "softmax",
    "log_softmax",
)
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


@dataclass(frozen=True, eq=False)
class Activation:
    """An activation by name with its arguments (for example ``relu`` with ``max_value`` 6).

    ``args`` holds only the arguments that differ from Keras's defaults, sorted, so that one function has one
    value. An activation without arguments equals its name (``Activation("relu") == "relu"``), so code may
    test for a plain ``relu`` by name; ``relu`` with ``max_value`` is not ``"relu"``.
    """

    name: str
    args: tuple[tuple[str, Any], ...] = ()

    def arg(self, key: str, default: Any) -> Any:
        """Return argument ``key`` or ``default`` when it was not given."""
        return dict(self.args).get(key, default)

    def spec_form(self) -> Any:
        """How the activation reads in a spec: its name, or ``{name: {arg: value}}``."""
        return self.name if not self.args else {self.name: dict(self.args)}

    def __str__(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}' for k, v in self.args)})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return not self.args and self.name == other
        if isinstance(other, Activation):
            return (self.name, self.args) == (other.name, other.args)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name) if not self.args else hash((self.name, self.args))

    def __lt__(self, other: object) -> bool:
        return str(self) < str(other)


@dataclass(frozen=True)
class ParamSpec:
    """One array of a layer (a trainable weight such as ``kernel``, or a state array such as
    ``moving_mean``): its local name, shape and initialiser."""

    name: str
    shape: Shape
    init: Initializer
    fan_in: int = 0
    fan_out: int = 0


@dataclass(frozen=True)
class Node:
    """One layer of the model, with its resolved attributes, its inputs and its inferred shapes.

    ``input_shape`` is the shape of the first input (the only one but for merge layers);
    ``input_shapes`` holds one shape per name in ``inputs``.
    """

    index: int
    name: str
    op: str
    attrs: Mapping[str, Any]
    input_shape: Shape
    output_shape: Shape
    params: tuple[ParamSpec, ...] = ()
    flops: int = 0
    inputs: tuple[str, ...] = ()
    input_shapes: tuple[Shape, ...] = ()
    state: tuple[ParamSpec, ...] = ()

    def key(self, param: str) -> str:
        """Return the weights-dict key of one of this node's arrays: ``<layer>.<param>``."""
        return f"{self.name}.{param}"

    @property
    def num_params(self) -> int:
        """Number of scalars of this layer, trainable and non-trainable (as Keras counts them)."""
        return sum(math.prod(p.shape) for p in (*self.params, *self.state))

    @property
    def num_trainable(self) -> int:
        """Number of trainable scalars of this layer."""
        return sum(math.prod(p.shape) for p in self.params)


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


#: What ``train.early_stopping.monitor`` may name: a metrics.csv column.
MONITORS: tuple[str, ...] = ("val_loss", "val_accuracy", "loss", "accuracy")
#: ``train.on_divergence``: stop at the first non-finite loss (weights kept from the step before), or train on.
DIVERGENCE_ACTIONS: tuple[str, ...] = ("stop", "continue")
#: ``train.precision``: how arithmetic is done (see :mod:`nnspec.semantics.precision`); float32 is the parity setting.
PRECISIONS: tuple[str, ...] = ("float32", "tf32", "mixed_bfloat16", "mixed_float16", "float64")


@dataclass(frozen=True)
class CheckpointConfig:
    """``train.checkpoint``: a checkpoint every ``every`` epochs (0: none), the ``keep`` most recent kept."""

    every: int = 1
    keep: int = 2


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """``train.early_stopping``, as Keras's ``EarlyStopping`` callback reads it.

    Training stops once ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs;
    ``mode`` ``auto`` minimises losses and maximises accuracies. With ``restore_best`` the run ends with
    the weights of the best epoch.
    """

    monitor: str = "val_loss"
    mode: str = "auto"
    patience: int = 0
    min_delta: float = 0.0
    restore_best: bool = False

    @property
    def minimize(self) -> bool:
        """Whether a lower value of ``monitor`` is better."""
        if self.mode == "auto":
            return "accuracy" not in self.monitor
        return self.mode == "min"


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section, resolved."""

    loss: str = "cross_entropy"
    optimizer: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(
            "adam", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
        )
    )
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 10
    seed: int = 0
    metrics: tuple[str, ...] = ("accuracy",)
    on_divergence: str = "stop"
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    early_stopping: EarlyStoppingConfig | None = None
    precision: str = "float32"
    #: local devices to split each batch over: a count, or ``"all"`` (every device of the chosen kind)
    devices: int | str = 1


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
    version: int | float = 1
    #: source position (line, column) of spec paths such as ``"input.shape"`` or ``"layers[2]"``, for
    #: diagnostics raised after the front end (for example when the data does not fit ``input.shape``).
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    #: name of the output node; ``None`` means the last node
    output: str | None = None

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    @property
    def output_node(self) -> Node | None:
        """The node whose value is the model's output (``None`` for a model without layers)."""
        if not self.nodes:
            return None
        return self.node(self.output) if self.output is not None else self.nodes[-1]

    @property
    def output_shape(self) -> Shape:
        """Per-example shape of the model's output."""
        out = self.output_node
        return out.output_shape if out is not None else self.input_shape

    @property
    def is_chain(self) -> bool:
        """True when every node reads only the node before it (a v1 sequential model)."""
        previous = INPUT
        for n in self.nodes:
            if n.inputs not in ((), (previous,)):
                return False
            previous = n.name
        return self.output in (None, previous)

    def inputs_of(self, node: Node) -> tuple[str, ...]:
        """The names ``node`` reads: its ``inputs``, or the node before it when none are recorded."""
        if node.inputs:
            return node.inputs
        position = self.nodes.index(node)
        return (self.nodes[position - 1].name,) if position else (INPUT,)

    @property
    def has_state(self) -> bool:
        """True when some layer keeps non-trainable state (running statistics)."""
        return any(n.state for n in self.nodes)

    @property
    def num_trainable(self) -> int:
        """Total number of trainable scalars."""
        return sum(n.num_trainable for n in self.nodes)

    @property
    def num_params(self) -> int:
        """Total number of scalar parameters."""
        return sum(n.num_params for n in self.nodes)

    @property
    def flops(self) -> int:
        """Forward FLOPs per example (see docs/spec.md for the counting rules)."""
        return sum(n.flops for n in self.nodes)

    def param_specs(self) -> list[tuple[str, Node, ParamSpec]]:
        """All trainable parameters in model order as ``(key, node, spec)``; keys are ``<layer>.<param>``."""
        return [(n.key(p.name), n, p) for n in self.nodes for p in n.params]

    def state_specs(self) -> list[tuple[str, Node, ParamSpec]]:
        """All non-trainable state arrays in model order as ``(key, node, spec)``."""
        return [(n.key(p.name), n, p) for n in self.nodes for p in n.state]

    def weight_keys(self) -> list[str]:
        """Keys of every array a weights file holds: trainable parameters, then state, in model order."""
        return [k for k, _, _ in self.param_specs()] + [k for k, _, _ in self.state_specs()]

    @property
    def ends_in_softmax(self) -> bool:
        """True when the output layer is ``softmax`` (the layer, or an ``activation`` layer of softmax)."""
        out = self.output_node
        return out is not None and (
            out.op == "softmax" or (out.op == "activation" and out.attrs["activation"] == "softmax")
        )

    @property
    def loss_from_logits(self) -> bool:
        """True when the loss is computed from the logits (softmax output with cross-entropy loss)."""
        return self.ends_in_softmax and self.train.loss == "cross_entropy"

    @property
    def head(self) -> str:
        """Name of the value the loss is computed from: the output, or the input of a final fused softmax."""
        out = self.output_node
        if out is None:
            return INPUT
        return self.inputs_of(out)[0] if self.loss_from_logits else out.name

    @property
    def logits_nodes(self) -> tuple[Node, ...]:
        """The nodes the head depends on, in declaration order (all nodes but a final fused softmax)."""
        return self.ancestors(self.head)

    def ancestors(self, name: str) -> tuple[Node, ...]:
        """The nodes whose values ``name`` depends on, ``name`` included, in declaration order."""
        needed = {name}
        for n in reversed(self.nodes):
            if n.name in needed:
                needed.update(self.inputs_of(n))
        return tuple(n for n in self.nodes if n.name in needed)

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
