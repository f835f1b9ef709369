"""One Keras-layer builder per IR op, registered by op type, and the model assembled from them (imports Keras).

Every op maps to a standard Keras 3 layer with the contract's layouts (channels last, dense kernel
``[in, out]``, conv kernel ``[kh, kw, in, out]``), so nnspec's NumPy weights load unchanged. The one
exception is ``dropout`` while training: :class:`CounterDropout` applies nnspec's counter-based mask
(:func:`nnspec.runtime.dropout.apply_dropout`) so that Keras drops exactly the units every other engine
drops. For export (``export=True``) dropout becomes the standard ``keras.layers.Dropout``, which is the
identity at inference, so an exported file loads in plain Keras without nnspec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np

from ...compiler.ir import Graph, Initializer, Node
from ...errors import BackendError
from ...runtime.dropout import apply_dropout
from .ops import KerasOps
from ..lowering import OpRegistry


@keras.saving.register_keras_serializable(package="nnspec", name="CounterDropout")
class CounterDropout(keras.layers.Layer):
    """Dropout whose mask is nnspec's pure function of (seed, layer index, step, element index).

    The step comes from a non-trainable ``int32`` counter variable, ``step``: a caller that runs the
    model statelessly (as nnspec's training step does) passes the optimiser step in its place; a plain
    Keras training loop sees it count up by one per training call. Inference is the identity.
    """

    def __init__(self, rate: float, seed: int = 0, layer_index: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = int(seed)
        self.layer_index = int(layer_index)
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
        outputs = apply_dropout(KerasOps(self.compute_dtype), inputs, self.seed, self.layer_index, step, self.rate, shape)
        self.step.assign(step + 1)
        return outputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed, "layer_index": self.layer_index}


@keras.saving.register_keras_serializable(package="nnspec", name="exact_gelu")
def exact_gelu(x: Any) -> Any:
    """``0.5 x (1 + erf(x / sqrt 2))`` through ``keras.ops.erf``, exact in float64 on every engine.

    Keras's ``gelu`` is the same function, but on TensorFlow it goes through ``tf.math.erfc``, which is only
    accurate to about 5e-9 in float64; float64 models use this one so that they meet float64 tolerances.
    """
    return 0.5 * x * (1.0 + keras.ops.erf(x * (1.0 / np.sqrt(2.0))))


@dataclass(frozen=True)
class BuildOptions:
    """How layers are built: the float dtype, the dropout seed, and whether the model is for export."""

    dtype: str = "float32"
    seed: int = 0
    export: bool = False

    def activation(self, name: str) -> Any:
        """The Keras activation of nnspec's ``name``: Keras's own, but exact gelu in float64 models."""
        if name == "gelu" and self.dtype == "float64" and not self.export:
            return exact_gelu
        return name


LayerBuilder = Callable[[Node, BuildOptions], keras.layers.Layer]
_BUILDERS: OpRegistry[LayerBuilder] = OpRegistry("keras")
builds = _BUILDERS.register


def supported_ops() -> frozenset[str]:
    """IR ops that have a Keras builder."""
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
        data_format="channels_last",
        **_weighted_layer_options(node, opts),
    )


@builds("max_pool2d")
def _max_pool2d(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    a = node.attrs
    return keras.layers.MaxPooling2D(
        tuple(a["size"]), strides=tuple(a["strides"]), padding=a["padding"], data_format="channels_last", name=node.name, dtype=opts.dtype
    )


@builds("avg_pool2d")
def _avg_pool2d(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    a = node.attrs
    return keras.layers.AveragePooling2D(
        tuple(a["size"]), strides=tuple(a["strides"]), padding=a["padding"], data_format="channels_last", name=node.name, dtype=opts.dtype
    )


@builds("flatten")
def _flatten(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return keras.layers.Flatten(data_format="channels_last", name=node.name, dtype=opts.dtype)


@builds("reshape")
def _reshape(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return keras.layers.Reshape(tuple(node.attrs["shape"]), name=node.name, dtype=opts.dtype)


@builds("dropout")
def _dropout(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    rate = float(node.attrs["rate"])
    if opts.export:
        return keras.layers.Dropout(rate, name=node.name, dtype=opts.dtype)
    return CounterDropout(rate, seed=opts.seed, layer_index=node.index, name=node.name, dtype=opts.dtype)


@builds("activation")
def _activation(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return keras.layers.Activation(opts.activation(node.attrs["activation"]), name=node.name, dtype=opts.dtype)


@builds("softmax")
def _softmax(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    return keras.layers.Softmax(axis=-1, name=node.name, dtype=opts.dtype)


def build_layer(node: Node, opts: BuildOptions) -> keras.layers.Layer:
    """The Keras layer of one IR node; an op without a builder is a :class:`BackendError` naming the layer."""
    try:
        builder = _BUILDERS[node.op]
    except KeyError:
        raise BackendError(f"layer {node.index} '{node.name}' ({node.op}) has no Keras lowering in nnspec's keras backend") from None
    return builder(node, opts)


def _input_name(graph: Graph) -> str:
    names = {n.name for n in graph.nodes}
    name = "input"
    while name in names:
        name += "_"
    return name


def build_models(graph: Graph, opts: BuildOptions) -> tuple[keras.Model, keras.Model]:
    """Two functional Keras models sharing one set of layers: ``(model, outputs_model)``.

    ``model`` maps the input to the final output (the standard model a Keras user sees; it is what
    export saves); ``outputs_model`` returns the output of every node, in order (for the training step,
    the logits before a final softmax, and per-layer comparison).
    """
    inputs = keras.Input(shape=tuple(graph.input_shape), dtype=opts.dtype, name=_input_name(graph))
    outputs: list[Any] = []
    x = inputs
    for node in graph.nodes:
        x = build_layer(node, opts)(x)
        outputs.append(x)
    model = keras.Model(inputs, x, name=_model_name(graph.name))
    outputs_model = keras.Model(inputs, outputs, name=_model_name(graph.name) + "_outputs")
    return model, outputs_model


def _model_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    return cleaned or "model"


def layer_weight_variables(model: keras.Model, graph: Graph) -> dict[str, Any]:
    """``{'<layer>.kernel' | '<layer>.bias': keras.Variable}`` for every parameter of ``graph``."""
    found: dict[str, Any] = {}
    for node in graph.nodes:
        if not node.params:
            continue
        layer = model.get_layer(node.name)
        for spec in node.params:
            found[node.key(spec.name)] = getattr(layer, spec.name)
    return found


def assign_weights(model: keras.Model, graph: Graph, weights: dict[str, np.ndarray]) -> None:
    """Copy nnspec weights (contract layouts = Keras layouts) into the model's variables."""
    for key, variable in layer_weight_variables(model, graph).items():
        variable.assign(np.asarray(weights[key], dtype=variable.dtype))
