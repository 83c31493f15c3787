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

History is read a page at a time (:meth:`IChatStore.history_page`, in the
order of :class:`HistoryPosition`) and kept within bounds
(:meth:`IChatStore.purge_history`, a batch a call, so that no call holds
the reactor or the database long).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, NamedTuple

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

    def rooms() -> Deferred[Iterable[tuple[int, frozenset[str]]]]:
        """Every room: ``(room_id, members)``."""

    def save_room(room_id: int, members: frozenset[str]) -> Deferred[None]:
        """Create or update a room."""

    def delete_room(room_id: int) -> Deferred[None]:
        """Remove a room (its history stays)."""

    def leave_room(room_id: int, username: str) -> Deferred[frozenset[str]]:
        """Take ``username`` out of room ``room_id``: the members left.

        A room left with no members is removed (its history stays).  Only
        that member is taken out: members leaving one room at once (from
        several nodes) are all out afterwards.  A room that does not exist
        has no members left.
        """

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

    def rooms() -> Iterable[tuple[int, frozenset[str]]]:
        """Every room: ``(room_id, members)``."""

    def save_room(room_id: int, members: frozenset[str]) -> None:
        """Create or update a room."""

    def delete_room(room_id: int) -> None:
        """Remove a room (its history stays)."""

    def leave_room(room_id: int, username: str) -> frozenset[str]:
        """Take ``username`` out of room ``room_id``: the members left (see
        :meth:`IChatStore.leave_room`)."""

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
