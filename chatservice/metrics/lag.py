"""The reactor lag: :class:`ReactorLag`, a ``LoopingCall`` measuring its own lateness.

Every ``interval`` seconds a timer is due; when the reactor is busy (a long
callback, a flood of input) it runs late, and how late goes into the
``chat_reactor_lag_seconds`` histogram.  The call knows when it was due:
``LoopingCall.withCount`` says how many intervals passed since the last call,
so a call that ran more than an interval late still counts from the time it
was due, not from a skipped one.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from chatservice.metrics.counters import Buckets

DEFAULT_INTERVAL = 1.0
"""Seconds between two measurements."""


class ReactorLag(Service):
    """Measures how late the reactor runs a timer, while the service runs.

    :param clock: the reactor (or a test ``Clock``).
    :param histogram: where each lateness, in seconds, is observed.
    :param interval: seconds between two measurements.
    """

    def __init__(
        self, clock: IReactorTime, histogram: Buckets, interval: float = DEFAULT_INTERVAL
    ) -> None:
        self.clock = clock
        self.histogram = histogram
        self.interval = interval
        self._due = 0.0
        self._call = LoopingCall.withCount(self._measure)
        self._call.clock = clock  # type: ignore[assignment]

    def startService(self) -> None:
        super().startService()
        self._due = self.clock.seconds()
        self._call.start(self.interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._call.running:
            self._call.stop()

    def _measure(self, intervals: int) -> None:
        """Due ``intervals`` intervals after the last one: observe how late it runs."""
        self._due += intervals * self.interval
        self.histogram.observe(max(0.0, self.clock.seconds() - self._due))
