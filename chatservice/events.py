"""What the server says to a client, as plain data.

Every message the server sends is one of the event classes below.  The chat
state creates them without knowing which wire format a recipient speaks; each
connection renders them with :mod:`chatservice.wire.text` or
:mod:`chatservice.wire.jsonlines`.

An event that goes to many recipients (a broadcast, a presence notice) is
rendered once per wire format: :attr:`Event.encoded` caches the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True, eq=False)
class Event:
    """Base class of everything the server sends.

    ``encoded`` maps a wire format's name to the bytes already rendered for it,
    so a fan-out renders once, not once per recipient.  Only events sent without
    a request id are cached (a reply carries its request's id).
    """

    encoded: dict[str, bytes] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    bulk: ClassVar[bool] = False
    """Fan-out traffic (a broadcast, presence, room traffic): under load it may
    wait a little to leave together with the next ones; anything else is
    written at the end of the current reactor turn."""
    with_fanout: ClassVar[bool] = False
    """A reply that reports on a fan-out (``broadcast``'s, ``room send``'s):
    it leaves with that fan-out, as bulk traffic does, not at the end of the
    turn."""


# Errors -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ErrorReply(Event):
    """A request failed; ``code`` is stable for programs, ``message`` is for humans."""

    code: str
    message: str


# Login ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Greeting(Event):
    """The first thing a new connection is told (text format only)."""

    version: str



@dataclass(frozen=True, eq=False)
class Prompt(Event):
    """Ask a human for a login field (text format only)."""

    USERNAME: ClassVar[str] = "username"
    PASSWORD: ClassVar[str] = "password"
    CREATE: ClassVar[str] = "create"
    NEW_PASSWORD: ClassVar[str] = "new_password"
    REPEAT_PASSWORD: ClassVar[str] = "repeat_password"
    OLD_PASSWORD: ClassVar[str] = "old_password"

    field_name: str


@dataclass(frozen=True, eq=False)
class LoginSucceeded(Event):
    """The connection is now logged in as ``username`` (a ``guest``, or an account).

    ``server_final`` is the SCRAM server-final message (``v=...``) after a
    SCRAM login: the client checks it to know the server holds its keys.
    """

    username: str
    guest: bool = False
    server_final: str | None = None


@dataclass(frozen=True, eq=False)
class ScramChallenge(Event):
    """The SCRAM server-first message (JSON ``salt``): the salt, iterations and nonce.

    ``message`` is the RFC 5802 server-first message itself; ``salt``
    (base64) and ``iterations`` repeat what it says, for readers.
    """

    message: str
    salt: str
    iterations: int


@dataclass(frozen=True, eq=False)
class UsernameStatus(Event):
    """Reply to a JSON ``register`` probe without a password: is the name taken?"""

    username: str
    taken: bool


@dataclass(frozen=True, eq=False)
class RegisterStatus(Event):
    """Outcome of a registration: ``success``, or why not (``code``, ``message``)."""

    success: bool
    username: str
    code: str | None = None
    message: str = ""


@dataclass(frozen=True, eq=False)
class PasswordChanged(Event):
    """Reply to ``passwd``."""


@dataclass(frozen=True, eq=False)
class LoginRejected(Event):
    """A login attempt failed.

    ``reason`` is one of ``unknown_user``, ``wrong_password``, ``locked`` (this
    failure locked the account), ``blocked`` (the account is locked from an
    earlier failure), ``already_logged_in``, ``invalid_username``,
    ``unavailable`` (the accounts could not be checked), ``banned`` (an
    operator banned the user or the address; ``retry_after``: until it ends).
    """

    reason: str
    message: str
    retry_after: float | None = None


# Messages -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DirectMessage(Event):
    """A message from one user to another.

    ``offline`` is true when it was stored while the recipient was away;
    ``sent_at`` is the server's clock (seconds since the epoch) at sending.
    """

    sender: str
    text: str
    sent_at: float
    offline: bool = False


@dataclass(frozen=True, eq=False)
class BroadcastMessage(Event):
    """A message from one user to every other online user; ``seq`` numbers it."""

    bulk: ClassVar[bool] = True

    sender: str
    text: str
    sent_at: float
    seq: int


@dataclass(frozen=True, eq=False)
class RoomMessage(Event):
    """A message to the members of room ``room_id``; ``seq`` numbers it in the room."""

    bulk: ClassVar[bool] = True

    room_id: int
    sender: str
    text: str
    sent_at: float
    seq: int


@dataclass(frozen=True, eq=False)
class Presence(Event):
    """``username`` logged in (``online``) or out (not ``online``)."""

    bulk: ClassVar[bool] = True

    username: str
    online: bool


# Replies to commands ----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class UserList(Event):
    """Reply to ``whoelse`` (``since`` is None), ``whoelsesince`` (``since``
    seconds), or ``users offline`` (not ``online``)."""

    users: tuple[str, ...]
    since: float | None = None
    online: bool = True
    guests: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class TypingNotice(Event):
    """``username`` started (``typing``) or stopped typing."""

    username: str
    typing: bool


@dataclass(frozen=True, eq=False)
class Done(Event):
    """A command that has nothing else to say worked (JSON clients get ``ok``)."""

    command: str


@dataclass(frozen=True, eq=False)
class MessageSent(Event):
    """Reply to ``message``: delivered now, or ``stored`` for later.

    ``busy`` is true when the recipient is online but busy (the message is kept
    until they are available); ``auto_reply`` is their auto-reply, given once
    per sender per busy period.
    """

    recipient: str
    stored: bool
    busy: bool = False
    auto_reply: str | None = None


@dataclass(frozen=True, eq=False)
class BroadcastSent(Event):
    """Reply to ``broadcast``: its number and time, who got it, who did not.

    ``skipped`` counts recipients that blocked the sender; ``auto_replies``
    holds ``(user, text)`` from busy users (who do not get broadcasts);
    ``unreached`` counts recipients on other nodes of a cluster that could
    not be reached (this node's link to Redis was down, or their node was
    not subscribed when it was published).
    """

    with_fanout: ClassVar[bool] = True

    delivered: int
    skipped: int
    seq: int
    sent_at: float
    auto_replies: tuple[tuple[str, str], ...] = ()
    unreached: int = 0


@dataclass(frozen=True, eq=False)
class SendReport(Event):
    """Reply to ``send``: which recipients got it, which will, which cannot and why.

    ``failed`` holds ``(user, reason)``; ``auto_replies`` ``(user, text)``.
    """

    delivered: tuple[str, ...]
    stored: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    auto_replies: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, eq=False)
class StatusChanged(Event):
    """Reply to ``busy``, ``idle``, ``hide`` and ``appear``.

    ``status`` is ``busy``, ``available``, ``hidden`` or ``visible``;
    ``auto_reply`` is set for ``busy``; ``kept`` and ``missed`` count, for
    ``available``, the direct messages kept meanwhile and the broadcasts and
    room messages missed.
    """

    status: str
    auto_reply: str | None = None
    kept: int = 0
    missed: int = 0


@dataclass(frozen=True, eq=False)
class StatusReport(Event):
    """Reply to ``status``."""

    busy: bool
    auto_reply: str | None
    hidden: bool
    logged_in_at: float
    now: float


@dataclass(frozen=True, eq=False)
class ActiveList(Event):
    """Reply to ``active``: ``(user, host, peer port or None, logged in at)`` each."""

    users: tuple[tuple[str, str, int | None, float], ...]


@dataclass(frozen=True, eq=False)
class HistoryList(Event):
    """Reply to ``read``: a page of broadcasts and room messages after ``after``, oldest first.

    ``entries`` holds ``(channel, seq, sender, text, sent_at)``; the channel is
    ``broadcast`` or ``room:<id>``.  ``next`` is the cursor of the next page
    (``read next``), ``None`` when this page is the last.
    """

    after: float
    entries: tuple[tuple[str, int, str, str, float], ...]
    next: str | None = None


@dataclass(frozen=True, eq=False)
class MissedSince(Event):
    """Told at login, after the kept messages: ``count`` broadcasts and room
    messages were posted since the user's last logout at ``since`` (``more``:
    at least that many; ``count`` is one page of ``read``)."""

    count: int
    since: float
    more: bool = False


# Rooms --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RoomCreated(Event):
    """Reply to ``room create``: the room, and whether it ``existed`` already."""

    room_id: int
    members: tuple[str, ...]
    existed: bool


@dataclass(frozen=True, eq=False)
class RoomJoined(Event):
    """``creator`` added this user to room ``room_id`` with ``members``."""

    room_id: int
    creator: str
    members: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class RoomPosted(Event):
    """Reply to ``room send``: the message's number and time, who got it (``unreached``: as for a broadcast)."""

    with_fanout: ClassVar[bool] = True

    room_id: int
    seq: int
    sent_at: float
    delivered: int
    skipped: int
    unreached: int = 0


@dataclass(frozen=True, eq=False)
class RoomList(Event):
    """Reply to ``rooms``: ``(room_id, members)`` each."""

    rooms: tuple[tuple[int, tuple[str, ...]], ...]


@dataclass(frozen=True, eq=False)
class RoomLeft(Event):
    """``username`` left room ``room_id`` (the reply to ``room leave`` when it is you)."""

    bulk: ClassVar[bool] = True

    room_id: int
    username: str
    removed: bool = False


@dataclass(frozen=True, eq=False)
class BlockChanged(Event):
    """Reply to ``block`` (``blocked`` true) and ``unblock`` (false)."""

    username: str
    blocked: bool


@dataclass(frozen=True, eq=False)
class BlockList(Event):
    """Reply to ``blocks``: the users this user has blocked, sorted."""

    users: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class HelpText(Event):
    """Reply to ``help``: ``(usage, summary)`` pairs, one per command.

    ``aliases`` holds ``(other name, command)`` pairs; ``topic`` is what
    ``help TOPIC`` asked about (``None`` for the whole list).
    """

    commands: tuple[tuple[str, str], ...]
    aliases: tuple[tuple[str, str], ...] = ()
    topic: str | None = None


# Peer-to-peer set-up ------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PeerAddress(Event):
    """Reply to ``startprivate`` (``purpose`` "private") or ``sendfile`` ("file").

    Where to reach ``username``'s client directly, and the one-time ``token``
    that client was given for this initiator.
    """

    purpose: str
    username: str
    host: str
    port: int
    token: str


@dataclass(frozen=True, eq=False)
class PrivateRequest(Event):
    """``sender`` will connect for private chat presenting ``token``."""

    sender: str
    token: str


@dataclass(frozen=True, eq=False)
class FileIncoming(Event):
    """``sender`` will send ``filename`` (``size`` bytes, if known) over UDP with ``token``."""

    sender: str
    filename: str
    size: int | None
    token: str


# Operators ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ServerNotice(Event):
    """A notice from the server to everyone online (an operator's ``announce``), marked as such.

    ``sender`` is the operator who sent it; ``sent_at`` the server's clock.
    """

    sender: str
    text: str
    sent_at: float


@dataclass(frozen=True, eq=False)
class OperatorDone(Event):
    """Reply to ``kick``, ``ban``, ``unban``, ``mute``, ``unmute`` and ``announce``: what was done.

    :param action: the command.
    :param target: who or what it was done to (``kick``, ``mute``,
        ``unmute``: a user; ``ban``, ``unban``: what the ban names; empty
        for ``announce``).
    :param count: sessions ended (``kick``, ``ban``), bans removed
        (``unban``), or users told (``announce``).
    :param until: when the ban or mute ends (``None``: a ban for good).
    :param ban_id: the ban's number (``ban``).
    :param kind: what the ban names: ``user``, ``address`` or ``network`` (``ban``).
    :param reason: the reason given (may be empty).
    """

    action: str
    target: str
    count: int = 0
    until: float | None = None
    ban_id: int | None = None
    kind: str = ""
    reason: str = ""


@dataclass(frozen=True, eq=False)
class BanReport(Event):
    """Reply to ``bans``: the bans in force, oldest first.

    ``bans`` holds ``(ban_id, kind, target, set_by, set_at, expires_at,
    reason)`` each (``expires_at`` ``None``: for good).
    """

    bans: tuple[tuple[int, str, str, str, float, float | None, str], ...]


@dataclass(frozen=True, eq=False)
class WhoisReport(Event):
    """Reply to ``whois``: what the server knows of an online user.

    :param client: ``text``, ``telnet``, ``json`` or ``web`` (empty when
        another node has the user and did not say).
    :param tls: whether the connection is encrypted (``None``: not known here).
    :param idle: seconds since the user's last command (``None``: not known
        here, the user is on another node).
    :param node: the cluster node the user is on (``None``: not clustered).
    """

    username: str
    host: str
    logged_in_at: float
    idle: float | None
    client: str
    tls: bool | None
    busy: bool
    hidden: bool
    guest: bool
    operator: bool
    node: str | None = None


@dataclass(frozen=True, eq=False)
class RehashReport(Event):
    """Reply to ``rehash``: one line per setting reloaded or kept (what changed)."""

    lines: tuple[str, ...]


# End of a session -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Disconnected(Event):
    """The server is closing this connection.

    ``reason`` is one of ``logout``, ``timeout``, ``locked``, ``shutdown``,
    ``banned``, ``kicked``, ``outdated_client`` (with ``server_version``);
    ``message`` says it to a human.
    """

    reason: str
    message: str
    server_version: str | None = None

