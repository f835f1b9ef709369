"""Shape rules and value readers of padding, cropping, upsampling and the shaped dropouts (language 1.3).

``zero_pad2d`` and ``crop2d`` take Keras's three forms of an amount (ZeroPadding2D's ``padding``, Cropping2D's
``cropping``): ``n`` (every side), ``[h, w]`` (top and bottom ``h``, left and right ``w``) or
``[[top, bottom], [left, right]]``; the canonical attribute is always the last. ``upsample2d`` repeats or
interpolates by whole factors (:mod:`nnspec.semantics.resample`). ``dropout``'s ``noise_shape`` is Keras's
without the batch axis: ``1`` on an axis shares one mask value along it, ``null`` (or the axis's length) draws
one per element; ``spatial_dropout2d`` is the mask ``[1, 1, channels]``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from .ir import Shape
from .loader import YNode, YScalar, YSeq
from .rules import Inferred, ShapeProblem, check_sizes
from .rules import dropout as plain_dropout
from .values import Invalid, describe, read_int

#: (before, after) pairs for (height, width).
Sides = tuple[tuple[int, int], tuple[int, int]]


def _sides_reader(key: str) -> Any:
    """The reader of an amount per side: ``n``, ``[h, w]`` or ``[[top, bottom], [left, right]]`` (ints >= 0)."""
    expected = "an int >= 0, [height, width] or [[top, bottom], [left, right]]"
    hint = f"write e.g. {key}: 1, {key}: [1, 2] or {key}: [[0, 1], [0, 1]]"

    def read(node: YNode) -> Sides:
        def bad() -> Invalid:
            return Invalid(f"must be {expected}; got {describe(node)}", hint, node)

        if isinstance(node, YSeq):
            if len(node.items) != 2:
                raise bad()
            pairs = []
            for item in node.items:
                if isinstance(item, YSeq):
                    if len(item.items) != 2:
                        raise bad()
                    pairs.append(tuple(_non_negative(v, bad) for v in item.items))
                else:
                    n = _non_negative(item, bad)
                    pairs.append((n, n))
            if isinstance(node.items[0], YSeq) != isinstance(node.items[1], YSeq):
                raise bad()
            return (pairs[0][0], pairs[0][1]), (pairs[1][0], pairs[1][1])
        n = _non_negative(node, bad)
        return (n, n), (n, n)

    read.__qualname__ = f"read_{key}"
    read.json_schema = _SIDES_SCHEMA  # type: ignore[attr-defined]
    return read


def _non_negative(node: YNode, bad: Any) -> int:
    try:
        return read_int(node, 0)
    except Invalid:
        raise bad() from None


_INT = {"type": "integer", "minimum": 0, "maximum": 2147483647}
_PAIR = {"type": "array", "items": _INT, "minItems": 2, "maxItems": 2}
#: The JSON Schema of an amount per side (the schema generator cannot probe nested lists).
_SIDES_SCHEMA = {"anyOf": [_INT, _PAIR, {"type": "array", "items": _PAIR, "minItems": 2, "maxItems": 2}]}

read_padding = _sides_reader("padding")
read_cropping = _sides_reader("cropping")


def read_noise_shape(node: YNode) -> tuple[int | None, ...]:
    """Keras's ``noise_shape`` without the batch axis: a list of ``1`` (shared along that axis), ``null`` or a
    length (one mask value per element along it)."""
    expected = "a list of 1, null or axis lengths (one per axis, the batch axis left out)"
    hint = "write e.g. noise_shape: [1, 1, null] (one mask value per channel of an image)"
    if not isinstance(node, YSeq) or not node.items:
        raise Invalid(f"must be {expected}; got {describe(node)}", hint, node)
    values: list[int | None] = []
    for item in node.items:
        if isinstance(item, YScalar) and item.plain and item.kind == "null":
            values.append(None)
            continue
        try:
            values.append(read_int(item, 1))
        except Invalid:
            raise Invalid(f"must be {expected}; got {describe(node)}", hint, node) from None
    return tuple(values)


read_noise_shape.json_schema = {  # type: ignore[attr-defined]
    "type": "array",
    "items": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 2147483647}, {"type": "null"}]},
    "minItems": 1,
}


def sides(value: Any) -> Sides:
    """The canonical ((top, bottom), (left, right)) of an amount given as ``n``, ``(h, w)`` or the pairs
    (for graphs built from Python: :func:`nnspec.compiler.shapes.make_node`)."""
    if isinstance(value, int):
        return (value, value), (value, value)
    h, w = value
    h = (h, h) if isinstance(h, int) else tuple(h)
    w = (w, w) if isinstance(w, int) else tuple(w)
    return (int(h[0]), int(h[1])), (int(w[0]), int(w[1]))


def _needs_image(shape: Shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeProblem(
            f"needs an image (height, width, channels) per example; got {shape}",
            f"{what} works on the output of a conv2d or a pool (add a reshape before it)",
        )
    return shape[0], shape[1], shape[2]


def zero_pad2d(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``zero_pad2d``: (H + top + bottom, W + left + right, C); no FLOPs."""
    h, w, c = _needs_image(shape, "zero_pad2d")
    (top, bottom), (left, right) = attrs["padding"]
    inferred = Inferred((h + top + bottom, w + left + right, c))
    check_sizes(inferred)
    return inferred


def crop2d(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``crop2d``: (H - top - bottom, W - left - right, C), each at least 1; no FLOPs."""
    h, w, c = _needs_image(shape, "crop2d")
    (top, bottom), (left, right) = attrs["cropping"]
    out = (h - top - bottom, w - left - right)
    if min(out) < 1:
        raise ShapeProblem(
            f"cropping [[{top}, {bottom}], [{left}, {right}]] leaves nothing of its {h}x{w} input",
            "crop less: at least one row and one column must remain",
            code="E0302",
        )
    return Inferred((*out, c))


def upsample2d(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``upsample2d``: (H * sh, W * sw, C); bilinear costs three FLOPs per output element."""
    h, w, c = _needs_image(shape, "upsample2d")
    sh, sw = attrs["size"]
    out = (h * sh, w * sw, c)
    inferred = Inferred(out, (), 3 * math.prod(out) if attrs["interpolation"] == "bilinear" else 0)
    check_sizes(inferred)
    return inferred


def dropout(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``dropout``: the shape is kept; a ``noise_shape`` has one entry per axis, each 1, null or the length."""
    noise = attrs.get("noise_shape")
    if noise is not None:
        if len(noise) != len(shape):
            raise ShapeProblem(
                f"noise_shape {_shown(noise)} has {len(noise)} axes but the input {shape} has {len(shape)} "
                "(the batch axis is left out)",
                "give one entry per axis of the input: 1 to share the mask along it, null for one value per element",
                code="E0302",
            )
        for n, d in zip(noise, shape):
            if n is not None and n not in (1, d):
                raise ShapeProblem(
                    f"noise_shape {_shown(noise)} does not fit the input {shape}: each entry must be 1, null or "
                    "the axis's length",
                    "use 1 to share the mask along an axis, null for one value per element",
                    code="E0302",
                )
    return plain_dropout(attrs, shape)


def spatial_dropout2d(attrs: Mapping[str, Any], shape: Shape) -> Inferred:
    """``spatial_dropout2d``: an image in, the shape kept; the mask is one value per (example, channel)."""
    _needs_image(shape, "spatial_dropout2d")
    return plain_dropout(attrs, shape)


def _shown(noise: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("null" if n is None else str(n) for n in noise) + "]"


def mask_shape(noise_shape: tuple[int | None, ...] | None, shape: Shape, spatial: bool = False) -> Shape:
    """The per-example shape a dropout mask is drawn at: ``shape`` itself, or 1 on the axes ``noise_shape``
    (or ``spatial_dropout2d``: all but the channels) shares the mask along."""
    if spatial:
        return (*(1,) * (len(shape) - 1), shape[-1])
    if noise_shape is None:
        return tuple(shape)
    return tuple(1 if n == 1 else d for n, d in zip(noise_shape, shape))
