"""Keras layers of ``zero_pad2d``, ``crop2d`` and ``upsample2d`` (imports Keras).

They are Keras's own ``ZeroPadding2D``, ``Cropping2D`` and ``UpSampling2D``, with one exception: bilinear
upsampling in float64. Keras's TensorFlow engine resizes in float32 whatever the input's type (``tf.image.resize``),
about 1e-7 from the float64 reference; nnspec's keras backend then uses :class:`Upsample2D`, which computes
:func:`nnspec.semantics.resample.upsample2d` over ``keras.ops`` in the layer's own type. An exported model
(``export=True``) always holds ``UpSampling2D``.
"""

from __future__ import annotations

from typing import Any

import keras

from ...compiler.ir import Node
from ...semantics.resample import upsample2d
from .ops import KerasOps


@keras.saving.register_keras_serializable(package="nnspec", name="Upsample2D")
class Upsample2D(keras.layers.Layer):
    """Keras's ``UpSampling2D`` (channels last) computed with nnspec's shared definition, in the layer's dtype."""

    def __init__(self, size: Any = (2, 2), interpolation: str = "nearest", **kwargs: Any):
        super().__init__(**kwargs)
        self.size = (int(size[0]), int(size[1]))
        self.interpolation = str(interpolation)

    def call(self, inputs: Any) -> Any:
        shape = tuple(int(d) for d in inputs.shape[1:])
        return upsample2d(KerasOps(self.compute_dtype), inputs, shape, self.size, self.interpolation)  # type: ignore[arg-type]

    def compute_output_shape(self, input_shape: Any) -> Any:
        b, h, w, c = input_shape
        return (b, None if h is None else h * self.size[0], None if w is None else w * self.size[1], c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": list(self.size), "interpolation": self.interpolation}


def zero_padding(node: Node, dtype: str) -> keras.layers.Layer:
    """``ZeroPadding2D`` with the node's ((top, bottom), (left, right))."""
    padding = tuple(tuple(int(v) for v in pair) for pair in node.attrs["padding"])
    return keras.layers.ZeroPadding2D(padding, data_format="channels_last", name=node.name, dtype=dtype)


def cropping(node: Node, dtype: str) -> keras.layers.Layer:
    """``Cropping2D`` with the node's ((top, bottom), (left, right))."""
    crop = tuple(tuple(int(v) for v in pair) for pair in node.attrs["cropping"])
    return keras.layers.Cropping2D(crop, data_format="channels_last", name=node.name, dtype=dtype)


def upsampling(node: Node, dtype: str, export: bool) -> keras.layers.Layer:
    """``UpSampling2D``; :class:`Upsample2D` for bilinear float64 training (module docstring)."""
    size, interpolation = tuple(int(v) for v in node.attrs["size"]), node.attrs["interpolation"]
    if interpolation == "bilinear" and dtype == "float64" and not export:
        return Upsample2D(size, interpolation, name=node.name, dtype=dtype)
    return keras.layers.UpSampling2D(
        size, data_format="channels_last", interpolation=interpolation, name=node.name, dtype=dtype
    )


def keras_noise_shape(node: Node) -> tuple[int | None, ...] | None:
    """Keras's ``noise_shape`` of a dropout node (the batch axis first, None where the mask is full), or None."""
    if node.attrs.get("noise_shape") is None:
        return None
    return (None, *node.attrs["noise_shape"])
