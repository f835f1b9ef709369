"""The ONNX graph under construction: nodes, initialisers, and the layout of every value.

nnspec's tensors are channels last (``(N, H, W, C)``); ONNX's ``Conv``, pools and
``BatchNormalization`` want channels first (``(N, C, H, W)``). Rather than transposing around every such
node, each value remembers its layout and is transposed only where a consumer needs the other one (at
most once per value and layout: the transposed tensor is reused). Per-example rank-1 values (``(N, C)``)
are the same in both layouts. The model's input and output are channels last, as in nnspec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..compiler.ir import INPUT, Node


@dataclass(frozen=True)
class Value:
    """One tensor of the graph: its ONNX name, its per-example rank and whether it is channels first."""

    name: str
    rank: int
    channels_first: bool = False

    def in_layout(self, channels_first: bool) -> bool:
        """True when the tensor already has the layout asked for (rank-1 values have both)."""
        return self.rank < 2 or self.channels_first == channels_first

    @property
    def channel_axis(self) -> int:
        """The axis of the channels in the batched tensor."""
        return 1 if self.channels_first and self.rank >= 2 else self.rank

    def batch_axis(self, axis: int) -> int:
        """The axis of the batched tensor that holds per-example axis ``axis`` (channels-last numbering)."""
        if not self.channels_first or self.rank < 2:
            return axis + 1
        return 1 if axis == self.rank - 1 else axis + 2


def to_channels_first(rank: int) -> list[int]:
    """The ``Transpose`` permutation from ``(N, d1, ..., C)`` to ``(N, C, d1, ...)``."""
    return [0, rank, *range(1, rank)]


def to_channels_last(rank: int) -> list[int]:
    """The ``Transpose`` permutation from ``(N, C, d1, ...)`` to ``(N, d1, ..., C)``."""
    return [0, *range(2, rank + 1), 1]


@dataclass
class GraphBuilder:
    """Collects the ONNX nodes and initialisers of one model, and the value of each nnspec layer.

    ``output`` names the layer whose tensor is the graph's output; that tensor is called ``output``. Other
    layers' tensors carry the layer's name; helper tensors are ``<layer>/<part>`` (a ``/`` cannot occur
    in an nnspec name, so no helper collides with a layer).
    """

    output: str
    input_rank: int
    float_dtype: Any = np.float32
    nodes: list[Any] = field(default_factory=list)
    initializers: list[Any] = field(default_factory=list)
    values: dict[str, Value] = field(default_factory=dict)
    _transposed: dict[tuple[str, bool], Value] = field(default_factory=dict)
    _names: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.values[INPUT] = Value(INPUT, self.input_rank)
        self._names.update({INPUT, "output"})

    def tensor_name(self, node: Node) -> str:
        """The name of ``node``'s output tensor: ``output`` for the model's output, else the layer's name."""
        if node.name == self.output:
            return "output"
        return node.name if node.name != "output" else "output/layer"

    def fresh(self, node: Node, part: str) -> str:
        """A helper tensor name of ``node``, unused so far."""
        return self._unique(f"{node.name}/{part}")

    def _unique(self, base: str) -> str:
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base}{n}"
        self._names.add(name)
        return name

    def emit(self, op_type: str, inputs: list[str], output: str, name: str, **attrs: Any) -> str:
        """Append one ONNX node computing ``output``; returns ``output``."""
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))
        return output

    def constant(self, name: str, array: np.ndarray, dtype: Any = None) -> str:
        """Add an initialiser ``name`` holding ``array`` (in the model's float dtype unless ``dtype`` says
        otherwise); returns ``name``."""
        from onnx import numpy_helper

        values = np.ascontiguousarray(np.asarray(array, dtype=dtype or self.float_dtype))
        self.initializers.append(numpy_helper.from_array(values, name))
        self._names.add(name)
        return name

    def in_layout(self, value: Value, channels_first: bool) -> Value:
        """``value`` in the layout asked for: itself, or a ``Transpose`` of it (made once, then reused)."""
        if value.in_layout(channels_first):
            return value
        key = (value.name, channels_first)
        if key not in self._transposed:
            perm = to_channels_first(value.rank) if channels_first else to_channels_last(value.rank)
            name = self._unique(f"{value.name}/to_{'nchw' if channels_first else 'nhwc'}")
            self.emit("Transpose", [value.name], name, name=name, perm=perm)
            self._transposed[key] = Value(name, value.rank, channels_first)
        return self._transposed[key]

    def same_layout(self, values: list[Value]) -> list[Value]:
        """``values`` all in the layout of the first one (for merges)."""
        first = values[0]
        return [first, *(self.in_layout(v, first.channels_first and first.rank >= 2) for v in values[1:])]
