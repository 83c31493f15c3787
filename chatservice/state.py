"""The shared chat state: who is online, who blocked whom, what waits for whom.

One :class:`ChatState` per server holds the online :class:`Session` objects
and the block lists, and writes what must last through an
:class:`~chatservice.store.interface.IChatStore`.  It never touches a
transport: it hands :mod:`chatservice.events` to each session's
:class:`ChatClient` (the connection), which renders and writes them.

A :class:`Session` is the ``twisted.cred`` avatar of a logged-in user: the
realm creates it, and every command the user sends becomes a call on it.
"""

from __future__ import annotations

import secrets
from typing import Callable, Iterable, Protocol

from twisted.internet.interfaces import IReactorTime
from zope.interface import Attribute, Interface, implementer

from chatservice import events
from chatservice.commands import CommandError, Request
from chatservice.store.interface import IChatStore


class AlreadyLoggedIn(Exception):
    """The user has a session on another connection."""


class ChatClient(Protocol):
    """What the state needs of a connection: somewhere to send events.

    ``host`` is the client's IP address; ``p2p_port`` and ``udp_port`` are the
    ports its peer listener and file receiver said (at login) they listen on.
    """

    host: str
    p2p_port: int | None
    udp_port: int | None

    def deliver(self, event: events.Event) -> None:
        """Send ``event`` to the user (buffered; never blocks)."""

    def disconnect(self, event: events.Disconnected) -> None:
        """Send ``event``, then close the connection."""


class AccountDirectory(Protocol):
    """What the state needs of the accounts: whether a user name exists."""

    def exists(self, username: str) -> bool:
        """Whether ``username`` is an account."""


class IChatSession(Interface):
    """A logged-in user, as handed out by the realm."""

    username = Attribute("The authenticated user name (str).")

    def begin() -> None:
        """Announce the login and deliver what was kept while offline."""

    def execute(request: Request) -> events.Event:
        """Carry out a command; raise CommandError when it cannot be done."""

    def end() -> None:
        """Log out: leave the online set and announce it.  Idempotent."""


class ChatState:
    """Every online session, the block lists, and last-seen times.

    :param store: where blocks, last-seen times and offline messages are kept.
    :param accounts: which user names exist.
    :param clock: the time source for timestamps (the reactor, or a test Clock).
    """

    def __init__(
        self, store: IChatStore, accounts: AccountDirectory, clock: IReactorTime
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self._blocked_by: dict[str, set[str]] = {}
        self._last_seen: dict[str, float] = {}

    def load(self) -> None:
        """Read the block lists and last-seen times from the store."""
        self._blocked_by.clear()
        for blocker, blocked in self.store.blocks():
            self._blocked_by.setdefault(blocker, set()).add(blocked)
        self._last_seen = dict(self.store.last_seen())

    # Sessions ----------------------------------------------------------------

    def attach(self, username: str, client: ChatClient) -> Session:
        """Create the session of a user who has just authenticated.

        :raises AlreadyLoggedIn: if ``username`` is online elsewhere.
        """
        if username in self.sessions:
            raise AlreadyLoggedIn(username)
        session = Session(self, username, client, self.clock.seconds())
        self.sessions[username] = session
        return session

    def detach(self, session: Session) -> None:
        """Remove ``session`` from the online set and tell the others."""
        if self.sessions.get(session.username) is not session:
            return
        del self.sessions[session.username]
        now = self.clock.seconds()
        self._last_seen[session.username] = now
        self.store.record_seen(session.username, now)
        self.announce(session.username, online=False)

    def disconnect_all(self, event: events.Disconnected) -> None:
        """Tell every online user ``event`` and close their connections."""
        for session in list(self.sessions.values()):
            session.client.disconnect(event)

    # Blocks --------------------------------------------------------------------

    def has_blocked(self, blocker: str, blocked: str) -> bool:
        """Whether ``blocker`` has blocked ``blocked``."""
        blocked_users = self._blocked_by.get(blocker)
        return blocked_users is not None and blocked in blocked_users

    def block(self, blocker: str, blocked: str) -> None:
        """Record a block (the caller checked it is new)."""
        self._blocked_by.setdefault(blocker, set()).add(blocked)
        self.store.add_block(blocker, blocked)

    def unblock(self, blocker: str, blocked: str) -> None:
        """Remove a block (the caller checked it exists)."""
        blocked_users = self._blocked_by[blocker]
        blocked_users.discard(blocked)
        if not blocked_users:
            del self._blocked_by[blocker]
        self.store.remove_block(blocker, blocked)

    # Fan-out -------------------------------------------------------------------

    def announce(self, username: str, online: bool) -> None:
        """Tell every other online user that ``username`` logged in or out.

        Users that ``username`` has blocked are not told.
        """
        event = events.Presence(username, online)
        for other, session in self.sessions.items():
            if other != username and not self.has_blocked(username, other):
                session.client.deliver(event)

    def seen_since(self, since: float) -> Iterable[str]:
        """Users online now or at any time from ``since`` on."""
        yield from self.sessions
        for username, seen in self._last_seen.items():
            if seen >= since and username not in self.sessions:
                yield username


@implementer(IChatSession)
class Session:
    """A logged-in user: the avatar the realm hands to the connection.

    :param state: the server's chat state.
    :param username: the authenticated user name.
    :param client: the connection to send events to.
    :param logged_in_at: the clock's time at login.
    """

    def __init__(
        self, state: ChatState, username: str, client: ChatClient, logged_in_at: float
    ) -> None:
        self.state = state
        self.username = username
        self.client = client
        self.logged_in_at = logged_in_at
        self._handlers: dict[str, Callable[..., events.Event]] = {
            "whoelse": self.whoelse,
            "whoelsesince": self.whoelsesince,
            "message": self.message,
            "broadcast": self.broadcast,
            "block": self.block,
            "unblock": self.unblock,
            "startprivate": self.startprivate,
            "sendfile": self.sendfile,
        }

    def begin(self) -> None:
        """Announce the login and deliver what was kept while offline."""
        self.state.announce(self.username, online=True)
        store = self.state.store
        kept = store.offline_messages(self.username)
        for message in kept:
            self.client.deliver(
                events.DirectMessage(
                    message.sender, message.text, message.sent_at, offline=True
                )
            )
        if kept:
            store.remove_offline([message.message_id for message in kept])

    def end(self) -> None:
        """Log out (idempotent)."""
        self.state.detach(self)

    def execute(self, request: Request) -> events.Event:
        """Carry out ``request``; :class:`CommandError` when it cannot be done."""
        try:
            handler = self._handlers[request.command]
        except KeyError:
            raise CommandError(
                "invalid_command", f"Error. {request.command} is not available here."
            ) from None
        return handler(**request.arguments)

    # Commands --------------------------------------------------------------------

    def _visible(self, usernames: Iterable[str]) -> tuple[str, ...]:
        """The other users in ``usernames`` that have not blocked this user."""
        has_blocked = self.state.has_blocked
        return tuple(
            sorted(
                name
                for name in usernames
                if name != self.username and not has_blocked(name, self.username)
            )
        )

    def whoelse(self) -> events.UserList:
        """The other users online now."""
        return events.UserList(self._visible(self.state.sessions))

    def whoelsesince(self, seconds: float) -> events.UserList:
        """The other users online at any time in the last ``seconds``."""
        since = self.state.clock.seconds() - seconds
        return events.UserList(self._visible(self.state.seen_since(since)), seconds)

    def _check_other_user(self, username: str) -> None:
        if username == self.username:
            raise CommandError("self", "Error. You cannot do that to yourself.")
        if not self.state.accounts.exists(username):
            raise CommandError("invalid_user", f"Error. Invalid user {username}.")

    def message(self, to: str, message: str) -> events.MessageSent:
        """Send ``message`` to ``to`` now, or keep it for their next login."""
        self._check_other_user(to)
        if self.state.has_blocked(to, self.username):
            raise CommandError(
                "blocked",
                "Your message could not be delivered as the recipient has blocked you.",
            )
        now = self.state.clock.seconds()
        recipient = self.state.sessions.get(to)
        if recipient is None:
            self.state.store.add_offline(self.username, to, message, now)
            return events.MessageSent(to, stored=True)
        recipient.client.deliver(events.DirectMessage(self.username, message, now))
        return events.MessageSent(to, stored=False)

    def broadcast(self, message: str) -> events.BroadcastSent:
        """Send ``message`` to every other online user that has not blocked this one."""
        event = events.BroadcastMessage(
            self.username, message, self.state.clock.seconds()
        )
        has_blocked = self.state.has_blocked
        delivered = skipped = 0
        for name, session in self.state.sessions.items():
            if name == self.username:
                continue
            if has_blocked(name, self.username):
                skipped += 1
            else:
                session.client.deliver(event)
                delivered += 1
        return events.BroadcastSent(delivered, skipped)

    def block(self, target: str) -> events.BlockChanged:
        """Block ``target``: no messages, broadcasts or presence from this user to them."""
        self._check_other_user(target)
        if self.state.has_blocked(self.username, target):
            raise CommandError("already_blocked", f"Error. {target} is already blocked.")
        self.state.block(self.username, target)
        return events.BlockChanged(target, blocked=True)

    def unblock(self, target: str) -> events.BlockChanged:
        """Undo :meth:`block`."""
        self._check_other_user(target)
        if not self.state.has_blocked(self.username, target):
            raise CommandError("not_blocked", f"Error. {target} was not blocked.")
        self.state.unblock(self.username, target)
        return events.BlockChanged(target, blocked=False)

    def _reachable(self, username: str) -> Session:
        """The session of ``username`` if this user may contact them directly."""
        self._check_other_user(username)
        other = self.state.sessions.get(username)
        if other is None:
            raise CommandError("offline", f"Error. {username} is offline.")
        if self.state.has_blocked(username, self.username):
            raise CommandError("blocked", f"Error. {username} has blocked you.")
        return other

    def startprivate(self, target: str) -> events.PeerAddress:
        """Introduce this user's client to ``target``'s peer listener with a one-time token."""
        other = self._reachable(target)
        port = other.client.p2p_port
        if not port:
            raise CommandError(
                "no_peer_port",
                f"Error. {target} is not using a client that accepts private chat.",
            )
        token = secrets.token_hex(16)
        other.client.deliver(events.PrivateRequest(self.username, token))
        return events.PeerAddress("private", target, other.client.host, port, token)

    def sendfile(self, to: str, filename: str, size: int | None) -> events.PeerAddress:
        """Introduce this user's client to ``to``'s UDP file receiver with a one-time token."""
        other = self._reachable(to)
        port = other.client.udp_port
        if not port:
            raise CommandError(
                "no_udp_port",
                f"Error. {to} is not using a client that accepts files.",
            )
        token = secrets.token_hex(16)
        other.client.deliver(events.FileIncoming(self.username, filename, size, token))
        return events.PeerAddress("file", to, other.client.host, port, token)
