"""``nnspec run SPEC`` / ``nnspec run --resume RUN_DIR``: train on one backend into a run directory (docs/cli.md).

``--devices N|all`` splits each batch over N local devices (``train.devices``); ``--coordinator HOST:PORT
--num-processes P --process-id I`` (or ``NNSPEC_COORDINATOR`` / ``NNSPEC_NUM_PROCESSES`` /
``NNSPEC_PROCESS_ID``, or Slurm's ``SLURM_NTASKS`` / ``SLURM_PROCID``) makes this process one of P
(docs/distributed.md). Every process trains; only process 0 writes the run directory and checkpoints: the
others keep the run's bookkeeping in a temporary folder removed at the end, and print nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .model_options import add_spec_arguments, load_graph


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec run``."""
    add_spec_arguments(parser, spec_optional=True, backend_default=None)
    parser.add_argument(
        "--epochs", type=int, default=None, metavar="N", help="number of epochs in all (same as --set train.epochs=N)"
    )
    parser.add_argument(
        "--out", "-o", default=None, metavar="DIR", help="run directory (default: runs/<name>/<backend>-<timestamp>/)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    parser.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint (its spec; --backend may differ)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output; print only the result")
    parser.add_argument(
        "--no-tensorboard",
        dest="tensorboard",
        action="store_false",
        help="do not write TensorBoard event files into RUN_DIR/tensorboard/",
    )
    group = parser.add_argument_group("several devices and machines (docs/distributed.md)")
    group.add_argument(
        "--devices",
        default=None,
        metavar="N|all",
        help="local devices each batch is split over (same as --set train.devices=N)",
    )
    group.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="address of process 0 of a multi-process run (env NNSPEC_COORDINATOR)",
    )
    group.add_argument(
        "--num-processes",
        type=int,
        default=None,
        metavar="P",
        help="processes in the run (env NNSPEC_NUM_PROCESSES, else SLURM_NTASKS)",
    )
    group.add_argument(
        "--process-id",
        type=int,
        default=None,
        metavar="I",
        help="this process's number, from 0 (env NNSPEC_PROCESS_ID, else SLURM_PROCID)",
    )


def run(args: argparse.Namespace) -> int:
    """Load, claim the run directory, compile, train (with checkpoints), evaluate, and write the run."""
    from ..errors import NnspecError

    if args.epochs is not None and args.epochs < 1:
        raise NnspecError(f"--epochs must be a positive integer; got {args.epochs}")
    from ..runtime.distributed import cluster_from

    cluster = cluster_from(
        getattr(args, "coordinator", None), getattr(args, "num_processes", None), getattr(args, "process_id", None)
    )
    if not cluster.primary:
        args.quiet = True
        args.tensorboard = False
    if args.resume is not None:
        return _resume(args, cluster)
    if args.spec is None:
        raise NnspecError("nnspec run needs a SPEC file, or --resume RUN_DIR")
    from ..backends import canonical_name
    from ..runtime.run_status import claim
    from ..runtime.rundir import default_run_dir

    graph = load_graph(args, _overrides(args))
    backend_name = canonical_name(args.backend or "jax")
    _start_cluster(cluster, backend_name)
    dataset, backend = _prepare(graph, backend_name)
    if not cluster.primary:
        return _train_elsewhere(args, graph, dataset, backend, None)
    run_dir = claim(args.out or default_run_dir(graph, backend.name), overwrite=args.overwrite)
    from ..runtime.interrupts import StopRequests
    from ..runtime.rundir import write_spec

    with run_dir, StopRequests() as stops:
        write_spec(run_dir.path, graph)
        run_dir.set_status(
            "running", backend=backend.name, dtype=graph.dtype, epochs_done=0, epochs_planned=graph.train.epochs
        )
        return _train(args, graph, dataset, backend, run_dir, None, stops)


def _epochs_override(args: argparse.Namespace) -> list[str]:
    return [f"train.epochs={args.epochs}"] if args.epochs is not None else []


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--epochs`` and ``--devices`` as ``--set`` overrides (checked like the spec's own values)."""
    devices = getattr(args, "devices", None)
    return _epochs_override(args) + ([f"train.devices={devices}"] if devices is not None else [])


def _start_cluster(cluster: Any, backend_name: str) -> None:
    """Start the engine's multi-process runtime for ``cluster`` (nothing for one process)."""
    from ..backends import backend_class
    from ..runtime.distributed import start

    start(cluster, backend_class(backend_name))


def _train_elsewhere(args: argparse.Namespace, graph: Any, dataset: Any, backend: Any, resume: Any) -> int:
    """A process other than 0: train in step with the others into a temporary folder, removed at the end."""
    import shutil
    import tempfile

    from ..runtime.interrupts import StopRequests
    from ..runtime.run_status import claim

    scratch = Path(tempfile.mkdtemp(prefix="nnspec-worker-"))
    args.silent = True
    try:
        with claim(scratch / "run") as run_dir, StopRequests() as stops:
            return _train(args, graph, dataset, backend, run_dir, resume, stops)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _prepare(graph: Any, backend_name: str) -> tuple[Any, Any]:
    """The data set (loaded before the engine is imported: data problems show at once) and the backend."""
    from ..backends import get_backend
    from ..compiler.memory import require_fits
    from ..data import load_dataset

    require_fits(graph)
    dataset = load_dataset(graph)
    return dataset, get_backend(backend_name)


def _resume(args: argparse.Namespace, cluster: Any = None) -> int:
    """``--resume RUN_DIR``: the run's spec (with --epochs / --set), its latest checkpoint, any backend."""
    from .. import load
    from ..backends import canonical_name
    from ..errors import NnspecError
    from ..runtime.checkpoints import latest_checkpoint
    from ..runtime.run_status import COMPLETE, claim, read_record, read_status

    if args.spec is not None:
        raise NnspecError("--resume takes the spec from the run directory; leave SPEC out")
    if args.out is not None or args.overwrite:
        raise NnspecError("--resume continues in the run directory itself; --out and --overwrite do not apply")
    folder = Path(args.resume)
    spec = folder / "spec.yaml"
    if not spec.is_file():
        raise NnspecError(
            f"{folder}: not a run directory (no spec.yaml); --resume takes a folder written by nnspec run"
        )
    status = read_status(folder)
    from ..runtime.interrupts import StopRequests

    if cluster is not None and not cluster.primary:
        graph = load(str(spec), overrides=[*args.overrides, *_overrides(args)])
        if args.dtype:
            graph = graph.replace(dtype=args.dtype)
        backend_name = canonical_name(args.backend or read_record(folder).get("backend") or "jax")
        _start_cluster(cluster, backend_name)
        checkpoint = latest_checkpoint(folder)
        dataset, backend = _prepare(graph, backend_name)
        state = checkpoint.read()[0] if checkpoint is not None else None
        return _train_elsewhere(
            args,
            graph,
            dataset,
            backend,
            (state, None if checkpoint is None else checkpoint.read()[1].get("early_stopping"), None),
        )
    with claim(folder, resume=True) as run_dir, StopRequests() as stops:
        graph = load(str(spec), overrides=[*args.overrides, *_overrides(args)])
        if args.dtype:
            graph = graph.replace(dtype=args.dtype)
        backend_name = canonical_name(args.backend or run_dir.record.get("backend") or "jax")
        if cluster is not None:
            _start_cluster(cluster, backend_name)
        checkpoint = latest_checkpoint(folder)
        done = checkpoint.epoch if checkpoint else 0
        if status == COMPLETE and done >= graph.train.epochs:
            raise NnspecError(
                f"{folder}: this run is complete ({done} epochs); to train it further, pass --epochs N with N > {done}"
            )
        dataset, backend = _prepare(graph, backend_name)
        state, early_state = None, None
        if checkpoint is not None:
            state, saved = checkpoint.read()
            early_state = saved.get("early_stopping")
            if not args.quiet:
                print(
                    f"nnspec run: resuming {folder} from {checkpoint.path.name} ({done} of {graph.train.epochs} "
                    f"epochs, saved by {saved.get('backend')})",
                    file=sys.stderr,
                )
        elif not args.quiet:
            print(f"nnspec run: {folder} has no checkpoint yet; starting it from the first epoch", file=sys.stderr)
        run_dir.set_status(
            "running", backend=backend.name, dtype=graph.dtype, epochs_planned=graph.train.epochs, resumed_from=done
        )
        _remove_results(folder)
        return _train(args, graph, dataset, backend, run_dir, (state, early_state, checkpoint), stops)


def _remove_results(folder: Path) -> None:
    """Remove the results of an earlier completion (a complete run resumed for more epochs): they would be stale."""
    from ..runtime.run_status import RUN_FILES

    for name in RUN_FILES:
        if name not in ("spec.yaml", "metrics.csv"):
            (folder / name).unlink(missing_ok=True)


def _train(
    args: argparse.Namespace, graph: Any, dataset: Any, backend: Any, run_dir: Any, resume: Any, stops: Any
) -> int:
    """Compile, train in ``run_dir`` (signals caught by ``stops``) and report; returns the exit code."""
    from ..runtime.env import environment
    from ..runtime.training_run import train_in_directory

    start = time.perf_counter()
    model = backend.compile(graph, device=args.device, dtype=graph.dtype)
    setup_seconds = time.perf_counter() - start
    early_state, checkpoint = None, None
    if resume is not None:
        state, early_state, checkpoint = resume
        if state is not None:
            model.set_training_state(state)
    if not args.quiet:
        print(
            f"nnspec run: {graph.name} on {backend.name} ({model.device}, {model.dtype}): "
            f"{len(dataset.x_train)} train / {len(dataset.x_val)} validation / {len(dataset.x_test)} test examples -> "
            f"{run_dir.path}",
            file=sys.stderr,
        )

    def finish(history: Any, test: Any) -> dict[str, Any]:
        env = environment(model)
        env["setup_seconds"] = setup_seconds
        env["train_seconds"] = float(history["seconds"].sum()) if history is not None else 0.0
        env["data"] = {
            "dataset": dataset.name,
            "train": len(dataset.x_train),
            "validation": len(dataset.x_val),
            "test": len(dataset.x_test),
        }
        return env

    outcome = train_in_directory(
        model,
        dataset,
        run_dir,
        progress=False if args.quiet else None,
        early_state=early_state,
        last_checkpoint=checkpoint,
        finish=finish,
        stops=stops,
        tensorboard=getattr(args, "tensorboard", True),
    )
    if getattr(args, "silent", False):
        return outcome.exit_code
    if outcome.status != "complete":
        done = 0 if outcome.history is None else len(outcome.history)
        print(
            f"nnspec run: {outcome.signal_name or 'stopped'} after epoch {done}/{graph.train.epochs}; state saved; "
            f"resume with: nnspec run --resume {run_dir.path}",
            file=sys.stderr,
        )
        return outcome.exit_code
    if outcome.stopped_early and not args.quiet:
        print(
            f"nnspec run: early stopping after epoch {outcome.stopped_early} ({graph.train.early_stopping.monitor} "
            "did not improve)",
            file=sys.stderr,
        )
    print(f"run directory: {run_dir.path}")
    test = outcome.test or {}
    print(f"test: loss {test.get('loss', float('nan')):.4f}  accuracy {test.get('accuracy', float('nan')):.4f}")
    return 0
