"""TensorFlow itself for nnspec: a quiet, configured import, its devices here, and its multi-process start.

TensorFlow is imported on first use only, through :func:`load_tensorflow`, which

* sets ``TF_CPP_MIN_LOG_LEVEL=3`` when the user has not set it;
* holds back what TensorFlow's native libraries print on standard error while they load (the oneDNN
  notice, the absl "InitializeLog" warning, CUDA factory registrations): the captured text is dropped
  when it is only such start-up notices, and replayed otherwise, so real errors still reach the user;
* silences TensorFlow's Python-side absl logger and its deprecation warnings;
* turns TF32 off (contract: float32 means float32) and lets GPU memory grow on demand, so that other
  engines in the same process keep room on the device.

Every module of the TensorFlow backend imports TensorFlow through this one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import warnings
from types import ModuleType
from typing import Any, Iterator, Mapping

from ...errors import BackendError, NnspecError
from ..cluster import Cluster, split_address

#: ``host:port`` of every worker, comma-separated, when the processes run on several machines
ENV_WORKERS = "NNSPEC_WORKERS"

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


def devices() -> list[str]:
    """``['cpu']``, plus ``'gpu'`` when TensorFlow sees a GPU."""
    tf = load_tensorflow()
    return ["cpu", "gpu"] if tf.config.list_physical_devices("GPU") else ["cpu"]


def device_counts() -> dict[str, int]:
    """TensorFlow's logical devices of each kind (several CPUs only when configured before TensorFlow starts:
    ``tf.config.set_logical_device_configuration``)."""
    tf = load_tensorflow()
    counts = {"cpu": len(tf.config.list_logical_devices("CPU"))}
    gpus = len(tf.config.list_logical_devices("GPU"))
    if gpus:
        counts["gpu"] = gpus
    return counts


def gpus() -> list[dict[str, Any]]:
    """TensorFlow's GPUs: ``{'kind': 'gpu', 'name', 'memory_bytes', 'id'}`` each (memory once TensorFlow reports it).

    Never raises: when TensorFlow cannot list its devices the list is empty.
    """
    try:
        tf = load_tensorflow()
        found = tf.config.list_physical_devices("GPU")
    except Exception:
        return []
    listed = []
    for index, device in enumerate(found):
        try:
            name = tf.config.experimental.get_device_details(device).get("device_name", device.name)
        except Exception:
            name = device.name
        try:
            memory = tf.config.experimental.get_memory_info(f"GPU:{index}").get("limit")
        except Exception:  # not reported before the device is initialised
            memory = None
        listed.append({"kind": "gpu", "name": str(name), "memory_bytes": memory, "id": index})
    return listed


# ---- several processes --------------------------------------------------------------------------------
def tf_config(cluster: Cluster, environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The ``TF_CONFIG`` of this process: workers from ``NNSPEC_WORKERS`` (comma-separated ``host:port``),
    else the coordinator's host with the ports after its port, one per process (processes on one machine; the
    coordinator's own port stays with nnspec's check-in connections, which live as long as the run)."""
    env = os.environ if environ is None else environ
    listed = [w.strip() for w in env.get(ENV_WORKERS, "").split(",") if w.strip()]
    if listed:
        if len(listed) != cluster.num_processes:
            raise NnspecError(f"{ENV_WORKERS} lists {len(listed)} workers for {cluster.num_processes} processes")
        for worker in listed:
            split_address(worker)
        workers = listed
    else:
        host, port = split_address(cluster.coordinator or "")
        if port + cluster.num_processes > 65535:
            raise NnspecError(
                f"{cluster.num_processes} TensorFlow workers on one host take the ports {port + 1} to "
                f"{port + cluster.num_processes}, past 65535: choose a lower --coordinator port, or list the "
                f"workers in {ENV_WORKERS}"
            )
        host = f"[{host}]" if ":" in host else host
        workers = [f"{host}:{port + 1 + i}" for i in range(cluster.num_processes)]
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": cluster.process_id}}


def start_processes(cluster: Cluster) -> None:
    """Set ``TF_CONFIG`` for ``cluster`` and create the multi-worker strategy before TensorFlow runs anything.

    TensorFlow waits for its workers in native code, holding the interpreter, without a limit: nnspec's start
    (:func:`nnspec.runtime.distributed.start`) calls this only once every process has checked in, and a watchdog
    process ends a start that still hangs.
    """
    os.environ["TF_CONFIG"] = json.dumps(tf_config(cluster))
    start_multi_worker()


_multi_worker: Any = None


def start_multi_worker() -> Any:
    """Create this process's ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG`` (once; TensorFlow requires it
    before it runs anything, so :func:`start_processes` calls this at start-up)."""
    global _multi_worker
    if _multi_worker is None:
        tf = load_tensorflow()
        _multi_worker = tf.distribute.MultiWorkerMirroredStrategy()
    return _multi_worker


def replica_strategy(device: str, local: int, processes: int) -> Any:
    """The ``tf.distribute`` strategy of a data-parallel model: ``MirroredStrategy`` over the first ``local``
    logical devices of ``device``'s kind, or (several processes) the multi-worker strategy."""
    tf = load_tensorflow()
    if processes > 1:
        strategy = start_multi_worker()
        if strategy.num_replicas_in_sync != local * processes:
            raise BackendError(
                f"TensorFlow's multi-worker strategy has {strategy.num_replicas_in_sync} replicas, not "
                f"{local * processes} "
                f"({local} devices in each of {processes} processes): on CPUs a worker has one replica "
                "(train.devices: 1), on GPUs every local GPU (train.devices: all)"
            )
        return strategy
    names = [d.name for d in tf.config.list_logical_devices("GPU" if device == "gpu" else "CPU")][:local]
    cross = tf.distribute.ReductionToOneDevice() if device != "gpu" else None
    return tf.distribute.MirroredStrategy(devices=names, cross_device_ops=cross)
