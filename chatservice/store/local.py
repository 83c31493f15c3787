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
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from zope.interface import implementer

from chatservice.store.interface import IChatStore, ILocalChatStore

__all__ = ["LocalStore"]

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

