"""Data-parallel training (``train.devices``, docs/distributed.md): N devices give the one-device numbers.

JAX's virtual CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count``) and TensorFlow's logical
CPU devices must be set up before the engine starts, so each measurement runs in a fresh Python process:
this file run as a script (``python tests/test_data_parallel.py WORKER ...``) trains one epoch on the
digits (a few hundred examples) with 1, 2 and 4 devices and prints the largest relative weight difference
of each against the one-device run, measured per array as ``max |w_N - w_1| / max |w_1|``.
Required: 1e-5 in float32 and 1e-12 in float64 (the issue's figures), on an MLP with dropout and on a
residual convnet with batch norm and dropout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
EXAMPLES = 384  # training examples: 12 batches of 32 an epoch

MLP = """\
nnspec: 1.1
name: dp_mlp
input: {shape: [8, 8, 1]}
layers:
  - flatten
  - dense: {units: 32, activation: relu}
  - dropout: 0.3
  - dense: {units: 10}
  - softmax
train: {epochs: 1, batch_size: 32, seed: 3, optimizer: {adam: {learning_rate: 0.01}}}
data: {dataset: digits}
"""

RESNET = """\
nnspec: 1.1
name: dp_resnet
input: {shape: [8, 8, 1]}
layers:
  - conv2d: {filters: 8, kernel: 3, padding: same, use_bias: false, name: stem}
  - batch_norm: {name: stem_bn}
  - activation: {activation: relu, name: stem_relu}
  - conv2d: {filters: 8, kernel: 3, padding: same, use_bias: false, name: block_conv1}
  - batch_norm: {name: block_bn1}
  - activation: {activation: relu, name: block_relu1}
  - conv2d: {filters: 8, kernel: 3, padding: same, use_bias: false, name: block_conv2}
  - batch_norm: {name: block_bn2}
  - add: {inputs: [block_bn2, stem_relu], name: block_add}
  - activation: {activation: relu, name: block_out}
  - max_pool2d: {size: 2}
  - global_avg_pool2d
  - dropout: {rate: 0.2}
  - dense: {units: 10}
  - softmax
train: {epochs: 1, batch_size: 32, seed: 4, optimizer: {adam: {learning_rate: 0.005}}}
data: {dataset: digits}
"""

SPECS = {"mlp": MLP, "resnet": RESNET}


# ---- the worker (a fresh process) ----------------------------------------------------------------------
def _setup_devices(engine: str, count: int) -> None:
    """Make ``count`` CPU devices visible to ``engine``; before the engine is imported."""
    if engine in ("jax", "keras"):
        os.environ["XLA_FLAGS"] = (
            f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
        )
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if engine == "keras":
        os.environ["KERAS_BACKEND"] = "jax"  # Keras's distribution API runs on JAX only
    if engine == "tensorflow":
        from nnspec.backends.tensorflow.engine import load_tensorflow

        tf = load_tensorflow()
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])


def graph_for(spec: str, folder: Path, devices: int | str, dtype: str) -> Any:
    """The spec's graph with ``train.devices`` and the dtype set."""
    import nnspec

    path = folder / f"{spec}.yaml"
    path.write_text(SPECS[spec])
    graph = nnspec.load(str(path))
    return graph.replace(train=dataclasses.replace(graph.train, devices=devices), dtype=dtype)


def small_digits(graph: Any) -> Any:
    """The digits with :data:`EXAMPLES` training examples (validation and test kept small too)."""
    from nnspec.data import load_dataset

    ds = load_dataset(graph)
    return dataclasses.replace(
        ds,
        x_train=ds.x_train[:EXAMPLES],
        y_train=ds.y_train[:EXAMPLES],
        x_val=ds.x_val[:64],
        y_val=ds.y_val[:64],
        x_test=ds.x_test[:64],
        y_test=ds.y_test[:64],
    )


def train_once(
    engine: str, spec: str, devices: int, dtype: str, folder: Path, on_divergence: str = "stop"
) -> dict[str, np.ndarray]:
    """Weights, state and optimiser slots after one epoch on ``devices`` devices (with ``continue``: and one
    more step through the ``train_step`` hook)."""
    from nnspec.backends import get_backend

    graph = graph_for(spec, folder, devices, dtype)
    graph = graph.replace(train=dataclasses.replace(graph.train, on_divergence=on_divergence))
    model = get_backend(engine).compile(graph, device="cpu", dtype=dtype)
    assert model.replicas == devices, (model.replicas, devices)
    data = small_digits(graph)
    model.fit(data, epochs=1, progress=False)
    if on_divergence == "continue":
        model.train_step(data.x_train[:32], data.y_train[:32])
    assert placed_on(model) == devices, (engine, placed_on(model), devices)
    ts = model.get_training_state()
    return {**ts.weights, **ts.state, **{f"slot:{k}": v for k, v in ts.slots.items()}}


def placed_on(model: Any) -> int:
    """How many devices hold a copy of the model's first weight (the split is real, not a fallback)."""
    if model.backend.name == "tensorflow":
        var = next(iter(model._params.values()))
        return len(getattr(var, "values", [var]))
    array = next(iter(model._arrays["params"].values()))
    return len(array.sharding.device_set)


def largest_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """The largest over arrays of ``max |a - b| / max |b|``."""
    assert set(a) == set(b)
    return max(float(np.max(np.abs(a[k] - b[k])) / max(float(np.max(np.abs(b[k]))), 1e-30)) for k in b)


def worker(engine: str, spec: str, dtype: str, counts: list[int], on_divergence: str = "stop") -> dict[str, float]:
    """``{str(n): difference against one device}`` for each device count in ``counts`` (1 first)."""
    import tempfile

    _setup_devices(engine, max(counts))
    with tempfile.TemporaryDirectory() as tmp:
        runs = {n: train_once(engine, spec, n, dtype, Path(tmp), on_divergence) for n in counts}
    base = runs[counts[0]]
    return {str(n): largest_difference(runs[n], base) for n in counts}


# ---- the tests -------------------------------------------------------------------------------------------
def run_worker(*args: str, timeout: float = 600) -> Any:
    """Run this file as a worker in a fresh process; its JSON answer."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spec", ["mlp", "resnet"])
@pytest.mark.parametrize("engine", ["jax", "tensorflow"])
def test_devices_agree_with_one_device(engine: str, spec: str, dtype: str) -> None:
    """1, 2 and 4 devices (virtual CPU devices on JAX, logical CPU devices under MirroredStrategy on
    TensorFlow): the same weights after one epoch, within the issue's figures."""
    diffs = run_worker("devices", engine, spec, dtype, "1,2,4")
    print(f"{engine} {spec} {dtype}: {diffs}")
    assert diffs["1"] == 0.0
    assert max(diffs["2"], diffs["4"]) <= TOLERANCE[dtype], diffs


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["mlp", "resnet"])
def test_keras_jax_devices_agree_with_one_device(spec: str) -> None:
    """Keras on JAX with keras.distribution.DataParallel over 1, 2 and 4 devices (float32: Keras-JAX's only dtype)."""
    diffs = run_worker("devices", "keras", spec, "float32", "1,2,4")
    print(f"keras {spec} float32: {diffs}")
    assert diffs["1"] == 0.0
    assert max(diffs["2"], diffs["4"]) <= TOLERANCE["float32"], diffs


def refusals() -> dict[str, str]:
    """The errors of impossible requests, with 4 devices: a batch that does not split, more devices than there are."""
    import tempfile

    from nnspec.backends import get_backend
    from nnspec.errors import BackendError

    _setup_devices("jax", 4)
    found: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        graph = graph_for("mlp", Path(tmp), 4, "float32")
        backend = get_backend("jax")
        for name, bad in (
            ("batch", graph.replace(train=dataclasses.replace(graph.train, batch_size=30))),
            ("count", graph.replace(train=dataclasses.replace(graph.train, devices=8))),
        ):
            try:
                backend.compile(bad, device="cpu")
            except BackendError as exc:
                found[name] = str(exc)
        model = backend.compile(graph.replace(train=dataclasses.replace(graph.train, devices="all")), device="cpu")
        found["all"] = str(model.replicas)
        data = small_digits(graph)
        try:
            model.run_epoch(model.put(data.x_train), model.put(data.y_train), np.arange(len(data.x_train)), 18)
        except BackendError as exc:
            found["run_epoch"] = str(exc)
        found["counts"] = json.dumps(backend.device_counts())
    return found


@pytest.mark.slow
def test_impossible_device_requests_are_clear_errors() -> None:
    """A batch size that does not divide, or more devices than the machine has, is a BackendError naming both
    numbers."""
    found = run_worker("refusals")
    assert "batch size 30" in found["batch"] and "4 devices" in found["batch"] and "multiple of 4" in found["batch"], (
        found
    )
    assert "8 CPU devices" in found["count"] and "sees 4" in found["count"] and "--devices 4" in found["count"], found
    assert found["all"] == "4"
    assert "batch size 18" in found["run_epoch"] and "4 devices" in found["run_epoch"], found
    assert json.loads(found["counts"]) == {"cpu": 4}


@pytest.mark.parametrize(
    "engine, reason", [("theano", "PyTensor has no multi-device execution"), ("keras", "runs on its JAX backend only")]
)
def test_engines_without_data_parallelism_refuse(tmp_path: Path, engine: str, reason: str) -> None:
    """Theano, and Keras on TensorFlow (this suite's Keras engine), refuse train.devices: 2 at compile time,
    saying why."""
    from nnspec.backends import get_backend
    from nnspec.compare.matrix import capability_matrix
    from nnspec.errors import BackendError

    backend = get_backend(engine)
    assert not backend.capabilities().data_parallel
    with pytest.raises(BackendError, match=reason):
        backend.compile(graph_for("mlp", tmp_path, 2, "float32"), device="cpu")
    frame, notes = capability_matrix()
    row = frame[(frame["kind"] == "training") & (frame["item"] == "data parallel")].iloc[0]
    assert row[engine].startswith("no") and row["jax"] == "yes" and row["tensorflow"] == "yes"
    assert any(reason in note for note in notes)


def resume_across(engine: str, spec: str, dtype: str) -> dict[str, float]:
    """One epoch on 2 devices, a checkpoint on disk, one more epoch on 1 device; against 2 epochs on 1 device."""
    import tempfile

    from nnspec.backends import get_backend
    from nnspec.runtime.checkpoints import latest_checkpoint, write_checkpoint

    _setup_devices(engine, 2)
    backend = get_backend(engine)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = small_digits(graph_for(spec, folder, 1, dtype))
        straight = backend.compile(graph_for(spec, folder, 1, dtype), device="cpu", dtype=dtype)
        straight.fit(data, epochs=2, progress=False)
        first = backend.compile(graph_for(spec, folder, 2, dtype), device="cpu", dtype=dtype)
        first.fit(data, epochs=1, progress=False)
        write_checkpoint(folder, first.get_training_state(), {"backend": engine})
        second = backend.compile(graph_for(spec, folder, 1, dtype), device="cpu", dtype=dtype)
        state, _ = latest_checkpoint(folder).read()  # type: ignore[union-attr]
        second.set_training_state(state)
        second.fit(data, epochs=1, progress=False)
        a, b = second.get_training_state(), straight.get_training_state()
        return {
            "difference": largest_difference({**a.weights, **a.state}, {**b.weights, **b.state}),
            "step": float(second.step - straight.step),
            "epochs": float(len(second.history)),
        }


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["jax", "tensorflow", "keras"])
def test_unguarded_epochs_and_train_step_agree(engine: str) -> None:
    """The programs without the divergence guard (``train.on_divergence: continue``) and the ``train_step``
    hook, on 2 devices, give the one-device numbers (the other tests run the guarded default)."""
    dtype = "float32" if engine == "keras" else "float64"
    diffs = run_worker("devices", engine, "resnet", dtype, "1,2", "continue")
    print(f"{engine} unguarded resnet {dtype}: {diffs}")
    assert diffs["2"] <= TOLERANCE[dtype], diffs


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["jax", "tensorflow"])
def test_checkpoint_from_two_devices_resumes_on_one(engine: str) -> None:
    """Training state saved by a 2-device run continues on 1 device; after the second epoch it agrees with a
    1-device run of both epochs within the float64 figure."""
    found = run_worker("resume", engine, "resnet", "float64")
    print(f"{engine} resume 2 -> 1 devices, float64: {found}")
    assert found["step"] == 0 and found["epochs"] == 2
    assert found["difference"] <= TOLERANCE["float64"], found


def free_port() -> int:
    """A TCP port free on localhost now, and its two successors (TensorFlow's two workers)."""
    import socket

    for _ in range(50):
        with socket.socket() as a, socket.socket() as b, socket.socket() as c:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
                c.bind(("127.0.0.1", port + 2))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no free run of ports")


def _cli(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    for name in (
        "XLA_FLAGS",
        "TF_CONFIG",
        "NNSPEC_COORDINATOR",
        "NNSPEC_NUM_PROCESSES",
        "NNSPEC_PROCESS_ID",
        "SLURM_NTASKS",
        "SLURM_PROCID",
    ):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "nnspec", "run", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("engine", ["jax", "tensorflow"])
def test_two_processes_agree_with_one(tmp_path: Path, engine: str, dtype: str) -> None:
    """``nnspec run --coordinator localhost:PORT --num-processes 2 --process-id I`` (JAX's distributed runtime,
    TensorFlow's multi-worker strategy): the weights of the one-process run; only process 0 writes a run directory."""
    from safetensors.numpy import load_file

    (tmp_path / "mlp.yaml").write_text(MLP)
    common = ["mlp.yaml", "--backend", engine, "--dtype", dtype, "-q", "--no-tensorboard"]
    one = _cli([*common, "--out", "one"], tmp_path)
    assert one.wait(timeout=600) == 0, one.stdout.read() if one.stdout else ""
    port = free_port()
    procs = [
        _cli(
            [
                *common,
                "--out",
                f"two-{i}",
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            tmp_path,
        )
        for i in (1, 0)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert not (tmp_path / "two-1").exists() and (tmp_path / "two-0" / "weights.safetensors").is_file()
    assert "run directory" not in outputs[0] and "run directory: two-0" in outputs[1]
    env = json.loads((tmp_path / "two-0" / "env.json").read_text())
    assert env["execution"]["data_parallel"] == "each batch split over 2 CPU devices in 2 processes"
    a, b = (
        load_file(str(tmp_path / "two-0" / "weights.safetensors")),
        load_file(str(tmp_path / "one" / "weights.safetensors")),
    )
    difference = largest_difference(a, b)
    print(f"{engine} 2 processes vs 1, {dtype}: {difference}")
    assert difference <= TOLERANCE[dtype]


def test_cluster_from_flags_environment_and_slurm() -> None:
    """Flags win over NNSPEC_* variables; Slurm's are read only with a coordinator; mistakes are clear errors."""
    from nnspec.backends.tensorflow.engine import tf_config
    from nnspec.errors import NnspecError
    from nnspec.runtime.distributed import Cluster, cluster_from

    assert cluster_from(environ={}) == Cluster(None, 1, 0)
    env = {
        "NNSPEC_COORDINATOR": "node0:1234",
        "NNSPEC_NUM_PROCESSES": "4",
        "NNSPEC_PROCESS_ID": "2",
        "SLURM_NTASKS": "8",
        "SLURM_PROCID": "5",
    }
    assert cluster_from(environ=env) == Cluster("node0:1234", 4, 2)
    assert cluster_from(process_id=3, environ=env) == Cluster("node0:1234", 4, 3)
    assert cluster_from("head:99", environ={"SLURM_NTASKS": "8", "SLURM_PROCID": "5"}) == Cluster("head:99", 8, 5)
    assert cluster_from(environ={"SLURM_NTASKS": "8", "SLURM_PROCID": "5"}) == Cluster(
        None, 1, 0
    )  # a Slurm job step without --coordinator
    with pytest.raises(NnspecError, match="need a coordinator"):
        cluster_from(num_processes=2, process_id=0, environ={})
    with pytest.raises(NnspecError, match="between 0 and 1"):
        cluster_from("h:1", 2, 2, environ={})
    with pytest.raises(NnspecError, match="HOST:PORT"):
        cluster_from("nohostport", 2, 0, environ={})
    assert tf_config(Cluster("localhost:5000", 2, 1), environ={}) == {
        "cluster": {"worker": ["localhost:5001", "localhost:5002"]},  # the coordinator's port stays nnspec's
        "task": {"type": "worker", "index": 1},
    }
    assert tf_config(Cluster("a:1", 2, 0), environ={"NNSPEC_WORKERS": "a:1,b:1"})["cluster"] == {
        "worker": ["a:1", "b:1"]
    }


def test_cli_devices_flag_refused_by_theano(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``nnspec run --devices 2`` overrides train.devices; a backend that cannot split batches says why, without
    a traceback."""
    from nnspec.cli import main as cli

    (tmp_path / "mlp.yaml").write_text(MLP)
    code = cli(
        [
            "run",
            str(tmp_path / "mlp.yaml"),
            "--backend",
            "theano",
            "--devices",
            "2",
            "-q",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code != 0 and "PyTensor has no multi-device execution" in err and "Traceback" not in err
    code = cli(
        [
            "run",
            str(tmp_path / "mlp.yaml"),
            "--backend",
            "jax",
            "--devices",
            "two",
            "-q",
            "--out",
            str(tmp_path / "out2"),
        ]
    )
    err = capsys.readouterr().err
    assert code != 0 and "train.devices" in err and "Traceback" not in err


def main(argv: list[str]) -> int:
    """``python tests/test_data_parallel.py devices ENGINE SPEC DTYPE 1,2,4``: print the differences as JSON."""
    kind, rest = argv[0], argv[1:]
    if kind == "devices":
        engine, spec, dtype, counts, *guard = rest
        print(json.dumps(worker(engine, spec, dtype, [int(c) for c in counts.split(",")], *guard)))
        return 0
    if kind == "resume":
        print(json.dumps(resume_across(*rest)))
        return 0
    if kind == "refusals":
        print(json.dumps(refusals()))
        return 0
    raise SystemExit(f"unknown worker {kind!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
