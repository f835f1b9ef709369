"""SIGINT and SIGTERM during training: finish the epoch, save, and exit; a second signal exits at once.

The first signal only sets a flag that the training loop reads between epochs (an engine's compiled
epoch cannot be cut in the middle without leaving its arrays half-updated), so the run stops at the next
epoch boundary with its state saved. A second signal of either kind exits immediately with the usual
shell code (130 for SIGINT, 143 for SIGTERM); the run directory then holds the checkpoints written so
far and is marked incomplete.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable

#: Exit codes of a run stopped by a signal, as shells report them (128 + the signal number).
EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequests:
    """A context manager that turns SIGINT / SIGTERM into a stop request (see the module docstring).

    ``requested`` holds the first signal's number (None until one arrives). Outside the main thread,
    where Python cannot install handlers, it does nothing. Entering it again (nested) is allowed.
    """

    def __init__(
        self,
        message: str = "stopping after the current epoch to save the training state",
        exit_now: Callable[[int], Any] = os._exit,
    ):
        self.message = message
        self.requested: int | None = None
        self._exit_now = exit_now
        self._previous: dict[int, Any] = {}
        self._depth = 0

    @property
    def exit_code(self) -> int:
        """130 or 143 for the signal received (0 when none was)."""
        return EXIT_CODES.get(self.requested, 128 + self.requested) if self.requested else 0

    @property
    def signal_name(self) -> str:
        """``SIGINT`` or ``SIGTERM`` (empty when no signal was received)."""
        return signal.Signals(self.requested).name if self.requested else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            print(
                f"\nnnspec: second {signal.Signals(signum).name}: exiting now, without saving",
                file=sys.stderr,
                flush=True,
            )
            self._exit_now(EXIT_CODES.get(signum, 128 + signum))
            return
        self.requested = signum
        print(
            f"\nnnspec: {signal.Signals(signum).name} received: {self.message} (send it again to exit at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> "StopRequests":
        self._depth += 1
        if self._depth == 1 and threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        # once a stop was asked for, the handlers stay: a second signal while the process winds down
        # (engines' exit hooks can take a while) still exits at once instead of raising in a hook
        if self._depth == 0 and self.requested is None:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
            self._previous.clear()
