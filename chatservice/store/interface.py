"""The storage interface the chat state writes through.

Calls are synchronous and small (one row, or one user's rows): the state calls
them on the reactor thread, so an implementation must keep each call short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

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


class IChatStore(Interface):
    """Persistent chat data: blocks, last-seen times, offline messages, rooms, history."""

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
