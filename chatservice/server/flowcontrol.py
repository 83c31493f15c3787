"""Keeping one connection from hurting the others: input rate and output backlog.

- :class:`TokenBucket`: how many lines a connection may send (a burst, then a
  steady rate).  Over it, the connection stops being read for a while; its
  lines wait in the socket, so nothing is lost, only slowed.
- :class:`OutputMonitor`: a streaming producer registered on the transport.
  The transport pauses it when its write buffer is full (the client is not
  reading); from then on it counts what is written, so the connection can
  drop optional traffic past a soft limit and give up past a hard one.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IPushProducer, IReactorTime
from zope.interface import implementer


class TokenBucket:
    """``burst`` lines at once, then ``rate`` lines a second.

    :param clock: the time source.
    """

    __slots__ = ("clock", "burst", "rate", "tokens", "_updated")

    def __init__(self, clock: IReactorTime, burst: float, rate: float) -> None:
        self.clock = clock
        self.burst = burst
        self.rate = rate
        self.tokens = burst
        self._updated = clock.seconds()

    def _refill(self) -> None:
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self._updated) * self.rate)
        self._updated = now

    def take(self) -> float:
        """Spend one token; return how long to wait before the next line (0: none)."""
        self._refill()
        self.tokens -= 1
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate

    @property
    def full(self) -> bool:
        """Whether the bucket has refilled completely (the client has been calm)."""
        self._refill()
        return self.tokens >= self.burst


@implementer(IPushProducer)
class OutputMonitor:
    """Tracks how far a transport's writes are backed up.

    The transport calls :meth:`pauseProducing` when its buffer is full and
    :meth:`resumeProducing` when it has drained.  Between the two, every
    write is counted in :attr:`backlog` (bytes beyond the transport's own
    buffer).

    :param drained: called when the transport has caught up again.
    """

    __slots__ = ("drained", "backed_up", "backlog")

    def __init__(self, drained: Callable[[], None]) -> None:
        self.drained = drained
        self.backed_up = False
        self.backlog = 0

    def wrote(self, size: int) -> None:
        """Count ``size`` bytes written to the transport."""
        if self.backed_up:
            self.backlog += size

    def pauseProducing(self) -> None:
        self.backed_up = True

    def resumeProducing(self) -> None:
        self.backed_up = False
        self.backlog = 0
        self.drained()

    def stopProducing(self) -> None:
        self.backed_up = False
