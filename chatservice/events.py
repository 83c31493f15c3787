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

    field_name: str


@dataclass(frozen=True, eq=False)
class LoginSucceeded(Event):
    """The connection is now logged in as ``username``."""

    username: str


@dataclass(frozen=True, eq=False)
class LoginRejected(Event):
    """A login attempt failed.

    ``reason`` is one of ``unknown_user``, ``wrong_password``, ``locked`` (this
    failure locked the account), ``blocked`` (the account is locked from an
    earlier failure), ``already_logged_in``, ``invalid_username``,
    ``unavailable`` (the accounts could not be checked).
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
    """A message from one user to every other online user."""

    sender: str
    text: str
    sent_at: float


@dataclass(frozen=True, eq=False)
class Presence(Event):
    """``username`` logged in (``online``) or out (not ``online``)."""

    username: str
    online: bool


# Replies to commands ----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class UserList(Event):
    """Reply to ``whoelse`` (``since`` is None) or ``whoelsesince`` (``since`` seconds)."""

    users: tuple[str, ...]
    since: float | None = None


@dataclass(frozen=True, eq=False)
class MessageSent(Event):
    """Reply to ``message``: delivered now, or ``stored`` for the next login."""

    recipient: str
    stored: bool


@dataclass(frozen=True, eq=False)
class BroadcastSent(Event):
    """Reply to ``broadcast``: how many got it, how many were skipped by blocks."""

    delivered: int
    skipped: int


@dataclass(frozen=True, eq=False)
class BlockChanged(Event):
    """Reply to ``block`` (``blocked`` true) and ``unblock`` (false)."""

    username: str
    blocked: bool


@dataclass(frozen=True, eq=False)
class HelpText(Event):
    """Reply to ``help``: ``(usage, summary)`` pairs, one per command."""

    commands: tuple[tuple[str, str], ...]


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


# End of a session -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Disconnected(Event):
    """The server is closing this connection.

    ``reason`` is one of ``logout``, ``timeout``, ``locked``, ``shutdown``;
    ``message`` says it to a human.
    """

    reason: str
    message: str

