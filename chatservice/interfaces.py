"""The small interfaces the chat state works through, so it never needs a transport.

- :class:`ClientConnection`: a connection, as the state sees it (the cred "mind").
- :class:`Fanout`: where an event for every online user goes (and :class:`OneByOne`).
- :class:`ChatMember`: an online user, as the state sees it when delivering.
- :class:`AccountDirectory`: which user names exist.
- :class:`PasswordChanger`: where a session changes its user's password.
- :class:`ActivityRecorder`: where the human-readable activity logs go.
- :class:`IChatSession`: a logged-in user (the cred avatar).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Collection, Protocol

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from chatservice import events
    from chatservice.commands import Request
    from chatservice.store.interface import HistoryEntry, StoredRoom


class ClientConnection(Protocol):
    """What the state needs of a connection: somewhere to send events.

    ``host`` is the client's IP address; ``p2p_port`` and ``udp_port`` are the
    ports its peer listener and file receiver said (at login) they listen on.
    """

    host: str
    p2p_port: int | None
    udp_port: int | None
    congested: bool
    """Whether the client has stopped reading (its direct messages are kept)."""
    kind: str
    """What the client is: ``text``, ``telnet``, ``json`` or ``web`` (``whois``)."""
    secure: bool | None
    """Whether the connection is encrypted (``None``: not known)."""

    def deliver(self, event: events.Event) -> None:
        """Send ``event`` to the user (buffered; never blocks)."""

    def disconnect(self, event: events.Disconnected) -> None:
        """Send ``event``, then close the connection."""


class Fanout(Protocol):
    """Where an event for every user online on this node goes.

    The state tells it who logs in and out; :meth:`share` hands one event to
    all of them but a few.  :class:`OneByOne` delivers to each in turn;
    :class:`~chatservice.server.fanout.SharedFanout` (the server's) appends it
    once for every connection that keeps up.
    """

    def join(self, client: ClientConnection) -> None:
        """``client``'s user is online: it gets what is shared from now on."""

    def leave(self, client: ClientConnection) -> None:
        """``client``'s user logged out: it gets nothing more that is shared."""

    def share(self, event: events.Event, left_out: Collection[object]) -> None:
        """Deliver ``event`` (bulk output) to every member but the clients in ``left_out``."""


class OneByOne:
    """A :class:`Fanout` that calls each member's ``deliver`` (no server: tests, tools)."""

    __slots__ = ("members",)

    def __init__(self) -> None:
        self.members: dict[ClientConnection, None] = {}

    def join(self, client: ClientConnection) -> None:
        self.members[client] = None

    def leave(self, client: ClientConnection) -> None:
        self.members.pop(client, None)

    def share(self, event: events.Event, left_out: Collection[object]) -> None:
        for client in tuple(self.members):
            if client not in left_out:
                client.deliver(event)


class ChatMember(Protocol):
    """What the state needs of an online user (a session) to deliver to it."""

    username: str
    client: ClientConnection
    logged_in_at: float
    guest: bool
    hidden: bool
    """Whether the user left other users' lists and presence notices."""
    auto_reply: str | None
    """The auto-reply while busy; ``None`` when available."""

    def miss(self, sender: str) -> str | None:
        """Count a message missed while busy; the auto-reply for ``sender``, once."""

    def auto_reply_to(self, sender: str) -> str | None:
        """The auto-reply for ``sender`` while busy, once per busy period."""

    def deliver_kept(self) -> Deferred[int]:
        """Deliver, then forget, the direct messages kept for this user: how many.

        The store is told to forget them once they have been written to the
        connection (a reactor turn after delivering them); the Deferred fires
        after it forgot them.
        """

    def end(self) -> None:
        """Log out (idempotent)."""


class AccountDirectory(Protocol):
    """What the state needs of the accounts: whether a user name exists.

    :class:`~chatservice.auth.directory.StoredAccounts` is one: the accounts
    are in the store, their names cached on each node.
    """

    def load(self) -> Deferred[None]:
        """Get ready (import and read the names); called once when the service starts."""

    def exists(self, username: str) -> bool:
        """Whether ``username`` is an account, as far as this node knows (at once)."""

    def usernames(self) -> list[str]:
        """Every account's user name, sorted, as far as this node knows (at once)."""

    def find(self, username: str) -> Deferred[bool]:
        """Whether ``username`` is an account, asking the store when this node does not know it."""


class PasswordChanger(Protocol):
    """What a session needs to change its user's password."""

    def change_password(self, username: str, old: str, new: str) -> Deferred[None]:
        """Change ``username``'s password after checking ``old``.

        The Deferred fails with :class:`~chatservice.auth.accounts.AccountError`
        (its ``code`` and ``message`` are for the user) when it cannot.
        """


class ActivityRecorder(Protocol):
    """Where the state reports activity for the human-readable logs."""

    def users_changed(self) -> None:
        """The set of online users changed (someone logged in or out)."""

    def message_posted(self, entry: HistoryEntry) -> None:
        """A broadcast or room message was posted."""


class NoActivityRecorder:
    """An :class:`ActivityRecorder` that records nothing (for tests)."""

    def users_changed(self) -> None:
        """Record nothing."""

    def message_posted(self, entry: HistoryEntry) -> None:
        """Record nothing."""


class IChatSession(Interface):
    """A logged-in user, as handed out by the realm."""

    username = Attribute("The authenticated user name (str).")

    def begin() -> None:
        """Announce the login and deliver what was kept while offline."""

    def execute(request: Request) -> events.Event | Deferred[events.Event]:
        """Carry out a command: the reply, or a Deferred firing with it.

        Raises CommandError when it cannot be done; a ``Disconnected`` reply
        means: send it, then close the connection.
        """

    def end() -> None:
        """Log out: leave the online set and announce it.  Idempotent."""


class ClusterPeers(Protocol):
    """The other nodes of a cluster, as the chat state sees them (``chatservice.cluster.node``)."""

    name: str
    """This node's name."""
    remote: dict[str, ChatMember]
    """The users online on the other nodes."""

    def claim(self, member: ChatMember) -> Deferred[None]:
        """Hold ``member``'s name for this node; fails with ``AlreadyLoggedIn`` if another holds it."""

    def release(self, member: ChatMember) -> None:
        """``member`` logged out on this node."""

    def changed(self, member: ChatMember) -> None:
        """``member``'s hidden or busy state changed."""

    def online(self, username: str) -> ChatMember | None:
        """The user, if online on another node."""

    def deliver_remote(
        self, event: events.Event, sender: str, audience: Any, rule: Any, report: Any
    ) -> Deferred[Any]:
        """Send a fan-out to the other nodes; fires with the report with their part added
        (once it is known which of them got it)."""

    def announce_direct(self, username: str, message_id: int, event: events.Event) -> None:
        """A direct message kept for ``username``, online on another node: show it there."""

    def seen(self, username: str, at: float) -> None:
        """``username`` was last seen online at ``at``."""

    def block_changed(self, blocker: str, blocked: str, on: bool) -> None:
        """A block was stored (``on``) or removed."""

    def room_changed(self, room: StoredRoom) -> None:
        """A room was stored as created or changed, or removed (no members)."""

    def moderation(self, action: dict[str, Any]) -> bool:
        """An operator kicked, banned, unbanned or muted here: the other nodes do it too
        (whether it could be sent)."""
