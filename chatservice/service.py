"""The chat service's life: what happens when ``twistd`` starts and stops it."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from chatservice import events
from chatservice.activitylog import ActivityLog
from chatservice.auth.lockout import LoginLockout
from chatservice.server.factory import ChatFactory
from chatservice.state import ChatState

log = Logger()

SHUTDOWN = events.Disconnected("shutdown", "The server is shutting down.")


class ChatService(Service):
    """Opens the store and loads the state at start; at stop, says goodbye and cleans up.

    :param state: the chat state (and through it, the store).
    :param factory: the connection factory, whose connections are told at stop.
    :param lockouts: the login lock-outs, whose timers are cancelled at stop.
    :param activity: the activity logs, started afresh and flushed at stop.
    :param data_dir: where the service keeps what it writes; created at start.
    :param thread_pool: a thread pool of the service's own (password hashing),
        started and stopped with it.
    """

    def __init__(
        self,
        state: ChatState,
        factory: ChatFactory,
        lockouts: Sequence[LoginLockout],
        activity: ActivityLog,
        data_dir: Path,
        thread_pool: ThreadPool | None = None,
    ) -> None:
        self.state = state
        self.factory = factory
        self.lockouts = lockouts
        self.activity = activity
        self.data_dir = data_dir
        self.thread_pool = thread_pool

    def startService(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Open the store first: if it fails, no started thread keeps twistd alive.
        self.state.store.open()
        self.state.load()
        if self.thread_pool is not None:
            self.thread_pool.start()
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
        for lockout in self.lockouts:
            lockout.stop()
        d.addCallback(lambda _: self.activity.flush())
        d.addBoth(lambda _: self.state.store.close())
        if self.thread_pool is not None:
            d.addBoth(lambda _: self.thread_pool.stop())
        return d
