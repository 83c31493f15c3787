"""Reading history a page at a time: how much a ``read`` reply holds, and where the next one starts.

A ``read`` reply holds at most :data:`PAGE_ENTRIES` messages and about
:data:`PAGE_BYTES` of them (always at least one), so one request can never
make the server write the whole history to a client that may not read it.
When more follow, the reply carries a *cursor*: the position
(:class:`~chatservice.store.interface.HistoryPosition`: time, channel,
number) of the last message it covers, as text (:func:`format_cursor`),
which ``read next <cursor>`` (JSON ``read_next`` with ``after``) gives back
for the next page.  A position is exact even when many messages share one
second, and stays valid while history is added or purged.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Sequence

from chatservice.store.interface import HistoryEntry, HistoryPosition

PAGE_ENTRIES = 100
"""Messages in one ``read`` reply at most."""
PAGE_BYTES = 64 * 1024
"""About how many bytes of messages one ``read`` reply holds (its first one whatever its size)."""
ENTRY_OVERHEAD = 64
"""Bytes counted for each message besides its text and sender (channel, number, time, markup)."""

_CURSOR = re.compile(r"([0-9.eE+-]{1,32})/([!-.0-~]{1,64})/([0-9]{1,19})")
"""``<sent_at>/<channel>/<seq>``: a float, a channel name (printable ASCII, no ``/``), a number."""


def start_after(since: float) -> HistoryPosition:
    """Where a ``read`` of what was posted after ``since`` starts (whole seconds, as the text format shows times).

    Every message of a later second comes after it, whatever its channel.
    """
    return HistoryPosition(float(math.floor(since) + 1), "", 0)


def format_cursor(position: HistoryPosition) -> str:
    """``position`` as the text a client gives back: ``<sent_at>/<channel>/<seq>``."""
    return f"{position.sent_at!r}/{position.channel}/{position.seq}"


def parse_cursor(text: str) -> HistoryPosition:
    """The position a cursor of :func:`format_cursor` stands for.

    :raises ValueError: when ``text`` is not such a cursor.
    """
    match = _CURSOR.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a history cursor: {text!r}")
    sent_at = float(match.group(1))
    if not math.isfinite(sent_at):
        raise ValueError(f"not a history cursor: {text!r}")
    return HistoryPosition(sent_at, match.group(2), int(match.group(3)))


def cut_page(
    found: Sequence[HistoryEntry], shown: Callable[[HistoryEntry], bool]
) -> tuple[list[HistoryEntry], HistoryPosition | None]:
    """One page of ``found`` (the store's answer, asked for :data:`PAGE_ENTRIES` + 1 messages).

    :param shown: whether a message is shown to this reader (not from
        someone it blocked); the others are passed over but still covered.
    :return: the messages of the page, and the position the next page
        starts after (``None`` when there are no more).
    """
    more = len(found) > PAGE_ENTRIES
    page: list[HistoryEntry] = []
    size = 0
    covered: HistoryPosition | None = None
    for entry in found[:PAGE_ENTRIES]:
        if shown(entry):
            cost = len(entry.text.encode("utf-8", "replace")) + len(entry.sender) + ENTRY_OVERHEAD
            if page and size + cost > PAGE_BYTES:
                more = True
                break
            size += cost
            page.append(entry)
        covered = entry.position
    return page, covered if more else None
