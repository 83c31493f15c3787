"""The chat service's life: what happens when ``twistd`` starts and stops it."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from chatservice import events
from chatservice.activitylog import ActivityLog
from chatservice.auth.lockout import LoginLockout
from chatservice.server.factory import ChatFactory
from chatservice.state import ChatState

log = Logger()

SHUTDOWN = events.Disconnected("shutdown", "The server is shutting down.")


class Workers(Protocol):
    """Something the service starts and stops with itself (a worker pool)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class ChatService(Service):
    """Opens the store and loads the state at start; at stop, says goodbye and cleans up.

    :param state: the chat state (and through it, the store).
    :param factory: the connection factory, whose connections are told at stop.
    :param lockouts: the login lock-outs, whose timers are cancelled at stop.
    :param activity: the activity logs, started afresh and flushed at stop.
    :param data_dir: where the service keeps what it writes; created at start.
    :param workers: the service's own workers for slow work (password
        hashing): anything with ``start()`` and ``stop()``, started and
        stopped with the service.
    """

    def __init__(
        self,
        state: ChatState,
        factory: ChatFactory,
        lockouts: Sequence[LoginLockout],
        activity: ActivityLog,
        data_dir: Path,
        workers: Workers | None = None,
    ) -> None:
        self.state = state
        self.factory = factory
        self.lockouts = lockouts
        self.activity = activity
        self.data_dir = data_dir
        self.workers = workers

    def startService(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Open the store first: if it fails, no started worker keeps twistd alive.
        self.state.store.open()
        self.state.load()
        if self.workers is not None:
            self.workers.start()
        self.activity.users_changed()
        super().startService()
        log.info(
            "Chat service started: {accounts} accounts; data in {data_dir}",
            accounts=len(self.state.accounts.usernames()),
            data_dir=str(self.data_dir),
        )

    def _end_remaining_sessions(self) -> None:
        """Log out users whose connections did not close in the grace period."""
        for session in list(self.state.sessions.values()):
            session.end()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        d = self.factory.disconnect_all(SHUTDOWN)
        d.addCallback(lambda _: self._end_remaining_sessions())
        d.addCallback(lambda _: self.factory.output_batcher.flush_now())
        for lockout in self.lockouts:
            lockout.stop()
        d.addCallback(lambda _: self.activity.flush())
        d.addBoth(lambda _: self.state.store.close())
        if self.workers is not None:
            d.addBoth(lambda _: self.workers.stop())
        return d
