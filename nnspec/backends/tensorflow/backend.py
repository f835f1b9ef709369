"""The TensorFlow backend: registration, a quiet TensorFlow import, devices and capabilities.

TensorFlow is imported on first use only, through :func:`load_tensorflow`, which

* sets ``TF_CPP_MIN_LOG_LEVEL=3`` when the user has not set it;
* holds back what TensorFlow's native libraries print on standard error while they load (the oneDNN
  notice, the absl "InitializeLog" warning, CUDA factory registrations): the captured text is dropped
  when it is only such start-up notices, and replayed otherwise, so real errors still reach the user;
* silences TensorFlow's Python-side absl logger and its deprecation warnings;
* turns TF32 off (contract: float32 means float32) and lets GPU memory grow on demand, so that other
  engines in the same process keep room on the device.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import tempfile
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ...compiler.ir import Graph
from ..base import Backend, Capabilities

if TYPE_CHECKING:
    from .model import TensorFlowModel

#: Lines TensorFlow's native code prints while it loads that carry no information for a user.
_STARTUP_NOISE = re.compile(
    r"oneDNN custom operations are on|before absl::InitializeLog\(\)|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation_placer\.cc|"
    r"This TensorFlow binary is optimized to use available CPU instructions|"
    r"in other operations, rebuild TensorFlow with the appropriate compiler flags|"
    r"TF-TRT Warning|Could not find cuda drivers|cuda_executor\.cc.*NUMA node|"
    r"cpu_feature_guard\.cc|^\s*$"
)

_tf: ModuleType | None = None


def _import_quietly() -> ModuleType:
    """Import TensorFlow with file descriptor 2 captured; replay captured lines that are not start-up noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    failed = True
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import tensorflow as tf
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            lines = text.splitlines()
            kept = lines if failed else [line for line in lines if not _STARTUP_NOISE.search(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()
    return tf


def load_tensorflow() -> ModuleType:
    """Import and configure TensorFlow once (quietly; TF32 off; GPU memory on demand); return the module."""
    global _tf
    if _tf is not None:
        return _tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = _import_quietly()
    tf.get_logger().setLevel("ERROR")
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl comes with TensorFlow; be tolerant all the same
        pass
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"tensorflow(\.|$)")
    tf.config.experimental.enable_tensor_float_32_execution(False)
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised by earlier use in this process
            pass
    _tf = tf
    return tf


@contextlib.contextmanager
def tensor_float_32(enabled: bool) -> Iterator[None]:
    """TensorFlow's TensorFloat-32 switch set to ``enabled`` for the duration, and restored after.

    The switch is process-wide and read when a kernel runs (and when XLA compiles), so each model sets it
    around its own calls (the ``tf32`` precision policy turns it on; every other policy keeps it off).
    """
    tf = load_tensorflow()
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(enabled)
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before)


class TensorFlowBackend(Backend):
    """Compiles nnspec graphs to TensorFlow ``tf.function`` programs over ``tf.Variable`` weights."""

    name = "tensorflow"
    aliases = ("tf",)
    engine = "tensorflow"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Whether TensorFlow is installed, judged without importing it."""
        try:
            found = importlib.util.find_spec("tensorflow") is not None
        except (ImportError, ValueError):
            found = False
        if found:
            return True, ""
        return False, "TensorFlow is not installed (pip install 'nnspec[tensorflow]')"

    def engine_version(self) -> str:
        """TensorFlow's version string."""
        return str(load_tensorflow().__version__)

    def devices(self) -> list[str]:
        """``['cpu']``, plus ``'gpu'`` when TensorFlow sees a GPU."""
        tf = load_tensorflow()
        return ["cpu", "gpu"] if tf.config.list_physical_devices("GPU") else ["cpu"]

    def device_counts(self) -> dict[str, int]:
        """TensorFlow's logical devices of each kind (several CPUs only when configured before TensorFlow starts:
        ``tf.config.set_logical_device_configuration``)."""
        tf = load_tensorflow()
        counts = {"cpu": len(tf.config.list_logical_devices("CPU"))}
        gpus = len(tf.config.list_logical_devices("GPU"))
        if gpus:
            counts["gpu"] = gpus
        return counts

    def device_details(self) -> list[dict[str, Any]]:
        """TensorFlow's GPUs with their names (and memory once TensorFlow reports it)."""
        from ..accelerators import tensorflow_gpus

        return tensorflow_gpus()

    def capabilities(self) -> Capabilities:
        """The layers it has lowerings for (every layer), every activation and optimiser; float32 and float64; CPU and GPU;
        data parallel over several devices and workers (``tf.distribute``).

        ``devices`` says what it supports; :meth:`devices` says what is on this machine.
        """
        from .layers import LOWERINGS

        return Capabilities(layers=frozenset(LOWERINGS), devices=("cpu", "gpu"), data_parallel=True)

    def _compile(self, graph: Graph, weights: dict[str, np.ndarray], device: str, dtype: str) -> "TensorFlowModel":
        from .model import TensorFlowModel

        return TensorFlowModel(graph, self, device, dtype, weights)


_multi_worker: Any = None


def start_multi_worker() -> Any:
    """Create this process's ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG`` (once; TensorFlow requires it
    before it runs anything, so :func:`nnspec.runtime.distributed.start` calls this at start-up)."""
    global _multi_worker
    if _multi_worker is None:
        tf = load_tensorflow()
        _multi_worker = tf.distribute.MultiWorkerMirroredStrategy()
    return _multi_worker


def replica_strategy(device: str, local: int, processes: int) -> Any:
    """The ``tf.distribute`` strategy of a data-parallel model: ``MirroredStrategy`` over the first ``local``
    logical devices of ``device``'s kind, or (several processes) the multi-worker strategy."""
    from ...errors import BackendError

    tf = load_tensorflow()
    if processes > 1:
        strategy = start_multi_worker()
        if strategy.num_replicas_in_sync != local * processes:
            raise BackendError(
                f"TensorFlow's multi-worker strategy has {strategy.num_replicas_in_sync} replicas, not {local * processes} "
                f"({local} devices in each of {processes} processes): on CPUs a worker has one replica (train.devices: 1), on GPUs every local GPU (train.devices: all)"
            )
        return strategy
    names = [d.name for d in tf.config.list_logical_devices("GPU" if device == "gpu" else "CPU")][:local]
    cross = tf.distribute.ReductionToOneDevice() if device != "gpu" else None
    return tf.distribute.MirroredStrategy(devices=names, cross_device_ops=cross)
