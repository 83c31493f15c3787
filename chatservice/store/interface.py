"""The storage interfaces: what the chat state writes through, and what it may wrap.

- :class:`IChatStore`, the interface the chat state uses, is asynchronous:
  every call returns a :class:`~twisted.internet.defer.Deferred`, so a store
  on another machine (PostgreSQL) never blocks the reactor.
- :class:`ILocalChatStore` is the same calls, synchronous: a store on this
  machine whose every call is small enough for the reactor thread (one row,
  or one user's rows).  :class:`~chatservice.store.memory.MemoryStore` and
  :class:`~chatservice.store.sqlite.SQLiteStore` are such stores;
  :class:`~chatservice.store.local.LocalStore` makes one an
  :class:`IChatStore` whose Deferreds have fired when the call returns.

The accounts live in the store too (:meth:`IChatStore.account` and the calls
after it), so that every node sharing a store sees the same accounts; the
server reaches them through
:class:`~chatservice.auth.directory.StoredAccounts`.  A store keeps secrets
and SCRAM keys as text and never looks inside them.

The operators (accounts allowed the operator commands) and the bans set by
operators are kept in the store as well (:meth:`IChatStore.operators` and
:meth:`IChatStore.bans` and the calls after each), so that every node
sharing a store acts on the same ones.

History is read a page at a time (:meth:`IChatStore.history_page`, in the
order of :class:`HistoryPosition`) and kept within bounds
(:meth:`IChatStore.purge_history`, a batch a call, so that no call holds
the reactor or the database long).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Literal, NamedTuple

from zope.interface import Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred


@dataclass(frozen=True)
class StoredMessage:
    """A direct message kept for a recipient who was offline.

    :param message_id: the store's identifier, used to remove it once delivered.
    """

    message_id: int
    sender: str
    recipient: str
    text: str
    sent_at: float


class KeptOffline(NamedTuple):
    """What :meth:`IChatStore.keep_offline` did with a direct message for a user's mailbox.

    :param message: the message as kept, or ``None`` if the mailbox rules refused it.
    :param waiting: how many messages were kept for the recipient before this one.
    :param from_sender: how many of those were from its sender.
    """

    message: StoredMessage | None
    waiting: int
    from_sender: int


class HistoryPosition(NamedTuple):
    """Where a history entry stands in the order ``read`` pages through: time, channel, number.

    Compared as a tuple (channels by code point), so every entry has its own
    place even when several were sent at the same time.
    """

    sent_at: float
    channel: str
    seq: int


@dataclass(frozen=True)
class HistoryEntry:
    """A broadcast or room message, kept for ``read``.

    :param channel: ``"broadcast"``, or ``"room:<id>"`` for a room.
    :param seq: its number in its channel, from 1; never given twice, even
        after older entries were purged.
    """

    channel: str
    seq: int
    sender: str
    text: str
    sent_at: float

    @property
    def position(self) -> HistoryPosition:
        """Where it stands in the order history is read in."""
        return HistoryPosition(self.sent_at, self.channel, self.seq)


class StoredRoom(NamedTuple):
    """A room as the store has it: its number, its members and its version.

    :param version: the room's version: every change of its members (its
        creation, each member leaving, its removal) takes the next number of
        one counter the store keeps for all rooms, under the same lock as the
        change.  A room's versions therefore only grow, even across its
        removal and a new room saved under its number, and of two changes of
        one room the later has the higher version: a node that receives the
        announcements of several changes in any order keeps the newest.
    """

    room_id: int
    members: frozenset[str]
    version: int


@dataclass(frozen=True)
class UserData:
    """Everything a store keeps about one user name, for an export (:meth:`IChatStore.user_data`).

    :param account: whether there is an account of that name (its secret is never given out).
    :param blocking: whom the user blocked, sorted.
    :param blocked_by: who blocked the user, sorted.
    :param rooms: the rooms the user is a member of, by number.
    :param last_seen: when the user was last visibly online, if recorded.
    :param messages_to: direct messages kept for the user, oldest first.
    :param messages_from: direct messages the user sent that are kept for others, oldest first.

    The broadcasts and room messages the user sent are read a page at a
    time (:meth:`IChatStore.history_of`): there may be many.
    """

    account: bool
    blocking: tuple[str, ...]
    blocked_by: tuple[str, ...]
    rooms: tuple[int, ...]
    last_seen: float | None
    messages_to: tuple[StoredMessage, ...]
    messages_from: tuple[StoredMessage, ...]


BanKind = Literal["user", "address", "network"]
"""What a ban names: an account, one IP address, or a network (CIDR)."""

BAN_KINDS: tuple[BanKind, ...] = ("user", "address", "network")
"""Every :data:`BanKind`."""


@dataclass(frozen=True)
class Ban:
    """A ban set by an operator: who may not log in or connect, until when, and why.

    :param kind: ``"user"`` (``target`` is a user name), ``"address"`` (an IP
        address in its normal text form, e.g. ``"192.0.2.7"`` or
        ``"2001:db8::1"``) or ``"network"`` (a network in CIDR form, e.g.
        ``"192.0.2.0/24"``).
    :param target: what is banned, in the form ``kind`` says.
    :param set_by: the operator who set it (or the tool: ``"chatservice-admin"``).
    :param set_at: when it was set, in seconds since the epoch.
    :param expires_at: when it ends, in seconds since the epoch, or ``None``
        for a ban that never ends.
    :param reason: why, as the operator said (may be empty).
    :param ban_id: the store's number for it, given by
        :meth:`IChatStore.add_ban`; ``None`` until then.
    """

    kind: BanKind
    target: str
    set_by: str
    set_at: float
    expires_at: float | None = None
    reason: str = ""
    ban_id: int | None = None

    def expired(self, now: float) -> bool:
        """Whether the ban has ended at ``now`` (seconds since the epoch)."""
        return self.expires_at is not None and self.expires_at <= now


class IChatStore(Interface):
    """Persistent chat data, asynchronously: what the chat state and the accounts write through.

    The calls of :class:`ILocalChatStore`, each returning a Deferred that fires
    with what that call returns (or fails with what it raises), and never
    blocking the reactor meanwhile.  Changes take effect in the order they
    were called (a store with several connections must keep them in order:
    a room saved twice keeps the second member set).
    """

    def open() -> Deferred[None]:
        """Make the store ready; called once when the service starts, fires once it is."""

    def close() -> Deferred[None]:
        """Release the store's resources; called once when the service stops."""

    def blocks() -> Deferred[Iterable[tuple[str, str]]]:
        """Every ``(blocker, blocked)`` pair."""

    def add_block(blocker: str, blocked: str) -> Deferred[None]:
        """Record that ``blocker`` blocked ``blocked``."""

    def remove_block(blocker: str, blocked: str) -> Deferred[None]:
        """Forget that ``blocker`` blocked ``blocked``."""

    def last_seen() -> Deferred[Iterable[tuple[str, float]]]:
        """Every ``(username, seconds)``: when each user was last online."""

    def record_seen(username: str, at: float) -> Deferred[None]:
        """Record that ``username`` was online until ``at``."""

    def add_offline(
        sender: str, recipient: str, text: str, sent_at: float
    ) -> Deferred[StoredMessage]:
        """Keep a message for ``recipient``; it is durable when the Deferred fires."""

    def offline_messages(recipient: str) -> Deferred[list[StoredMessage]]:
        """The messages kept for ``recipient``, oldest first."""

    def remove_offline(message_ids: Iterable[int]) -> Deferred[None]:
        """Remove delivered messages."""

    def take_offline(message_id: int) -> Deferred[bool]:
        """Remove one kept message; whether it was there (so that only one taker delivers it)."""

    def count_offline(recipient: str) -> Deferred[int]:
        """How many messages are kept for ``recipient``."""

    def keep_offline(
        sender: str, recipient: str, text: str, sent_at: float, max_waiting: int,
        max_from_sender: int,
    ) -> Deferred[KeptOffline]:
        """Keep a message for ``recipient`` if their mailbox has room for it, in one step.

        It is kept if fewer than ``max_waiting`` messages are kept for
        ``recipient``, and fewer than ``max_from_sender`` of them are from
        ``sender``; it is durable when the Deferred fires.  Counting and
        keeping are one step for every node of the store: two messages kept
        at once never take a mailbox past its bounds.
        """

    def add_history(
        channel: str, sender: str, text: str, sent_at: float
    ) -> Deferred[HistoryEntry]:
        """Number and keep a broadcast or room message."""

    def history_after(channels: Iterable[str], after: float) -> Deferred[list[HistoryEntry]]:
        """The messages of ``channels`` sent after ``after``, oldest first."""

    def history_page(
        channels: Iterable[str], start: HistoryPosition, limit: int
    ) -> Deferred[list[HistoryEntry]]:
        """At most ``limit`` messages of ``channels`` (each channel once) that come after ``start``.

        In the order of :class:`HistoryPosition` (time, channel, number): one
        page of ``read``; the last entry's position starts the next page.
        """

    def purge_history(before: float | None, keep: int | None, limit: int) -> Deferred[int]:
        """Forget at most ``limit`` messages sent before ``before``, or older than the last ``keep`` numbers of their channel.

        Either rule may be ``None`` (not applied).  A channel's numbering
        goes on after its entries are forgotten.

        :return: how many were forgotten (fewer than ``limit``: no more to forget now).
        """

    def rooms() -> Deferred[Iterable[StoredRoom]]:
        """Every room, by number, with its members and version."""

    def save_room(room_id: int, members: frozenset[str]) -> Deferred[int]:
        """Create or update a room; fires with its new version (:class:`StoredRoom`)."""

    def delete_room(room_id: int) -> Deferred[None]:
        """Remove a room (its history stays)."""

    def leave_room(room_id: int, username: str) -> Deferred[StoredRoom]:
        """Take ``username`` out of room ``room_id``: the room as it is then.

        A room left with no members is removed (its history stays).  Only
        that member is taken out: members leaving one room at once (from
        several nodes) are all out afterwards.  The answer has the members
        left (none: the room is gone) and a new version, taken under the
        room's lock, even when the member or the room was gone already (it
        then says how the room is now, later than any change made before).
        """

    def last_room_version() -> Deferred[int]:
        """The highest room version given so far (0 for none): read after
        :meth:`rooms`, it is at least the version of every change made
        before that read, removals included."""

    def highest_room_id() -> Deferred[int]:
        """The highest room number in use or in the history (0 for none)."""

    def account(username: str) -> Deferred[tuple[str, str | None] | None]:
        """The account ``username`` as ``(secret, scram)``, or ``None`` when there is none.

        ``secret`` is what the password is checked against: a plain password
        (an account imported from the sample credentials file) or a
        ``$scrypt$`` hash; ``scram`` is its SCRAM-SHA-256 keys in the text
        form of :meth:`~chatservice.auth.scram.ScramKeys.format`, or ``None``.
        """

    def usernames() -> Deferred[list[str]]:
        """Every account's user name, sorted by code point."""

    def add_account(username: str, secret: str, scram: str | None) -> Deferred[bool]:
        """Create the account ``username`` unless the name is taken: whether it was created.

        Atomic: of several calls for one name, on any number of nodes, exactly
        one is answered ``True``.
        """

    def set_secret(username: str, secret: str, scram: str | None) -> Deferred[bool]:
        """Replace an account's secret and keys: whether there is such an account."""

    def add_scram_keys(username: str, secret: str, scram: str) -> Deferred[bool]:
        """Give ``username`` the keys ``scram``, only if its secret is still ``secret``
        and it has no keys yet: whether it did (atomic, like :meth:`add_account`)."""

    def import_accounts(
        entries: Iterable[tuple[str, str, str | None]]
    ) -> Deferred[int]:
        """Create each ``(username, secret, scram)`` whose name is not taken: how many were.

        An account already there is left exactly as it is (the store wins).
        """

    def forget_user(username: str) -> Deferred[None]:
        """Forget what is kept about ``username`` (a guest whose session ended).

        Its blocks (of others and by others), its last-seen time and the
        messages kept for it go; the messages it sent and the history stay,
        and its rooms are changed through :meth:`save_room` and
        :meth:`delete_room`.
        """

    def operators() -> Deferred[set[str]]:
        """The user names of the accounts that are operators."""

    def set_operator(username: str, operator: bool) -> Deferred[bool]:
        """Make the account ``username`` an operator, or not: whether there is such an account.

        Idempotent (granting twice, or revoking from a non-operator, is no
        error).  An account created again under a name whose account was
        removed is not an operator.
        """

    def bans() -> Deferred[list[Ban]]:
        """Every ban, expired or not (the caller compares with its clock), by number."""

    def add_ban(ban: Ban) -> Deferred[Ban]:
        """Keep ``ban`` (its ``ban_id`` is ignored): the ban as kept, with its number.

        One ban per ``(kind, target)``: a ban of a target already banned
        replaces the details (who, when, expiry, reason) of the one kept,
        which keeps its number.  Atomic across nodes.
        """

    def remove_ban(ban: int | str) -> Deferred[int]:
        """Remove the ban numbered ``ban`` (an int), or every ban whose target is ``ban`` (a str).

        :return: how many bans were removed (0: none matched).
        """

    # Administration (chatservice-admin) -------------------------------------------

    def user_data(username: str) -> Deferred[UserData]:
        """Everything kept about ``username`` (:class:`UserData`); all empty for a name never seen."""

    def delete_user(username: str, sent: bool) -> Deferred[bool]:
        """Delete the account ``username`` and what is kept about it, at once: whether there was an account.

        Its operator status, blocks (of others and by others), last-seen
        time, the messages kept for it and its room memberships go (a room left without members
        goes too; its history and number stay).  With ``sent``, the direct
        messages it sent that are kept for others go as well.  Its broadcasts
        and room messages stay in the history: :meth:`forget_history_of`
        forgets them, a batch at a time.
        """

    def history_of(
        username: str, start: HistoryPosition, limit: int
    ) -> Deferred[list[HistoryEntry]]:
        """At most ``limit`` of the broadcasts and room messages ``username`` sent, after ``start``.

        In the order of :class:`HistoryPosition`, as :meth:`history_page`:
        the last entry's position starts the next page.
        """

    def forget_history_of(username: str, limit: int) -> Deferred[int]:
        """Forget at most ``limit`` of the broadcasts and room messages ``username`` sent.

        The channels' numbering goes on.

        :return: how many were forgotten (fewer than ``limit``: none is left).
        """


class ILocalChatStore(Interface):
    """Persistent chat data on this machine: accounts, blocks, last-seen times, offline messages, rooms, history.

    Every call is synchronous and small enough for the reactor thread (one
    row, or one user's rows).  Wrap one in
    :class:`~chatservice.store.local.LocalStore` to give it to the chat state.
    """

    def open() -> None:
        """Make the store ready; called once when the service starts."""

    def close() -> None:
        """Release the store's resources; called once when the service stops."""

    def blocks() -> Iterable[tuple[str, str]]:
        """Every ``(blocker, blocked)`` pair."""

    def add_block(blocker: str, blocked: str) -> None:
        """Record that ``blocker`` blocked ``blocked``."""

    def remove_block(blocker: str, blocked: str) -> None:
        """Forget that ``blocker`` blocked ``blocked``."""

    def last_seen() -> Iterable[tuple[str, float]]:
        """Every ``(username, seconds)``: when each user was last online."""

    def record_seen(username: str, at: float) -> None:
        """Record that ``username`` was online until ``at``."""

    def add_offline(sender: str, recipient: str, text: str, sent_at: float) -> StoredMessage:
        """Keep a message for ``recipient``; it is durable when this returns."""

    def offline_messages(recipient: str) -> list[StoredMessage]:
        """The messages kept for ``recipient``, oldest first."""

    def remove_offline(message_ids: Iterable[int]) -> None:
        """Remove delivered messages."""

    def take_offline(message_id: int) -> bool:
        """Remove one kept message; whether it was there (so that only one taker delivers it)."""

    def count_offline(recipient: str) -> int:
        """How many messages are kept for ``recipient``."""

    def keep_offline(
        sender: str, recipient: str, text: str, sent_at: float, max_waiting: int,
        max_from_sender: int,
    ) -> KeptOffline:
        """Keep a message for ``recipient`` if their mailbox has room for it (see
        :meth:`IChatStore.keep_offline`); it is durable when this returns."""

    def add_history(channel: str, sender: str, text: str, sent_at: float) -> HistoryEntry:
        """Number and keep a broadcast or room message."""

    def history_after(channels: Iterable[str], after: float) -> list[HistoryEntry]:
        """The messages of ``channels`` sent after ``after``, oldest first."""

    def history_page(
        channels: Iterable[str], start: HistoryPosition, limit: int
    ) -> list[HistoryEntry]:
        """At most ``limit`` messages of ``channels`` (each channel once) after ``start``, in order."""

    def purge_history(before: float | None, keep: int | None, limit: int) -> int:
        """Forget at most ``limit`` messages sent before ``before``, or older than the last ``keep`` numbers of their channel; how many."""

    def rooms() -> Iterable[StoredRoom]:
        """Every room, by number, with its members and version."""

    def save_room(room_id: int, members: frozenset[str]) -> int:
        """Create or update a room; its new version (:class:`StoredRoom`)."""

    def delete_room(room_id: int) -> None:
        """Remove a room (its history stays)."""

    def leave_room(room_id: int, username: str) -> StoredRoom:
        """Take ``username`` out of room ``room_id``: the room as it is then (see
        :meth:`IChatStore.leave_room`)."""

    def last_room_version() -> int:
        """The highest room version given so far (see :meth:`IChatStore.last_room_version`)."""

    def highest_room_id() -> int:
        """The highest room number in use or in the history (0 for none), so
        that a new room never takes the number of an old room's history."""

    def account(username: str) -> tuple[str, str | None] | None:
        """The account ``username`` as ``(secret, scram)``, or ``None`` when there is none."""

    def usernames() -> list[str]:
        """Every account's user name, sorted by code point."""

    def add_account(username: str, secret: str, scram: str | None) -> bool:
        """Create the account ``username`` unless the name is taken: whether it was created."""

    def set_secret(username: str, secret: str, scram: str | None) -> bool:
        """Replace an account's secret and keys: whether there is such an account."""

    def add_scram_keys(username: str, secret: str, scram: str) -> bool:
        """Give ``username`` the keys ``scram`` if its secret is still ``secret`` and it has none."""

    def import_accounts(entries: Iterable[tuple[str, str, str | None]]) -> int:
        """Create each ``(username, secret, scram)`` whose name is not taken: how many were."""

    def forget_user(username: str) -> None:
        """Forget the blocks by and of ``username``, its last-seen time and the
        messages kept for it (a guest whose session ended); see
        :meth:`IChatStore.forget_user`."""

    def operators() -> set[str]:
        """The user names of the accounts that are operators."""

    def set_operator(username: str, operator: bool) -> bool:
        """Make the account ``username`` an operator, or not: whether there is such an account."""

    def bans() -> list[Ban]:
        """Every ban, expired or not, by number."""

    def add_ban(ban: Ban) -> Ban:
        """Keep ``ban``, replacing the details of a ban of the same target: the ban as kept, numbered."""

    def remove_ban(ban: int | str) -> int:
        """Remove the ban numbered ``ban`` (int) or the bans of the target ``ban`` (str): how many."""

    # Administration (chatservice-admin) -------------------------------------------

    def user_data(username: str) -> UserData:
        """Everything kept about ``username``; see :meth:`IChatStore.user_data`."""

    def delete_user(username: str, sent: bool) -> bool:
        """Delete the account ``username`` and what is kept about it; see :meth:`IChatStore.delete_user`."""

    def history_of(username: str, start: HistoryPosition, limit: int) -> list[HistoryEntry]:
        """A page of what ``username`` sent to the history; see :meth:`IChatStore.history_of`."""

    def forget_history_of(username: str, limit: int) -> int:
        """Forget a batch of what ``username`` sent to the history; see :meth:`IChatStore.forget_history_of`."""
