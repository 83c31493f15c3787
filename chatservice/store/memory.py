"""An :class:`~chatservice.store.interface.ILocalChatStore` that keeps everything in memory.

Each channel's history is a list in time order (then number).  Purging scans
a channel's list (it is for tests and throw-away servers, not for millions
of entries).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from typing import Iterable

from zope.interface import implementer

from chatservice.store.interface import (
    Ban,
    HistoryEntry,
    HistoryPosition,
    ILocalChatStore,
    KeptOffline,
    StoredMessage,
    StoredRoom,
    UserData,
)


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
        self._last_seq: dict[str, int] = {}
        """Each channel's last number given (its entries may have been purged since)."""
        self._rooms: dict[int, StoredRoom] = {}
        self._room_version = 0
        """The last room version given (:class:`~chatservice.store.interface.StoredRoom`)."""
        self._accounts: dict[str, tuple[str, str | None]] = {}
        self._operators: set[str] = set()
        self._bans: dict[int, Ban] = {}
        self._ban_ids = itertools.count(1)

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

    def keep_offline(
        self, sender: str, recipient: str, text: str, sent_at: float, max_waiting: int,
        max_from_sender: int,
    ) -> KeptOffline:
        box = self._offline.get(recipient, {})
        waiting = len(box)
        from_sender = sum(1 for message in box.values() if message.sender == sender)
        if waiting >= max_waiting or from_sender >= max_from_sender:
            return KeptOffline(None, waiting, from_sender)
        return KeptOffline(self.add_offline(sender, recipient, text, sent_at), waiting, from_sender)

    def add_history(
        self, channel: str, sender: str, text: str, sent_at: float
    ) -> HistoryEntry:
        entries = self._history.setdefault(channel, [])
        seq = self._last_seq[channel] = self._last_seq.get(channel, 0) + 1
        entry = HistoryEntry(channel, seq, sender, text, sent_at)
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

    def history_page(
        self, channels: Iterable[str], start: HistoryPosition, limit: int
    ) -> list[HistoryEntry]:
        found: list[HistoryEntry] = []
        for channel in dict.fromkeys(channels):
            entries = self._history.get(channel, [])
            taken = 0
            for index in range(bisect.bisect_left(entries, start.sent_at, key=_sent_at), len(entries)):
                entry = entries[index]
                if entry.position > start:
                    found.append(entry)
                    taken += 1
                    if taken == limit:
                        break
        found.sort(key=_position)
        return found[:limit]

    def purge_history(self, before: float | None, keep: int | None, limit: int) -> int:
        removed = 0
        for channel, entries in self._history.items():
            if removed >= limit:
                break
            last = self._last_seq[channel] - keep if keep is not None else 0
            kept = []
            for entry in entries:
                if removed < limit and (
                    entry.seq <= last or (before is not None and entry.sent_at < before)
                ):
                    removed += 1
                else:
                    kept.append(entry)
            if len(kept) < len(entries):
                entries[:] = kept
        return removed

    def rooms(self) -> Iterable[StoredRoom]:
        return [self._rooms[room_id] for room_id in sorted(self._rooms)]

    def save_room(self, room_id: int, members: frozenset[str]) -> int:
        self._room_version += 1
        self._rooms[room_id] = StoredRoom(room_id, members, self._room_version)
        return self._room_version

    def delete_room(self, room_id: int) -> None:
        self._rooms.pop(room_id, None)

    def leave_room(self, room_id: int, username: str) -> StoredRoom:
        room = self._rooms.get(room_id)
        return self._set_room(room_id, frozenset() if room is None else room.members - {username})

    def last_room_version(self) -> int:
        return self._room_version

    def _set_room(self, room_id: int, members: frozenset[str]) -> StoredRoom:
        """Room ``room_id`` has ``members`` now (none: it is removed), under a new version."""
        self._room_version += 1
        room = StoredRoom(room_id, members, self._room_version)
        if members:
            self._rooms[room_id] = room
        else:
            self._rooms.pop(room_id, None)
        return room

    def highest_room_id(self) -> int:
        numbers = list(self._rooms)
        numbers += [int(c[5:]) for c in self._last_seq if c.startswith("room:")]
        return max(numbers, default=0)

    def account(self, username: str) -> tuple[str, str | None] | None:
        return self._accounts.get(username)

    def usernames(self) -> list[str]:
        return sorted(self._accounts)

    def add_account(self, username: str, secret: str, scram: str | None) -> bool:
        if username in self._accounts:
            return False
        self._accounts[username] = (secret, scram)
        # A new account is no operator, even under a removed operator's name.
        self._operators.discard(username)
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

    # Administration (chatservice-admin) -------------------------------------------

    def user_data(self, username: str) -> UserData:
        sent = [
            m for box in self._offline.values() for m in box.values() if m.sender == username
        ]
        return UserData(
            account=username in self._accounts,
            blocking=tuple(sorted(b for a, b in self._blocks if a == username)),
            blocked_by=tuple(sorted(a for a, b in self._blocks if b == username)),
            rooms=tuple(sorted(r for r, room in self._rooms.items() if username in room.members)),
            last_seen=self._last_seen.get(username),
            messages_to=tuple(self.offline_messages(username)),
            messages_from=tuple(sorted(sent, key=lambda m: m.message_id)),
        )

    def delete_user(self, username: str, sent: bool) -> bool:
        existed = self._accounts.pop(username, None) is not None
        self._operators.discard(username)
        self.forget_user(username)
        for room in self.rooms():
            if username in room.members:
                self._set_room(room.room_id, room.members - {username})
        if sent:
            self.remove_offline(
                [m.message_id for box in self._offline.values() for m in box.values()
                 if m.sender == username]
            )
        return existed

    def history_of(self, username: str, start: HistoryPosition, limit: int) -> list[HistoryEntry]:
        found = [
            e for entries in self._history.values() for e in entries
            if e.sender == username and e.position > start
        ]
        found.sort(key=_position)
        return found[:limit]

    def forget_history_of(self, username: str, limit: int) -> int:
        removed = 0
        for entries in self._history.values():
            kept = []
            for entry in entries:
                if entry.sender == username and removed < limit:
                    removed += 1
                else:
                    kept.append(entry)
            entries[:] = kept
        return removed

    # Operators and bans -------------------------------------------------------------

    def operators(self) -> set[str]:
        return self._operators & self._accounts.keys()

    def set_operator(self, username: str, operator: bool) -> bool:
        if username not in self._accounts:
            return False
        if operator:
            self._operators.add(username)
        else:
            self._operators.discard(username)
        return True

    def bans(self) -> list[Ban]:
        return [self._bans[ban_id] for ban_id in sorted(self._bans)]

    def add_ban(self, ban: Ban) -> Ban:
        for kept in self._bans.values():
            if (kept.kind, kept.target) == (ban.kind, ban.target):
                ban_id = kept.ban_id
                break
        else:
            ban_id = next(self._ban_ids)
        kept = self._bans[ban_id] = dataclasses.replace(ban, ban_id=ban_id)
        return kept

    def remove_ban(self, ban: int | str) -> int:
        if isinstance(ban, str):
            gone = [ban_id for ban_id, kept in self._bans.items() if kept.target == ban]
        else:
            gone = [ban] if ban in self._bans else []
        for ban_id in gone:
            del self._bans[ban_id]
        return len(gone)


def _sent_at(entry: HistoryEntry) -> float:
    return entry.sent_at


def _position(entry: HistoryEntry) -> HistoryPosition:
    return entry.position
