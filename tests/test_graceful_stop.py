"""SIGTERM handling (ddrf.scenes.progress.GracefulStop) with real signals: the handler must never wait on a lock the
interrupted main thread may hold, and an idle watcher must notice a stop, or a file event, at once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from ddrf.scenes.progress import GracefulStop

ROOT = Path(__file__).parents[1]


def test_sigterm_while_the_main_thread_holds_the_wake_lock_does_not_deadlock() -> None:
    """Python runs the handler in the main thread between two bytecodes, possibly inside Event.wait or Event.clear
    with the Event's (non-reentrant) lock held. A handler that set the Event there waited for itself forever: the
    watcher then hung on SIGTERM. Here the signal lands exactly there, in a child process that must finish."""
    code = textwrap.dedent("""
        import os, signal
        from ddrf.scenes.progress import GracefulStop
        with GracefulStop() as stop:
            with stop.wake._cond:  # what Event.wait and Event.clear hold
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # bytecodes: the handler runs here
                    pass
            print("requested" if stop.requested else "missed")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.stdout.strip() == "requested", result.stderr


def test_an_idle_wait_ends_soon_after_sigterm() -> None:
    with GracefulStop() as stop:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        start = time.monotonic()
        stop.idle(60)
        assert stop.requested and time.monotonic() - start < 10


def test_an_idle_wait_ends_on_a_wake_and_clears_it() -> None:
    stop = GracefulStop()
    threading.Timer(0.2, stop.wake.set).start()
    start = time.monotonic()
    stop.idle(60)
    assert time.monotonic() - start < 10 and not stop.wake.is_set() and not stop.requested
    start = time.monotonic()
    stop.idle(0.3)  # nothing comes: the whole wait
    assert time.monotonic() - start >= 0.3
