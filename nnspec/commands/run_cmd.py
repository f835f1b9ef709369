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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runtime.distributed import exit_codes
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
    group.add_argument(
        "--start-timeout",
        default=None,
        metavar="SECONDS",
        help="how long the processes wait for one another to start and agree (default 120; env NNSPEC_START_TIMEOUT)",
    )


@exit_codes
def run(args: argparse.Namespace) -> int:
    """Load, claim the run directory, compile, train (with checkpoints), evaluate, and write the run.

    The run directory changes only once the model is compiled (an existing run replaced by ``--overwrite``
    stays as it was until then); see :mod:`nnspec.runtime.run_status`.
    """
    from ..errors import NnspecError

    if args.epochs is not None and args.epochs < 1:
        raise NnspecError(f"--epochs must be a positive integer; got {args.epochs}")
    from ..runtime.distributed import cluster_from

    cluster = cluster_from(
        getattr(args, "coordinator", None),
        getattr(args, "num_processes", None),
        getattr(args, "process_id", None),
        start_timeout=getattr(args, "start_timeout", None),
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
    from ..runtime.rundir import default_run_dir, write_spec

    graph = load_graph(args, _overrides(args))
    backend_name = canonical_name(args.backend or "jax")
    if not cluster.primary:
        dataset, backend = _prepare(graph, backend_name)
        _start_cluster(cluster, backend_name, graph, dataset, args)
        return _train_elsewhere(args, graph, dataset, backend, _Resume())
    out = args.out or default_run_dir(graph, backend_name)
    with _stop_requests() as stops, claim(out, overwrite=args.overwrite) as run_dir:
        dataset, backend = _prepare(graph, backend_name)
        _start_cluster(cluster, backend_name, graph, dataset, args)
        model, setup_seconds = _compile(args, graph, backend)
        if _stopped_before_start(stops, run_dir):
            return stops.exit_code
        run_dir.set_status(
            "running", backend=backend.name, dtype=graph.dtype, epochs_done=0, epochs_planned=graph.train.epochs
        )
        write_spec(run_dir.path, graph)
        return _train(args, graph, dataset, model, setup_seconds, run_dir, _Resume(), stops)


@dataclass
class _Resume:
    """What a resumed run continues from (all empty for a new run): read and checked before the folder changes."""

    state: Any = None
    early_state: Any = None
    checkpoint: Any = None
    best_weights: Any = None
    saved_by: str = ""


#: What the stop-request message says while a run is being prepared (its folder not yet changed).
_BEFORE_START = "stopping before training starts; the run directory stays as it was"
_DURING_TRAINING = "stopping after the current epoch to save the training state"


def _stop_requests() -> Any:
    """SIGINT / SIGTERM as stop requests from the claim on: before the commit they cancel the start."""
    from ..runtime.interrupts import StopRequests

    return StopRequests(_BEFORE_START)


def _stopped_before_start(stops: Any, run_dir: Any) -> bool:
    """Whether a stop was requested while the run was prepared: then the claim is rolled back and reported."""
    if stops.requested is None:
        stops.message = _DURING_TRAINING
        return False
    run_dir.rollback()
    print(
        f"nnspec run: {stops.signal_name} before training started; {run_dir.path} was left as it was",
        file=sys.stderr,
    )
    return True


def _epochs_override(args: argparse.Namespace) -> list[str]:
    return [f"train.epochs={args.epochs}"] if args.epochs is not None else []


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--epochs`` and ``--devices`` as ``--set`` overrides (checked like the spec's own values)."""
    devices = getattr(args, "devices", None)
    return _epochs_override(args) + ([f"train.devices={devices}"] if devices is not None else [])


def _start_cluster(
    cluster: Any, backend_name: str, graph: Any, dataset: Any, args: argparse.Namespace, resume: Any = None
) -> None:
    """Start the engine's multi-process runtime for ``cluster`` once every process has checked in with the same spec,
    data and settings (nothing for one process; docs/distributed.md)."""
    from ..backends import backend_class
    from ..runtime.distributed import identity, start

    checkpoint = getattr(resume, "checkpoint", None)
    settings = {"device": args.device, "resumed from epoch": getattr(checkpoint, "epoch", None)}
    start(cluster, backend_class(backend_name), identity(graph, dataset, settings) if cluster.multi else None)


def _train_elsewhere(args: argparse.Namespace, graph: Any, dataset: Any, backend: Any, resume: "_Resume") -> int:
    """A process other than 0: train in step with the others into a temporary folder, removed at the end."""
    import shutil
    import tempfile

    from ..runtime.interrupts import StopRequests
    from ..runtime.run_status import claim

    scratch = Path(tempfile.mkdtemp(prefix="nnspec-worker-"))
    args.silent = True
    try:
        with claim(scratch / "run") as run_dir, StopRequests() as stops:
            model, setup_seconds = _compile(args, graph, backend, resume.state)
            run_dir.set_status("running", backend=backend.name, dtype=graph.dtype, epochs_planned=graph.train.epochs)
            return _train(args, graph, dataset, model, setup_seconds, run_dir, resume, stops)
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


def _compile(args: argparse.Namespace, graph: Any, backend: Any, state: Any = None) -> tuple[Any, float]:
    """Compile ``graph`` on ``backend`` and restore ``state`` (a training state) into it; returns the model and the
    seconds it took."""
    start = time.perf_counter()
    model = backend.compile(graph, device=args.device, dtype=graph.dtype)
    setup_seconds = time.perf_counter() - start
    if state is not None:
        model.set_training_state(state)
    return model, setup_seconds


def _resume_graph(args: argparse.Namespace, folder: Path) -> Any:
    """The spec of the run in ``folder`` with ``--epochs``, ``--devices``, ``--set`` and ``--dtype`` applied."""
    from .. import load

    graph = load(str(folder / "spec.yaml"), overrides=[*args.overrides, *_overrides(args)])
    return graph.replace(dtype=args.dtype) if args.dtype else graph


def _read_resume(checkpoint: Any) -> "_Resume":
    """The training state and early-stopping state of ``checkpoint`` (None: start from the first epoch)."""
    if checkpoint is None:
        return _Resume()
    state, saved = checkpoint.read()
    return _Resume(state, saved.get("early_stopping"), checkpoint, saved_by=str(saved.get("backend")))


def _check_restored(model: Any, state: Any, checkpoint: Any) -> None:
    """The model continues where the checkpoint says: its epochs and optimiser step."""
    from ..errors import DataError

    epochs = 0 if model.history is None else len(model.history)
    if epochs != checkpoint.epoch or state.epochs_done != checkpoint.epoch or model.step != state.step:
        raise DataError(
            f"{checkpoint.path}: holds {epochs} epochs of history and step {state.step}, but its name says "
            f"{checkpoint.epoch} epochs; not resuming from it"
        )


def _resume(args: argparse.Namespace, cluster: Any = None) -> int:
    """``--resume RUN_DIR``: the run's spec (with --epochs / --set), its latest checkpoint, any backend.

    Everything that can refuse the resume (the spec, the device, the engine, the checkpoint, a stop request)
    happens before the run directory changes; until then a failure leaves it exactly as it was.
    """
    from ..backends import canonical_name
    from ..errors import NnspecError
    from ..runtime.checkpoints import latest_checkpoint
    from ..runtime.run_status import COMPLETE, claim, read_record, read_status
    from ..runtime.training_run import resume_early_stopping

    if args.spec is not None:
        raise NnspecError("--resume takes the spec from the run directory; leave SPEC out")
    if args.out is not None or args.overwrite:
        raise NnspecError("--resume continues in the run directory itself; --out and --overwrite do not apply")
    folder = Path(args.resume)
    if not (folder / "spec.yaml").is_file():
        raise NnspecError(
            f"{folder}: not a run directory (no spec.yaml); --resume takes a folder written by nnspec run"
        )
    status = read_status(folder)
    if cluster is not None and not cluster.primary:
        graph = _resume_graph(args, folder)
        backend_name = canonical_name(args.backend or read_record(folder).get("backend") or "jax")
        resume = _read_resume(latest_checkpoint(folder))
        dataset, backend = _prepare(graph, backend_name)
        _start_cluster(cluster, backend_name, graph, dataset, args, resume)
        return _train_elsewhere(args, graph, dataset, backend, resume)
    with _stop_requests() as stops, claim(folder, resume=True) as run_dir:
        graph = _resume_graph(args, folder)
        backend_name = canonical_name(args.backend or run_dir.record.get("backend") or "jax")
        checkpoint = latest_checkpoint(folder)
        done = checkpoint.epoch if checkpoint else 0
        if status == COMPLETE and done >= graph.train.epochs:
            raise NnspecError(
                f"{folder}: this run is complete ({done} epochs); to train it further, pass --epochs N with N > {done}"
            )
        dataset, backend = _prepare(graph, backend_name)
        resume = _read_resume(checkpoint)
        if cluster is not None:
            _start_cluster(cluster, backend_name, graph, dataset, args, resume)
        model, setup_seconds = _compile(args, graph, backend, resume.state)
        if checkpoint is not None:
            _check_restored(model, resume.state, checkpoint)
        resume.best_weights = resume_early_stopping(
            model, folder, resume.early_state, None if checkpoint is None else checkpoint.path
        )
        if _stopped_before_start(stops, run_dir):
            return stops.exit_code
        _say_resuming(args, folder, resume, graph)
        run_dir.set_status(
            "running", backend=backend.name, dtype=graph.dtype, epochs_planned=graph.train.epochs, resumed_from=done
        )
        return _train(args, graph, dataset, model, setup_seconds, run_dir, resume, stops)


def _say_resuming(args: argparse.Namespace, folder: Path, resume: "_Resume", graph: Any) -> None:
    if args.quiet:
        return
    checkpoint = resume.checkpoint
    if checkpoint is None:
        print(f"nnspec run: {folder} has no checkpoint yet; starting it from the first epoch", file=sys.stderr)
        return
    print(
        f"nnspec run: resuming {folder} from {checkpoint.path.name} ({checkpoint.epoch} of {graph.train.epochs} "
        f"epochs, saved by {resume.saved_by})",
        file=sys.stderr,
    )


def _train(
    args: argparse.Namespace,
    graph: Any,
    dataset: Any,
    model: Any,
    setup_seconds: float,
    run_dir: Any,
    resume: "_Resume",
    stops: Any,
) -> int:
    """Train the compiled ``model`` in the committed ``run_dir`` (signals caught by ``stops``) and report."""
    from ..runtime.env import environment
    from ..runtime.training_run import train_in_directory

    backend = model.backend
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
        early_state=resume.early_state,
        last_checkpoint=resume.checkpoint,
        finish=finish,
        stops=stops,
        tensorboard=getattr(args, "tensorboard", True),
        best_weights=resume.best_weights,
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
