"""``TheanoBackend``: nnspec's Theano backend, running on PyTensor.

The linker is chosen per model, by measurement (:func:`nnspec.backends.theano.config.choose_linker`; the
figures are in that module's docstring):

* CPU, float32: PyTensor's JAX linker (XLA) for convolutions, pooling and all but tiny steps;
* CPU, float64 or tiny float32 steps: PyTensor's C linker with a system BLAS (OpenBLAS, MKL, BLIS or
  reference BLAS) linked, found by nnspec because a pip-installed PyTensor does not find one itself.
  Without a BLAS nnspec falls back, deliberately and visibly (``nnspec backends`` says so), to PyTensor's
  Numba linker, which measured several times faster than the C linker without BLAS.
* GPU: the same PyTensor graph through PyTensor's JAX linker; ``devices()`` lists ``gpu`` only when JAX
  sees a GPU.
* ``NNSPEC_THEANO_MODE=c|numba|jax`` overrides the choice.

:meth:`TheanoBackend.execution_notes` states the rule; each model's ``execution_notes()`` its linker and why.

Importing this module does not import PyTensor.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, ClassVar

import numpy as np

from ...compiler.ir import Graph
from ..base import Backend, Capabilities, CompiledModel
from . import config


class TheanoBackend(Backend):
    """PyTensor (Theano) behind nnspec."""

    name: ClassVar[str] = "theano"
    aliases: ClassVar[tuple[str, ...]] = ("pytensor",)
    engine: ClassVar[str] = "pytensor"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            if importlib.util.find_spec("pytensor") is None:
                return False, "PyTensor is not installed (pip install 'nnspec[theano]')"
        except (ImportError, ValueError) as exc:
            return False, f"PyTensor cannot be found: {exc}"
        return True, ""

    def engine_version(self) -> str:
        config.setup()
        import pytensor

        return str(pytensor.__version__)

    def devices(self) -> list[str]:
        found = ["cpu"]
        if os.environ.get(config.MODE_ENV, "auto").strip().lower() not in ("auto", "jax", ""):
            return found
        if importlib.util.find_spec("jax") is None:
            return found
        try:
            import jax

            if any(d.platform == "gpu" for d in jax.devices()):
                config.setup()
                config.import_jax_linker()
                found.append("gpu")
        except Exception:  # no GPU runtime, or PyTensor's JAX linker does not import: no gpu
            pass
        return found

    def device_details(self) -> list[dict[str, Any]]:
        """The GPUs PyTensor's JAX linker runs on (JAX's), when this backend can use them."""
        from ..jax.engine import gpus

        return gpus() if "gpu" in self.devices() else []

    def description(self) -> str:
        """One line on the linkers and BLAS this backend uses here (for ``nnspec backends``)."""
        info = config.setup()
        base = config.default_mode("cpu")
        if os.environ.get(config.MODE_ENV, "auto").strip().lower() not in ("auto", ""):
            return f"PyTensor {base} linker ({config.MODE_ENV}); cache {config.cache_dir()}"
        if importlib.util.find_spec("jax") is None:
            return f"PyTensor {base} linker (JAX is not installed, so no JAX linker); cache {config.cache_dir()}"
        if base == "c":
            base_text = f"C linker with BLAS {info.blas_ldflags} ({info.blas_source})"
        else:
            base_text = (
                "Numba linker: no system BLAS found for the C linker (install OpenBLAS, e.g. apt-get install "
                "libopenblas-dev, for the faster C path)"
            )
        return (
            f"PyTensor: JAX linker (XLA) for float32 models on CPU but tiny MLPs; {base_text} for float64 and tiny "
            f"MLPs; cache {config.cache_dir()}"
        )

    def execution_notes(self) -> dict[str, str]:
        """The linker rule and the base linker, BLAS and compile cache here (for ``nnspec backends``)."""
        return config.rule_notes()

    def capabilities(self) -> Capabilities:
        """The layers its registry lowers (every layer); the GPU only through PyTensor's JAX linker, in float32.

        Imports no engine: :mod:`.layers` imports PyTensor only inside its lowerings.
        """
        from .layers import LOWERINGS

        gaps = {"gpu": "through PyTensor's JAX linker only, in float32 (float64 there needs jax_enable_x64)"}
        no_mixed = (
            "PyTensor has no bfloat16 type and no control over matrix-product precision; use the jax or tensorflow "
            "backend"
        )
        gaps.update({name: no_mixed for name in ("tf32", "mixed_bfloat16", "mixed_float16")})
        gaps["data_parallel"] = "PyTensor has no multi-device execution"
        return Capabilities(
            layers=frozenset(LOWERINGS), devices=("cpu", "gpu"), precisions=("float32", "float64"), gaps=gaps
        )

    def _compile(self, graph: Graph, weights: dict[str, np.ndarray], device: str, dtype: str) -> CompiledModel:
        from ...errors import BackendError
        from .model import TheanoModel

        choice = config.choose_linker(device, dtype, graph)
        mode = choice.mode
        if device == "gpu" and mode != "jax":
            raise BackendError(
                f"backend 'theano' runs on the GPU only through PyTensor's JAX linker; {config.MODE_ENV}={mode} is "
                "CPU-only"
            )
        if mode == "jax" and dtype == "float64":
            import jax

            if not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
                raise BackendError(
                    "backend 'theano' with the JAX linker computes in float32 only (jax_enable_x64 is off); use dtype "
                    "float32 or the c/numba linker"
                )
        return TheanoModel(graph, self, device, dtype, weights, mode, choice.why)
