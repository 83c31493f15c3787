"""The shared chat state: who is online, who blocked whom, rooms, what waits for whom.

One :class:`ChatState` per server holds the online
:class:`~chatservice.session.Session` objects, the block lists and the rooms,
and writes what must last through an
:class:`~chatservice.store.interface.IChatStore`.  It never touches a
transport: it hands :mod:`chatservice.events` to each session's
:class:`~chatservice.interfaces.ChatClient` (the connection), which renders
and writes them.
"""

from __future__ import annotations

from typing import Collection, Iterable, Iterator

from twisted.internet.interfaces import IReactorTime

from chatservice import events
from chatservice.interfaces import (
    AccountDirectory,
    ActivityRecorder,
    ChatClient,
    IChatSession,
    NoActivityRecorder,
)
from chatservice.rooms import RoomDirectory
from chatservice.session import Session
from chatservice.store.interface import HistoryEntry, IChatStore

__all__ = ["AlreadyLoggedIn", "ChatClient", "ChatState", "IChatSession", "Session"]

BROADCAST_CHANNEL = "broadcast"
_NOBODY: frozenset[str] = frozenset()


class AlreadyLoggedIn(Exception):
    """The user has a session on another connection."""


class ChatState:
    """Every online session, the block lists, rooms and last-seen times.

    :param store: where blocks, last-seen times, offline messages, rooms and
        history are kept.
    :param accounts: which user names exist.
    :param clock: the time source for timestamps (the reactor, or a test Clock).
    :param activity: where logins, logouts and posts are reported for the
        human-readable logs.
    :param max_offline: messages kept for one user at most; past it, new ones
        are refused (the oldest are kept).
    """

    def __init__(
        self,
        store: IChatStore,
        accounts: AccountDirectory,
        clock: IReactorTime,
        activity: ActivityRecorder | None = None,
        max_offline: int = 100,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.clock = clock
        self.activity = activity if activity is not None else NoActivityRecorder()
        self.max_offline = max_offline
        self.sessions: dict[str, Session] = {}
        self.rooms = RoomDirectory(store)
        self._blocked_by: dict[str, set[str]] = {}
        self._blockers_of: dict[str, set[str]] = {}
        self._last_seen: dict[str, float] = {}

    def load(self) -> None:
        """Read the block lists, last-seen times and rooms from the store."""
        self._blocked_by.clear()
        self._blockers_of.clear()
        for blocker, blocked in self.store.blocks():
            self._blocked_by.setdefault(blocker, set()).add(blocked)
            self._blockers_of.setdefault(blocked, set()).add(blocker)
        self._last_seen = dict(self.store.last_seen())
        self.rooms.load()

    # Sessions ----------------------------------------------------------------

    def attach(self, username: str, client: ChatClient, guest: bool = False) -> Session:
        """Create the session of a user who has just authenticated.

        :param guest: whether ``username`` is a guest's name (not an account).
        :raises AlreadyLoggedIn: if ``username`` is online elsewhere.
        """
        if username in self.sessions:
            raise AlreadyLoggedIn(username)
        session = Session(self, username, client, self.clock.seconds(), guest)
        self.sessions[username] = session
        self.activity.users_changed()
        return session

    def detach(self, session: Session) -> None:
        """Remove ``session`` from the online set and tell the others (unless hidden)."""
        if self.sessions.get(session.username) is not session:
            return
        del self.sessions[session.username]
        self.activity.users_changed()
        if not session.hidden:
            if not session.guest:
                self.mark_seen(session.username)
            self.announce(session.username, online=False)

    def active_user_rows(self) -> list[tuple[float, str, str, int | None]]:
        """(login time, name, address, UDP port) of each online user, in login order."""
        return [
            (s.logged_in_at, s.username, s.client.host, s.client.udp_port)
            for s in self.sessions.values()
        ]

    def user_exists(self, username: str) -> bool:
        """Whether ``username`` is an account or an online guest."""
        return username in self.sessions or self.accounts.exists(username)

    def guest_online(self, username: str) -> bool:
        """Whether a guest is online under ``username``."""
        session = self.sessions.get(username)
        return session is not None and session.guest

    def mark_seen(self, username: str) -> None:
        """Record that ``username`` was visibly online until now."""
        now = self.clock.seconds()
        self._last_seen[username] = now
        self.store.record_seen(username, now)

    # Blocks --------------------------------------------------------------------

    def has_blocked(self, blocker: str, blocked: str) -> bool:
        """Whether ``blocker`` has blocked ``blocked``."""
        blocked_users = self._blocked_by.get(blocker)
        return blocked_users is not None and blocked in blocked_users

    def blockers_of(self, blocked: str) -> Collection[str]:
        """The users who have blocked ``blocked`` (for fan-out: one set test each)."""
        return self._blockers_of.get(blocked, _NOBODY)

    def block(self, blocker: str, blocked: str) -> None:
        """Record a block (the caller checked it is new)."""
        self._blocked_by.setdefault(blocker, set()).add(blocked)
        self._blockers_of.setdefault(blocked, set()).add(blocker)
        self.store.add_block(blocker, blocked)

    def unblock(self, blocker: str, blocked: str) -> None:
        """Remove a block (the caller checked it exists)."""
        for index, key, value in (
            (self._blocked_by, blocker, blocked),
            (self._blockers_of, blocked, blocker),
        ):
            users = index[key]
            users.discard(value)
            if not users:
                del index[key]
        self.store.remove_block(blocker, blocked)

    # Fan-out and history ---------------------------------------------------------

    def announce(self, username: str, online: bool) -> None:
        """Tell every other online user that ``username`` logged in or out.

        Users that ``username`` has blocked are not told.
        """
        event = events.Presence(username, online)
        blocked = self._blocked_by.get(username, _NOBODY)
        for other, session in self.sessions.items():
            if other != username and other not in blocked:
                session.client.deliver(event)

    def visible_sessions(self) -> Iterator[Session]:
        """The online sessions that are not hidden, in login order."""
        for session in self.sessions.values():
            if not session.hidden:
                yield session

    def seen_since(self, since: float) -> Iterable[str]:
        """Users visibly online now, or at any time from ``since`` on."""
        for session in self.visible_sessions():
            yield session.username
        for username, seen in self._last_seen.items():
            if seen >= since:
                session = self.sessions.get(username)
                if session is None or session.hidden:
                    yield username

    def post(self, channel: str, sender: str, text: str) -> HistoryEntry:
        """Number, time and keep a broadcast or room message."""
        entry = self.store.add_history(channel, sender, text, self.clock.seconds())
        self.activity.message_posted(entry)
        return entry
