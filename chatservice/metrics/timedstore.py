"""The store call latency: :class:`TimedStore`, an ``IChatStore`` that times another.

Every :class:`~chatservice.store.interface.IChatStore` call is passed on to
the store it wraps, and the time from the call to its Deferred firing
(successfully or not) goes into the call's histogram
(``chat_store_call_seconds{call="..."}``).  A local store's Deferred has fired when the
call returns: its time is observed at once, with no callback added.  Time is
the clock's (the reactor, or a test ``Clock``).

Anything else asked of a :class:`TimedStore` (a local store's ``local``,
PostgreSQL's ``next_room_id``) is the wrapped store's, untimed.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from chatservice.metrics.counters import Buckets
from chatservice.store.interface import IChatStore

__all__ = ["TimedStore"]


@implementer(IChatStore)
class TimedStore:
    """``store``'s calls, each timed into its histogram.

    :param store: the store that answers.
    :param histograms: the histogram of a call, by its name
        (:meth:`~chatservice.metrics.counters.ChatMetrics.store_call`).
    :param clock: the time source.
    """

    def __init__(self, store: Any, histograms: Callable[[str], Buckets], clock: IReactorTime) -> None:
        self.store = store
        """The wrapped store."""
        self.clock = clock
        self._observers = {name: histograms(name).observe for name in IChatStore.names()}

    def __getattr__(self, name: str) -> Any:
        # Only for what the interface does not name (the interface's calls are methods).
        if name == "store":
            raise AttributeError(name)
        return getattr(self.store, name)

    def __repr__(self) -> str:
        return f"<TimedStore {self.store!r}>"


def _timed(name: str) -> Callable[..., defer.Deferred[Any]]:
    """The :class:`TimedStore` method that times the wrapped store's ``name``."""

    def call(self: TimedStore, *args: Any) -> defer.Deferred[Any]:
        seconds = self.clock.seconds
        started = seconds()
        d = getattr(self.store, name)(*args)
        observe = self._observers[name]
        if d.called and not d.paused:
            observe(seconds() - started)
        else:

            def answered(result: object) -> object:
                observe(seconds() - started)
                return result

            d.addBoth(answered)
        return d

    call.__name__ = name
    call.__qualname__ = f"TimedStore.{name}"
    call.__doc__ = IChatStore[name].__doc__
    return call


for _name in IChatStore.names():
    setattr(TimedStore, _name, _timed(_name))
del _name
