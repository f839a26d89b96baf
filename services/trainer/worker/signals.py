"""Stopping on SIGTERM/SIGINT within the service's 5-second grace, even in the middle of a step.

A Python signal handler only runs when the main thread returns to the interpreter, and one backward pass of a
real model is a single C++ call lasting seconds. So the signals are blocked in every thread (the mask is set
before torch starts its thread pool) and one watcher thread waits for them with ``sigwait``. The training state
(LoRA weights, optimizer, scheduler, step counter, RNG snapshot) only changes inside ``guard.lock``; the watcher
takes that lock, runs the stop callback (write a checkpoint of the last finished step) and ends the process
with exit code 143, while the main thread may still be half-way through the next step.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a process ended by SIGTERM


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent ends, however it ends (``PR_SET_PDEATHSIG``); if the
    parent already ended before the call (this process was re-parented to init), it exits now. Elsewhere (no
    glibc) nothing. For a data-parallel rank (its parent: rank 0) and a Ray node's worker (its parent: the
    job's relay, which dies with its node)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() == 1:
        os._exit(1)


class StopGuard:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self._on_stop: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None

    def install(self) -> None:
        """Blocks the stop signals in this thread (and every thread started later) and starts the watcher."""
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        self._thread = threading.Thread(target=self._watch, name="stop-watcher", daemon=True)
        self._thread.start()

    def set_on_stop(self, callback: Callable[[], None] | None) -> None:
        """What to do (under ``lock``) before exiting on a stop signal, e.g. write a checkpoint."""
        with self.lock:
            self._on_stop = callback

    def _watch(self) -> None:
        sig = signal.sigwait(STOP_SIGNALS)
        self.stopping.set()
        print(f"worker: received {signal.Signals(sig).name}; stopping", file=sys.stderr, flush=True)
        code = EXIT_CODE
        try:
            with self.lock:
                if self._on_stop is not None:
                    self._on_stop()
        except BaseException as exc:  # the exit code still says "stopped by a signal"
            print(f"worker: stop callback failed: {exc!r}", file=sys.stderr, flush=True)
        finally:
            sys.stderr.flush()
            os._exit(code)
