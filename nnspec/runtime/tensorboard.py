"""TensorBoard event files for a run: ``<run dir>/tensorboard/``.

Written with TensorBoard's own writer and protocol buffers (``tensorboard`` package, no TensorFlow):

* per epoch (step = epoch number): one scalar per ``metrics.csv`` column (``loss``, ``accuracy``,
  ``val_loss``, ``val_accuracy``, ``seconds``; the validation ones only when the run has a validation
  split) and ``learning_rate``, the rate of the schedule at the optimiser step the next update would
  take (as Keras's TensorBoard callback reports it);
* once, at step 0: ``summary``, the layer table of ``nnspec summary``, as text.

A resumed run continues in the same folder with a new event file. The earlier files may hold epochs
that the run now trains again (those after the checkpoint it resumed from), which TensorBoard would show
twice: so the new file starts with the earlier files' events up to the checkpoint's epoch, read with
TensorBoard's own loader, and the earlier files are then removed.
"""

from __future__ import annotations

import errno
import math
import os
import sys
import time
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from ..compiler.ir import Graph, TrainConfig

#: The folder of a run directory that holds the event files.
FOLDER = "tensorboard"
#: The per-epoch scalars: the metrics.csv columns (the epoch is the step) and the learning rate.
SCALARS: tuple[str, ...] = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds", "learning_rate")
#: Scalars left out when NaN: a run without a validation split has none.
OPTIONAL_SCALARS: frozenset[str] = frozenset({"val_loss", "val_accuracy"})
#: The tag of the text summary.
SUMMARY_TAG = "summary"


def _use_tensorboard_without_tensorflow() -> None:
    """Make TensorBoard's compatibility layer take its built-in TensorFlow stub (enough for local event
    files) instead of importing TensorFlow, unless TensorFlow is loaded already. ``tensorboard.compat``
    looks for the marker module ``tensorboard.compat.notf`` for exactly this choice."""
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


def _write_errors() -> tuple[type[BaseException], ...]:
    """What a failed write raises: OSError, the file layer's error (TensorBoard's stub's or TensorFlow's), or
    UnicodeEncodeError for a run folder whose path is not valid UTF-8 (TensorBoard's file layer takes UTF-8 only)."""
    errors: list[type[BaseException]] = [OSError, UnicodeEncodeError]
    stub = sys.modules.get("tensorboard.compat.tensorflow_stub.errors")
    if stub is not None:
        errors.append(stub.OpError)
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is not None and hasattr(tensorflow, "errors"):
        errors.append(tensorflow.errors.OpError)
    return tuple(errors)


def learning_rate_at(train: "TrainConfig", step: int) -> float:
    """The scheduled learning rate at optimiser step ``step``, computed on the host in float64."""
    from ..semantics.numpy_ops import NumpyOps
    from ..semantics.schedules import learning_rate

    return float(learning_rate(NumpyOps("float64"), train.schedule, train.optimizer.learning_rate, int(step)))


def event_files(folder: str | os.PathLike) -> list[Path]:
    """The TensorBoard event files in ``folder``, oldest first (none when it does not exist; links are no event
    files: nnspec never reads, merges or removes another run's files through one)."""
    path = Path(folder)
    if not path.is_dir():
        return []
    return sorted(p for p in path.glob("events.out.tfevents.*") if p.is_file() and not p.is_symlink())


class TensorBoardLog:
    """One event file in ``folder`` (created when absent), written through TensorBoard's ``EventFileWriter``."""

    def __init__(self, folder: str | os.PathLike):
        _use_tensorboard_without_tensorflow()
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.folder = Path(folder)
        self._writer = EventFileWriter(os.fspath(self.folder))

    def copy_from(self, path: str | os.PathLike, last_step: int) -> None:
        """Copy the summaries of event file ``path`` up to step ``last_step`` into this file, as they were."""
        from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

        for event in LegacyEventFileLoader(os.fspath(path)).Load():
            if event.HasField("summary") and event.step <= last_step:
                self._writer.add_event(event)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One scalar summary per ``tag: value``, at ``step``."""
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.scalar.metadata import create_summary_metadata
        from tensorboard.util.tensor_util import make_tensor_proto

        summary = Summary(
            value=[
                Summary.Value(
                    tag=tag,
                    tensor=make_tensor_proto(float(value), dtype="float32"),
                    metadata=create_summary_metadata(display_name=tag, description=""),
                )
                for tag, value in values.items()
            ]
        )
        self._add_summary(summary, step)

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        """A text summary (Markdown, as TensorBoard's text dashboard renders it) at ``step``."""
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.text.metadata import create_summary_metadata
        from tensorboard.util.tensor_util import make_tensor_proto

        value = Summary.Value(
            tag=tag,
            tensor=make_tensor_proto(markdown.encode("utf-8"), dtype="string"),
            metadata=create_summary_metadata(display_name=tag, description=""),
        )
        self._add_summary(Summary(value=[value]), step)

    def flush(self) -> None:
        """Write what is queued to the file."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()

    def _add_summary(self, summary: Any, step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self._add(Event(step=int(step), summary=summary))

    def _add(self, event: Any) -> None:
        event.wall_time = time.time()
        self._writer.add_event(event)


def epoch_scalars(row: Mapping[str, float], learning_rate: float) -> dict[str, float]:
    """The scalars of one epoch's ``metrics.csv`` row and its learning rate (see :data:`SCALARS`)."""
    values = {name: float(row[name]) for name in SCALARS if name in row}
    values["learning_rate"] = float(learning_rate)
    return {name: value for name, value in values.items() if not (name in OPTIONAL_SCALARS and math.isnan(value))}


def summary_markdown(graph: "Graph") -> str:
    """The layer table of ``nnspec summary``, as a Markdown code block (TensorBoard renders text as Markdown)."""
    from ..compiler.summary import format_summary

    return f"```\n{format_summary(graph)}\n```"


class RunLog:
    """The TensorBoard log of one ``nnspec run``: what :func:`nnspec.runtime.training_run.train_in_directory` writes.

    A write that fails (a full disk, the folder removed) is reported once on stderr and ends the log;
    the training goes on (metrics.csv still has every epoch).
    """

    def __init__(self, run_dir: str | os.PathLike, graph: "Graph", epochs_done: int):
        """Open the log of a run about to train from epoch ``epochs_done + 1``."""
        self.graph = graph
        self.folder = Path(run_dir) / FOLDER
        self._log: TensorBoardLog | None = None
        self._guard(lambda: self._open(epochs_done))

    def _open(self, epochs_done: int) -> None:
        if self.folder.is_symlink():
            raise OSError(errno.ELOOP, "it is a symbolic link; nnspec does not write a run's log through a link")
        earlier = event_files(self.folder)
        self._log = TensorBoardLog(self.folder)
        if not earlier:
            self._log.text(SUMMARY_TAG, summary_markdown(self.graph))
        for path in earlier:
            self._log.copy_from(path, epochs_done)
        self._log.flush()
        for path in earlier:
            path.unlink()

    def epoch(self, row: Mapping[str, float], optimizer_step: int) -> None:
        """Log one epoch's row; ``optimizer_step`` is the model's step counter after it."""
        if self._log is None:
            return
        log = self._log
        lr = learning_rate_at(self.graph.train, optimizer_step)

        def write() -> None:
            log.scalars(int(row["epoch"]), epoch_scalars(row, lr))
            log.flush()

        self._guard(write)

    def close(self) -> None:
        """Close the event file."""
        if self._log is not None:
            log, self._log = self._log, None
            self._guard(log.close)

    def _guard(self, action: Callable[[], None]) -> None:
        try:
            action()
        except _write_errors() as exc:
            self._log = None
            reason = getattr(exc, "strerror", None) or exc
            print(
                f"nnspec run: {self.folder}: cannot write the TensorBoard log ({reason}); training goes on without it",
                file=sys.stderr,
            )
