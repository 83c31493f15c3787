"""An :class:`~chatservice.store.interface.ILocalChatStore` that keeps everything in memory."""

from __future__ import annotations

import bisect
import itertools
from typing import Iterable

from zope.interface import implementer

from chatservice.store.interface import HistoryEntry, ILocalChatStore, StoredMessage


@implementer(ILocalChatStore)
class MemoryStore:
    """Storage that lasts as long as the process: for tests and throw-away servers."""

    def __init__(self) -> None:
        self._blocks: set[tuple[str, str]] = set()
        self._last_seen: dict[str, float] = {}
        self._offline: dict[str, dict[int, StoredMessage]] = {}
        self._recipients: dict[int, str] = {}
        self._ids = itertools.count(1)
        self._history: dict[str, list[HistoryEntry]] = {}
        self._rooms: dict[int, frozenset[str]] = {}
        self._accounts: dict[str, tuple[str, str | None]] = {}

    def open(self) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to close."""

    def blocks(self) -> Iterable[tuple[str, str]]:
        return sorted(self._blocks)

    def add_block(self, blocker: str, blocked: str) -> None:
        self._blocks.add((blocker, blocked))

    def remove_block(self, blocker: str, blocked: str) -> None:
        self._blocks.discard((blocker, blocked))

    def last_seen(self) -> Iterable[tuple[str, float]]:
        return list(self._last_seen.items())

    def record_seen(self, username: str, at: float) -> None:
        self._last_seen[username] = at

    def add_offline(
        self, sender: str, recipient: str, text: str, sent_at: float
    ) -> StoredMessage:
        message = StoredMessage(next(self._ids), sender, recipient, text, sent_at)
        self._offline.setdefault(recipient, {})[message.message_id] = message
        self._recipients[message.message_id] = recipient
        return message

    def offline_messages(self, recipient: str) -> list[StoredMessage]:
        return list(self._offline.get(recipient, {}).values())

    def remove_offline(self, message_ids: Iterable[int]) -> None:
        for message_id in message_ids:
            recipient = self._recipients.pop(message_id, None)
            if recipient is not None:
                box = self._offline[recipient]
                del box[message_id]
                if not box:
                    del self._offline[recipient]

    def take_offline(self, message_id: int) -> bool:
        present = message_id in self._recipients
        self.remove_offline([message_id])
        return present

    def count_offline(self, recipient: str) -> int:
        return len(self._offline.get(recipient, ()))

    def offline_counts(self, recipient: str, sender: str) -> tuple[int, int]:
        box = self._offline.get(recipient, {})
        return len(box), sum(1 for message in box.values() if message.sender == sender)

    def add_history(
        self, channel: str, sender: str, text: str, sent_at: float
    ) -> HistoryEntry:
        entries = self._history.setdefault(channel, [])
        entry = HistoryEntry(channel, len(entries) + 1, sender, text, sent_at)
        # Kept in time order even if the clock steps back.
        bisect.insort_right(entries, entry, key=_sent_at)
        return entry

    def history_after(self, channels: Iterable[str], after: float) -> list[HistoryEntry]:
        found = []
        for channel in channels:
            entries = self._history.get(channel, [])
            first = bisect.bisect_right(entries, after, key=_sent_at)
            found.extend(entries[first:])
        found.sort(key=lambda entry: (entry.sent_at, entry.channel, entry.seq))
        return found

    def rooms(self) -> Iterable[tuple[int, frozenset[str]]]:
        return sorted(self._rooms.items())

    def save_room(self, room_id: int, members: frozenset[str]) -> None:
        self._rooms[room_id] = members

    def delete_room(self, room_id: int) -> None:
        self._rooms.pop(room_id, None)

    def highest_room_id(self) -> int:
        numbers = list(self._rooms)
        numbers += [int(c[5:]) for c in self._history if c.startswith("room:")]
        return max(numbers, default=0)

    def account(self, username: str) -> tuple[str, str | None] | None:
        return self._accounts.get(username)

    def usernames(self) -> list[str]:
        return sorted(self._accounts)

    def add_account(self, username: str, secret: str, scram: str | None) -> bool:
        if username in self._accounts:
            return False
        self._accounts[username] = (secret, scram)
        return True

    def set_secret(self, username: str, secret: str, scram: str | None) -> bool:
        if username not in self._accounts:
            return False
        self._accounts[username] = (secret, scram)
        return True

    def add_scram_keys(self, username: str, secret: str, scram: str) -> bool:
        if self._accounts.get(username) != (secret, None):
            return False
        self._accounts[username] = (secret, scram)
        return True

    def import_accounts(self, entries: Iterable[tuple[str, str, str | None]]) -> int:
        return sum(self.add_account(*entry) for entry in list(entries))

    def forget_user(self, username: str) -> None:
        self._blocks = {pair for pair in self._blocks if username not in pair}
        self._last_seen.pop(username, None)
        self.remove_offline(list(self._offline.get(username, ())))


def _sent_at(entry: HistoryEntry) -> float:
    return entry.sent_at
