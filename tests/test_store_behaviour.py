"""One behaviour suite for every :class:`IChatStore`: memory, SQLite and PostgreSQL.

:class:`StoreBehaviour` holds what every store must do, through the
asynchronous :class:`~chatservice.store.interface.IChatStore`; it runs against
:class:`MemoryStore` and :class:`SQLiteStore`, each seen through
:class:`LocalAdapter` (the service's ``LocalStore`` where it exists: it calls
the synchronous store and returns a Deferred), and against
:class:`PostgresStore` on a throw-away PostgreSQL cluster
(:mod:`tests.pg_support`).  A random sequence of calls is also played on each
store and on a :class:`MemoryStore`, and their answers compared.

What only one store does (SQLite's file, WAL and schema; PostgreSQL's
concurrency across nodes, migrations and DSN) is tested in
``test_store_sqlite.py`` and ``test_store_postgres.py``.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer, reactor
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chatservice.store.interface import (
    Ban,
    HistoryEntry,
    HistoryPosition,
    IChatStore,
    ILocalChatStore,
    StoredMessage,
    StoredRoom,
    UserData,
)
from chatservice.store.memory import MemoryStore
from chatservice.store.sqlite import SQLiteStore
from tests import pg_support

T = 1_700_000_000.0


try:
    # The adapter the chat service uses, where it exists.
    from chatservice.store.local import LocalStore as LocalAdapter
except ImportError:

    @implementer(IChatStore)
    class LocalAdapter:  # type: ignore[no-redef]
        """An :class:`ILocalChatStore` seen as an :class:`IChatStore`: each result in a Deferred.

        :param local: the synchronous store.
        """

        def __init__(self, local: Any) -> None:
            self.local = local

        def __getattr__(self, name: str) -> Callable[..., defer.Deferred[Any]]:
            if name not in IChatStore:
                raise AttributeError(name)
            call = getattr(self.local, name)
            return lambda *args: defer.maybeDeferred(call, *args)


class OpenedStore:
    """A TestCase mixin: :attr:`store` (from :meth:`make_store`) is open during each test."""

    store: Any
    assertEqual: Callable[..., None]
    assertIn: Callable[..., None]
    assertTrue: Callable[..., None]
    assertFalse: Callable[..., None]
    assertIsInstance: Callable[..., None]
    addCleanup: Callable[..., None]

    def make_store(self) -> Any:
        """A new, unopened :class:`IChatStore`."""
        raise NotImplementedError

    async def setUp(self) -> None:
        self.store = self.make_store()
        await self.store.open()
        self.addCleanup(self.store.close)


class StoreBehaviour(OpenedStore):
    """What every :class:`IChatStore` does; mixed into a TestCase with :meth:`make_store`."""

    # Interface -------------------------------------------------------------------

    def test_provides_interface(self) -> None:
        self.assertTrue(verifyObject(IChatStore, self.store))

    def test_calls_return_deferreds(self) -> None:
        calls = [
            self.store.blocks(),
            self.store.add_block("yoda", "hans"),
            self.store.count_offline("hans"),
            self.store.highest_room_id(),
        ]
        for call in calls:
            self.assertIsInstance(call, defer.Deferred)
        return defer.gatherResults(calls)

    async def test_empty(self) -> None:
        self.assertEqual(list(await self.store.blocks()), [])
        self.assertEqual(list(await self.store.last_seen()), [])
        self.assertEqual(await self.store.offline_messages("yoda"), [])
        self.assertEqual(await self.store.history_after(["broadcast"], 0), [])
        self.assertEqual(list(await self.store.rooms()), [])

    # Offline messages --------------------------------------------------------------

    async def test_offline_add_returns_message(self) -> None:
        message = await self.store.add_offline("yoda", "hans", "hello", T)
        self.assertEqual(message, StoredMessage(1, "yoda", "hans", "hello", T))

    async def test_offline_per_recipient_in_order(self) -> None:
        m1 = await self.store.add_offline("yoda", "hans", "one", T)
        m2 = await self.store.add_offline("luke", "leia", "for leia", T + 1)
        m3 = await self.store.add_offline("luke", "hans", "two", T + 2)
        m4 = await self.store.add_offline("yoda", "hans", "three", T + 3)
        self.assertEqual(await self.store.offline_messages("hans"), [m1, m3, m4])
        self.assertEqual(await self.store.offline_messages("leia"), [m2])
        self.assertEqual(await self.store.offline_messages("yoda"), [])

    async def test_offline_order_is_arrival_not_time(self) -> None:
        """Oldest first means first stored first, even if the clock stepped back."""
        m1 = await self.store.add_offline("yoda", "hans", "one", T + 10)
        m2 = await self.store.add_offline("yoda", "hans", "two", T)
        self.assertEqual(await self.store.offline_messages("hans"), [m1, m2])

    async def test_offline_ids_unique_across_recipients(self) -> None:
        ids = [
            (await self.store.add_offline("yoda", recipient, "x", T)).message_id
            for recipient in ("hans", "leia", "hans", "luke")
        ]
        self.assertEqual(ids, [1, 2, 3, 4])

    async def test_offline_returned_list_is_a_copy(self) -> None:
        await self.store.add_offline("yoda", "hans", "one", T)
        listed = await self.store.offline_messages("hans")
        listed.clear()
        self.assertEqual(len(await self.store.offline_messages("hans")), 1)

    async def test_offline_remove_by_ids(self) -> None:
        m1 = await self.store.add_offline("yoda", "hans", "one", T)
        m2 = await self.store.add_offline("yoda", "hans", "two", T + 1)
        m3 = await self.store.add_offline("yoda", "leia", "three", T + 2)
        m4 = await self.store.add_offline("yoda", "hans", "four", T + 3)
        await self.store.remove_offline([m2.message_id, m3.message_id])
        self.assertEqual(await self.store.offline_messages("hans"), [m1, m4])
        self.assertEqual(await self.store.offline_messages("leia"), [])

    async def test_offline_remove_unknown_ids_ignored(self) -> None:
        m1 = await self.store.add_offline("yoda", "hans", "one", T)
        m2 = await self.store.add_offline("yoda", "hans", "two", T + 1)
        await self.store.remove_offline([99, m1.message_id, 0, m1.message_id])
        self.assertEqual(await self.store.offline_messages("hans"), [m2])
        await self.store.remove_offline([m2.message_id])
        await self.store.remove_offline([m2.message_id])
        self.assertEqual(await self.store.offline_messages("hans"), [])

    async def test_offline_take_once(self) -> None:
        """Only one taker of a kept message gets it (a direct message across nodes)."""
        m1 = await self.store.add_offline("yoda", "hans", "one", T)
        m2 = await self.store.add_offline("yoda", "hans", "two", T + 1)
        self.assertEqual(await self.store.take_offline(m1.message_id), True)
        self.assertEqual(await self.store.take_offline(m1.message_id), False)
        self.assertEqual(await self.store.take_offline(99), False)
        self.assertEqual(await self.store.offline_messages("hans"), [m2])

    async def test_offline_remove_nothing(self) -> None:
        m1 = await self.store.add_offline("yoda", "hans", "one", T)
        await self.store.remove_offline([])
        self.assertEqual(await self.store.offline_messages("hans"), [m1])

    async def test_offline_remove_accepts_any_iterable(self) -> None:
        m1 = await self.store.add_offline("yoda", "hans", "one", T)
        m2 = await self.store.add_offline("yoda", "hans", "two", T)
        await self.store.remove_offline(message.message_id for message in [m1, m2])
        self.assertEqual(await self.store.offline_messages("hans"), [])

    async def test_offline_remove_many(self) -> None:
        """A large delivered batch (more ids than one SQL statement takes) goes at once."""
        kept = [await self.store.add_offline("yoda", "hans", f"m{i}", T + i) for i in range(1200)]
        other = await self.store.add_offline("yoda", "leia", "stays", T)
        await self.store.remove_offline([m.message_id for m in kept[:1100]])
        self.assertEqual(await self.store.offline_messages("hans"), kept[1100:])
        await self.store.remove_offline([m.message_id for m in kept])
        self.assertEqual(await self.store.offline_messages("hans"), [])
        self.assertEqual(await self.store.offline_messages("leia"), [other])

    async def test_offline_removed_ids_not_reused(self) -> None:
        m1 = await self.store.add_offline("yoda", "hans", "one", T)
        await self.store.remove_offline([m1.message_id])
        m2 = await self.store.add_offline("yoda", "hans", "two", T)
        self.assertEqual(m2.message_id, 2)
        self.assertEqual(await self.store.offline_messages("hans"), [m2])

    async def test_leave_room_takes_out_one_member(self) -> None:
        store = self.store
        await store.save_room(1, frozenset({"yoda", "hans", "luke"}))
        await store.save_room(2, frozenset({"yoda", "leia"}))
        # Each answer has the room's members left and its new version.
        self.assertEqual(await store.leave_room(1, "hans"), (1, frozenset({"yoda", "luke"}), 3))
        self.assertEqual(await store.leave_room(1, "hans"), (1, frozenset({"yoda", "luke"}), 4))
        self.assertEqual(await store.leave_room(1, "Yoda"), (1, frozenset({"yoda", "luke"}), 5))
        self.assertEqual(await store.leave_room(1, "yoda"), (1, frozenset({"luke"}), 6))
        # The last member out: the room is gone, its number is not given again.
        self.assertEqual(await store.leave_room(1, "luke"), (1, frozenset(), 7))
        self.assertEqual(list(await store.rooms()), [(2, frozenset({"yoda", "leia"}), 2)])
        # A room gone already: no members, and a version later than its removal's.
        self.assertEqual(await store.leave_room(1, "luke"), (1, frozenset(), 8))
        self.assertEqual(await store.leave_room(7, "yoda"), (7, frozenset(), 9))
        self.assertEqual(list(await store.rooms()), [(2, frozenset({"yoda", "leia"}), 2)])
        self.assertEqual(await store.highest_room_id(), 2)
        self.assertEqual(await store.last_room_version(), 9)

    async def test_keep_offline_within_the_mailbox_bounds(self) -> None:
        """Kept while the mailbox holds fewer than its bound in all and from the sender."""
        store = self.store
        first = await store.keep_offline("yoda", "hans", "one", T, 4, 2)
        self.assertEqual((first.waiting, first.from_sender), (0, 0))
        self.assertEqual(first.message, StoredMessage(first.message.message_id, "yoda", "hans", "one", T))
        await store.add_offline("yoda", "leia", "for leia", T)
        await store.add_offline("hans", "yoda", "the other way", T)
        second = await store.keep_offline("yoda", "hans", "two", T + 1, 4, 2)
        self.assertEqual((second.waiting, second.from_sender), (1, 1))
        # yoda's share is full; others still have room, counted by exact name.
        refused = await store.keep_offline("yoda", "hans", "three", T + 2, 4, 2)
        self.assertEqual(tuple(refused), (None, 2, 2))
        luke = await store.keep_offline("luke", "hans", "from luke", T + 3, 4, 2)
        self.assertEqual((luke.waiting, luke.from_sender), (2, 0))
        other = await store.keep_offline("Yoda", "hans", "from Yoda", T + 4, 4, 2)
        self.assertEqual((other.waiting, other.from_sender), (3, 0))
        # Full in all, for a sender with no share used.
        self.assertEqual(tuple(await store.keep_offline("leia", "hans", "x", T, 4, 2)), (None, 4, 0))
        self.assertEqual(
            [m.text for m in await store.offline_messages("hans")],
            ["one", "two", "from luke", "from Yoda"],
        )
        # A delivered message makes room again.
        await store.remove_offline([first.message.message_id])
        again = await store.keep_offline("yoda", "hans", "three", T + 5, 4, 2)
        self.assertEqual((again.waiting, again.from_sender), (3, 1))
        self.assertEqual(await store.offline_messages("hans"), [
            second.message, luke.message, other.message, again.message
        ])

    async def test_keep_offline_keeps_the_text_exactly(self) -> None:
        texts = ["tab\there", "émoji 😀 ünïcode", "x" * 8192, "'; DROP TABLE x; --"]
        kept = [
            (await self.store.keep_offline("yoda", "hans", text, T + 0.123456, 10, 10)).message
            for text in texts
        ]
        self.assertEqual(await self.store.offline_messages("hans"), kept)
        self.assertEqual([m.text for m in kept], texts)

    async def test_offline_text_kept_exactly(self) -> None:
        texts = ["tab\there", "émoji 😀 ünïcode", "x" * 8192, "  spaces  ", "'; DROP TABLE x; --"]
        sent = [await self.store.add_offline("yoda", "hans", text, T + 0.123456) for text in texts]
        got = await self.store.offline_messages("hans")
        self.assertEqual(got, sent)
        self.assertEqual([m.text for m in got], texts)
        self.assertEqual({m.sent_at for m in got}, {T + 0.123456})

    # Blocks ------------------------------------------------------------------------

    async def test_blocks_add_list_remove(self) -> None:
        await self.store.add_block("yoda", "hans")
        await self.store.add_block("leia", "luke")
        await self.store.add_block("yoda", "leia")
        self.assertEqual(
            list(await self.store.blocks()),
            [("leia", "luke"), ("yoda", "hans"), ("yoda", "leia")],
        )
        await self.store.remove_block("yoda", "hans")
        self.assertEqual(list(await self.store.blocks()), [("leia", "luke"), ("yoda", "leia")])

    async def test_blocks_sorted_by_code_point(self) -> None:
        for blocker in ("émile", "Zed", "alice", "ß"):
            await self.store.add_block(blocker, "x")
        self.assertEqual(
            list(await self.store.blocks()),
            [("Zed", "x"), ("alice", "x"), ("ß", "x"), ("émile", "x")],
        )

    async def test_blocks_direction_matters(self) -> None:
        await self.store.add_block("yoda", "hans")
        await self.store.remove_block("hans", "yoda")
        self.assertEqual(list(await self.store.blocks()), [("yoda", "hans")])

    async def test_blocks_add_twice_once(self) -> None:
        await self.store.add_block("yoda", "hans")
        await self.store.add_block("yoda", "hans")
        self.assertEqual(list(await self.store.blocks()), [("yoda", "hans")])
        await self.store.remove_block("yoda", "hans")
        self.assertEqual(list(await self.store.blocks()), [])

    async def test_blocks_remove_missing_ignored(self) -> None:
        await self.store.remove_block("yoda", "hans")
        self.assertEqual(list(await self.store.blocks()), [])

    # Last seen ---------------------------------------------------------------------

    async def test_last_seen_record_and_list(self) -> None:
        await self.store.record_seen("yoda", T)
        await self.store.record_seen("hans", T + 5)
        self.assertEqual(sorted(await self.store.last_seen()), [("hans", T + 5), ("yoda", T)])

    async def test_last_seen_latest_call_wins(self) -> None:
        await self.store.record_seen("yoda", T)
        await self.store.record_seen("yoda", T + 10)
        self.assertEqual(list(await self.store.last_seen()), [("yoda", T + 10)])
        await self.store.record_seen("yoda", T + 3)
        self.assertEqual(list(await self.store.last_seen()), [("yoda", T + 3)])

    # History -----------------------------------------------------------------------

    async def test_history_numbering_per_channel_from_one(self) -> None:
        b1 = await self.store.add_history("broadcast", "yoda", "b one", T)
        r1 = await self.store.add_history("room:1", "hans", "r one", T + 1)
        b2 = await self.store.add_history("broadcast", "luke", "b two", T + 2)
        s1 = await self.store.add_history("room:2", "leia", "s one", T + 3)
        r2 = await self.store.add_history("room:1", "yoda", "r two", T + 4)
        self.assertEqual(b1, HistoryEntry("broadcast", 1, "yoda", "b one", T))
        self.assertEqual(b2, HistoryEntry("broadcast", 2, "luke", "b two", T + 2))
        self.assertEqual(r1, HistoryEntry("room:1", 1, "hans", "r one", T + 1))
        self.assertEqual(r2, HistoryEntry("room:1", 2, "yoda", "r two", T + 4))
        self.assertEqual(s1, HistoryEntry("room:2", 1, "leia", "s one", T + 3))

    async def test_history_after_is_strict(self) -> None:
        e1 = await self.store.add_history("broadcast", "yoda", "one", T)
        e2 = await self.store.add_history("broadcast", "yoda", "two", T + 1)
        e3 = await self.store.add_history("broadcast", "yoda", "three", T + 2)
        self.assertEqual(await self.store.history_after(["broadcast"], T - 1), [e1, e2, e3])
        self.assertEqual(await self.store.history_after(["broadcast"], T), [e2, e3])
        self.assertEqual(await self.store.history_after(["broadcast"], T + 0.5), [e2, e3])
        self.assertEqual(await self.store.history_after(["broadcast"], T + 1), [e3])
        self.assertEqual(await self.store.history_after(["broadcast"], T + 2), [])

    async def test_history_same_time_entries_all_excluded_or_included(self) -> None:
        e1 = await self.store.add_history("broadcast", "yoda", "one", T)
        e2 = await self.store.add_history("broadcast", "hans", "two", T)
        e3 = await self.store.add_history("broadcast", "luke", "three", T)
        self.assertEqual(await self.store.history_after(["broadcast"], T), [])
        self.assertEqual(await self.store.history_after(["broadcast"], T - 0.001), [e1, e2, e3])

    async def test_history_only_asked_channels(self) -> None:
        b = await self.store.add_history("broadcast", "yoda", "b", T + 1)
        r = await self.store.add_history("room:1", "hans", "r", T + 2)
        await self.store.add_history("room:2", "leia", "secret", T + 3)
        self.assertEqual(await self.store.history_after(["broadcast", "room:1"], T), [b, r])
        self.assertEqual(await self.store.history_after(["room:9"], T), [])
        self.assertEqual(await self.store.history_after([], T), [])

    async def test_history_several_channels_sorted_by_time(self) -> None:
        b1 = await self.store.add_history("broadcast", "yoda", "b1", T + 1)
        r1 = await self.store.add_history("room:1", "hans", "r1", T + 2)
        s1 = await self.store.add_history("room:2", "leia", "s1", T + 3)
        b2 = await self.store.add_history("broadcast", "luke", "b2", T + 4)
        r2 = await self.store.add_history("room:1", "yoda", "r2", T + 5)
        s2 = await self.store.add_history("room:2", "hans", "s2", T + 6)
        found = await self.store.history_after(["room:2", "broadcast", "room:1"], T)
        self.assertEqual(found, [b1, r1, s1, b2, r2, s2])
        self.assertEqual(
            await self.store.history_after(["room:2", "broadcast", "room:1"], T + 3), [b2, r2, s2]
        )

    async def test_history_ties_across_channels(self) -> None:
        r = await self.store.add_history("room:1", "hans", "r", T)
        b = await self.store.add_history("broadcast", "yoda", "b", T)
        self.assertEqual(await self.store.history_after(["room:1", "broadcast"], T - 1), [b, r])

    async def test_history_channels_may_be_any_iterable(self) -> None:
        e = await self.store.add_history("broadcast", "yoda", "one", T)
        self.assertEqual(await self.store.history_after(iter(["broadcast"]), 0), [e])

    async def test_history_out_of_time_order(self) -> None:
        """A message stamped before the clock stepped back is still found."""
        late = await self.store.add_history("broadcast", "yoda", "before the step back", T + 300)
        await self.store.add_history("broadcast", "yoda", "old", T + 100)
        newer = await self.store.add_history("broadcast", "yoda", "new", T + 200)
        self.assertEqual(await self.store.history_after(["broadcast"], T + 150), [newer, late])

    # History pages ----------------------------------------------------------------

    async def test_history_page_bounded_and_in_order(self) -> None:
        entries = [
            await self.store.add_history(channel, "yoda", f"m{i}", T + i)
            for i, channel in enumerate(["room:1", "broadcast", "room:1", "room:2", "broadcast"])
        ]
        start = HistoryPosition(T - 1, "", 0)
        self.assertEqual(await self.store.history_page(["broadcast", "room:1", "room:2"], start, 3), entries[:3])
        self.assertEqual(await self.store.history_page(["broadcast", "room:1", "room:2"], start, 10), entries)
        self.assertEqual(await self.store.history_page(["room:1"], start, 10), [entries[0], entries[2]])
        self.assertEqual(await self.store.history_page([], start, 10), [])
        self.assertEqual(await self.store.history_page(["room:9"], start, 10), [])

    async def test_history_page_walks_ties_once_each(self) -> None:
        """Entries of one time, in several channels, are paged through one by one, none twice."""
        await self.store.add_history("room:1", "hans", "r1", T)
        await self.store.add_history("broadcast", "yoda", "b1", T)
        await self.store.add_history("room:1", "hans", "r2", T)
        await self.store.add_history("broadcast", "yoda", "b2", T)
        await self.store.add_history("broadcast", "yoda", "b3", T + 1)
        channels = ["room:1", "broadcast"]
        expected = await self.store.history_after(channels, T - 1)
        walked, start = [], HistoryPosition(T, "", 0)
        while True:
            page = await self.store.history_page(channels, start, 1)
            if not page:
                break
            walked += page
            start = page[-1].position
        self.assertEqual(walked, expected)
        self.assertEqual([e.text for e in walked], ["b1", "b2", "r1", "r2", "b3"])

    async def test_history_page_start_is_exclusive(self) -> None:
        e1 = await self.store.add_history("broadcast", "yoda", "one", T)
        e2 = await self.store.add_history("broadcast", "yoda", "two", T + 1)
        self.assertEqual(await self.store.history_page(["broadcast"], e1.position, 5), [e2])
        self.assertEqual(await self.store.history_page(["broadcast"], e2.position, 5), [])
        # A start between two entries, or one not in the history at all.
        self.assertEqual(await self.store.history_page(["broadcast"], HistoryPosition(T, "zzz", 0), 5), [e2])
        self.assertEqual(await self.store.history_page(["broadcast"], HistoryPosition(T, "a", 99), 5), [e1, e2])

    async def test_history_page_each_channel_once(self) -> None:
        e = await self.store.add_history("broadcast", "yoda", "one", T)
        page = await self.store.history_page(["broadcast", "broadcast"], HistoryPosition(0, "", 0), 5)
        self.assertEqual(page, [e])

    async def test_history_page_out_of_time_order(self) -> None:
        late = await self.store.add_history("broadcast", "yoda", "stamped before the step back", T + 300)
        old = await self.store.add_history("broadcast", "yoda", "old", T + 100)
        self.assertEqual(await self.store.history_page(["broadcast"], HistoryPosition(0, "", 0), 5), [old, late])

    # History retention ------------------------------------------------------------

    async def test_purge_by_age(self) -> None:
        for i in range(4):
            await self.store.add_history("broadcast", "yoda", f"b{i}", T + i)
        kept = await self.store.add_history("room:1", "hans", "r", T + 10)
        self.assertEqual(await self.store.purge_history(T + 2, None, 100), 2)
        self.assertEqual([e.text for e in await self.store.history_after(["broadcast", "room:1"], 0)], ["b2", "b3", "r"])
        self.assertEqual(await self.store.purge_history(T + 2, None, 100), 0)
        self.assertEqual(await self.store.history_after(["room:1"], 0), [kept])

    async def test_purge_by_count_keeps_the_last_numbers(self) -> None:
        for i in range(5):
            await self.store.add_history("broadcast", "yoda", f"b{i}", T + i)
        for i in range(2):
            await self.store.add_history("room:1", "hans", f"r{i}", T + i)
        self.assertEqual(await self.store.purge_history(None, 3, 100), 2)
        self.assertEqual([e.seq for e in await self.store.history_after(["broadcast"], 0)], [3, 4, 5])
        self.assertEqual(len(await self.store.history_after(["room:1"], 0)), 2)

    async def test_purge_in_batches(self) -> None:
        for i in range(7):
            await self.store.add_history(["broadcast", "room:1"][i % 2], "yoda", f"m{i}", T + i)
        done = [await self.store.purge_history(T + 100, None, 3) for _ in range(4)]
        self.assertEqual(done, [3, 3, 1, 0])
        self.assertEqual(await self.store.history_after(["broadcast", "room:1"], 0), [])

    async def test_purge_both_rules_and_neither(self) -> None:
        for i in range(6):
            await self.store.add_history("broadcast", "yoda", f"b{i}", T + i)
        self.assertEqual(await self.store.purge_history(None, None, 100), 0)
        self.assertEqual(await self.store.purge_history(T + 1, 4, 100), 2)
        self.assertEqual(await self.store.purge_history(T + 3, 4, 100), 1)
        self.assertEqual([e.text for e in await self.store.history_after(["broadcast"], 0)], ["b3", "b4", "b5"])

    async def test_numbering_goes_on_after_a_purge(self) -> None:
        for i in range(3):
            await self.store.add_history("room:4", "yoda", f"r{i}", T + i)
        self.assertEqual(await self.store.purge_history(T + 100, None, 100), 3)
        entry = await self.store.add_history("room:4", "yoda", "after", T + 200)
        self.assertEqual(entry.seq, 4)
        self.assertEqual(await self.store.highest_room_id(), 4, "the room's number stays taken")

    # Rooms -------------------------------------------------------------------------

    async def test_rooms_save_list_delete(self) -> None:
        await self.store.save_room(2, frozenset({"yoda", "hans"}))
        await self.store.save_room(1, frozenset({"luke"}))
        self.assertEqual(
            list(await self.store.rooms()),
            [(1, frozenset({"luke"}), 2), (2, frozenset({"yoda", "hans"}), 1)],
        )
        await self.store.delete_room(2)
        self.assertEqual(list(await self.store.rooms()), [(1, frozenset({"luke"}), 2)])

    async def test_rooms_members_are_frozensets(self) -> None:
        await self.store.save_room(1, frozenset({"luke", "leia"}))
        [room] = list(await self.store.rooms())
        self.assertEqual(room, StoredRoom(1, frozenset({"luke", "leia"}), 1))
        self.assertIsInstance(room, StoredRoom)
        self.assertIsInstance(room.members, frozenset)

    async def test_rooms_save_updates(self) -> None:
        self.assertEqual(await self.store.save_room(1, frozenset({"yoda", "hans"})), 1)
        self.assertEqual(await self.store.save_room(1, frozenset({"yoda"})), 2)
        self.assertEqual(await self.store.save_room(1, frozenset({"yoda", "leia", "luke"})), 3)
        self.assertEqual(list(await self.store.rooms()), [(1, frozenset({"yoda", "leia", "luke"}), 3)])

    async def test_rooms_without_members(self) -> None:
        await self.store.save_room(3, frozenset())
        self.assertEqual(list(await self.store.rooms()), [(3, frozenset(), 1)])

    async def test_rooms_delete_missing_ignored(self) -> None:
        await self.store.save_room(1, frozenset({"yoda"}))
        await self.store.delete_room(5)
        self.assertEqual(list(await self.store.rooms()), [(1, frozenset({"yoda"}), 1)])

    async def test_rooms_delete_keeps_history(self) -> None:
        entry = await self.store.add_history("room:1", "yoda", "hi", T)
        await self.store.save_room(1, frozenset({"yoda", "hans"}))
        await self.store.delete_room(1)
        self.assertEqual(list(await self.store.rooms()), [])
        self.assertEqual(await self.store.history_after(["room:1"], 0), [entry])

    async def test_rooms_deleted_number_can_be_saved_again(self) -> None:
        await self.store.save_room(1, frozenset({"yoda", "hans"}))
        await self.store.delete_room(1)
        await self.store.save_room(1, frozenset({"leia"}))
        # Saved again under its number, the room's version is later than before its removal.
        self.assertEqual(list(await self.store.rooms()), [(1, frozenset({"leia"}), 2)])

    async def test_room_versions_only_grow(self) -> None:
        """Every change of a room's members takes the next version of one counter for all rooms,
        also a removal, and a room made again under its number after it."""
        store = self.store
        self.assertEqual(await store.last_room_version(), 0)
        self.assertEqual(await store.save_room(4, frozenset({"yoda", "hans", "luke"})), 1)
        self.assertEqual(await store.save_room(5, frozenset({"leia", "hans"})), 2)
        self.assertEqual(await store.leave_room(4, "hans"), (4, frozenset({"yoda", "luke"}), 3))
        self.assertEqual(await store.leave_room(5, "hans"), (5, frozenset({"leia"}), 4))
        self.assertEqual(
            list(await store.rooms()),
            [(4, frozenset({"yoda", "luke"}), 3), (5, frozenset({"leia"}), 4)],
        )
        self.assertEqual(await store.leave_room(5, "leia"), (5, frozenset(), 5))
        self.assertEqual(await store.last_room_version(), 5)
        # Its removal was version 5: made again, the room is newer than that.
        self.assertEqual(await store.save_room(5, frozenset({"leia", "luke"})), 6)
        self.assertEqual(list(await store.rooms())[1], (5, frozenset({"leia", "luke"}), 6))
        # A removed account's rooms change too (room 5 left empty goes; its version is taken).
        await store.add_account("leia", "secret", None)
        await store.leave_room(5, "luke")
        await store.delete_user("leia", False)
        self.assertEqual(list(await store.rooms()), [(4, frozenset({"yoda", "luke"}), 3)])
        self.assertEqual(await store.last_room_version(), 8)
        await store.delete_user("luke", False)
        self.assertEqual(list(await store.rooms()), [(4, frozenset({"yoda"}), 9)])



    async def test_history_channel_asked_twice_answered_twice(self) -> None:
        e = await self.store.add_history("broadcast", "yoda", "one", T)
        self.assertEqual(await self.store.history_after(["broadcast", "broadcast"], 0), [e, e])

    # Room numbers ------------------------------------------------------------------

    async def test_highest_room_id_empty(self) -> None:
        self.assertEqual(await self.store.highest_room_id(), 0)
        await self.store.add_history("broadcast", "yoda", "not a room", T)
        self.assertEqual(await self.store.highest_room_id(), 0)

    async def test_highest_room_id_counts_rooms(self) -> None:
        await self.store.save_room(3, frozenset({"yoda"}))
        await self.store.save_room(7, frozenset())
        self.assertEqual(await self.store.highest_room_id(), 7)
        await self.store.delete_room(7)
        self.assertEqual(await self.store.highest_room_id(), 3)

    async def test_highest_room_id_counts_history(self) -> None:
        """A deleted room's number stays taken while its history is kept."""
        await self.store.save_room(12, frozenset({"yoda", "hans"}))
        await self.store.add_history("room:12", "yoda", "hi", T)
        await self.store.save_room(4, frozenset({"leia"}))
        await self.store.delete_room(12)
        self.assertEqual(await self.store.highest_room_id(), 12)
        await self.store.add_history("room:30", "luke", "only history", T)
        self.assertEqual(await self.store.highest_room_id(), 30)

    # Accounts ----------------------------------------------------------------------

    async def test_accounts_empty(self) -> None:
        self.assertEqual(await self.store.usernames(), [])
        self.assertIsNone(await self.store.account("yoda"))

    async def test_add_account_and_read_it(self) -> None:
        self.assertTrue(await self.store.add_account("yoda", "wise", None))
        self.assertTrue(await self.store.add_account("hans", "$scrypt$h", "SCRAM-SHA-256$k"))
        self.assertEqual(await self.store.account("yoda"), ("wise", None))
        self.assertEqual(await self.store.account("hans"), ("$scrypt$h", "SCRAM-SHA-256$k"))
        self.assertIsNone(await self.store.account("luke"))
        self.assertEqual(await self.store.usernames(), ["hans", "yoda"])

    async def test_add_account_name_taken(self) -> None:
        self.assertTrue(await self.store.add_account("yoda", "wise", None))
        self.assertFalse(await self.store.add_account("yoda", "other", "SCRAM-SHA-256$k"))
        self.assertEqual(await self.store.account("yoda"), ("wise", None), "the first stays")

    async def test_add_account_race_without_waiting(self) -> None:
        """Several additions of one name made at once: exactly one wins."""
        won = await defer.gatherResults(
            [self.store.add_account("rey", f"secret{i}", None) for i in range(5)]
        )
        self.assertEqual(won, [True, False, False, False, False])
        self.assertEqual(await self.store.account("rey"), ("secret0", None))

    async def test_account_names_exact_and_sorted_by_code_point(self) -> None:
        for name in ("émile", "Zed", "alice", "ß", "Yoda", "yoda"):
            self.assertTrue(await self.store.add_account(name, "pw", None))
        self.assertEqual(
            await self.store.usernames(), ["Yoda", "Zed", "alice", "yoda", "ß", "émile"]
        )
        self.assertIsNone(await self.store.account("YODA"))
        self.assertEqual(await self.store.account("émile"), ("pw", None))

    async def test_set_secret(self) -> None:
        await self.store.add_account("yoda", "wise", None)
        self.assertTrue(await self.store.set_secret("yoda", "$scrypt$new", "SCRAM-SHA-256$k"))
        self.assertEqual(await self.store.account("yoda"), ("$scrypt$new", "SCRAM-SHA-256$k"))
        self.assertTrue(await self.store.set_secret("yoda", "$scrypt$newer", None))
        self.assertEqual(await self.store.account("yoda"), ("$scrypt$newer", None))
        self.assertFalse(await self.store.set_secret("vader", "x", None))
        self.assertIsNone(await self.store.account("vader"), "not created by set_secret")

    async def test_add_scram_keys_only_to_the_same_secret_without_keys(self) -> None:
        await self.store.add_account("hans", "$scrypt$h", None)
        self.assertFalse(await self.store.add_scram_keys("hans", "$scrypt$other", "SCRAM-SHA-256$a"))
        self.assertTrue(await self.store.add_scram_keys("hans", "$scrypt$h", "SCRAM-SHA-256$b"))
        self.assertFalse(await self.store.add_scram_keys("hans", "$scrypt$h", "SCRAM-SHA-256$c"))
        self.assertFalse(await self.store.add_scram_keys("vader", "$scrypt$h", "SCRAM-SHA-256$d"))
        self.assertEqual(await self.store.account("hans"), ("$scrypt$h", "SCRAM-SHA-256$b"))

    async def test_import_adds_the_missing_and_keeps_the_rest(self) -> None:
        await self.store.add_account("yoda", "$scrypt$changed", "SCRAM-SHA-256$k")
        added = await self.store.import_accounts(
            [("yoda", "wise", None), ("hans", "falcon", None), ("leia", "$scrypt$l", "SCRAM-SHA-256$l")]
        )
        self.assertEqual(added, 2)
        self.assertEqual(await self.store.account("yoda"), ("$scrypt$changed", "SCRAM-SHA-256$k"))
        self.assertEqual(await self.store.account("hans"), ("falcon", None))
        self.assertEqual(await self.store.account("leia"), ("$scrypt$l", "SCRAM-SHA-256$l"))
        self.assertEqual(await self.store.import_accounts(iter([("hans", "other", None)])), 0)
        self.assertEqual(await self.store.import_accounts([]), 0)
        self.assertEqual(await self.store.usernames(), ["hans", "leia", "yoda"])

    async def test_account_text_kept_exactly(self) -> None:
        secret = "may the force  be with you \t 'quoted' \"; DROP TABLE x; --"
        await self.store.add_account("łukasz", secret, None)
        self.assertEqual(await self.store.account("łukasz"), (secret, None))

    # Forgetting a user -------------------------------------------------------------

    async def test_forget_user(self) -> None:
        """A guest's blocks (both ways), last-seen time and kept messages go; the rest stays."""
        store = self.store
        for blocker, blocked in (("bob", "hans"), ("yoda", "bob"), ("yoda", "hans"), ("bobby", "bob")):
            await store.add_block(blocker, blocked)
        await store.record_seen("bob", T)
        await store.record_seen("yoda", T + 1)
        await store.add_offline("yoda", "bob", "for bob", T)
        from_bob = await store.add_offline("bob", "hans", "from bob", T)
        await store.save_room(1, frozenset({"bob", "yoda"}))
        entry = await store.add_history("room:1", "bob", "said in the room", T)
        self.assertIsNone(await store.forget_user("bob"))
        self.assertEqual(list(await store.blocks()), [("yoda", "hans")])
        self.assertEqual(list(await store.last_seen()), [("yoda", T + 1)])
        self.assertEqual(await store.offline_messages("bob"), [])
        self.assertEqual(await store.count_offline("bob"), 0)
        self.assertEqual(await store.offline_messages("hans"), [from_bob])
        self.assertEqual(list(await store.rooms()), [(1, frozenset({"bob", "yoda"}), 1)])
        self.assertEqual(await store.history_after(["room:1"], 0), [entry])
        # Nothing to forget is no error.
        self.assertIsNone(await store.forget_user("nobody"))

    # Administration (chatservice-admin) -------------------------------------------

    async def _bob_and_others(self) -> dict[str, Any]:
        """bob (an account) with something of every kind kept about him, and the others' data."""
        store = self.store
        await store.add_account("bob", "$scrypt$secret", "keys")
        await store.add_account("yoda", "wise", None)
        for blocker, blocked in (("bob", "hans"), ("yoda", "bob"), ("bob", "anna"), ("yoda", "hans")):
            await store.add_block(blocker, blocked)
        await store.record_seen("bob", T)
        await store.record_seen("yoda", T + 1)
        to_bob = await store.add_offline("yoda", "bob", "for bob", T)
        from_bob = await store.add_offline("bob", "hans", "from bob", T + 1)
        other = await store.add_offline("yoda", "hans", "from yoda", T + 2)
        await store.save_room(1, frozenset({"bob", "yoda"}))
        await store.save_room(2, frozenset({"bob"}))
        await store.save_room(3, frozenset({"yoda"}))
        await store.save_room(4, frozenset())
        said = await store.add_history("room:1", "bob", "said in the room", T + 3)
        told = await store.add_history("broadcast", "bob", "told everyone", T + 2)
        kept = await store.add_history("broadcast", "yoda", "yoda's", T + 4)
        return {"to_bob": to_bob, "from_bob": from_bob, "other": other, "said": said,
                "told": told, "kept": kept}

    async def test_user_data(self) -> None:
        made = await self._bob_and_others()
        self.assertEqual(
            await self.store.user_data("bob"),
            UserData(
                account=True,
                blocking=("anna", "hans"),
                blocked_by=("yoda",),
                rooms=(1, 2),
                last_seen=T,
                messages_to=(made["to_bob"],),
                messages_from=(made["from_bob"],),
            ),
        )
        everything = HistoryPosition(float("-inf"), "", 0)
        self.assertEqual(
            await self.store.history_of("bob", everything, 10), [made["told"], made["said"]]
        )

    async def test_user_data_of_nobody(self) -> None:
        await self._bob_and_others()
        self.assertEqual(
            await self.store.user_data("nobody"),
            UserData(False, (), (), (), None, (), ()),
        )

    async def test_delete_user_keeping_what_they_sent(self) -> None:
        made = await self._bob_and_others()
        self.assertIs(await self.store.delete_user("bob", False), True)
        store = self.store
        self.assertIsNone(await store.account("bob"))
        self.assertEqual(await store.usernames(), ["yoda"])
        self.assertEqual(list(await store.blocks()), [("yoda", "hans")])
        self.assertEqual(list(await store.last_seen()), [("yoda", T + 1)])
        self.assertEqual(await store.offline_messages("bob"), [])
        self.assertEqual(await store.offline_messages("hans"), [made["from_bob"], made["other"]])
        # Room 2 had only bob: gone; room 4 was empty already: stays.
        self.assertEqual(
            list(await store.rooms()),
            [(1, frozenset({"yoda"}), 5), (3, frozenset({"yoda"}), 3), (4, frozenset(), 4)],
        )
        self.assertEqual(
            await store.history_after(["broadcast", "room:1"], 0),
            [made["told"], made["said"], made["kept"]],
        )
        self.assertEqual(
            await store.history_of("bob", HistoryPosition(0, "", 0), 10), [made["told"], made["said"]]
        )

    async def test_delete_user_with_what_they_sent(self) -> None:
        made = await self._bob_and_others()
        self.assertIs(await self.store.delete_user("bob", True), True)
        store = self.store
        self.assertEqual(await store.offline_messages("hans"), [made["other"]])
        self.assertEqual(await store.user_data("bob"), UserData(False, (), (), (), None, (), ()))
        # The history it sent: a batch at a time.
        self.assertEqual(await store.forget_history_of("bob", 1), 1)
        self.assertEqual(await store.forget_history_of("bob", 5), 1)
        self.assertEqual(await store.forget_history_of("bob", 5), 0)
        self.assertEqual(await store.history_after(["broadcast", "room:1"], 0), [made["kept"]])
        # Numbering goes on; room 2's number is not given again.
        self.assertEqual((await store.add_history("broadcast", "yoda", "next", T + 5)).seq, 3)
        self.assertEqual(await store.highest_room_id(), 4)

    async def test_history_of_in_pages(self) -> None:
        """A user's entries, page by page in read order (ties across channels included), each once."""
        store = self.store
        mine = []
        for i in range(7):
            for channel in ("room:2", "broadcast"):
                mine.append(await store.add_history(channel, "bob", f"m{i}", T + i // 2))
            await store.add_history("broadcast", "yoda", f"y{i}", T + i)
        mine.sort(key=lambda e: e.position)
        pages, start = [], HistoryPosition(float("-inf"), "", 0)
        while True:
            page = await store.history_of("bob", start, 4)
            pages.append(page)
            if len(page) < 4:
                break
            start = page[-1].position
        self.assertEqual([len(p) for p in pages], [4, 4, 4, 2])
        self.assertEqual([e for p in pages for e in p], mine)
        self.assertEqual(await store.history_of("nobody", HistoryPosition(0, "", 0), 4), [])

    async def test_delete_user_without_account(self) -> None:
        """A name with data but no account (a guest's leftovers): the data goes, ``False``."""
        await self.store.add_block("ghost", "yoda")
        self.assertIs(await self.store.delete_user("ghost", True), False)
        self.assertEqual(list(await self.store.blocks()), [])
        self.assertIs(await self.store.delete_user("nobody", False), False)

    # Operators ---------------------------------------------------------------------

    async def test_operators_empty(self) -> None:
        self.assertEqual(await self.store.operators(), set())

    async def test_set_operator_grant_and_revoke(self) -> None:
        for name in ("yoda", "hans", "Yoda"):
            await self.store.add_account(name, "pw", None)
        self.assertTrue(await self.store.set_operator("yoda", True))
        self.assertTrue(await self.store.set_operator("hans", True))
        self.assertTrue(await self.store.set_operator("yoda", True), "granting twice is no error")
        self.assertEqual(await self.store.operators(), {"yoda", "hans"})
        self.assertTrue(await self.store.set_operator("hans", False))
        self.assertTrue(await self.store.set_operator("hans", False), "revoking twice is no error")
        self.assertTrue(await self.store.set_operator("Yoda", False), "an account, not an operator")
        self.assertEqual(await self.store.operators(), {"yoda"})
        self.assertEqual(await self.store.account("yoda"), ("pw", None), "the account is unchanged")

    async def test_set_operator_without_account(self) -> None:
        self.assertFalse(await self.store.set_operator("vader", True))
        self.assertFalse(await self.store.set_operator("vader", False))
        await self.store.add_account("yoda", "pw", None)
        self.assertFalse(await self.store.set_operator("YODA", True), "names are exact")
        self.assertEqual(await self.store.operators(), set())
        self.assertIsNone(await self.store.account("vader"), "no account made")

    async def test_operators_in_call_order(self) -> None:
        store = self.store
        results = await defer.gatherResults(
            [
                store.add_account("yoda", "pw", None),
                store.set_operator("yoda", True),
                store.operators(),
                store.set_operator("yoda", False),
                store.operators(),
            ]
        )
        self.assertEqual(results, [True, True, {"yoda"}, True, set()])

    # Bans --------------------------------------------------------------------------

    async def test_bans_empty(self) -> None:
        self.assertEqual(await self.store.bans(), [])
        self.assertEqual(await self.store.remove_ban(1), 0)
        self.assertEqual(await self.store.remove_ban("vader"), 0)

    async def test_add_ban_numbers_and_lists(self) -> None:
        store = self.store
        user = await store.add_ban(Ban("user", "vader", "yoda", T, T + 600, "too dark"))
        address = await store.add_ban(Ban("address", "192.0.2.7", "yoda", T + 1, None, ""))
        network = await store.add_ban(
            Ban("network", "2001:db8::/32", "leia", T + 2, T + 86400, "spam, 'quoted'; --", 99)
        )
        self.assertEqual(user, Ban("user", "vader", "yoda", T, T + 600, "too dark", user.ban_id))
        self.assertIsInstance(user.ban_id, int)
        self.assertEqual(len({user.ban_id, address.ban_id, network.ban_id}), 3)
        self.assertLess(user.ban_id, address.ban_id)
        self.assertNotEqual(network.ban_id, 99, "the given number is ignored")
        self.assertEqual(await store.bans(), [user, address, network])

    async def test_add_ban_of_a_banned_target_replaces_it(self) -> None:
        store = self.store
        first = await store.add_ban(Ban("user", "vader", "yoda", T, T + 600, "first"))
        other = await store.add_ban(Ban("address", "vader", "yoda", T, None, "same text, other kind"))
        again = await store.add_ban(Ban("user", "vader", "leia", T + 5, None, "for good"))
        self.assertEqual(again, Ban("user", "vader", "leia", T + 5, None, "for good", first.ban_id))
        self.assertEqual(await store.bans(), [again, other])

    async def test_remove_ban_by_number_or_target(self) -> None:
        store = self.store
        vader = await store.add_ban(Ban("user", "vader", "yoda", T))
        address = await store.add_ban(Ban("address", "192.0.2.7", "yoda", T))
        other_kind = await store.add_ban(Ban("network", "vader", "yoda", T))
        kept = await store.add_ban(Ban("network", "192.0.2.0/24", "yoda", T))
        self.assertEqual(await store.remove_ban(address.ban_id), 1)
        self.assertEqual(await store.remove_ban(address.ban_id), 0)
        self.assertEqual(await store.remove_ban("vader"), 2, "every kind with that target")
        self.assertEqual(await store.remove_ban(2**70), 0)
        self.assertEqual(await store.bans(), [kept])
        del vader, other_kind

    async def test_ban_numbers_never_given_again(self) -> None:
        first = await self.store.add_ban(Ban("user", "vader", "yoda", T))
        await self.store.remove_ban(first.ban_id)
        second = await self.store.add_ban(Ban("user", "vader", "yoda", T))
        self.assertGreater(second.ban_id, first.ban_id)

    async def test_ban_race_without_waiting(self) -> None:
        """Bans of one target made at once leave one ban, with the last details."""
        bans = await defer.gatherResults(
            [self.store.add_ban(Ban("user", "vader", f"op{i}", T + i)) for i in range(4)]
        )
        self.assertEqual(len({ban.ban_id for ban in bans}), 1)
        self.assertEqual(await self.store.bans(), [bans[-1]])

    # Order of calls ---------------------------------------------------------------

    async def test_calls_take_effect_in_the_order_made(self) -> None:
        """Calls made without waiting for each other act as if each had waited."""
        store = self.store
        calls = [
            store.record_seen("yoda", T + 10),
            store.add_block("yoda", "hans"),
            store.add_offline("yoda", "hans", "one", T),
            store.record_seen("yoda", T + 3),
            store.remove_block("yoda", "hans"),
            store.add_offline("yoda", "hans", "two", T),
            store.offline_messages("hans"),
            store.add_block("yoda", "hans"),
            store.count_offline("hans"),
        ]
        results = await defer.gatherResults(calls)
        self.assertEqual([m.text for m in results[6]], ["one", "two"])
        self.assertEqual(results[8], 2)
        self.assertEqual(list(await store.last_seen()), [("yoda", T + 3)])
        self.assertEqual(list(await store.blocks()), [("yoda", "hans")])

    async def test_history_numbers_when_not_waiting(self) -> None:
        entries = await defer.gatherResults(
            [self.store.add_history("room:1", "yoda", f"m{i}", T + i) for i in range(50)]
        )
        self.assertEqual([e.seq for e in entries], list(range(1, 51)))
        self.assertEqual(await self.store.history_after(["room:1"], 0), entries)

    # The same answers as MemoryStore -------------------------------------------------

    async def play(self, seed: int, steps: int) -> None:
        """Play ``steps`` random calls on this store and on a MemoryStore; compare answers."""
        rng = random.Random(seed)
        memory = MemoryStore()
        users = ["yoda", "hans", "luke", "leia", "émile"]
        channels = ["broadcast", "room:1", "room:2", "room:3"]
        now = T
        ids: list[int] = []

        async def both(name: str, *args: Any) -> Any:
            expected = getattr(memory, name)(*args)
            got = await getattr(self.store, name)(*args)
            if name in ("add_ban", "bans"):
                # Numbers are each store's own (a replaced ban may use one up).
                expected, got = _unnumbered(expected), _unnumbered(got)
            elif expected is not None and not isinstance(expected, (int, set, list, frozenset, StoredMessage, HistoryEntry)):
                expected, got = list(expected), list(got)
            if name == "last_seen":
                expected, got = sorted(expected), sorted(got)
            self.assertEqual(got, expected, f"seed {seed}: {name}{args}")
            return got

        for _ in range(steps):
            now += rng.choice([0, 0.25, 1, 7.5, -3])  # the clock may step back
            kind = rng.randrange(17)
            if kind == 0:
                message = await both("add_offline", rng.choice(users), rng.choice(users), f"m{now}", now)
                ids.append(message.message_id)
            elif kind == 1:
                await both("offline_messages", rng.choice(users))
            elif kind == 2 and ids:
                await both("remove_offline", rng.sample(ids, min(len(ids), rng.randrange(1, 4))) + [10**6])
            elif kind == 3:
                await both("add_block", rng.choice(users), rng.choice(users))
            elif kind == 4:
                await both("remove_block", rng.choice(users), rng.choice(users))
            elif kind == 5:
                await both("record_seen", rng.choice(users), now)
            elif kind == 6:
                await both("add_history", rng.choice(channels), rng.choice(users), f"h{now}", now)
            elif kind == 7:
                await both("history_after", rng.sample(channels, rng.randrange(len(channels) + 1)), now - rng.choice([0, 1, 5, 50, 1e6]))
            elif kind == 8:
                await both("save_room", rng.randrange(1, 5), frozenset(rng.sample(users, rng.randrange(len(users) + 1))))
            elif kind == 9:
                await both("delete_room", rng.randrange(1, 6))
                await both("leave_room", rng.randrange(1, 6), rng.choice(users))
            elif kind == 10:
                await both("count_offline", rng.choice(users))
                kept = await both(
                    "keep_offline", rng.choice(users), rng.choice(users), f"k{now}", now,
                    rng.randrange(1, 6), rng.randrange(1, 4),
                )
                if kept[0] is not None:
                    ids.append(kept[0].message_id)
            elif kind == 11:
                await both("highest_room_id")
                if rng.randrange(4) == 0:
                    await both("forget_user", rng.choice(users))
            elif kind == 12:
                name, secret = rng.choice(users), rng.choice(["s1", "s2"])
                await both(rng.choice(["add_account", "set_secret"]), name, secret, rng.choice([None, "k"]))
            elif kind == 13:
                name = rng.choice(users)
                await both("add_scram_keys", name, rng.choice(["s1", "s2"]), "k2")
                await both("account", name)
            elif kind == 14:
                start = HistoryPosition(now - rng.choice([0, 1, 5, 50]), rng.choice(["", *channels]), rng.randrange(5))
                await both("history_page", rng.sample(channels, rng.randrange(len(channels) + 1)), start, rng.randrange(1, 6))
            elif kind == 16 and rng.randrange(2):
                name = rng.choice(users)
                await both("set_operator", name, rng.choice([True, False]))
                await both("operators")
                ban = Ban(rng.choice(["user", "address"]), rng.choice(users), "op", now, rng.choice([None, now + 60]), "r")
                await both("add_ban", ban)
                await both("remove_ban", name)
            elif kind == 15:
                # All that is due (which ones a smaller batch takes first is the store's choice).
                await both("purge_history", rng.choice([None, now - 100]), rng.choice([None, 5, 20]), 10_000)
            else:
                for name in ("blocks", "last_seen", "rooms"):
                    await both(name)
        for name in ("blocks", "last_seen", "rooms", "highest_room_id", "usernames", "operators", "bans"):
            await both(name)
        for user in users:
            await both("offline_messages", user)
            await both("account", user)
        await both("history_after", channels, 0)

    async def test_same_answers_as_memory(self) -> None:
        # Each seed on a fresh store: message ids count from 1 on both.
        await self.play(1, 400)


def _unnumbered(bans: Ban | list[Ban]) -> list[Ban]:
    """``bans`` (one or a list) without their numbers."""
    listed = bans if isinstance(bans, list) else [bans]
    return [dataclasses.replace(ban, ban_id=None) for ban in listed]


class MemoryStoreTests(StoreBehaviour, unittest.TestCase):
    """The shared behaviour, on :class:`MemoryStore`."""

    def make_store(self) -> LocalAdapter:
        return LocalAdapter(MemoryStore())

    def test_provides_local_interface(self) -> None:
        self.assertTrue(verifyObject(ILocalChatStore, self.store.local))


class SQLiteStoreTests(StoreBehaviour, unittest.TestCase):
    """The shared behaviour, on :class:`SQLiteStore`."""

    def make_store(self) -> LocalAdapter:
        directory = Path(tempfile.mkdtemp(prefix="chat-store-test-"))
        self.addCleanup(shutil.rmtree, directory, True)
        return LocalAdapter(SQLiteStore(directory / "chat.sqlite3"))

    def test_provides_local_interface(self) -> None:
        self.assertTrue(verifyObject(ILocalChatStore, self.store.local))


class PostgresStoreTests(StoreBehaviour, unittest.TestCase):
    """The shared behaviour, on :class:`PostgresStore` with a new database for each test."""

    def make_store(self) -> Any:
        from chatservice.store.postgres import PostgresStore

        return PostgresStore(pg_support.new_database(self), reactor)
