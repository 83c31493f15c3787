"""Keeping one connection's input from hurting the others: its rate and its turns.

- :class:`TokenBucket`: how many lines a connection may send (a burst, then a
  steady rate).
- :class:`InputPacer`: decides, line by line, when a connection stops being
  read: over its rate (a flood), after its share of a reactor turn (fair
  turns), or while a slow step such as a password check runs.  Its lines
  wait in the socket meanwhile, so nothing is lost, only slowed.

The output side (backlog, slow readers) is
:class:`~chatservice.server.output.ConnectionWriter`'s.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from chatservice.server.policy import ConnectionPolicy
from chatservice.server.timers import cancel_pending

_NO_HOLDS: frozenset[str] = frozenset()


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


class Reader(Protocol):
    """What an :class:`InputPacer` stops and starts: a connection's reading."""

    def pause_reading(self) -> None:
        """Stop reading."""

    def resume_reading(self) -> None:
        """Read again (and handle the lines that waited)."""


class InputPacer:
    """When one connection is read: its rate, its turn, and the slow steps it waits for.

    Reading stops (``pause_reading()``) while any *hold* is on: ``"flood"`` for
    the time the :class:`TokenBucket` asks, ``"turn"`` until the next
    reactor turn once the connection has had ``policy.lines_per_turn`` lines
    or ``policy.turn_budget`` seconds in this one, and whatever the
    connection holds itself (``"checking"`` while a password is verified).
    It goes on (``resume_reading()``) when the last hold is released.

    :param clock: the reactor, or a test ``Clock``.
    :param policy: the rate and turn limits.
    :param reader: whose reading is paused and resumed (one reference, not
        two bound methods: there is one pacer per connection).
    """

    __slots__ = (
        "_clock", "_policy", "_reader", "_bucket", "_holds", "_lines",
        "_turn_started", "_throttled_since", "_unthrottle", "_next_turn",
    )

    def __init__(
        self,
        clock: IReactorTime,
        policy: ConnectionPolicy,
        reader: Reader,
    ) -> None:
        self._clock = clock
        self._policy = policy
        self._reader = reader
        self._bucket = TokenBucket(clock, policy.flood_burst, policy.flood_rate)
        self._holds = _NO_HOLDS
        self._lines = 0
        self._turn_started = 0.0
        self._throttled_since: float | None = None
        self._unthrottle: IDelayedCall | None = None
        self._next_turn: IDelayedCall | None = None

    def new_turn(self) -> None:
        """Input arrived from the reactor: this connection's turn starts."""
        self._lines = 0
        self._turn_started = self._clock.seconds()

    def admit(self, more_waiting: bool) -> bool:
        """Count one line about to be handled; ``False`` for a flood that must be closed.

        :param more_waiting: whether further complete lines wait behind it
            (only then is there something to hold back for later).
        """
        self._lines += 1
        policy = self._policy
        if more_waiting and (
            self._lines >= policy.lines_per_turn
            or self._clock.seconds() - self._turn_started >= policy.turn_budget
        ):
            self.hold("turn")
            self._next_turn = self._clock.callLater(0, self._take_turn)
        wait = self._bucket.take()
        if not wait:
            if not more_waiting:
                self._throttled_since = None
            return True
        now = self._clock.seconds()
        if self._throttled_since is None:
            self._throttled_since = now
        elif now - self._throttled_since > policy.flood_limit:
            return False
        self.hold("flood")
        self._unthrottle = self._clock.callLater(wait, self.release, "flood")
        return True

    def _take_turn(self) -> None:
        self._next_turn = None
        self.release("turn")

    def hold(self, reason: str) -> None:
        """Stop reading for ``reason`` until it is released."""
        if not self._holds:
            self._reader.pause_reading()
        self._holds |= {reason}

    def release(self, reason: str) -> None:
        """End the hold for ``reason``; reading goes on when no hold is left."""
        if reason == "flood":
            self._unthrottle = None
        if reason not in self._holds:
            return
        self._holds = (self._holds - {reason}) or _NO_HOLDS
        if not self._holds:
            self._reader.resume_reading()

    def holding(self, reason: str) -> bool:
        """Whether reading is held for ``reason``."""
        return reason in self._holds

    def stop(self) -> None:
        """The connection is closing: cancel the pending releases."""
        cancel_pending(self._unthrottle, self._next_turn)
        self._unthrottle = self._next_turn = None
