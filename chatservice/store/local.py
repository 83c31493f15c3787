"""A store on this machine, behind the asynchronous interface: :class:`LocalStore`.

The chat state only speaks :class:`~chatservice.store.interface.IChatStore`,
whose calls return Deferreds.  A local store
(:class:`~chatservice.store.memory.MemoryStore`,
:class:`~chatservice.store.sqlite.SQLiteStore`) answers each call at once and
cheaply enough for the reactor thread (``bench/store_latency.py``), so
:class:`LocalStore` runs it right there and hands back a Deferred that has
already fired: with the result, or failed with the exception raised.  Nothing
waits for the reactor, and the state's callbacks run before the call returns,
exactly as when the state called the local store itself.

:func:`after` is ``addCallback`` for the hot paths (a broadcast, a direct
message): when the Deferred has fired already, as a local store's has, it
calls the function at once rather than through Twisted's callback chain.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from chatservice.store.interface import IChatStore, ILocalChatStore

__all__ = ["LocalStore", "after"]

_T = TypeVar("_T")
_A = TypeVar("_A")
_R = TypeVar("_R")


@implementer(IChatStore)
class LocalStore:
    """:class:`~chatservice.store.interface.IChatStore` calls answered by a local store.

    Each call looks the method up on :attr:`local` when it is made (so a test
    may patch the local store's methods), calls it, and returns
    ``defer.succeed(result)``, or a failed Deferred if it raised an
    :class:`Exception`.

    :param local: the store that does the work, on the caller's thread.
    """

    __slots__ = ("local",)

    def __init__(self, local: ILocalChatStore) -> None:
        self.local = local
        """The wrapped store, for whoever needs its synchronous calls (tests, tools)."""

    def __repr__(self) -> str:
        return f"<LocalStore {self.local!r}>"


def _answered_at_once(name: str) -> Callable[..., defer.Deferred[Any]]:
    """The :class:`LocalStore` method that calls the local store's method ``name``."""

    def call(self: LocalStore, *args: Any) -> defer.Deferred[Any]:
        # defer.maybeDeferred, less its checks for results that are Deferreds,
        # Failures or coroutines (a local store returns none of them): a
        # broadcast makes one such call, and its cost counts per recipient.
        try:
            result = getattr(self.local, name)(*args)
        except Exception:
            return defer.fail()
        return defer.succeed(result)

    call.__name__ = name
    call.__qualname__ = f"LocalStore.{name}"
    call.__doc__ = IChatStore[name].__doc__
    return call


for _name in IChatStore.names():
    setattr(LocalStore, _name, _answered_at_once(_name))
del _name


def after(d: defer.Deferred[_T], f: Callable[[_T, _A], _R], arg: _A) -> defer.Deferred[_R]:
    """``d.addCallback(f, arg)``, made cheap for a Deferred that has fired already.

    Twisted runs a callback added to a fired Deferred through its whole
    chaining machinery, which costs three times as many instructions as
    making the Deferred: on a broadcast, about 1% of the fan-out to 300
    users (``python3 -m bench.instructions``).  When ``d`` has its result
    (a local store's answer), this calls ``f`` directly and leaves what it
    returns in ``d``, as the callback would (or returns it if it is a
    :class:`Deferred`, not a subclass; or the exception it raised as a
    failed Deferred); else (a store answering later, or a failure) it adds
    the callback.  One argument after the result, exactly: forwarding
    ``*args`` would cost a third of the saving.

    It reads and sets ``Deferred.result``, which is not Twisted's public API
    (as :mod:`chatservice.server.output` uses private transport fields);
    ``tests/test_twisted_internals.py`` fails loudly if it changes.
    """
    if d.called and not d.paused:
        result = d.result
        if not isinstance(result, Failure):
            try:
                answer = f(result, arg)
            except Exception:
                return defer.fail()
            # Not isinstance: Deferred is an Awaitable, whose check is slow.
            if type(answer) is defer.Deferred:
                return answer  # type: ignore[return-value]
            d.result = answer  # what addCallback would leave in it
            return d  # type: ignore[return-value]
    return d.addCallback(f, arg)
