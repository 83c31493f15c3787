"""The chat service's life: what happens when ``twistd`` starts and stops it.

Starting opens the store and loads the chat state, which may take a while
with a store on another machine.  The listeners are child services of the
:class:`ChatService` and bind as usual (so a port below 1024 still works with
``twistd --uid``), but the connection registry refuses every connection,
with a clear message, until the state is loaded: no client is served from a
state not loaded yet.  With a local store (SQLite, memory) the state is
loaded before the reactor runs, so nobody is ever refused.

Before anything else, the service locks its data directory
(:class:`~chatservice.datadir.DataDirLock`) until it stops: a second server
on the same directory fails to start, naming the first one's pid.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Protocol, Sequence

from twisted.application.service import IService, MultiService, Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice import events
from chatservice.activitylog import ActivityLog
from chatservice.auth.lockout import LoginLockout
from chatservice.auth.slowdown import LoginSlowdown
from chatservice.retention import HistoryRetention
from chatservice.datadir import DataDirLock
from chatservice.server.factory import ChatFactory
from chatservice.state import ChatState

log = Logger()

SHUTDOWN = events.Disconnected("shutdown", "The server is shutting down.")


def exit_failed() -> None:
    """End the process with status 1 (after the reactor's shutdown, logs written)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(1)


class Workers(Protocol):
    """Something the service starts and stops with itself (a worker pool)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class ChatService(MultiService):
    """Opens the store and loads the state at start, then serves; at stop, says goodbye and cleans up.

    Its children (:meth:`addService`: the listeners) start with it; their
    connections are refused (``starting``) until the state is loaded.  If the
    store cannot be opened or the state loaded, nothing is served: with a
    store that answers at once (SQLite, memory), :meth:`startService` raises,
    so ``twistd`` fails to start as before; with one that answers later, the
    failure is logged and ``reactor`` is stopped.

    :param state: the chat state (and through it, the store).
    :param factory: the connection factory, whose connections are told at stop.
    :param lockouts: the login lock-outs and slowdown, whose timers are cancelled at stop.
    :param activity: the activity logs, started afresh and flushed at stop.
    :param data_dir: where the service keeps what it writes; created at
        start, and locked (``chat.lock``) from start to stop.
    :param workers: the service's own workers for slow work (password
        hashing): anything with ``start()`` and ``stop()``, started and
        stopped with the service.
    :param reactor: what to stop when loading fails after the start
        returned (``None``: only log it).
    :param cluster: this node's part in a cluster (``--redis``), started
        with the service and stopped once its users have been logged out
        (so that the others hear of it).
    :param retention: what keeps the history within its bounds: started
        once the state is loaded, stopped (and its store call in flight
        waited for) before the store is closed.
    :param credentials: the credentials file the accounts were read from
        (logged at start).
    :param store: the store's name, as logged (a PostgreSQL URL without its password).
    :param endpoints: where the server listens (logged at start; ``web:``
        before the browser page's).
    """

    def __init__(
        self,
        state: ChatState,
        factory: ChatFactory,
        lockouts: Sequence[LoginLockout | LoginSlowdown],
        activity: ActivityLog,
        data_dir: Path,
        workers: Workers | None = None,
        reactor: IReactorCore | None = None,
        cluster: IService | None = None,
        retention: HistoryRetention | None = None,
        credentials: Path | None = None,
        store: str = "",
        endpoints: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.credentials = credentials
        self.store_name = store
        self.endpoints = tuple(endpoints)
        self.state = state
        self.factory = factory
        self.lockouts = lockouts
        self.activity = activity
        self.data_dir = data_dir
        self.workers = workers
        self.cluster = cluster
        self.reactor = reactor
        self.retention = retention
        self.lock = DataDirLock(data_dir)
        """The lock on ``data_dir``, held while the service runs."""
        self.serving = False
        """Whether the state is loaded and connections are taken."""
        factory.registry.ready = False

    def startService(self) -> None:
        """Lock the data directory, open the store, load the state; start the listeners.

        :raises chatservice.datadir.DataDirInUse: when another server holds
            the data directory (nothing is started).
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        Service.startService(self)
        if self.cluster is not None:
            self.cluster.startService()
        # Open the store first: if it fails, no started worker keeps twistd alive.
        d = self.state.store.open()
        d.addCallback(lambda _: self.state.load())
        d.addCallback(self._serve)
        if d.called and not d.paused:
            # Loaded (or not) already: a failure fails the start itself.
            outcome: list[Any] = []
            d.addBoth(outcome.append)
            if isinstance(outcome[0], Failure):
                Service.stopService(self)
                self.lock.release()
                outcome[0].raiseException()
        else:
            d.addErrback(self._not_loaded)
        # The listeners (bound already if twistd ran privilegedStartService);
        # until the state is loaded the registry refuses their connections.
        for service in self:
            service.startService()

    def _serve(self, _: object) -> None:
        """The state is loaded: start the workers, take connections."""
        if not self.running:
            return  # stopped while loading
        if self.workers is not None:
            self.workers.start()
        self.activity.users_changed()
        if self.retention is not None:
            self.retention.start()
        self.state.moderation.start()
        self.serving = True
        self.factory.registry.ready = True
        log.info(
            "Chat service started: {accounts} accounts from {credentials}; data in"
            " {data_dir} ({store} store); listening on {endpoints}",
            accounts=len(self.state.accounts.usernames()),
            credentials=str(self.credentials) if self.credentials is not None else "-",
            data_dir=str(self.data_dir),
            store=self.store_name or "-",
            endpoints=", ".join(self.endpoints) or "-",
        )

    def _not_loaded(self, failure: Failure) -> None:
        log.failure(
            "The chat store could not be opened or the chat state loaded;"
            " the server stops without serving",
            failure,
        )
        if self.reactor is not None and self.running:
            # twistd has no exit status of its own for this: end with 1
            # once the reactor has shut down, so a supervisor sees the failure.
            self.reactor.addSystemEventTrigger("after", "shutdown", exit_failed)
            self.reactor.stop()

    def _end_remaining_sessions(self) -> None:
        """Log out users whose connections did not close in the grace period."""
        for session in list(self.state.sessions.values()):
            session.end()

    def stopService(self) -> defer.Deferred[None]:
        # The listeners first: no new connection while the others are told.
        self.serving = False
        self.factory.registry.ready = False
        listeners = super().stopService() if self.running else defer.succeed(None)
        retention = self.retention.stop() if self.retention is not None else defer.succeed(None)
        self.state.moderation.stop()
        d = self.factory.disconnect_all(SHUTDOWN)
        d.addCallback(lambda _: self._end_remaining_sessions())
        d.addCallback(lambda _: self.factory.output_batcher.flush_now())
        if self.cluster is not None:
            cluster = self.cluster
            d.addBoth(lambda _: self.state.writes_done())
            d.addBoth(lambda _: cluster.stopService())
        for lockout in self.lockouts:
            lockout.stop()
        d.addCallback(lambda _: self.activity.flush())
        d.addBoth(lambda _: self.state.writes_done())
        d.addBoth(lambda _: retention)
        d.addBoth(lambda _: self.state.store.close())
        if self.workers is not None:
            d.addBoth(lambda _: self.workers.stop())
        d.addBoth(lambda _: self.lock.release())
        return defer.DeferredList([listeners, d]).addCallback(lambda _: None)
