"""Whether the server can serve: :class:`Readiness`, behind ``/readyz``.

Ready means: the chat state is loaded (the service serves), the store
answers a small read within :data:`STORE_TIMEOUT` seconds, and, in a cluster,
this node is connected and subscribed to Redis.  Each check is reported by
name, so an operator reading ``/readyz`` sees which one failed.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from chatservice.store.interface import IChatStore

STORE_TIMEOUT = 5.0
"""Seconds the store has to answer a readiness check."""

Check = tuple[str, bool, str]
"""``(name, ok, detail)`` of one readiness check."""


class Readiness:
    """The readiness checks of one server.

    :param serving: whether the service serves (its state is loaded).
    :param store: the chat store, asked a small read (its highest room number).
    :param clock: for the store's time limit.
    :param cluster: the cluster node (``--redis``), or ``None``.
    :param timeout: seconds the store has to answer.
    """

    def __init__(
        self,
        serving: Callable[[], bool],
        store: IChatStore,
        clock: IReactorTime,
        cluster: Any = None,
        timeout: float = STORE_TIMEOUT,
    ) -> None:
        self.serving = serving
        self.store = store
        self.clock = clock
        self.cluster = cluster
        self.timeout = timeout

    def check(self) -> defer.Deferred[list[Check]]:
        """Run every check; fires with each one's result (never fails)."""
        if not self.serving():
            checks = defer.succeed([("state", False, "not loaded yet"), ("store", False, "not open yet")])
        else:
            checks = self._store().addCallback(lambda store: [("state", True, "loaded"), store])
        if self.cluster is not None:
            up = self.cluster.link.connected
            link = ("redis", up, "connected" if up else "not connected")
            checks.addCallback(lambda found: found + [link])
        return checks

    def _store(self) -> defer.Deferred[Check]:
        """Whether the store answers a small read in time (the read is never cancelled)."""
        outcome: defer.Deferred[Check] = defer.Deferred()

        def late() -> None:
            outcome.callback(("store", False, f"no answer within {self.timeout:g} s"))

        timer = self.clock.callLater(self.timeout, late)

        def answered(result: object) -> None:
            if outcome.called:
                return  # too late: reported already
            timer.cancel()
            if isinstance(result, Failure):
                outcome.callback(("store", False, f"failed: {result.getErrorMessage()}"))
            else:
                outcome.callback(("store", True, "answers"))

        try:
            d = self.store.highest_room_id()
        except Exception:
            d = defer.fail()
        d.addBoth(answered)
        return outcome
