"""Tests for :mod:`chatservice.store.postgres` that only the PostgreSQL store has.

They run against a real PostgreSQL server (:mod:`tests.pg_support`): several
stores on one database, as several nodes of a cluster, never give one history
number twice nor skip one; the schema is created, migrated, or refused when
newer; an unreachable server or a wrong password fail ``open()`` clearly; and
the DSN's password shows in no error and no log message.  The behaviour shared
with the other stores is in ``test_store_behaviour.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable

import psycopg
from twisted.internet import defer, reactor
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial import unittest

from chatservice.rooms import RoomDirectory
from chatservice.store import postgres as postgres_module
from chatservice.store.interface import Ban, HistoryPosition, StoredMessage
from chatservice.store.postgres import PostgresStore, StoreError, redact, schema_version
from tests import pg_support

T = 1_700_000_000.0
NODES = 4


class PostgresTestCase(unittest.TestCase):
    """A new database on the test cluster, and helpers to open stores on it."""

    def setUp(self) -> None:
        self.dsn = pg_support.new_database(self)
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    async def opened(self, dsn: str | None = None) -> PostgresStore:
        """A store on the test database (or ``dsn``), opened, closed after the test."""
        store = PostgresStore(dsn or self.dsn, reactor)
        await store.open()
        self.addCleanup(store.close)
        return store

    def inspect(self, sql: str) -> Any:
        """The first value of ``sql``, read on a separate connection."""
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            row = connection.execute(sql).fetchone()
        return None if row is None else row[0]

    def on_raw_connections(self, work: Callable[[Any, int, int], Any], count: int = 6) -> list[Any]:
        """``work(connection, node, i)`` for ``i`` in 0..39 on ``count`` connections at once, in threads.

        :returns: every result, in no particular order.
        """
        results: list[Any] = []
        lock = threading.Lock()

        def run(node: int) -> None:
            with psycopg.connect(self.dsn, autocommit=True) as connection:
                for i in range(40):
                    result = work(connection, node, i)
                    with lock:
                        results.append(result)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        return results

    def execute(self, sql: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            connection.execute(sql)

    async def refused(self, store: PostgresStore, *expected: str) -> StoreError:
        """``store.open()`` fails with a StoreError naming the database, without the password."""
        try:
            await store.open()
        except StoreError as e:
            error = e
        else:
            self.fail("open() succeeded")
        self.assertIn(store.name, str(error))
        for text in expected:
            self.assertIn(text, str(error))
        self.assertPasswordNowhere(str(error))
        try:
            await store.add_block("yoda", "hans")
        except StoreError as e:
            self.assertIn("not open", str(e))
        else:
            self.fail("a call on a store that failed to open succeeded")
        return error

    def assertPasswordNowhere(self, *texts: str) -> None:
        """Neither ``texts`` nor any message logged during the test holds the password."""
        logged = [formatEvent(event) for event in self.events]
        logged += [str(event.get("log_failure", "")) for event in self.events]
        for text in list(texts) + logged:
            self.assertNotIn(pg_support.PASSWORD, text)


class SeveralNodesTests(PostgresTestCase):
    """Stores on one database at once, as the nodes of a cluster."""

    async def nodes(self) -> list[PostgresStore]:
        return [await self.opened() for _ in range(NODES)]

    async def test_history_numbers_unique_and_without_gaps(self) -> None:
        nodes = await self.nodes()
        channels = ["broadcast", "room:1", "room:2"]
        calls = [
            node.add_history(channels[i % len(channels)], f"node{n}", f"{n}/{i}", T + i)
            for i in range(60)
            for n, node in enumerate(nodes)
        ]
        entries = await defer.gatherResults(calls)
        for channel in channels:
            numbers = sorted(e.seq for e in entries if e.channel == channel)
            self.assertEqual(numbers, list(range(1, len(numbers) + 1)), channel)
        stored = await nodes[0].history_after(channels, 0)
        self.assertEqual(sorted(stored, key=lambda e: (e.channel, e.seq)),
                         sorted(entries, key=lambda e: (e.channel, e.seq)))
        # Each node's own messages of a channel are numbered in the order it sent them.
        for n in range(NODES):
            for channel in channels:
                mine = [e.seq for e in entries if e.sender == f"node{n}" and e.channel == channel]
                self.assertEqual(mine, sorted(mine))

    async def test_history_numbers_from_raw_connections(self) -> None:
        """Six connections adding to one channel at once, in threads, in groups of one and of three: numbers 1..480, each once."""
        await self.opened()
        results = self.on_raw_connections(
            lambda connection, node, i: [
                entry.seq
                for entry in postgres_module._add_history_rows(
                    connection, [("broadcast", f"thread{node}", f"{i}/{k}", T + i) for k in range(1 + 2 * (i % 2))]
                )
            ]
        )
        results = [seq for group in results for seq in group]
        self.assertEqual(len(results), 6 * (20 + 20 * 3))
        self.assertEqual(sorted(results), list(range(1, 481)))
        self.assertEqual(self.inspect("SELECT last_seq FROM history_channels"), 480)
        self.assertEqual(self.inspect("SELECT COUNT(DISTINCT seq) FROM history"), 480)

    async def test_nodes_purging_at_once(self) -> None:
        """Six connections purging one history at once, in small batches: each row deleted once, no deadlock."""
        node = await self.opened()
        channels = [f"room:{n}" for n in range(1, 9)] + ["broadcast"]
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO history_channels (channel, last_seq)"
                " SELECT c, 300 FROM unnest(%s::text[]) AS c",
                (channels,),
            )
            connection.execute(
                "INSERT INTO history (channel, seq, sender, body, sent_at)"
                " SELECT c, s, 'yoda', 'x', %s + s FROM unnest(%s::text[]) AS c,"
                " generate_series(1, 300) AS s",
                (T, channels),
            )
        removed: list[int] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def purge(thread: int) -> None:
            try:
                with psycopg.connect(self.dsn, autocommit=True) as connection:
                    while True:
                        # Half of them by age, half by count: the same rows are due to both.
                        before, keep = (T + 201, None) if thread % 2 else (None, 100)
                        count = postgres_module._purge_history(connection, before, keep, 7)
                        with lock:
                            removed.append(count)
                        if count == 0:
                            break
            except BaseException as e:  # noqa: B036 - reported below
                errors.append(e)

        threads = [threading.Thread(target=purge, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(sum(removed), 200 * len(channels), "each row deleted once, counted once")
        self.assertEqual(self.inspect("SELECT COUNT(*) FROM history"), 100 * len(channels))
        self.assertEqual(self.inspect("SELECT MIN(seq) FROM history"), 201)
        self.assertEqual(await node.purge_history(T + 201, 100, 1000), 0)
        entry = await node.add_history("room:3", "hans", "after", T + 400)
        self.assertEqual(entry.seq, 301)

    async def test_offline_ids_unique_across_nodes(self) -> None:
        nodes = await self.nodes()
        calls = [
            node.add_offline(f"node{n}", "hans", f"{n}/{i}", T + i)
            for i in range(30)
            for n, node in enumerate(nodes)
        ]
        messages = await defer.gatherResults(calls)
        ids = [m.message_id for m in messages]
        self.assertEqual(len(set(ids)), len(ids))
        kept = await nodes[1].offline_messages("hans")
        self.assertEqual([m.message_id for m in kept], sorted(ids))
        await defer.gatherResults(
            [node.remove_offline(ids[n::NODES] + ids[:3]) for n, node in enumerate(nodes)]
        )
        self.assertEqual(await nodes[2].count_offline("hans"), 0)

    async def test_mailbox_bounds_hold_across_nodes(self) -> None:
        """Nodes keeping messages for one user at once never take the mailbox past its bounds."""
        nodes = await self.nodes()
        # Every node at once, each on its own connection: 40 attempts each,
        # from a sender of its own, for a mailbox of 25 (10 a sender).
        # (A race shows in some rounds only, so there are several.)
        for recipient in ("hans", "luke", "obiwan", "chewie"):
            results = await defer.gatherResults([
                node.keep_offline(f"node{n}", recipient, f"{n}/{i}", T + i, 25, 10)
                for i in range(40)
                for n, node in enumerate(nodes)
            ])
            self.assertEqual(sum(r.message is not None for r in results), 25, recipient)
            self.assertEqual(await nodes[0].count_offline(recipient), 25)
        # One sender from every node at once: its share holds.
        results = await defer.gatherResults([
            node.keep_offline("yoda", "leia", f"{n}/{i}", T + i, 100, 10)
            for i in range(20)
            for n, node in enumerate(nodes)
        ])
        self.assertEqual(sum(r.message is not None for r in results), 10)
        self.assertEqual(await nodes[1].count_offline("leia"), 10)

    async def test_saving_one_room_from_two_nodes(self) -> None:
        """Concurrent saves of a room leave the members one of them gave, never a mixture."""
        first, second = await self.opened(), await self.opened()
        choices = [frozenset({"yoda", "hans"}), frozenset({"leia", "luke", "obiwan"})]
        for round_ in range(20):
            await defer.gatherResults(
                [first.save_room(1, choices[round_ % 2]), second.save_room(1, choices[1 - round_ % 2])]
            )
            [(room_id, members, version)] = list(await first.rooms())
            self.assertEqual(room_id, 1)
            self.assertIn(members, choices)
            self.assertEqual(version, 2 * round_ + 2)

    async def test_members_leaving_one_room_on_two_nodes_are_all_out(self) -> None:
        """Each node's directory takes out its own member; neither puts the other's back.

        The leave the store took second has the higher version: each node,
        given the other's answer (as announced), in either order, holds the
        room as the store has it.
        """
        first, second = await self.opened(), await self.opened()
        everyone = frozenset({"yoda", "hans", "luke", "leia"})
        for room_id in range(1, 11):
            await first.save_room(room_id, everyone)
            nodes = [RoomDirectory(first), RoomDirectory(second)]
            await defer.gatherResults([node.load() for node in nodes])
            rooms = [node.find(room_id) for node in nodes]
            answers = await defer.gatherResults(
                [nodes[0].leave(rooms[0], "hans"), nodes[1].leave(rooms[1], "luke")]
            )
            self.assertEqual([bool(answer.members) for answer in answers], [True, True])
            stored = {room.room_id: room for room in await second.rooms()}[room_id]
            self.assertEqual(stored.members, frozenset({"yoda", "leia"}))
            # The node whose leave the store took second holds the room as it is.
            later = max(answers, key=lambda answer: answer.version)
            self.assertEqual(later, stored)
            self.assertNotEqual(answers[0].version, answers[1].version)
            for node, other in zip(nodes, reversed(answers)):
                node.adopt(other.room_id, other.members, other.version)
                self.assertEqual(node.find(room_id).members, frozenset({"yoda", "leia"}))
                self.assertEqual(node.find(room_id).version, stored.version)
        # The last two leaving at once: the room is gone, and one of them says so.
        nodes = [RoomDirectory(first), RoomDirectory(second)]
        await defer.gatherResults([node.load() for node in nodes])
        rooms = [node.find(10) for node in nodes]
        answers = await defer.gatherResults(
            [nodes[0].leave(rooms[0], "yoda"), nodes[1].leave(rooms[1], "leia")]
        )
        self.assertEqual(sorted(not answer.members for answer in answers), [False, True])
        self.assertNotIn(10, [room.room_id for room in await first.rooms()])
        self.assertIn(None, [node.find(10) for node in nodes])
        # The removal is the later change: the other node's older answer does not bring it back.
        for node, other in zip(nodes, reversed(answers)):
            node.adopt(other.room_id, other.members or None, other.version)
            self.assertIsNone(node.find(10))

    async def test_nodes_opening_a_new_database_together(self) -> None:
        stores = [PostgresStore(self.dsn, reactor) for _ in range(NODES)]
        await defer.gatherResults([store.open() for store in stores])
        for store in stores:
            self.addCleanup(store.close)
        self.assertEqual(self.inspect("SELECT COUNT(*) FROM schema_version"), schema_version())
        entries = await defer.gatherResults(
            [store.add_history("broadcast", "yoda", "hi", T) for store in stores]
        )
        self.assertEqual(sorted(e.seq for e in entries), list(range(1, NODES + 1)))

    async def test_registering_one_name_on_two_nodes_at_once(self) -> None:
        """Two stores adding the same names at once: each name is created exactly once."""
        first, second = await self.opened(), await self.opened()
        for round_ in range(30):
            name = f"user{round_}"
            won = await defer.gatherResults(
                [first.add_account(name, "from-first", None), second.add_account(name, "from-second", None)]
            )
            self.assertEqual(sorted(won), [False, True], name)
            winner = "from-first" if won[0] else "from-second"
            self.assertEqual(await second.account(name), (winner, None))
        self.assertEqual(self.inspect("SELECT COUNT(*) FROM chat_accounts"), 30)

    async def test_registering_from_raw_connections(self) -> None:
        """Six connections in threads add the same 40 names: each created once, by one of them."""
        await self.opened()
        results = self.on_raw_connections(
            lambda connection, node, i: postgres_module._changed(
                connection,
                "INSERT INTO chat_accounts (username, secret, scram) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (f"user{i}", f"node{node}", None),
            )
            and f"user{i}"
        )
        created = [name for name in results if name]
        self.assertEqual(sorted(created), sorted(f"user{i}" for i in range(40)))

    async def test_an_account_changed_on_one_node_is_read_on_another(self) -> None:
        first, second = await self.opened(), await self.opened()
        self.assertTrue(await first.add_account("rey", "$scrypt$one", None))
        self.assertEqual(await second.account("rey"), ("$scrypt$one", None))
        self.assertTrue(await second.set_secret("rey", "$scrypt$two", "SCRAM-SHA-256$k"))
        self.assertEqual(await first.account("rey"), ("$scrypt$two", "SCRAM-SHA-256$k"))
        self.assertEqual(await first.usernames(), ["rey"])

    async def test_importing_on_nodes_starting_together(self) -> None:
        nodes = await self.nodes()
        entries = [(f"user{i}", f"pw{i}", None) for i in range(50)]
        added = await defer.gatherResults([node.import_accounts(entries) for node in nodes])
        self.assertEqual(sum(added), 50)
        self.assertEqual(await nodes[0].usernames(), sorted(name for name, _, _ in entries))

    async def test_next_room_id_unique_across_nodes(self) -> None:
        nodes = await self.nodes()
        await nodes[0].save_room(3, frozenset({"yoda"}))
        await nodes[0].add_history("room:7", "yoda", "a deleted room's history", T)
        numbers = await defer.gatherResults(
            [node.next_room_id() for _ in range(20) for node in nodes]
        )
        self.assertEqual(len(set(numbers)), len(numbers))
        self.assertGreater(min(numbers), 7)
        self.assertEqual(await nodes[1].highest_room_id(), max(numbers))
        # A room saved past the sequence (by a node that counted for itself) is skipped.
        await nodes[2].save_room(max(numbers) + 10, frozenset({"hans"}))
        self.assertEqual(await nodes[3].next_room_id(), max(numbers) + 11)

    async def test_room_numbers_seen_by_other_nodes(self) -> None:
        first, second = await self.opened(), await self.opened()
        await first.save_room(5, frozenset({"yoda"}))
        await first.add_history("room:9", "yoda", "hi", T)
        self.assertEqual(await second.highest_room_id(), 9)
        self.assertEqual(list(await second.rooms()), [(5, frozenset({"yoda"}), 1)])


class GroupedHistoryTests(PostgresTestCase):
    """``add_history``'s group commit: rows asked for while a group commits go together."""

    async def test_rows_asked_at_once_are_numbered_in_the_order_asked(self) -> None:
        store = await self.opened()
        calls = [store.add_history("broadcast", "yoda", f"m{i}", T + i) for i in range(50)]
        entries = await defer.gatherResults(calls)
        self.assertEqual([e.seq for e in entries], list(range(1, 51)))
        self.assertEqual([e.text for e in entries], [f"m{i}" for i in range(50)])
        self.assertEqual(self.inspect("SELECT COUNT(*) FROM history"), 50)

    async def test_a_bad_row_fails_only_its_own_call(self) -> None:
        store = await self.opened()
        # The first row goes alone; the others wait and go as one group, which the bad
        # one (a NUL in a name: PostgreSQL's text cannot hold it) makes fail: each is
        # then tried alone.
        calls = [
            store.add_history("broadcast", "yoda\x00" if i == 3 else "yoda", f"m{i}", T + i)
            for i in range(6)
        ]
        results = await defer.DeferredList(calls, consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, True, True, False, True, True])
        self.assertTrue(results[3][1].check(StoreError))
        self.assertEqual([r.seq for ok, r in results if ok], [1, 2, 3, 4, 5])
        self.assertEqual([r.text for ok, r in results if ok], ["m0", "m1", "m2", "m4", "m5"])
        # And the next calls go on as before.
        self.assertEqual((await store.add_history("broadcast", "yoda", "after", T + 9)).seq, 6)


class LifecycleTests(PostgresTestCase):
    """Opening, closing, reopening."""

    async def test_everything_survives_reopen(self) -> None:
        first = PostgresStore(self.dsn, reactor)
        await first.open()
        kept = [await first.add_offline("yoda", "hans", f"m{i}", T + i) for i in range(3)]
        await first.remove_offline([kept[1].message_id])
        await first.add_block("yoda", "hans")
        await first.record_seen("yoda", T + 2)
        await first.save_room(1, frozenset({"yoda", "hans"}))
        b1 = await first.add_history("broadcast", "yoda", "b1", T)
        await first.close()

        second = await self.opened()
        self.assertEqual(await second.offline_messages("hans"), [kept[0], kept[2]])
        self.assertEqual(list(await second.blocks()), [("yoda", "hans")])
        self.assertEqual(list(await second.last_seen()), [("yoda", T + 2)])
        self.assertEqual(list(await second.rooms()), [(1, frozenset({"yoda", "hans"}), 1)])
        self.assertEqual(await second.history_after(["broadcast"], 0), [b1])
        self.assertEqual((await second.add_history("broadcast", "hans", "b2", T)).seq, 2)
        self.assertEqual((await second.add_offline("yoda", "hans", "new", T)).message_id, 4)

    async def test_close_waits_for_calls_made(self) -> None:
        store = PostgresStore(self.dsn, reactor)
        await store.open()
        calls = [store.add_offline("yoda", "hans", f"m{i}", T) for i in range(50)]
        await store.close()
        self.assertTrue(all(call.called for call in calls))
        self.assertEqual(self.inspect("SELECT COUNT(*) FROM offline_messages"), 50)

    async def test_close_twice_and_calls_when_closed(self) -> None:
        store = PostgresStore(self.dsn, reactor)
        await store.close()
        await store.open()
        await store.close()
        await store.close()
        with self.assertRaises(StoreError) as raised:
            await store.blocks()
        self.assertIn("not open", str(raised.exception))
        self.assertIn(store.name, str(raised.exception))

    async def test_open_twice_refused(self) -> None:
        store = await self.opened()
        with self.assertRaises(StoreError):
            await store.open()
        await store.add_block("yoda", "hans")
        self.assertEqual(list(await store.blocks()), [("yoda", "hans")])

    async def test_text_postgresql_cannot_hold(self) -> None:
        """NUL and lone surrogates are kept as U+FFFD, as SQLite keeps surrogates."""
        store = await self.opened()
        message = await store.add_offline("yoda", "hans", "a\x00b\ud800", T)
        self.assertEqual(message, StoredMessage(1, "yoda", "hans", "a\ufffdb\ufffd", T))
        self.assertEqual(await store.offline_messages("hans"), [message])
        entry = await store.add_history("broadcast", "yoda", "\x00", T)
        self.assertEqual(entry.text, "\ufffd")

    async def test_database_error_is_a_store_error(self) -> None:
        store = await self.opened()
        self.execute("DROP TABLE blocks")
        with self.assertRaises(StoreError) as raised:
            await store.add_block("yoda", "hans")
        self.assertIn(store.name, str(raised.exception))
        self.assertIn("blocks", str(raised.exception))
        # The connection is still usable.
        self.assertEqual(await store.count_offline("hans"), 0)

    async def test_reconnects_after_the_connection_is_lost(self) -> None:
        store = await self.opened()
        self.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'chatservice' AND datname = current_database()"
        )
        with self.assertRaises(StoreError) as raised:
            await store.count_offline("hans")
        self.assertIn(store.name, str(raised.exception))
        self.flushLoggedErrors()
        self.assertEqual(await store.count_offline("hans"), 0)
        self.assertPasswordNowhere(str(raised.exception))


class MigrationTests(PostgresTestCase):
    """Schema versions: created from nothing, migrated, refused when newer."""

    async def test_created_from_nothing(self) -> None:
        await self.opened()
        self.assertEqual(schema_version(), 6)
        self.assertEqual(
            self.inspect("SELECT array_agg(version ORDER BY version) FROM schema_version"), [1, 2, 3, 4, 5, 6]
        )
        tables = self.inspect(
            "SELECT array_agg(tablename::text ORDER BY tablename) FROM pg_tables"
            " WHERE schemaname = 'public'"
        )
        self.assertEqual(sorted(tables), sorted(postgres_module.TABLES | {"schema_version"}))
        self.assertTrue(any("schema version 6, was 0" in formatEvent(e) for e in self.events))

    async def test_reopen_does_not_migrate_again(self) -> None:
        await (await self.opened()).close()
        await self.opened()
        self.assertEqual(self.inspect("SELECT COUNT(*) FROM schema_version"), 6)

    async def test_migrates_to_newer_schema(self) -> None:
        first = PostgresStore(self.dsn, reactor)
        await first.open()
        message = await first.add_offline("yoda", "hans", "kept", T)
        await first.close()
        known = schema_version()
        self.patch(
            postgres_module,
            "MIGRATIONS",
            postgres_module.MIGRATIONS
            + [("ALTER TABLE offline_messages ADD COLUMN flags INTEGER NOT NULL DEFAULT 0",)],
        )
        store = await self.opened()
        self.assertEqual(self.inspect("SELECT MAX(version) FROM schema_version"), known + 1)
        self.assertEqual(self.inspect("SELECT flags FROM offline_messages"), 0)
        self.assertEqual(await store.offline_messages("hans"), [message])

    async def test_failed_migration_rolled_back(self) -> None:
        await (await self.opened()).close()
        known = schema_version()
        self.patch(
            postgres_module,
            "MIGRATIONS",
            postgres_module.MIGRATIONS + [("CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL")],
        )
        await self.refused(PostgresStore(self.dsn, reactor), "syntax error")
        self.assertEqual(self.inspect("SELECT MAX(version) FROM schema_version"), known)
        self.assertIsNone(self.inspect("SELECT to_regclass('extra')"))

    async def test_newer_schema_refused(self) -> None:
        await (await self.opened()).close()
        self.execute("INSERT INTO schema_version (version) VALUES (7)")
        error = await self.refused(PostgresStore(self.dsn, reactor), "schema version 7")
        self.assertIn(redact(self.dsn), str(error))
        self.assertIn(f"newer than this server knows ({schema_version()})", str(error))
        self.assertEqual(
            self.inspect("SELECT array_agg(version ORDER BY version) FROM schema_version"),
            [*range(1, schema_version() + 1), 7],
        )

    async def test_version_2_gets_operators_and_bans(self) -> None:
        """A version 2 database keeps its accounts and gains the operator and ban tables."""
        full = postgres_module.MIGRATIONS
        self.patch(postgres_module, "MIGRATIONS", full[:2])
        first = PostgresStore(self.dsn, reactor)
        await first.open()
        await first.add_account("yoda", "wise", None)
        await first.close()
        self.patch(postgres_module, "MIGRATIONS", full)
        store = await self.opened()
        self.assertEqual(
            self.inspect("SELECT array_agg(version ORDER BY version) FROM schema_version"),
            list(range(1, schema_version() + 1)),
        )
        self.assertTrue(await store.set_operator("yoda", True))
        self.assertEqual(await store.operators(), {"yoda"})
        ban = await store.add_ban(Ban("network", "192.0.2.0/24", "yoda", T, None, "spam"))
        self.assertEqual(await store.bans(), [ban])

    async def test_version_3_gets_the_sender_indexes(self) -> None:
        full = postgres_module.MIGRATIONS
        self.patch(postgres_module, "MIGRATIONS", full[:3])
        first = PostgresStore(self.dsn, reactor)
        await first.open()
        await first.add_history("broadcast", "yoda", "kept", T)
        await first.close()
        self.patch(postgres_module, "MIGRATIONS", full)
        store = await self.opened()
        self.assertEqual(self.inspect("SELECT MAX(version) FROM schema_version"), len(full))
        for index in ("history_by_sender", "offline_messages_by_sender"):
            self.assertEqual(self.inspect(f"SELECT to_regclass('{index}')::text"), index)
        self.assertEqual(len(await store.history_of("yoda", HistoryPosition(0, "", 0), 10)), 1)

    async def test_version_5_gets_room_versions(self) -> None:
        """A version 5 database's rooms stay, at version 0; every change from then on is newer."""
        full = postgres_module.MIGRATIONS
        self.patch(postgres_module, "MIGRATIONS", full[:5])
        first = PostgresStore(self.dsn, reactor)
        await first.open()
        await first.close()
        # As a version 5 server saved rooms.
        self.execute(
            "INSERT INTO rooms (room_id) VALUES (3), (4);"
            " INSERT INTO room_members (room_id, username)"
            " VALUES (3, 'yoda'), (3, 'hans'), (3, 'luke'), (4, 'leia')"
        )
        self.patch(postgres_module, "MIGRATIONS", full)
        store = await self.opened()
        self.assertEqual(self.inspect("SELECT MAX(version) FROM schema_version"), len(full))
        self.assertEqual(
            list(await store.rooms()),
            [(3, frozenset({"yoda", "hans", "luke"}), 0), (4, frozenset({"leia"}), 0)],
        )
        self.assertEqual(await store.last_room_version(), 0)
        self.assertEqual(await store.leave_room(3, "hans"), (3, frozenset({"yoda", "luke"}), 1))
        self.assertEqual(await store.leave_room(4, "leia"), (4, frozenset(), 2))
        self.assertEqual(await store.last_room_version(), 2)

    async def test_removed_account_takes_operator_status(self) -> None:
        store = await self.opened()
        await store.add_account("yoda", "wise", None)
        await store.set_operator("yoda", True)
        self.execute("DELETE FROM chat_accounts WHERE username = 'yoda'")
        await store.add_account("yoda", "impostor", None)
        self.assertEqual(await store.operators(), set())

    async def test_version_1_gets_the_accounts(self) -> None:
        """A database made by the code of version 1 (before the accounts) is migrated to the last."""
        full = postgres_module.MIGRATIONS
        self.patch(postgres_module, "MIGRATIONS", full[:1])
        first = PostgresStore(self.dsn, reactor)
        await first.open()
        message = await first.add_offline("yoda", "hans", "kept", T)
        await first.close()
        self.patch(postgres_module, "MIGRATIONS", full)
        self.assertEqual(self.inspect("SELECT to_regclass('chat_accounts')"), None)
        store = await self.opened()
        self.assertEqual(
            self.inspect("SELECT array_agg(version ORDER BY version) FROM schema_version"),
            list(range(1, schema_version() + 1)),
        )
        self.assertEqual(await store.offline_messages("hans"), [message])
        self.assertEqual((await store.keep_offline("luke", "hans", "new", T, 2, 1)).waiting, 1)
        self.assertTrue(await store.add_account("yoda", "wise", None))
        self.assertEqual(await store.usernames(), ["yoda"])

    async def test_other_programs_tables_refused(self) -> None:
        self.execute("CREATE TABLE history (line TEXT)")
        await self.refused(PostgresStore(self.dsn, reactor), "history", "not a chat database")
        self.assertIsNone(self.inspect("SELECT to_regclass('schema_version')"))

    async def test_other_tables_are_no_concern(self) -> None:
        self.execute("CREATE TABLE accounts (name TEXT)")
        store = await self.opened()
        await store.add_block("yoda", "hans")
        self.assertEqual(self.inspect("SELECT COUNT(*) FROM accounts"), 0)


class ConnectionFailureTests(PostgresTestCase):
    """An unreachable server or a refused login; the password never shows."""

    async def test_closed_port(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        dsn = f"postgresql://chat:{pg_support.PASSWORD}@127.0.0.1:{port}/chat"
        store = PostgresStore(dsn, reactor)
        started = time.monotonic()
        error = await self.refused(store, "Cannot open the chat database", "Connection refused")
        self.assertLess(time.monotonic() - started, 5)
        self.assertIn(f"postgresql://chat@127.0.0.1:{port}/chat", str(error))
        self.assertPasswordNowhere(repr(store), store.name)

    async def test_unknown_host_port_times_out(self) -> None:
        """A server that accepts TCP but never answers: open() fails within connect_timeout."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.addCleanup(listener.close)
        port = listener.getsockname()[1]
        dsn = f"postgresql://chat:{pg_support.PASSWORD}@127.0.0.1:{port}/chat?connect_timeout=2"
        started = time.monotonic()
        await self.refused(PostgresStore(dsn, reactor), "timeout")
        self.assertLess(time.monotonic() - started, 10)

    async def test_wrong_password(self) -> None:
        server = pg_support.cluster()
        dsn = self.dsn.replace(pg_support.PASSWORD, "Wrong-" + pg_support.PASSWORD[::-1])
        self.assertNotEqual(dsn, self.dsn)
        store = PostgresStore(dsn, reactor)
        error = await self.refused(store, "password authentication failed")
        self.assertNotIn(pg_support.PASSWORD[::-1], str(error))
        self.assertIn(f"postgresql://postgres@127.0.0.1:{server.port}/", str(error))

    async def test_unknown_database(self) -> None:
        dsn = pg_support.cluster().dsn("no_such_database")
        await self.refused(PostgresStore(dsn, reactor), "no_such_database", "does not exist")

    async def test_password_not_logged_when_open(self) -> None:
        store = await self.opened()
        await store.add_history("broadcast", "yoda", "hi", T)
        await store.close()
        self.assertTrue(self.events)
        self.assertPasswordNowhere(repr(store))

    def test_invalid_dsn(self) -> None:
        dsn = f"postgresql://chat:{pg_support.PASSWORD}@127.0.0.1/chat?nonsense=1"
        error = self.assertRaises(StoreError, PostgresStore, dsn, reactor)
        self.assertIn("not a valid PostgreSQL DSN", str(error))
        self.assertIn("postgresql://chat@127.0.0.1/chat", str(error))
        self.assertPasswordNowhere(str(error))


class RedactTests(unittest.TestCase):
    """:func:`redact` removes the password from any form of DSN."""

    def test_forms(self) -> None:
        cases = {
            "postgresql://chat:s3cret@db.example:5433/chat": "postgresql://chat@db.example:5433/chat",
            "postgres://chat:p?a#ss@h/db": "postgres://chat@h/db",
            "postgresql://chat@h/db": "postgresql://chat@h/db",
            "postgresql://h:5432/db": "postgresql://h:5432/db",
            "postgresql://chat:@h/db": "postgresql://chat@h/db",
            "postgresql://chat@h/db?password=s3cret&sslmode=require": "postgresql://chat@h/db?password=***&sslmode=require",
            "host=h user=chat password=s3cret dbname=chat": "host=h user=chat password=*** dbname=chat",
            "host=h password = 'a b\\' c' dbname=chat": "host=h password = *** dbname=chat",
        }
        for dsn, shown in cases.items():
            self.assertEqual(redact(dsn), shown, dsn)
