"""The storage interfaces the chat state writes through.

:class:`IChatStore` is what the chat state uses: every call returns a
:class:`~twisted.internet.defer.Deferred` firing with its result, so a store
may do its work elsewhere (a database server reached through a thread pool:
:class:`~chatservice.store.postgres.PostgresStore`).

:class:`ILocalChatStore` has the same calls, synchronous: the stores kept in
this process (:class:`~chatservice.store.memory.MemoryStore`,
:class:`~chatservice.store.sqlite.SQLiteStore`) provide it, and are used as an
:class:`IChatStore` through an adapter.  Their calls are small (one row, or one
user's rows) and run on the reactor thread, so each must stay short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from twisted.internet.defer import Deferred
from zope.interface import Interface


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


@dataclass(frozen=True)
class HistoryEntry:
    """A broadcast or room message, kept for ``read``.

    :param channel: ``"broadcast"``, or ``"room:<id>"`` for a room.
    :param seq: its number in its channel, from 1.
    """

    channel: str
    seq: int
    sender: str
    text: str
    sent_at: float


class ILocalChatStore(Interface):
    """Persistent chat data: blocks, last-seen times, offline messages, rooms, history.

    The synchronous form of :class:`IChatStore`: each call returns its result.
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

    def count_offline(recipient: str) -> int:
        """How many messages are kept for ``recipient``."""

    def add_history(channel: str, sender: str, text: str, sent_at: float) -> HistoryEntry:
        """Number and keep a broadcast or room message."""

    def history_after(channels: Iterable[str], after: float) -> list[HistoryEntry]:
        """The messages of ``channels`` sent after ``after``, oldest first."""

    def rooms() -> Iterable[tuple[int, frozenset[str]]]:
        """Every room: ``(room_id, members)``."""

    def save_room(room_id: int, members: frozenset[str]) -> None:
        """Create or update a room."""

    def delete_room(room_id: int) -> None:
        """Remove a room (its history stays)."""

    def highest_room_id() -> int:
        """The highest room number in use or in the history (0 for none), so
        that a new room never takes the number of an old room's history."""


class IChatStore(Interface):
    """Persistent chat data, asynchronously: each call returns a :class:`Deferred`.

    The calls, their arguments and what their Deferreds fire with are those of
    :class:`ILocalChatStore`; a failure (the database unreachable, for
    instance) is a failed Deferred.  Calls take effect in the order they are
    made, so a caller need not wait for one call before making the next.
    """

    def open() -> Deferred[None]:
        """Make the store ready; called once when the service starts."""

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

    def count_offline(recipient: str) -> Deferred[int]:
        """How many messages are kept for ``recipient``."""

    def add_history(
        channel: str, sender: str, text: str, sent_at: float
    ) -> Deferred[HistoryEntry]:
        """Number and keep a broadcast or room message."""

    def history_after(channels: Iterable[str], after: float) -> Deferred[list[HistoryEntry]]:
        """The messages of ``channels`` sent after ``after``, oldest first."""

    def rooms() -> Deferred[Iterable[tuple[int, frozenset[str]]]]:
        """Every room: ``(room_id, members)``."""

    def save_room(room_id: int, members: frozenset[str]) -> Deferred[None]:
        """Create or update a room."""

    def delete_room(room_id: int) -> Deferred[None]:
        """Remove a room (its history stays)."""

    def highest_room_id() -> Deferred[int]:
        """The highest room number in use or in the history (0 for none), so
        that a new room never takes the number of an old room's history."""
