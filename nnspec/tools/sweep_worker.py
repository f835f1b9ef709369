"""A sweep's worker process: ``python -m nnspec.tools.sweep_worker run ...`` is ``nnspec run ...`` tied to the
sweep that started it.

When the sweep process ends, however it ends (a crash, ``kill -9``), its workers are not left running on their
own: each asks the operating system (Linux's parent-death signal, ``prctl(PR_SET_PDEATHSIG)``) for SIGTERM when
its parent goes, and elsewhere a watcher thread polls for it. SIGTERM is what a run stops on: it saves its state
at the end of the epoch and exits 143, so the sweep's next start resumes it. A worker whose sweep is already gone
when it starts stops at once. The sweep's pid comes in ``$NNSPEC_SWEEP_PID``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

#: The environment variable that carries the sweep's pid to its workers.
PARENT_ENV = "NNSPEC_SWEEP_PID"
_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 1.0


def _parent_death_signal(signum: int) -> bool:
    """Ask Linux for ``signum`` when this process's parent ends; False where that cannot be asked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int, signum: int) -> None:
    """Send ``signum`` to this process once its parent is no longer ``parent`` (a daemon thread's loop)."""
    while os.getppid() == parent:
        time.sleep(_POLL_SECONDS)
    os.kill(os.getpid(), signum)


def tie_to_parent(parent: int | None, signum: int = signal.SIGTERM) -> None:
    """Make this process receive ``signum`` when its parent (pid ``parent``) ends; at once if it has already."""
    if parent is None:
        return
    if not _parent_death_signal(signum):
        threading.Thread(target=_watch, args=(parent, signum), name="nnspec-sweep-parent", daemon=True).start()
    if os.getppid() != parent:  # the sweep ended before the request above was in place
        os.kill(os.getpid(), signum)


def parent_pid() -> int | None:
    """The sweep's pid from :data:`PARENT_ENV`, None when absent or not a pid."""
    text = os.environ.get(PARENT_ENV, "").strip()
    return int(text) if text.isdigit() and int(text) > 1 else None


def main(argv: Sequence[str] | None = None) -> int:
    """Tie this process to its sweep, then run ``nnspec`` with ``argv`` (default: this process's arguments)."""
    tie_to_parent(parent_pid())
    from ..cli import main as cli_main

    return cli_main(sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
