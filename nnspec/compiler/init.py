"""Seeded NumPy parameter initialisers: every backend starts from the arrays made here.

Each parameter gets its own generator, ``numpy.random.Generator(PCG64([seed, layer_index, param_index]))``,
so that the values of a layer do not depend on the layers before it. Formulas follow Keras 3
(fan_in / fan_out of a conv kernel include the receptive field; the ``*_normal`` variants are truncated at
two standard deviations, with the standard deviation corrected for the truncation).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .ir import Graph, Initializer, ParamSpec

# Standard deviation of a unit normal truncated to [-2, 2]; dividing by it restores the wanted stddev.
_TRUNCATED_STD = 0.87962566103423978

Sampler = Callable[[np.random.Generator, ParamSpec, Initializer], np.ndarray]
_SAMPLERS: dict[str, Sampler] = {}


def sampler(name: str) -> Callable[[Sampler], Sampler]:
    """Register the sampler of initialiser ``name``."""

    def register(fn: Sampler) -> Sampler:
        _SAMPLERS[name] = fn
        return fn

    return register


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], stddev: float) -> np.ndarray:
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2.0
    return values * (stddev / _TRUNCATED_STD)


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], limit: float) -> np.ndarray:
    return rng.uniform(-limit, limit, size=shape)


@sampler("zeros")
def _zeros(rng: np.random.Generator, p: ParamSpec, init: Initializer) -> np.ndarray:
    return np.zeros(p.shape)


@sampler("ones")
def _ones(rng: np.random.Generator, p: ParamSpec, init: Initializer) -> np.ndarray:
    return np.ones(p.shape)


@sampler("constant")
def _constant(rng: np.random.Generator, p: ParamSpec, init: Initializer) -> np.ndarray:
    """Every value ``init.arg("value")`` (not a spec initialiser: ``layer_scale``'s gamma starts at ``init_values``)."""
    return np.full(p.shape, init.arg("value", 0.0))


@sampler("normal")
def _normal(rng: np.random.Generator, p: ParamSpec, init: Initializer) -> np.ndarray:
    return init.arg("mean", 0.0) + init.arg("stddev", 0.05) * rng.standard_normal(p.shape)


@sampler("uniform")
def _uniform_init(rng: np.random.Generator, p: ParamSpec, init: Initializer) -> np.ndarray:
    return rng.uniform(init.arg("minval", -0.05), init.arg("maxval", 0.05), size=p.shape)


@sampler("glorot_uniform")
def _glorot_uniform(rng: np.random.Generator, p: ParamSpec, init: Initializer) -> np.ndarray:
    return _uniform(rng, p.shape, math.sqrt(6.0 / (p.fan_in + p.fan_out)))


@sampler("glorot_normal")
def _glorot_normal(rng: np.random.Generator, p: ParamSpec, init: Initializer) -> np.ndarray:
    return _truncated_normal(rng, p.shape, math.sqrt(2.0 / (p.fan_in + p.fan_out)))


@sampler("he_uniform")
def _he_uniform(rng: np.random.Generator, p: ParamSpec, init: Initializer) -> np.ndarray:
    return _uniform(rng, p.shape, math.sqrt(6.0 / p.fan_in))


@sampler("he_normal")
def _he_normal(rng: np.random.Generator, p: ParamSpec, init: Initializer) -> np.ndarray:
    return _truncated_normal(rng, p.shape, math.sqrt(2.0 / p.fan_in))


@sampler("lecun_uniform")
def _lecun_uniform(rng: np.random.Generator, p: ParamSpec, init: Initializer) -> np.ndarray:
    return _uniform(rng, p.shape, math.sqrt(3.0 / p.fan_in))


@sampler("lecun_normal")
def _lecun_normal(rng: np.random.Generator, p: ParamSpec, init: Initializer) -> np.ndarray:
    return _truncated_normal(rng, p.shape, math.sqrt(1.0 / p.fan_in))


def initial_weights(graph: Graph, seed: int | None = None, dtype: str | None = None) -> dict[str, np.ndarray]:
    """Return the initial weights of ``graph`` as ``{'<layer>.<param>': array}`` in the contract layouts.

    The dict holds the trainable parameters and the non-trainable state (``moving_mean`` zeros,
    ``moving_variance`` ones), in :meth:`Graph.weight_keys` order.

    ``seed`` defaults to ``graph.train.seed``; ``dtype`` to ``graph.dtype``. Values are drawn in float64
    and then cast, so float32 and float64 runs start from the same numbers up to rounding.
    """
    seed = graph.train.seed if seed is None else seed
    dtype = dtype or graph.dtype
    weights: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        for param_index, spec in enumerate((*node.params, *node.state)):
            rng = np.random.Generator(np.random.PCG64([seed, node.index, param_index]))
            values = _SAMPLERS[spec.init.name](rng, spec, spec.init)
            weights[node.key(spec.name)] = np.ascontiguousarray(values, dtype=dtype)
    return {key: weights[key] for key in graph.weight_keys()}
