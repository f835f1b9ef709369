"""One Keras-layer builder per IR op, registered by op type, and the functional graph wired from them (imports Keras).

Every op maps to a standard Keras 3 layer with the contract's layouts (channels last, dense kernel
``[in, out]``, conv kernel ``[kh, kw, in, out]``), so nnspec's NumPy weights load unchanged: ``add`` is
``Add``, ``concat`` is ``Concatenate(axis=axis + 1)`` (the IR's axis is per example), ``batch_norm`` is
``BatchNormalization(axis=-1)``, ``layer_norm`` is ``LayerNormalization(axis=-1)``, the global pools are
``GlobalAveragePooling1D/2D`` / ``GlobalMaxPooling1D/2D``, ``conv1d`` is ``Conv1D`` (kernel ``[k, in, out]``) and
the 1-D pools ``MaxPooling1D`` / ``AveragePooling1D``; ``dense`` on an input of any rank is ``Dense`` (the last axis).
Keras runs these layers itself; :class:`~nnspec.backends.keras.ops.KerasOps` still offers the window
primitives over ``keras.ops`` for the shared definitions. Each layer is called on the outputs of the layers its
``Node.inputs`` names (a list of them for the merges). Keras's variables have nnspec's names: ``kernel``,
``bias``, ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``.
The one exception is ``dropout`` while training: :class:`CounterDropout` applies nnspec's counter-based mask
(:func:`nnspec.semantics.dropout.apply_dropout`) so that Keras drops exactly the units every other engine
drops. For export (``export=True``) dropout becomes the standard ``keras.layers.Dropout``, which is the
identity at inference, so an exported file loads in plain Keras without nnspec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import keras
import numpy as np

from ...compiler.ir import INPUT, Activation, Graph, Initializer, Node
from ...compiler.opset import MERGE_OPS
from ...errors import BackendError
from ...semantics.dropout import apply_dropout, layer_mask_shape
from ...semantics.lowering import OpRegistry
from . import merge_layers, resample_layers
from .activations import export_activation_layer, needs_own_layer, training_activation
from .ops import KerasOps


@keras.saving.register_keras_serializable(package="nnspec", name="CounterDropout")
class CounterDropout(keras.layers.Layer):
    """Dropout whose mask is nnspec's pure function of (seed, layer index, step, element index).

    The step comes from a non-trainable ``int32`` counter variable, ``step``: a caller that runs the
    model statelessly (as nnspec's training step does) passes the optimiser step in its place; a plain
    Keras training loop sees it count up by one per training call. Inference is the identity.
    """

    def __init__(self, rate: float, seed: int = 0, layer_index: int = 0, mask_shape: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = int(seed)
        self.layer_index = int(layer_index)
        #: the per-example shape the mask is drawn at and broadcast from (None: the input's)
        self.mask_shape = None if mask_shape is None else tuple(int(d) for d in mask_shape)
        self.supports_masking = True

    def build(self, input_shape: Any) -> None:
        self.step = self.add_weight(name="step", shape=(), dtype="int32", initializer="zeros", trainable=False)
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training or self.rate <= 0.0:
            return inputs
        shape = tuple(inputs.shape)
        if any(d is None for d in shape):
            raise BackendError(
                f"CounterDropout '{self.name}' needs a static input shape to number its elements; got {shape}"
            )
        step = keras.ops.convert_to_tensor(self.step)
        if self.mask_shape is not None:
            shape = (shape[0], *self.mask_shape)
        outputs = apply_dropout(
            KerasOps(self.compute_dtype), inputs, self.seed, self.layer_index, step, self.rate, shape
        )  # type: ignore[arg-type]
        self.step.assign(step + 1)
        return outputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "rate": self.rate, "seed": self.seed, "layer_index": self.layer_index}
        return {**config, "mask_shape": None if self.mask_shape is None else list(self.mask_shape)}


@dataclass(frozen=True)
class BuildOptions:
    """How layers are built: the float dtype, the dropout seed, and whether the model is for export."""

    dtype: str = "float32"
    seed: int = 0
    export: bool = False

    @property
    def variable_dtype(self) -> str:
        """The dtype of weights and inputs: ``dtype`` itself, or float32 when ``dtype`` names a mixed policy."""
        return "float32" if self.dtype.startswith("mixed_") else self.dtype

    def activation(self, act: Activation) -> Any:
        """The ``activation`` argument of a Keras layer for nnspec's ``act`` (see :mod:`.activations`); for
        export, an activation with arguments is a layer of its own after this one, and this one is linear."""
        if self.export:
            return "linear" if needs_own_layer(act) else act.name
        return training_activation(act, self.dtype)


LayerBuilder = Callable[[Node, BuildOptions], keras.layers.Layer]
_BUILDERS: OpRegistry[LayerBuilder] = OpRegistry("keras")
builds = _BUILDERS.register


def supported_ops() -> frozenset[str]:
    """IR ops that have a Keras builder (the keys of the builder registry)."""
    return frozenset(_BUILDERS)


def keras_initializer(init: Initializer) -> keras.initializers.Initializer:
    """The Keras initialiser that draws from the same distribution as nnspec's ``init``."""
    simple = {
        "glorot_uniform": keras.initializers.GlorotUniform,
        "glorot_normal": keras.initializers.GlorotNormal,
        "he_normal": keras.initializers.HeNormal,
        "he_uniform": keras.initializers.HeUniform,
        "lecun_normal": keras.initializers.LecunNormal,
        "lecun_uniform": keras.initializers.LecunUniform,
        "zeros": keras.initializers.Zeros,
        "ones": keras.initializers.Ones,
    }
    if init.name in simple:
        return simple[init.name]()
    if init.name == "normal":
        return keras.initializers.RandomNormal(mean=init.arg("mean", 0.0), stddev=init.arg("stddev", 0.05))
    if init.name == "uniform":
        return keras.initializers.RandomUniform(minval=init.arg("minval", -0.05), maxval=init.arg("maxval", 0.05))
    raise BackendError(f"no Keras initialiser for nnspec initialiser '{init.name}'")


def _weighted_layer_options(node: Node, opts: BuildOptions) -> dict[str, Any]:
    """Keyword arguments shared by the Keras layers that hold a kernel and a bias."""
    a = node.attrs
    return {
        "activation": opts.activation(a["activation"]),
        "use_bias": a["use_bias"],
        "kernel_initializer": keras_initializer(a["kernel_init"]),
        "bias_initializer": keras_initializer(a["bias_init"]),
        "name": node.name,
        "dtype": opts.dtype,
    }


@builds("dense")
def _dense(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return keras.layers.Dense(node.attrs["units"], **_weighted_layer_options(node, opts))


@builds("conv2d")
def _conv2d(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    a = node.attrs
    return keras.layers.Conv2D(
        a["filters"],
        tuple(a["kernel"]),
        strides=tuple(a["strides"]),
        padding=a["padding"],
        dilation_rate=tuple(a["dilation"]),
        groups=int(a["groups"]),
        data_format="channels_last",
        **_weighted_layer_options(node, opts),
    )


def _depthwise_options(node: Node, opts: BuildOptions) -> dict[str, Any]:
    """Keyword arguments of ``DepthwiseConv2D`` and ``SeparableConv2D`` (their depthwise half, bias, activation)."""
    a = node.attrs
    return {
        "kernel_size": tuple(a["kernel"]),
        "strides": tuple(a["strides"]),
        "padding": a["padding"],
        "depth_multiplier": int(a["depth_multiplier"]),
        "dilation_rate": tuple(a["dilation"]),
        "data_format": "channels_last",
        "activation": opts.activation(a["activation"]),
        "use_bias": a["use_bias"],
        "bias_initializer": keras_initializer(a["bias_init"]),
        "name": node.name,
        "dtype": opts.dtype,
    }


@builds("depthwise_conv2d")
def _depthwise_conv2d(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    init = keras_initializer(node.attrs["kernel_init"])
    return keras.layers.DepthwiseConv2D(depthwise_initializer=init, **_depthwise_options(node, opts))


@builds("separable_conv2d")
def _separable_conv2d(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    a = node.attrs
    return keras.layers.SeparableConv2D(
        a["filters"],
        depthwise_initializer=keras_initializer(a["depthwise_init"]),
        pointwise_initializer=keras_initializer(a["pointwise_init"]),
        **_depthwise_options(node, opts),
    )


@builds("conv2d_transpose")
def _conv2d_transpose(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    a = node.attrs
    return keras.layers.Conv2DTranspose(
        a["filters"],
        tuple(a["kernel"]),
        strides=tuple(a["strides"]),
        padding=a["padding"],
        output_padding=None if a["output_padding"] is None else tuple(a["output_padding"]),
        data_format="channels_last",
        **_weighted_layer_options(node, opts),
    )


@builds("conv1d")
def _conv1d(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    a = node.attrs
    return keras.layers.Conv1D(
        a["filters"],
        tuple(a["kernel"]),
        strides=tuple(a["strides"]),
        padding=a["padding"],
        dilation_rate=tuple(a["dilation"]),
        data_format="channels_last",
        **_weighted_layer_options(node, opts),
    )


def _pool_class(node: Node, kind: str) -> type:
    """Keras's layer for a max or average pool op of rank 1 or 2: ``kind`` ``""`` gives ``MaxPooling2D`` and
    the like, ``"Global"`` ``GlobalAveragePooling1D`` and the like."""
    reduction = "Max" if "max_pool" in node.op else "Average"
    rank = 1 if node.op.endswith("1d") else 2
    return getattr(keras.layers, f"{kind}{reduction}Pooling{rank}D")


@builds("max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d")
def _pool(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    a = node.attrs
    return _pool_class(node, "")(
        tuple(a["size"]),
        strides=tuple(a["strides"]),
        padding=a["padding"],
        data_format="channels_last",
        name=node.name,
        dtype=opts.dtype,
    )


@builds("global_avg_pool1d", "global_max_pool1d", "global_avg_pool2d", "global_max_pool2d")
def _global_pool(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    keepdims = bool(node.attrs.get("keepdims", False))
    return _pool_class(node, "Global")(data_format="channels_last", keepdims=keepdims, name=node.name, dtype=opts.dtype)


@builds("flatten")
def _flatten(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return keras.layers.Flatten(data_format="channels_last", name=node.name, dtype=opts.dtype)


@builds("reshape")
def _reshape(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return keras.layers.Reshape(tuple(node.attrs["shape"]), name=node.name, dtype=opts.dtype)


@builds("dropout", "spatial_dropout2d")
def _dropout(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    rate, spatial = float(node.attrs["rate"]), node.op == "spatial_dropout2d"
    if opts.export and spatial:
        return keras.layers.SpatialDropout2D(rate, data_format="channels_last", name=node.name, dtype=opts.dtype)
    if opts.export:
        noise = resample_layers.keras_noise_shape(node)
        return keras.layers.Dropout(rate, noise_shape=noise, name=node.name, dtype=opts.dtype)
    mask = layer_mask_shape(node, 1, spatial)[1:]
    return CounterDropout(
        rate, seed=opts.seed, layer_index=node.index, mask_shape=mask, name=node.name, dtype=opts.dtype
    )


@builds("zero_pad2d")
def _zero_pad2d(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return resample_layers.zero_padding(node, opts.dtype)


@builds("crop2d")
def _crop2d(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return resample_layers.cropping(node, opts.dtype)


@builds("upsample2d")
def _upsample2d(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return resample_layers.upsampling(node, opts.dtype, opts.export)


@builds("activation")
def _activation(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    act = node.attrs["activation"]
    if opts.export:
        return export_activation_layer(act, node.name, opts.dtype, f"layer {node.index} '{node.name}'")
    return keras.layers.Activation(opts.activation(act), name=node.name, dtype=opts.dtype)


def _exported_activation(node: Node, opts: BuildOptions) -> keras.layers.Layer | None:
    """For export, the Keras layer after a weighted layer whose activation has arguments (else None)."""
    act = node.attrs.get("activation")
    if not opts.export or node.op == "activation" or act is None or not needs_own_layer(act):
        return None
    return export_activation_layer(act, f"{node.name}_activation", opts.dtype, f"layer {node.index} '{node.name}'")


@builds("softmax")
def _softmax(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return keras.layers.Softmax(axis=-1, name=node.name, dtype=opts.dtype)


@builds("add", "multiply", "subtract", "average", "maximum", "minimum")
def _elementwise_merge(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return merge_layers.merge_layer(node, opts.dtype, opts.export)


@builds("rescaling")
def _rescaling(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return merge_layers.rescaling_layer(node, opts.dtype, opts.export)


@builds("layer_scale")
def _layer_scale(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return merge_layers.layer_scale_layer(node, opts.dtype)


@builds("concat")
def _concat(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return keras.layers.Concatenate(axis=int(node.attrs["axis"]) + 1, name=node.name, dtype=opts.dtype)


@builds("batch_norm")
def _batch_norm(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    a = node.attrs
    return keras.layers.BatchNormalization(
        axis=-1,
        momentum=float(a["momentum"]),
        epsilon=float(a["epsilon"]),
        center=bool(a["center"]),
        scale=bool(a["scale"]),
        name=node.name,
        dtype=opts.dtype,
    )


@builds("layer_norm")
def _layer_norm(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    a = node.attrs
    return keras.layers.LayerNormalization(
        axis=-1,
        epsilon=float(a["epsilon"]),
        center=bool(a["center"]),
        scale=bool(a["scale"]),
        name=node.name,
        dtype=opts.dtype,
    )


def build_layer(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    """The Keras layer of one IR node; an op without a builder is a :class:`BackendError` naming the layer."""
    if node.op not in _BUILDERS:
        raise BackendError(
            f"layer {node.index} '{node.name}' ({node.op}) has no Keras lowering in nnspec's keras backend"
        )
    return _BUILDERS[node.op](node, opts)


def _input_name(graph: Graph) -> str:
    names = {n.name for n in graph.nodes}
    name = "input"
    while name in names:
        name += "_"
    return name


def _model_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    return cleaned or "model"


#: Marks a ``CounterDropout`` step counter among a model's non-trainable variables.
COUNTER = "<counter>"


@dataclass(frozen=True)
class Runner:
    """A functional Keras model over some nodes, and which nnspec array each of its variables holds.

    ``names``: the nodes whose outputs the model returns, in declaration order; ``trainable``: the key of
    each of ``model.trainable_variables``; ``non_trainable``: for each of ``model.non_trainable_variables``
    the key of a state array, :data:`COUNTER` for a dropout step counter, or None for anything else.
    """

    model: keras.Model
    names: tuple[str, ...]
    trainable: tuple[str, ...]
    non_trainable: tuple[str | None, ...]


class KerasGraph:
    """The functional Keras graph of an nnspec graph: one layer per node, wired as ``Node.inputs`` says.

    :attr:`model` maps the input to the graph's output (the standard model a Keras user sees; export
    saves it); :meth:`runner` gives models that return the outputs of chosen nodes, sharing the layers.
    """

    def __init__(self, graph: Graph, opts: BuildOptions):
        self.graph = graph
        self.input = keras.Input(shape=tuple(graph.input_shape), dtype=opts.variable_dtype, name=_input_name(graph))
        self.layers: dict[str, keras.layers.Layer] = {}
        self.tensors: dict[str, Any] = {INPUT: self.input}
        for node in graph.nodes:
            layer = build_layer(node, opts)
            args = [self.tensors[name] for name in graph.inputs_of(node)]
            self.tensors[node.name] = layer(args if node.op in MERGE_OPS else args[0])
            self.layers[node.name] = layer
            after = _exported_activation(node, opts)
            if after is not None:
                self.tensors[node.name] = after(self.tensors[node.name])
        out = graph.output_node
        self.model = keras.Model(
            self.input, self.tensors[out.name] if out is not None else self.input, name=_model_name(graph.name)
        )
        self._keys = self._variable_keys()
        self._runners: dict[tuple[str, ...], Runner] = {}

    def _variable_keys(self) -> dict[int, str]:
        keys = {id(variable): key for key, variable in self.variables().items()}
        keys.update({id(layer.step): COUNTER for layer in self.layers.values() if isinstance(layer, CounterDropout)})
        return keys

    def variables(self) -> dict[str, Any]:
        """``{'<layer>.<name>': keras.Variable}`` for every trainable and state array of the graph."""
        found: dict[str, Any] = {}
        for node in self.graph.nodes:
            for spec in (*node.params, *node.state):
                found[node.key(spec.name)] = getattr(self.layers[node.name], spec.name)
        return found

    def runner(self, names: tuple[str, ...]) -> Runner:
        """A model returning the outputs of nodes ``names`` (built once per set of names)."""
        found = self._runners.get(names)
        if found is None:
            model = keras.Model(
                self.input,
                [self.tensors[n] for n in names],
                name=_model_name(self.graph.name) + f"_{len(self._runners)}",
            )
            trainable = tuple(self._keys[id(v)] for v in model.trainable_variables)
            non_trainable = tuple(self._keys.get(id(v)) for v in model.non_trainable_variables)
            found = self._runners[names] = Runner(model, names, trainable, non_trainable)
        return found

    def assign(self, weights: Mapping[str, np.ndarray]) -> None:
        """Copy nnspec arrays (contract layouts = Keras layouts) into the layers' variables."""
        for key, variable in self.variables().items():
            variable.assign(np.asarray(weights[key], dtype=variable.dtype))


def build_graph(graph: Graph, opts: BuildOptions) -> KerasGraph:
    """The :class:`KerasGraph` of ``graph`` (layers built with ``opts``)."""
    return KerasGraph(graph, opts)
