"""One ``nnspec run`` from first epoch to finished run directory, surviving what can happen on the way.

:func:`train_in_directory` drives :func:`nnspec.runtime.loop.fit` with a hook after every epoch that

* writes ``metrics.csv`` (so a run can be watched and plotted while it trains);
* updates early stopping (``train.early_stopping``) and keeps the best weights when asked to;
* writes a checkpoint when one is due (``train.checkpoint.every``, the last epoch, a new best under
  early stopping, or a stop request) and prunes old ones (``keep``; the best is never pruned);
* ends training after a stop request (SIGINT / SIGTERM, :mod:`nnspec.runtime.interrupts`);
* logs the epoch to TensorBoard (``tensorboard/``, :mod:`nnspec.runtime.tensorboard`) unless told not to.

Then it scores the test split and writes the run's files, ``run.json`` marked complete last. A failure
to write them after training does not lose the model: the weights go to a fallback file that the error
names. A divergence marks the run ``diverged`` and names the last good checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ..errors import DataError, NnspecError, OutputError, TrainingDiverged
from .checkpoints import Checkpoint, find_checkpoint, prune_checkpoints, write_checkpoint
from .early_stopping import EarlyStopping
from .history import write_metrics
from .interrupts import StopRequests
from .loop import fit
from .run_manifest import RUN_FILES, write_in_run
from .run_status import COMPLETE, RunDirectory
from .tensorboard import RunLog

if TYPE_CHECKING:
    import pandas as pd

    from ..backends.base import CompiledModel
    from ..data.dataset import Dataset


@dataclass
class RunOutcome:
    """How a run ended: ``complete`` or ``interrupted`` (with the signal's exit code)."""

    status: str
    exit_code: int
    history: "pd.DataFrame | None"
    test: Mapping[str, float] | None = None
    checkpoint: Checkpoint | None = None
    stopped_early: int = 0
    signal_name: str = ""


def rescue_path(name: str, backend: str) -> Path:
    """Where weights go when the run directory cannot take them: the temporary folder, a unique name."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.gettempdir()) / f"nnspec-rescued-{name}-{backend}-{stamp}-{os.getpid()}.safetensors"


class _EpochHook:
    """The per-epoch work of a run (see the module docstring); ``fit`` calls it after each epoch."""

    def __init__(
        self,
        model: "CompiledModel",
        run: RunDirectory,
        stops: StopRequests,
        early: EarlyStopping | None,
        best_weights: dict[str, Any] | None,
        log: RunLog | None = None,
    ):
        self.model, self.run, self.stops, self.early, self.log = model, run, stops, early, log
        self.train = model.graph.train
        self.best_weights = best_weights
        self.last_checkpoint: Checkpoint | None = None
        self.stopped_early = 0

    def record(self) -> dict[str, Any]:
        """What a checkpoint records beside the arrays."""
        return {
            "backend": self.model.backend.name,
            "dtype": self.model.dtype,
            "spec": self.model.graph.name,
            "early_stopping": self.early.to_json() if self.early else None,
        }

    def checkpoint(self) -> Checkpoint | None:
        """Write a checkpoint of the model's state now and prune older ones (never one holding NaN or infinity)."""
        ts = self.model.get_training_state()
        if not all(np.isfinite(a).all() for group in (ts.weights, ts.state, ts.slots) for a in group.values()):
            # a finite loss whose update overflowed: no checkpoint of it; the guard stops at the next step
            return self.last_checkpoint
        self.last_checkpoint = write_checkpoint(self.run, ts, self.record())
        protect = {self.early.best_epoch} if self.early and self.early.best_epoch else set()
        prune_checkpoints(self.run.path, self.train.checkpoint.keep, protect)
        return self.last_checkpoint

    def __call__(self, row: dict[str, float]) -> bool:
        epoch = int(row["epoch"])
        history = self.model.history
        write_in_run(self.run.path, "metrics.csv", lambda tmp: write_metrics(history, tmp))
        if self.log is not None:
            self.log.epoch(row, self.model.step)
        improved = stop = False
        if self.early is not None:
            improved, stop = self.early.update(row)
            if stop:
                self.stopped_early = epoch
            if improved and self.early.config.restore_best:
                self.best_weights = self.model.get_weights()
        every = self.train.checkpoint.every
        due = bool(every) and (epoch % every == 0 or epoch >= self.train.epochs or stop or improved)
        if due or (self.stops.requested is not None and epoch < self.train.epochs):
            self.checkpoint()
        self.run.set_status("running", epochs_done=epoch, checkpoint=_relative(self.last_checkpoint, self.run.path))
        return stop or self.stops.requested is not None


def _relative(checkpoint: Checkpoint | None, root: Path) -> str | None:
    return None if checkpoint is None else os.fspath(checkpoint.path.relative_to(root))


def resume_early_stopping(
    model: "CompiledModel", run_path: Path, early_state: Mapping[str, Any] | None, source: Path | None = None
) -> dict[str, Any] | None:
    """Check a resumed run's early-stopping state and read the best weights it kept (None when it keeps none).

    Called before anything in the run directory changes, so that a malformed state or a damaged best
    checkpoint refuses the resume instead of failing after it started. ``source`` (the checkpoint the state
    comes from) is named in the error.
    """
    config = model.graph.train.early_stopping
    if config is None:
        return None
    try:
        early = EarlyStopping.from_json(config, early_state)
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise DataError(f"{source or run_path}: malformed early-stopping state ({exc})") from None
    if not (config.restore_best and early.best_epoch):
        return None
    best = find_checkpoint(run_path, early.best_epoch)
    return best.read()[0].all_weights() if best is not None else None


def train_in_directory(
    model: "CompiledModel",
    dataset: "Dataset",
    run: RunDirectory,
    *,
    progress: Any = None,
    early_state: Mapping[str, Any] | None = None,
    last_checkpoint: Checkpoint | None = None,
    finish: Callable[["pd.DataFrame", Mapping[str, float]], Mapping[str, Any]] | None = None,
    stops: StopRequests | None = None,
    tensorboard: bool = True,
    best_weights: Mapping[str, Any] | None = None,
) -> RunOutcome:
    """Train ``model`` up to ``train.epochs`` epochs in the claimed run directory ``run``; see the module docstring.

    ``early_state`` and ``last_checkpoint`` continue a resumed run. ``finish(history, test)`` gives the
    ``env.json`` record. ``stops`` (default: a new one, installed for the training only) catches SIGINT /
    SIGTERM; a caller that installs it over more (compiling, writing) passes its own. ``tensorboard``: log
    the epochs to ``RUN_DIR/tensorboard/`` (:class:`~nnspec.runtime.tensorboard.RunLog`). Raises
    :class:`TrainingDiverged` (run marked ``diverged``) and :class:`OutputError` (the results could not be
    written; the weights were rescued). ``best_weights``: those :func:`resume_early_stopping` read (else they
    are read here).
    """
    train = model.graph.train
    early = EarlyStopping.from_json(train.early_stopping, early_state) if train.early_stopping is not None else None
    if best_weights is None and early_state:
        best_weights = resume_early_stopping(model, run.path, early_state)
    done = 0 if model.history is None else len(model.history)
    remaining = train.epochs - done
    stops = stops if stops is not None else StopRequests()
    will_train = remaining > 0 and not (early is not None and early.stopped_epoch)
    with stops:
        hook = _EpochHook(
            model,
            run,
            stops,
            early,
            None if best_weights is None else dict(best_weights),
            RunLog(run.path, model.graph, done) if tensorboard and will_train else None,
        )
        hook.last_checkpoint = last_checkpoint
        run.set_status("running", epochs_done=done, epochs_planned=train.epochs)
        try:
            if will_train:
                fit(model, dataset, epochs=remaining, progress=progress, on_epoch=hook)
        except TrainingDiverged as exc:
            checkpoint = os.fspath(hook.last_checkpoint.path) if hook.last_checkpoint else None
            run.set_status("diverged", message=str(exc))
            raise TrainingDiverged(exc.epoch, exc.step, exc.global_step, exc.loss, checkpoint) from None
        except OSError as exc:
            if isinstance(exc, NnspecError):
                raise
            raise _epoch_write_failed(model, run, exc, hook.last_checkpoint) from None
        finally:
            if hook.log is not None:
                hook.log.close()
        done = 0 if model.history is None else len(model.history)
        if stops.requested is not None and done < train.epochs and not hook.stopped_early:
            run.set_status("interrupted", signal=stops.signal_name)
            return RunOutcome(
                "interrupted",
                stops.exit_code,
                model.history,
                checkpoint=hook.last_checkpoint,
                signal_name=stops.signal_name,
            )
    if early is not None and hook.best_weights is not None:
        model.set_weights(hook.best_weights)
    test = model.evaluate(dataset.x_test, dataset.y_test)
    history = model.history
    env = dict(finish(history, test)) if finish else {}
    if early is not None and train.early_stopping is not None:
        restored = bool(train.early_stopping.restore_best and hook.best_weights is not None)
        env["early_stopping"] = {**early.to_json(), "restored_best": restored}
    _write_results(model, run, history, test, env)
    run.set_status(
        COMPLETE, epochs_done=0 if history is None else len(history), stopped_early=hook.stopped_early or None
    )
    return RunOutcome(COMPLETE, 0, history, test, hook.last_checkpoint, hook.stopped_early)


def _write_results(
    model: "CompiledModel",
    run: RunDirectory,
    history: "pd.DataFrame",
    test: Mapping[str, float],
    env: Mapping[str, Any],
) -> None:
    """Write the run's files; on failure rescue the weights to a fallback file and raise :class:`OutputError`."""
    from ..semantics.weights import save_weights
    from .rundir import write_run

    try:
        run.declare(*RUN_FILES)
        write_run(run.path, model, history, test, env)
    except OSError as exc:
        weights = model.get_weights()
        for target in (
            rescue_path(model.graph.name, model.backend.name),
            Path.cwd() / rescue_path(model.graph.name, model.backend.name).name,
        ):
            try:
                save_weights(target, weights, model.graph)
            except OSError:
                continue
            try:
                run.set_status("failed", message=f"could not write the results: {exc}", rescued=os.fspath(target))
            except OSError:
                pass
            raise OutputError(
                f"{run.path}: could not write the run's files ({exc.strerror or exc}); the trained weights were saved "
                f"to {target}",
                os.fspath(target),
            ) from None
        raise OutputError(
            f"{run.path}: could not write the run's files ({exc.strerror or exc}), nor a fallback weights file in "
            f"{tempfile.gettempdir()} or {Path.cwd()}"
        ) from None


def _epoch_write_failed(
    model: "CompiledModel", run: RunDirectory, exc: OSError, last: Checkpoint | None
) -> OutputError:
    """A checkpoint or another per-epoch file could not be written (a full disk): the trained weights rescued to a
    fallback file (as :func:`_write_results` does), the run marked ``failed``; the error to raise (exit 4)."""
    from ..semantics.weights import save_weights

    done = 0 if model.history is None else len(model.history)
    what = f"{exc.filename} " if exc.filename else ""
    kept = f"the last checkpoint, {last.path.name}, is intact" if last is not None else "no checkpoint was kept"
    problem = f"could not write {what}after epoch {done} ({exc.strerror or exc})"
    resume = f"free some space and resume with: nnspec run --resume {run.path}"
    weights = model.get_weights()
    for target in (
        rescue_path(model.graph.name, model.backend.name),
        Path.cwd() / rescue_path(model.graph.name, model.backend.name).name,
    ):
        try:
            save_weights(target, weights, model.graph)
        except OSError:
            continue
        try:
            run.set_status("failed", message=problem, rescued=os.fspath(target), epochs_done=done)
        except OSError:
            pass
        return OutputError(
            f"{run.path}: {problem}; the trained weights were saved to {target}; {kept}: {resume}", os.fspath(target)
        )
    return OutputError(
        f"{run.path}: {problem}, nor a fallback weights file in {tempfile.gettempdir()} or {Path.cwd()}; {kept}: "
        f"{resume}"
    )
