"""``read`` answers a page at a time: bounded replies, and a cursor for the next page (text and JSON).

One ``read 0`` used to return the whole history in one reply (25 MB in the
attack run); now a reply holds at most :data:`~chatservice.history.PAGE_ENTRIES`
messages and about :data:`~chatservice.history.PAGE_BYTES` of them, and says
how to get the next page.
"""

from __future__ import annotations

import json

from twisted.trial import unittest

from chatservice.history import (
    PAGE_BYTES,
    PAGE_ENTRIES,
    cut_page,
    format_cursor,
    parse_cursor,
    start_after,
)
from chatservice.store.interface import HistoryEntry, HistoryPosition
from tests.test_protocol import HarnessTestCase

T = 1_699_000_000.0


class CursorTests(unittest.TestCase):
    """A cursor is a position as text, and nothing else parses as one."""

    def test_round_trip(self) -> None:
        for position in (
            HistoryPosition(T + 0.123456, "room:12", 7),
            HistoryPosition(1e-7, "broadcast", 1),
            HistoryPosition(T, "broadcast", 2**63 - 1),
        ):
            self.assertEqual(parse_cursor(format_cursor(position)), position)

    def test_refused(self) -> None:
        for text in ("", "x", "1/2", "nan/broadcast/1", "inf/b/1", "1.0/broad cast/1", "1.0/a/b/1",
                     "1.0/broadcast/-1", "1.0/broadcast/" + "9" * 20, "1.0//1", "1.0/é/1", 7):
            with self.subTest(text=text):
                self.assertRaises(ValueError, parse_cursor, text)

    def test_start_after_whole_seconds(self) -> None:
        start = start_after(T + 0.7)
        self.assertLess(HistoryPosition(T + 0.9, "room:1", 9), start)
        self.assertGreater(HistoryPosition(T + 1, "broadcast", 1), start)


class CutPageTests(unittest.TestCase):
    """Bounded by count and by bytes; the cursor covers what was passed over."""

    def entries(self, count: int, size: int = 10) -> list[HistoryEntry]:
        return [HistoryEntry("broadcast", i + 1, "yoda", "x" * size, T + i) for i in range(count)]

    def test_last_page(self) -> None:
        found = self.entries(5)
        self.assertEqual(cut_page(found, lambda entry: True), (found, None))

    def test_full_page_by_count(self) -> None:
        found = self.entries(PAGE_ENTRIES + 1)
        page, covered = cut_page(found, lambda entry: True)
        self.assertEqual(page, found[:PAGE_ENTRIES])
        self.assertEqual(covered, found[PAGE_ENTRIES - 1].position)

    def test_full_page_by_bytes(self) -> None:
        found = self.entries(20, 8000)
        page, covered = cut_page(found, lambda entry: True)
        self.assertEqual(len(page), PAGE_BYTES // 8100)
        self.assertEqual(covered, page[-1].position)

    def test_one_huge_entry_still_shown(self) -> None:
        found = self.entries(2, 3 * PAGE_BYTES)
        self.assertEqual(cut_page(found, lambda entry: True), (found[:1], found[0].position))

    def test_hidden_entries_covered(self) -> None:
        found = self.entries(PAGE_ENTRIES + 1)
        page, covered = cut_page(found, lambda entry: entry.seq > PAGE_ENTRIES)
        self.assertEqual((page, covered), ([], found[PAGE_ENTRIES - 1].position))


class ReadPagesTests(HarnessTestCase):
    """``read`` and ``read next`` through a whole history, in both formats."""

    def fill(self, count: int, text: str = "m{i}") -> None:
        store = self.harness.store
        for i in range(count):
            # Two messages a second, in two channels: ties in time across channels.
            store.add_history("broadcast" if i % 3 else "room:1", "hans", text.format(i=i), T + i // 2)

    def json_user(self, name: str) -> object:
        connection = self.connect()
        connection.login_json(name)
        return connection

    def test_json_pages_cover_the_history_once(self) -> None:
        yoda = self.json_user("yoda")
        room, _created = self.successResultOf(self.harness.state.rooms.create(frozenset({"yoda", "hans"})))
        self.assertEqual(room.channel, "room:1")
        self.fill(250)
        pages = []
        yoda.send_json({"type": "read", "since": 0, "id": 1})
        while True:
            (reply,) = [obj for obj in yoda.json() if obj.get("type") == "history"]
            pages.append(reply)
            if not reply["more"]:
                break
            yoda.send_json({"type": "read_next", "after": reply["next"]})
        self.assertEqual([len(page["messages"]) for page in pages], [100, 100, 50])
        texts = [message["message"] for page in pages for message in page["messages"]]
        self.assertEqual(sorted(texts, key=lambda t: int(t[1:])), [f"m{i}" for i in range(250)])
        self.assertEqual(len(set(texts)), 250)
        self.assertNotIn("next", pages[-1])

    def test_text_page_says_how_to_get_the_next(self) -> None:
        self.fill(180)  # 120 broadcasts, 60 messages of room 1
        (yoda,) = self.online("yoda")
        yoda.send("read 1 Jan 2000 00:00:00")
        lines = yoda.lines()
        self.assertEqual(len(lines), PAGE_ENTRIES + 1)
        self.assertTrue(lines[-1].startswith("More messages: type read next "), lines[-1])
        yoda.send(lines[-1].removeprefix("More messages: type "))
        rest = yoda.lines()
        self.assertEqual(len(rest), 20, "yoda is in no room: only the 120 broadcasts")
        self.assertEqual(len(set(lines[:-1] + rest)), 120)

    def test_reply_bytes_bounded(self) -> None:
        self.fill(40, "{i} " + "x" * 8000)
        yoda = self.json_user("yoda")
        yoda.send_json({"type": "read", "since": 0})
        output = yoda.output()
        self.assertLess(len(output), PAGE_BYTES + 9000)
        (reply,) = [json.loads(line) for line in output.splitlines() if '"history"' in line]
        self.assertTrue(reply["more"])

    def test_blocked_senders_skipped_but_paged_past(self) -> None:
        self.fill(200)  # 133 broadcasts
        yoda = self.json_user("yoda")
        yoda.send_json({"type": "block", "target": "hans"})
        yoda.output()
        yoda.send_json({"type": "read", "since": 0})
        (reply,) = yoda.json()
        self.assertEqual((reply["messages"], reply["more"]), ([], True))
        yoda.send_json({"type": "read_next", "after": reply["next"]})
        (reply,) = yoda.json()
        self.assertEqual((reply["messages"], reply["more"]), ([], False))

    def test_bad_cursor(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("read next yesterday")
        self.assertEqual(
            yoda.lines(),
            ["Error. <cursor> is what the last page of read gave. Usage: read next <cursor>"],
        )
