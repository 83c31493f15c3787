"""Running slow, CPU-bound work (password hashing) off the reactor thread.

:class:`ThreadWorkers` runs it in a thread pool of its own, one thread short of
the CPUs (at least one).  Each of its threads lowers its own scheduling
priority (Linux ``nice`` is per thread), so when the CPUs are busy the kernel
runs the reactor thread first.  ``hashlib.scrypt`` releases the GIL while it
works, so the reactor thread keeps running Python meanwhile.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.threadpool import ThreadPool

NICENESS = 10
"""How much lower than the process's priority the worker threads run (``nice`` steps)."""
MAX_NICENESS = 19
"""Linux's lowest priority."""
_lowered = threading.local()


def _run_at_low_priority(f: Callable[..., Any], *args: Any) -> Any:
    if not getattr(_lowered, "done", False):
        _lowered.done = True
        try:
            # Relative to the priority the thread started with (the process's: a
            # server run under ``nice`` keeps its workers below its reactor).
            thread = threading.get_native_id()
            lowered = min(MAX_NICENESS, os.getpriority(os.PRIO_PROCESS, thread) + NICENESS)
            os.setpriority(os.PRIO_PROCESS, thread, lowered)
        except (AttributeError, OSError):
            pass  # not Linux, or not allowed: the work still runs, at normal priority
    return f(*args)


class ThreadWorkers:
    """A ``run_in_thread(f, *args)`` over a pool of low-priority threads.

    :param reactor: where results are handed back.
    :param workers: how many threads (default: one fewer than the CPUs).
    """

    def __init__(self, reactor: IReactorFromThreads, workers: int | None = None) -> None:
        self.reactor = reactor
        count = workers or max(1, (os.cpu_count() or 2) - 1)
        self.pool = ThreadPool(1, count, "chat-cpu-work")

    def start(self) -> None:
        """Start the threads (with the service)."""
        self.pool.start()

    def stop(self) -> None:
        """Stop the threads, once the work already queued is done."""
        self.pool.stop()

    def __call__(self, f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        return threads.deferToThreadPool(self.reactor, self.pool, _run_at_low_priority, f, *args)
