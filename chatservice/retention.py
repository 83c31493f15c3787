"""History retention: :class:`HistoryRetention` keeps the history within ``--history-max-age`` and ``--history-max-entries``.

Every ``interval`` seconds (and once when the service starts serving) it
asks the store to forget what is past the bounds, through the store's
Deferred API (:meth:`~chatservice.store.interface.IChatStore.purge_history`),
a batch of at most ``batch`` messages a call.  A full batch means more may
be due: the next batch is asked for on a later reactor turn, so that a large
backlog (the first start with a bound, after years of history) never holds
the reactor or the database for long.  Only one call is in flight at a time.

The bounds apply to every channel (the broadcasts and each room):

- ``max_age``: messages sent more than that many seconds ago are forgotten;
- ``max_entries``: a channel keeps its last ``max_entries`` numbers (its
  numbering goes on, so numbers are never given twice).

Several nodes sharing one PostgreSQL database may each run their own: the
store deletes each message once (see :mod:`chatservice.store.postgres`).
"""

from __future__ import annotations


from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice.store.interface import IChatStore
from chatservice.timefmt import parse_duration

__all__ = ["BATCH", "INTERVAL", "HistoryRetention", "parse_duration"]

log = Logger()

INTERVAL = 60.0
"""Seconds between two sweeps, by default."""
BATCH = 200
"""Messages forgotten in one store call at most, by default."""


class HistoryRetention:
    """Forgets, in the background, the history past its bounds.

    :param store: where the history is kept.
    :param clock: the reactor (or a test ``Clock``): the time and the timers.
    :param max_age: seconds a message is kept at most (``None``: no bound).
    :param max_entries: messages a channel keeps at most (``None``: no bound).
    :param interval: seconds between two sweeps.
    :param batch: messages forgotten in one store call at most.
    """

    def __init__(
        self,
        store: IChatStore,
        clock: IReactorTime,
        max_age: float | None,
        max_entries: int | None,
        interval: float = INTERVAL,
        batch: int = BATCH,
    ) -> None:
        if max_age is not None and max_age <= 0:
            raise ValueError(f"max_age must be positive or None, not {max_age!r}")
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be at least 1 or None, not {max_entries!r}")
        if interval <= 0 or batch < 1:
            raise ValueError("interval must be positive and batch at least 1")
        self.store = store
        self.clock = clock
        self.max_age = max_age
        self.max_entries = max_entries
        self.interval = interval
        self.batch = batch
        self.purged = 0
        """Messages forgotten since the start (for logs and tests)."""
        self._timer: IDelayedCall | None = None
        self._running: defer.Deferred[None] | None = None
        self._sweep_purged = 0
        self._started = False

    @property
    def bounded(self) -> bool:
        """Whether there is any bound to keep (otherwise :meth:`start` does nothing)."""
        return self.max_age is not None or self.max_entries is not None

    def start(self) -> None:
        """Sweep now, then every :attr:`interval` seconds, until :meth:`stop`."""
        if self._started or not self.bounded:
            return
        self._started = True
        self._schedule(0)

    def stop(self) -> defer.Deferred[None]:
        """No more sweeps; fires once the store call in flight (if any) has answered."""
        self._started = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._running is None:
            return defer.succeed(None)
        waiting: defer.Deferred[None] = defer.Deferred()
        self._running.addBoth(lambda _: waiting.callback(None))
        return waiting

    def _schedule(self, delay: float) -> None:
        if self._started:
            self._timer = self.clock.callLater(delay, self._batch)

    def _batch(self) -> None:
        """Ask the store to forget one batch; then the next batch, or the next sweep."""
        self._timer = None
        before = None if self.max_age is None else self.clock.seconds() - self.max_age
        d = self.store.purge_history(before, self.max_entries, self.batch)
        d.addCallbacks(self._purged, self._failed)
        running: defer.Deferred[None] = d
        if not running.called:
            self._running = running
            running.addBoth(self._done)

    def _done(self, _: object) -> None:
        self._running = None

    def _purged(self, removed: int) -> None:
        self.purged += removed
        self._sweep_purged += removed
        if removed >= self.batch:
            # More may be due: go on at the next turn, after the others' work.
            self._schedule(0)
            return
        if self._sweep_purged:
            log.info(
                "History retention forgot {count} message(s) (older than {max_age} s,"
                " or past the last {max_entries} of a channel)",
                count=self._sweep_purged,
                max_age=self.max_age,
                max_entries=self.max_entries,
            )
        self._sweep_purged = 0
        self._schedule(self.interval)

    def _failed(self, failure: Failure) -> None:
        log.failure("History retention: the store could not forget old history; retrying later", failure)
        self._sweep_purged = 0
        self._schedule(self.interval)
