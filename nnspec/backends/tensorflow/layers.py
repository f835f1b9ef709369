"""TensorFlow's own lowerings, registered by op type over the shared ones.

Every lowering has the signature shared by all engines and the reference (see
:mod:`nnspec.semantics.lowering`): ``fn(ctx, node, inputs) -> output``, batches NHWC. The registry starts
from :func:`nnspec.semantics.shared_lowerings.engine_registry` (flatten, reshape, softmax, add, concat,
batch_norm, layer_norm, the global pools and every non-relu activation are the shared definitions,
evaluated with :class:`~nnspec.backends.tensorflow.ops.TensorFlowOps`); TensorFlow adds its primitives
and replaces three shared lowerings with faster forms that compute the same numbers:

* ``conv2d``, ``max_pool2d``, ``avg_pool2d``: ``tf.nn``'s ops. TensorFlow's ``SAME`` padding is the
  contract's rule (the odd pixel after); its max pool ignores padded positions (as padding with -inf
  would) and its average pool divides by the in-image elements only, which is the contract.
* ``dense`` and ``activation`` (and the activation of ``conv2d``): the bias is ``tf.nn.bias_add`` and
  ``relu`` is ``tf.nn.relu``, not the shared ``where(x > 0, x, 0)``: the same value for every non-NaN
  input, and the same derivative everywhere, 0 at exactly 0 included (TensorFlow's ``ReluGrad`` passes
  the gradient where the output is > 0); checked by the tests. It lets grappler fuse the product or
  convolution, bias and relu into one kernel and differentiates with one ``ReluGrad`` instead of a
  select, a zeros tensor and a second select: about 4 ms of a 33 ms convnet step on 2 CPU cores. (A NaN
  pre-activation stays NaN instead of becoming 0; training has diverged by then either way.)
* ``dropout``: the keep-mask (the shared ``keep_mask``: a dozen uint32 passes over the layer's elements)
  is compiled with XLA on its own, a function of the step only, so it runs as one loop instead of a dozen
  kernels (about 1 ms less per convnet step on 2 CPU cores). Integer arithmetic, so bit for bit the same;
  the mask is applied as :func:`nnspec.semantics.dropout.apply_dropout` applies it. It needs the batch size
  statically (``ctx.batch``, else the static first axis of the input): TensorFlow's training programs
  gather batches of a fixed size, so it is known there.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from ...compiler.ir import Node
from ...errors import BackendError
from ...semantics.activations import activate
from ...semantics.dropout import keep_mask, scale
from ...semantics.lowering import Lowering, LoweringContext, OpRegistry
from ...semantics.shared_lowerings import engine_registry
from .engine import load_tensorflow
from .ops import TensorFlowOps

tf = load_tensorflow()

Context = LoweringContext
#: The shared lowerings (:mod:`nnspec.semantics.shared_lowerings`) plus TensorFlow's own (module docstring).
LOWERINGS: OpRegistry[Lowering] = engine_registry("tensorflow")
lowering = LOWERINGS.register

#: Activations lowered to TensorFlow's own op (same values and derivatives; see the module docstring).
NATIVE_ACTIVATIONS: dict[str, Callable[[Any], Any]] = {"relu": tf.nn.relu}


def _activate(ctx: Context, name: str, x: Any) -> Any:
    native = NATIVE_ACTIVATIONS.get(name)
    return native(x) if native is not None else activate(ctx.ops, name, x)


def _bias_activation(ctx: Context, node: Node, z: Any) -> Any:
    if node.attrs["use_bias"]:
        z = tf.nn.bias_add(z, ctx.param(node, "bias"))
    return _activate(ctx, node.attrs["activation"], z)


def _padding(node: Node) -> str:
    return "SAME" if node.attrs["padding"] == "same" else "VALID"


@lowering("dense")
def _dense(ctx: Context, node: Node, inputs: list) -> Any:
    return _bias_activation(ctx, node, tf.matmul(inputs[0], ctx.param(node, "kernel")))


@lowering("conv2d")
def _conv2d(ctx: Context, node: Node, inputs: list) -> Any:
    sh, sw = node.attrs["strides"]
    z = tf.nn.conv2d(
        inputs[0], ctx.param(node, "kernel"), strides=[1, sh, sw, 1], padding=_padding(node), data_format="NHWC"
    )
    return _bias_activation(ctx, node, z)


@lowering("activation")
def _activation(ctx: Context, node: Node, inputs: list) -> Any:
    return _activate(ctx, node.attrs["activation"], inputs[0])


def _pool_args(node: Node) -> dict[str, Any]:
    (ph, pw), (sh, sw) = node.attrs["size"], node.attrs["strides"]
    return {"ksize": [1, ph, pw, 1], "strides": [1, sh, sw, 1], "padding": _padding(node), "data_format": "NHWC"}


@lowering("max_pool2d")
def _max_pool2d(ctx: Context, node: Node, inputs: list) -> Any:
    return tf.nn.max_pool2d(inputs[0], **_pool_args(node))


@lowering("avg_pool2d")
def _avg_pool2d(ctx: Context, node: Node, inputs: list) -> Any:
    return tf.nn.avg_pool2d(inputs[0], **_pool_args(node))


@lowering("dropout")
def _dropout(ctx: Context, node: Node, inputs: list) -> Any:
    x = inputs[0]
    if not ctx.training:
        return x
    rate = float(node.attrs["rate"])
    if rate <= 0.0:
        return x
    batch = ctx.batch if ctx.batch is not None else x.shape[0]
    if batch is None:
        raise BackendError(
            f"layer {node.index} '{node.name}' (dropout): training needs a static batch size; got shape {tuple(x.shape)}"
        )
    keep = compiled_keep_mask(ctx.seed, node.index, (int(batch), *node.input_shape), rate)(tf.cast(ctx.step, tf.int64))
    return ctx.ops.where(keep, x * ctx.ops.constant(scale(rate, ctx.ops.float_dtype)), ctx.ops.constant(0.0))


@lru_cache(maxsize=None)
def compiled_keep_mask(seed: int, layer_index: int, shape: tuple[int, ...], rate: float) -> Any:
    """The shared ``keep_mask`` for one dropout layer as an XLA-compiled function of the (int64) step."""
    ops = TensorFlowOps("float32")  # the mask uses only the uint32 operations

    def mask(step: Any) -> Any:
        return keep_mask(ops, seed, layer_index, step, shape, rate)

    return tf.function(mask, input_signature=[tf.TensorSpec((), tf.int64)], jit_compile=True, autograph=False)
