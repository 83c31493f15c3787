"""Slow work runs in the service's own low-priority threads, not on the reactor."""

from __future__ import annotations

import os
import threading

from twisted.internet import reactor
from twisted.trial import unittest

from chatservice.workers import MAX_NICENESS, NICENESS, ThreadWorkers


def _where() -> tuple[str, int]:
    return (
        threading.current_thread().name,
        os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
    )


class ThreadWorkersTests(unittest.TestCase):
    """ThreadWorkers runs functions in its pool, at a lower priority."""

    def test_runs_in_a_low_priority_worker_thread(self) -> None:
        workers = ThreadWorkers(reactor, workers=1)
        workers.start()
        self.addCleanup(workers.stop)
        base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        def check(result: tuple[str, int]) -> None:
            name, priority = result
            self.assertNotEqual(name, threading.current_thread().name)
            self.assertEqual(priority, min(MAX_NICENESS, base + NICENESS))
            self.assertEqual(
                os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), base,
                "the reactor thread keeps its priority",
            )

        return workers(_where).addCallback(check)

    def test_errors_come_back(self) -> None:
        workers = ThreadWorkers(reactor, workers=1)
        workers.start()
        self.addCleanup(workers.stop)
        d = workers(int, "not a number")
        return self.assertFailure(d, ValueError)
