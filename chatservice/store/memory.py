"""An :class:`~chatservice.store.interface.IChatStore` that keeps everything in memory."""

from __future__ import annotations

import itertools
from typing import Iterable

from zope.interface import implementer

from chatservice.store.interface import IChatStore, StoredMessage


@implementer(IChatStore)
class MemoryStore:
    """Storage that lasts as long as the process: for tests and throw-away servers."""

    def __init__(self) -> None:
        self._blocks: set[tuple[str, str]] = set()
        self._last_seen: dict[str, float] = {}
        self._offline: dict[str, dict[int, StoredMessage]] = {}
        self._recipients: dict[int, str] = {}
        self._ids = itertools.count(1)

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
