"""Process lifetimes: worker processes that die with the process that started them, and SIGTERM treated as an
interrupt (clusters send SIGTERM before they kill a job), so finished work is saved either way.

Env and collection workers start through multiprocessing's forkserver, so their parent is the fork server, not
the command that wants them: :func:`die_with_parent` watches the command's own pid as well.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM; handled wherever Ctrl-C is (checkpoints are
    saved, stores stay committed)."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread; the previous handler is restored
    after. Does nothing off the main thread (Python delivers signals only there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(f"received signal {signum} (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def die_with_parent(owner_pid: int, poll_seconds: float = 0.5) -> None:
    """Makes this (worker) process exit as soon as ``owner_pid`` (the command that started it) is gone.

    Two mechanisms, because each alone has a gap: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` kills this process the
    moment its direct parent (the fork server) exits, and a daemon thread polls ``owner_pid`` for the case where
    the parent outlives the owner. A killed worker loses only the episode it was running: stores commit whole
    episodes.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        except OSError:
            pass
    if not _alive(owner_pid):  # the owner died before the watch was in place
        os._exit(1)

    def watch() -> None:
        while _alive(owner_pid):
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="embodied-parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): signal 0 only checks that the pid exists
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
