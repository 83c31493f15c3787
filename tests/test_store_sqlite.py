"""Tests for what only :mod:`chatservice.store.sqlite` does.

Surviving a close and reopen, its schema version and migrations, WAL mode and
checkpoints, and refusing a corrupt, foreign or too-new file without touching
it.  The behaviour every store shares (memory, SQLite, PostgreSQL) is tested
once in ``test_store_behaviour.py``.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.python import usage
from twisted.trial import unittest

from chatservice import tap
from chatservice.activitylog import LOG_PATTERNS
from chatservice.store import sqlite as sqlite_module
from chatservice.store.interface import Ban, HistoryPosition, StoredMessage
from chatservice.store.sqlite import APPLICATION_ID, SQLiteStore, StoreError, schema_version

T = 1_700_000_000.0


def temporary_directory(case: unittest.TestCase) -> Path:
    """A fresh directory outside the source tree, removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="chat-store-test-"))
    case.addCleanup(shutil.rmtree, path, True)
    return path


def fingerprint(path: Path) -> tuple[int, str]:
    """A file's mode and a hash of its bytes, to show it was not changed."""
    return stat.S_IMODE(os.stat(path).st_mode), hashlib.sha256(path.read_bytes()).hexdigest()


def sibling_files(path: Path) -> list[str]:
    """The names in ``path``'s directory (to see stray -wal/-shm files)."""
    return sorted(p.name for p in path.parent.iterdir())


class SQLiteTestCase(unittest.TestCase):
    """A temporary directory and a database path in it."""

    def setUp(self) -> None:
        self.directory = temporary_directory(self)
        self.path = self.directory / "chat.sqlite3"

    def opened(self, **kwargs: Any) -> SQLiteStore:
        store = SQLiteStore(self.path, **kwargs)
        store.open()
        self.addCleanup(store.close)
        return store

    def inspect(self, sql: str) -> Any:
        """The first value of ``sql`` read through a separate read-only connection."""
        connection = sqlite3.connect(self.path.absolute().as_uri() + "?mode=ro", uri=True)
        try:
            return connection.execute(sql).fetchone()[0]
        finally:
            connection.close()


class ReopenTests(SQLiteTestCase):
    """What a closed store wrote is there when it is opened again."""

    def test_everything_survives_reopen(self) -> None:
        first = SQLiteStore(self.path)
        first.open()
        kept = [first.add_offline("yoda", "hans", f"m{i}", T + i) for i in range(3)]
        first.remove_offline([kept[1].message_id])
        first.add_offline("luke", "leia", "for leia", T + 5)
        first.add_block("yoda", "hans")
        first.add_block("leia", "luke")
        first.remove_block("leia", "luke")
        first.record_seen("yoda", T + 1)
        first.record_seen("yoda", T + 2)
        first.record_seen("hans", T + 3)
        first.save_room(1, frozenset({"yoda", "hans"}))
        first.save_room(2, frozenset({"leia"}))
        first.delete_room(2)
        b1 = first.add_history("broadcast", "yoda", "b1", T)
        r1 = first.add_history("room:1", "hans", "r1", T + 1)
        first.close()

        second = self.opened()
        self.assertEqual(second.offline_messages("hans"), [kept[0], kept[2]])
        self.assertEqual([m.text for m in second.offline_messages("leia")], ["for leia"])
        self.assertEqual(list(second.blocks()), [("yoda", "hans")])
        self.assertEqual(sorted(second.last_seen()), [("hans", T + 3), ("yoda", T + 2)])
        self.assertEqual(list(second.rooms()), [(1, frozenset({"yoda", "hans"}), 1)])
        self.assertEqual(second.history_after(["broadcast", "room:1"], 0), [b1, r1])

    def test_room_versions_go_on_from_the_highest_kept(self) -> None:
        """The room version counter is not written: reopened, it goes on from the highest
        version of the rooms kept (nothing outside the file held a version)."""
        first = SQLiteStore(self.path)
        first.open()
        self.assertEqual(first.save_room(1, frozenset({"yoda", "hans"})), 1)
        self.assertEqual(first.save_room(2, frozenset({"leia", "luke"})), 2)
        self.assertEqual(first.leave_room(1, "hans").version, 3)
        self.assertEqual(first.leave_room(2, "leia").version, 4)
        first.close()

        second = self.opened()
        self.assertEqual(list(second.rooms()), [(1, frozenset({"yoda"}), 3), (2, frozenset({"luke"}), 4)])
        self.assertEqual(second.last_room_version(), 4)
        self.assertEqual(second.leave_room(1, "yoda"), (1, frozenset(), 5))
        self.assertEqual(second.save_room(3, frozenset({"yoda", "luke"})), 6)

    def test_numbering_continues_after_reopen(self) -> None:
        first = SQLiteStore(self.path)
        first.open()
        first.add_history("broadcast", "yoda", "b1", T)
        first.add_history("broadcast", "yoda", "b2", T + 1)
        first.add_history("room:4", "yoda", "r1", T + 2)
        message = first.add_offline("yoda", "hans", "gone", T)
        first.remove_offline([message.message_id])
        first.close()

        second = self.opened()
        self.assertEqual(second.add_history("broadcast", "hans", "b3", T + 3).seq, 3)
        self.assertEqual(second.add_history("room:4", "hans", "r2", T + 3).seq, 2)
        self.assertEqual(second.add_history("room:5", "hans", "s1", T + 3).seq, 1)
        # Every message ever stored had a smaller number, even deleted ones.
        self.assertEqual(second.add_offline("yoda", "hans", "new", T).message_id, 2)

    def test_close_leaves_one_file(self) -> None:
        store = SQLiteStore(self.path)
        store.open()
        store.add_offline("yoda", "hans", "hi", T)
        self.assertIn("chat.sqlite3-wal", sibling_files(self.path))
        store.close()
        self.assertEqual(sibling_files(self.path), ["chat.sqlite3"])
        self.assertEqual(self.inspect("SELECT COUNT(*) FROM offline_messages"), 1)

    def test_close_twice(self) -> None:
        store = SQLiteStore(self.path)
        store.open()
        store.close()
        store.close()
        self.assertEqual(sibling_files(self.path), ["chat.sqlite3"])

    def test_calls_when_not_open(self) -> None:
        store = SQLiteStore(self.path)
        error = self.assertRaises(StoreError, store.add_offline, "yoda", "hans", "hi", T)
        self.assertIn(str(self.path), str(error))
        store.open()
        store.close()
        self.assertRaises(StoreError, store.blocks)

    def test_open_twice_refused(self) -> None:
        store = self.opened()
        self.assertRaises(StoreError, store.open)
        store.add_block("yoda", "hans")
        self.assertEqual(list(store.blocks()), [("yoda", "hans")])


class SetupTests(SQLiteTestCase):
    """The file a new store creates: WAL, schema version, mode."""

    def test_wal_mode(self) -> None:
        store = self.opened()
        self.assertEqual(self.inspect("PRAGMA journal_mode"), "wal")
        self.assertEqual(store._db.execute("PRAGMA journal_mode").fetchone()[0], "wal")

    def test_synchronous_normal_by_default(self) -> None:
        store = self.opened()
        self.assertEqual(store._db.execute("PRAGMA synchronous").fetchone()[0], 1)

    def test_synchronous_full(self) -> None:
        store = self.opened(synchronous="FULL")
        self.assertEqual(store._db.execute("PRAGMA synchronous").fetchone()[0], 2)
        store.add_offline("yoda", "hans", "hi", T)
        self.assertEqual(len(store.offline_messages("hans")), 1)

    def test_synchronous_checked(self) -> None:
        self.assertRaises(ValueError, SQLiteStore, self.path, synchronous="OFF")

    def test_schema_version_and_application_id(self) -> None:
        self.opened()
        self.assertEqual(schema_version(), 8)
        self.assertEqual(self.inspect("PRAGMA user_version"), schema_version())
        self.assertEqual(self.inspect("PRAGMA application_id"), APPLICATION_ID)

    def test_new_file_private(self) -> None:
        store = self.opened()
        store.add_offline("yoda", "hans", "secret", T)
        for name in sibling_files(self.path):
            mode = stat.S_IMODE(os.stat(self.directory / name).st_mode)
            self.assertEqual(mode, 0o600, name)

    def test_existing_file_mode_kept(self) -> None:
        self.path.touch()
        os.chmod(self.path, 0o640)
        self.opened()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)

    def test_empty_file_becomes_database(self) -> None:
        self.path.touch()
        store = self.opened()
        store.add_block("yoda", "hans")
        self.assertEqual(self.inspect("PRAGMA user_version"), schema_version())

    def test_indexed_lookups(self) -> None:
        """The per-call queries use an index, not a scan of the table."""
        store = self.opened()
        queries = [
            ("SELECT * FROM offline_messages WHERE recipient = 'x' ORDER BY message_id", "offline_messages_by_recipient"),
            ("SELECT last_seq FROM history_channels WHERE channel = 'x'", "PRIMARY KEY"),
            ("SELECT * FROM history WHERE channel = 'x' AND sent_at > 1 ORDER BY sent_at, seq", "history_by_channel_time"),
            # A page of read, and a batch of purging: through the indexes.
            ("SELECT * FROM history WHERE channel = 'x' AND (sent_at, seq) > (1, 2) ORDER BY sent_at, seq LIMIT 9", "history_by_channel_time (channel=? AND (sent_at,seq)>(?,?))"),
            ("SELECT h.rowid FROM history_channels AS c CROSS JOIN history AS h ON h.channel = c.channel AND h.seq <= c.last_seq - 5 LIMIT 9", "sqlite_autoindex_history_1 (channel=? AND seq<?)"),
            ("SELECT h.rowid FROM history_channels AS c CROSS JOIN history AS h ON h.channel = c.channel AND h.sent_at < 5 LIMIT 9", "history_by_channel_time (channel=? AND sent_at<?)"),
            ("DELETE FROM offline_messages WHERE message_id = 1", "INTEGER PRIMARY KEY"),
            # chatservice-admin's export and delete: what one user sent.
            ("SELECT * FROM history WHERE sender = 'x' AND (sent_at, channel, seq) > (1, 'a', 2) ORDER BY sent_at, channel, seq LIMIT 9", "history_by_sender (sender=? AND (sent_at,channel,seq)>(?,?,?))"),
            ("SELECT rowid FROM history WHERE sender = 'x' LIMIT 9", "history_by_sender (sender=?)"),
            ("SELECT * FROM offline_messages WHERE sender = 'x' ORDER BY message_id", "offline_messages_by_sender (sender=?)"),
        ]
        for sql, index in queries:
            plan = " ".join(row[-1] for row in store._db.execute("EXPLAIN QUERY PLAN " + sql))
            self.assertIn(index, plan, sql)
            self.assertNotIn("TEMP B-TREE", plan, sql)

    def test_lone_surrogate_stored_as_replacement(self) -> None:
        """Text UTF-8 cannot hold (a JSON "\\ud800" escape) is kept with U+FFFD, not refused."""
        store = self.opened()
        message = store.add_offline("yoda", "hans", "a\ud800b", T)
        self.assertEqual(message.text, "a\ufffdb")
        self.assertEqual(store.offline_messages("hans"), [message])
        entry = store.add_history("broadcast", "yoda", "\udcff", T)
        self.assertEqual(store.history_after(["broadcast"], 0), [entry])
        self.assertEqual(entry.text, "\ufffd")


class CheckpointTests(SQLiteTestCase):
    """The log is copied into the database off the caller's thread."""

    def test_background_checkpoint(self) -> None:
        self.patch(sqlite_module, "CHECKPOINT_EVERY", 10)
        store = self.opened()
        size_before = self.path.stat().st_size
        for i in range(200):
            store.add_offline("yoda", "hans", "x" * 500, T + i)
        deadline = time.monotonic() + 10
        while self.path.stat().st_size <= size_before and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertGreater(self.path.stat().st_size, size_before)
        self.assertEqual(len(store.offline_messages("hans")), 200)

    def test_checkpoint_thread_ends_at_close(self) -> None:
        store = SQLiteStore(self.path)
        store.open()
        checkpointer = store._checkpointer
        assert checkpointer is not None
        self.assertTrue(checkpointer._thread.is_alive())
        store.close()
        self.assertFalse(checkpointer._thread.is_alive())

    def test_without_background_checkpoints(self) -> None:
        store = self.opened(background_checkpoints=False)
        self.assertIsNone(store._checkpointer)
        self.assertEqual(store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0], 1000)
        store.add_offline("yoda", "hans", "hi", T)
        self.assertEqual(len(store.offline_messages("hans")), 1)


def refuse_bad_rows(store: SQLiteStore, how: str) -> None:
    """Make the insert of a history row whose text is ``bad`` fail: ``ABORT`` (that
    statement is undone) or ``ROLLBACK`` (the whole transaction is)."""
    store._db.execute(
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON history WHEN NEW.body = 'bad'"
        f" BEGIN SELECT RAISE({how}, 'refused'); END"
    )


class GroupedHistoryTests(SQLiteTestCase):
    """:meth:`SQLiteStore.group_history`: the history rows of a group share one commit."""

    def grouped(self) -> tuple[SQLiteStore, list[Any]]:
        """An open store grouping its history rows, and the commits it scheduled."""
        store = self.opened(background_checkpoints=False)
        scheduled: list[Any] = []
        store.group_history(scheduled.append)
        return store, scheduled

    def committed_rows(self) -> int:
        return self.inspect("SELECT COUNT(*) FROM history")

    def test_rows_wait_for_the_commit_numbered_as_ever(self) -> None:
        store, scheduled = self.grouped()
        entries = [store.add_history("*", "yoda", f"m{i}", T + i) for i in range(3)]
        self.assertEqual([e.seq for e in entries], [1, 2, 3])
        self.assertEqual(scheduled, [store.commit_history], "one commit scheduled for the group")
        self.assertEqual(self.committed_rows(), 0)
        scheduled.pop()()
        self.assertEqual(self.committed_rows(), 3)
        store.commit_history()  # nothing left: a no-op
        self.assertEqual(store.add_history("*", "yoda", "next", T + 9).seq, 4)
        self.assertEqual(len(scheduled), 1, "a new group, a new commit")

    def test_any_other_call_commits_the_group_first(self) -> None:
        store, scheduled = self.grouped()
        store.add_history("*", "yoda", "one", T)
        self.assertEqual(
            [e.text for e in store.history_page(["*"], HistoryPosition(0.0, "", 0), 10)], ["one"]
        )
        self.assertEqual(self.committed_rows(), 1)
        store.add_history("*", "yoda", "two", T + 1)
        store.add_block("yoda", "luke")  # a write of its own: not inside the group
        self.assertEqual(self.committed_rows(), 2)
        self.assertEqual(self.inspect("SELECT COUNT(*) FROM blocks"), 1)

    def test_close_commits_the_group(self) -> None:
        store, _ = self.grouped()
        store.add_history("*", "yoda", "last words", T)
        store.close()
        self.assertEqual(self.committed_rows(), 1)

    def test_a_failed_insert_keeps_the_rows_before_it(self) -> None:
        store, scheduled = self.grouped()
        refuse_bad_rows(store, "ABORT")
        store.add_history("*", "yoda", "good", T)
        with self.assertRaises(StoreError):
            store.add_history("*", "yoda", "bad", T + 1)
        self.assertEqual(self.committed_rows(), 1)
        self.assertEqual(store.add_history("*", "yoda", "after", T + 2).seq, 2)
        for call in scheduled:
            call()
        self.assertEqual(self.committed_rows(), 2)

    def test_a_group_rolled_back_by_a_failure_is_logged(self) -> None:
        store, scheduled = self.grouped()
        refuse_bad_rows(store, "ROLLBACK")
        store.add_history("*", "yoda", "lost", T)
        with self.assertRaises(StoreError):
            store.add_history("*", "yoda", "bad", T + 1)
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        self.assertEqual(self.committed_rows(), 0)
        self.assertEqual(store.add_history("*", "yoda", "after", T + 2).seq, 1)
        for call in scheduled:
            call()
        self.assertEqual(self.committed_rows(), 1)

    def test_a_first_row_that_fails_leaves_no_transaction_open(self) -> None:
        store, scheduled = self.grouped()
        refuse_bad_rows(store, "ABORT")
        with self.assertRaises(StoreError):
            store.add_history("*", "yoda", "bad", T)
        store.add_history("*", "yoda", "good", T + 1)
        for call in scheduled:
            call()
        self.assertEqual(self.committed_rows(), 1)

    def test_channels_numbered_in_a_group_and_their_last_numbers_kept(self) -> None:
        """A group numbers each channel on from its last number, and keeps that number with its commit."""
        store, scheduled = self.grouped()
        store.add_history("room:3", "hans", "before", T)
        scheduled.pop()()
        rows = [("*", "one"), ("room:3", "two"), ("*", "three"), ("*", "four"), ("room:3", "five")]
        entries = [store.add_history(channel, "yoda", text, T + i) for i, (channel, text) in enumerate(rows)]
        self.assertEqual([(e.channel, e.seq) for e in entries], [("*", 1), ("room:3", 2), ("*", 2), ("*", 3), ("room:3", 3)])
        self.assertEqual(self.inspect("SELECT last_seq FROM history_channels WHERE channel = 'room:3'"), 1)
        scheduled.pop()()
        self.assertEqual(
            dict(store._db.execute("SELECT channel, last_seq FROM history_channels")), {"*": 3, "room:3": 3}
        )
        # Kept when the rows go: numbering goes on after a purge.
        store.purge_history(T + 100, None, 100)
        self.assertEqual(self.committed_rows(), 0)
        self.assertEqual(store.add_history("*", "yoda", "after", T + 200).seq, 4)
        self.assertEqual(store.add_history("room:3", "yoda", "after", T + 201).seq, 4)

    def test_a_rolled_back_group_keeps_no_numbers(self) -> None:
        """A group SQLite rolls back leaves the channels' last numbers as they were."""
        store, scheduled = self.grouped()
        store.add_history("*", "yoda", "kept", T)
        scheduled.pop()()
        refuse_bad_rows(store, "ROLLBACK")
        store.add_history("*", "yoda", "lost", T + 1)
        with self.assertRaises(StoreError):
            store.add_history("*", "yoda", "bad", T + 2)
        self.flushLoggedErrors()
        self.assertEqual(self.inspect("SELECT last_seq FROM history_channels WHERE channel = '*'"), 1)
        self.assertEqual(store.add_history("*", "yoda", "after", T + 3).seq, 2)

    def test_ungrouped_again_each_row_commits(self) -> None:
        store, scheduled = self.grouped()
        store.add_history("*", "yoda", "grouped", T)
        store.group_history(None)
        self.assertEqual(self.committed_rows(), 1)
        store.add_history("*", "yoda", "alone", T + 1)
        self.assertEqual(self.committed_rows(), 2)


class MigrationTests(SQLiteTestCase):
    """Schema versions: newer code migrates, older code refuses."""

    def make_version_1(self, history: int = 0) -> StoredMessage:
        """A database of schema version 1 with one offline message and ``history`` broadcasts."""
        migrations = sqlite_module.MIGRATIONS
        sqlite_module.MIGRATIONS = migrations[:1]
        try:
            store = SQLiteStore(self.path)
            store.open()
            message = store.add_offline("yoda", "hans", "kept", T)
            for i in range(history):
                # Version 1 numbered a channel's entries from its highest one.
                store._db.execute(
                    "INSERT INTO history (channel, seq, sender, body, sent_at) VALUES (?, ?, ?, ?, ?)",
                    ("room:3", i + 1, "yoda", f"h{i}", T + i),
                )
            store.close()
        finally:
            sqlite_module.MIGRATIONS = migrations
        return message

    def test_version_3_keeps_the_numbering(self) -> None:
        """Version 3 records each channel's last number, so numbering goes on after a purge."""
        self.make_version_1(history=3)
        self.assertEqual(SQLiteStore(self.path).check(), 1)
        store = self.opened()
        self.assertEqual(self.inspect("PRAGMA user_version"), schema_version())
        self.assertEqual(store.purge_history(T + 100, None, 10), 3)
        self.assertEqual(store.add_history("room:3", "hans", "next", T + 200).seq, 4)
        self.assertEqual(store.highest_room_id(), 3)

    def test_version_1_gets_the_accounts(self) -> None:
        message = self.make_version_1()
        self.assertEqual(SQLiteStore(self.path).check(), 1)
        store = self.opened()
        self.assertEqual(self.inspect("PRAGMA user_version"), schema_version())
        self.assertEqual(store.offline_messages("hans"), [message])
        self.assertEqual(store.usernames(), [])
        self.assertTrue(store.add_account("yoda", "wise", None))
        self.assertEqual(store.account("yoda"), ("wise", None))

    def test_version_5_gets_the_sender_indexes(self) -> None:
        migrations = sqlite_module.MIGRATIONS
        self.patch(sqlite_module, "MIGRATIONS", migrations[:4])
        store = self.opened()
        store.add_history("broadcast", "yoda", "kept", T)
        store.close()
        self.patch(sqlite_module, "MIGRATIONS", migrations)
        self.assertEqual(SQLiteStore(self.path).check(), 4)
        store = self.opened()
        self.assertEqual(self.inspect("PRAGMA user_version"), schema_version())
        indexes = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        self.assertLessEqual({"history_by_sender", "offline_messages_by_sender"}, indexes)
        self.assertEqual(len(store.history_of("yoda", HistoryPosition(0, "", 0), 10)), 1)

    def test_version_6_numbers_history_in_one_statement(self) -> None:
        """A version 5 database gains the numbering trigger; numbers go on from its last ones."""
        migrations = sqlite_module.MIGRATIONS
        self.patch(sqlite_module, "MIGRATIONS", migrations[:5])
        store = self.opened()
        for channel, seq, sender, text in (
            ("broadcast", 1, "yoda", "one"), ("broadcast", 2, "yoda", "two"), ("room:3", 1, "hans", "room one")
        ):
            # As a version 5 server numbered them: the channel's number first, then the entry.
            store._db.execute(
                "INSERT INTO history_channels (channel, last_seq) VALUES (?, 1)"
                " ON CONFLICT (channel) DO UPDATE SET last_seq = last_seq + 1",
                (channel,),
            )
            store._db.execute(
                "INSERT INTO history (channel, seq, sender, body, sent_at) VALUES (?, ?, ?, ?, ?)",
                (channel, seq, sender, text, T + seq),
            )
        store.close()
        self.patch(sqlite_module, "MIGRATIONS", migrations)
        self.assertEqual(SQLiteStore(self.path).check(), 5)
        store = self.opened()
        self.assertEqual(self.inspect("PRAGMA user_version"), schema_version())
        triggers = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        self.assertEqual(triggers, set(), "version 8 numbers rows without the trigger again")
        self.assertEqual(store.add_history("broadcast", "luke", "three", T + 3).seq, 3)
        self.assertEqual(store.add_history("room:3", "luke", "room two", T + 4).seq, 2)
        self.assertEqual(store.add_history("room:4", "luke", "new room", T + 5).seq, 1)
        self.assertEqual(
            dict(store._db.execute("SELECT channel, last_seq FROM history_channels")),
            {"broadcast": 3, "room:3": 2, "room:4": 1},
        )

    def test_version_8_numbers_history_without_the_trigger(self) -> None:
        """A version 7 database loses the numbering trigger; numbers go on from its last ones, in groups too."""
        migrations = sqlite_module.MIGRATIONS
        self.patch(sqlite_module, "MIGRATIONS", migrations[:7])
        store = self.opened()
        # As a version 7 server numbered them: one statement, the trigger keeping the last number.
        for i in range(3):
            store._db.execute(
                "INSERT INTO history (channel, seq, sender, body, sent_at) VALUES (?1,"
                " (SELECT IFNULL(MAX(last_seq), 0) + 1 FROM history_channels WHERE channel = ?1),"
                " ?2, ?3, ?4)",
                ("broadcast", "yoda", f"m{i}", T + i),
            )
        store.close()
        self.patch(sqlite_module, "MIGRATIONS", migrations)
        self.assertEqual(SQLiteStore(self.path).check(), 7)
        store = self.opened(background_checkpoints=False)
        self.assertEqual(self.inspect("PRAGMA user_version"), schema_version())
        self.assertEqual(self.inspect("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'"), 0)
        self.assertEqual(store.add_history("broadcast", "luke", "alone", T + 3).seq, 4)
        scheduled: list[Any] = []
        store.group_history(scheduled.append)
        self.assertEqual([store.add_history("broadcast", "luke", f"g{i}", T + 4 + i).seq for i in range(2)], [5, 6])
        scheduled.pop()()
        self.assertEqual(self.inspect("SELECT last_seq FROM history_channels WHERE channel = 'broadcast'"), 6)

    def test_version_7_gets_room_versions(self) -> None:
        """A version 6 database's rooms stay, at version 0; every change from then on is newer."""
        migrations = sqlite_module.MIGRATIONS
        self.patch(sqlite_module, "MIGRATIONS", migrations[:6])
        store = self.opened()
        # As a version 6 server saved rooms.
        store._db.execute("INSERT INTO rooms (room_id) VALUES (3), (4)")
        store._db.execute(
            "INSERT INTO room_members (room_id, username)"
            " VALUES (3, 'yoda'), (3, 'hans'), (3, 'luke'), (4, 'leia')"
        )
        store.close()
        self.patch(sqlite_module, "MIGRATIONS", migrations)
        self.assertEqual(SQLiteStore(self.path).check(), 6)
        store = self.opened()
        self.assertEqual(self.inspect("PRAGMA user_version"), schema_version())
        self.assertEqual(
            list(store.rooms()),
            [(3, frozenset({"yoda", "hans", "luke"}), 0), (4, frozenset({"leia"}), 0)],
        )
        self.assertEqual(store.last_room_version(), 0)
        self.assertEqual(store.leave_room(3, "hans"), (3, frozenset({"yoda", "luke"}), 1))
        self.assertEqual(store.leave_room(4, "leia"), (4, frozenset(), 2))
        self.assertEqual(store.last_room_version(), 2)

    def test_version_4_gets_operators_and_bans(self) -> None:
        """A version 3 database keeps its accounts and gains the operator and ban tables."""
        migrations = sqlite_module.MIGRATIONS
        self.patch(sqlite_module, "MIGRATIONS", migrations[:3])
        store = self.opened()
        store.add_account("yoda", "wise", None)
        store.close()
        self.patch(sqlite_module, "MIGRATIONS", migrations)
        self.assertEqual(SQLiteStore(self.path).check(), 3)
        store = self.opened()
        self.assertEqual(self.inspect("PRAGMA user_version"), schema_version())
        self.assertEqual(store.operators(), set())
        self.assertTrue(store.set_operator("yoda", True))
        self.assertEqual(store.operators(), {"yoda"})
        self.assertEqual(store.add_ban(Ban("user", "vader", "yoda", T)).ban_id, 1)

    def test_removed_account_takes_operator_status(self) -> None:
        """An account deleted (as the admin tool does) is no operator, nor is a new one of that name."""
        store = self.opened()
        store.add_account("yoda", "wise", None)
        store.set_operator("yoda", True)
        store._db.execute("DELETE FROM chat_accounts WHERE username = 'yoda'")
        self.assertEqual(self.inspect("SELECT COUNT(*) FROM chat_operators"), 0)
        store.add_account("yoda", "impostor", None)
        self.assertEqual(store.operators(), set())

    def test_migrates_to_newer_schema(self) -> None:
        message = self.make_version_1()
        self.patch(
            sqlite_module,
            "MIGRATIONS",
            sqlite_module.MIGRATIONS + [("ALTER TABLE offline_messages ADD COLUMN flags INTEGER NOT NULL DEFAULT 0",)],
        )
        self.assertEqual(SQLiteStore(self.path).check(), 1)
        store = self.opened()
        self.assertEqual(self.inspect("PRAGMA user_version"), schema_version())  # with the patched list
        self.assertEqual(self.inspect("SELECT flags FROM offline_messages"), 0)
        self.assertEqual(store.offline_messages("hans"), [message])

    def test_failed_migration_rolled_back(self) -> None:
        self.make_version_1()
        before = fingerprint(self.path)
        self.patch(
            sqlite_module,
            "MIGRATIONS",
            sqlite_module.MIGRATIONS + [("CREATE TABLE extra (x)", "THIS IS NOT SQL")],
        )
        store = SQLiteStore(self.path)
        error = self.assertRaises(StoreError, store.open)
        self.assertIn(str(self.path), str(error))
        self.assertEqual(self.inspect("PRAGMA user_version"), 1)
        self.assertEqual(self.inspect("SELECT COUNT(*) FROM sqlite_master WHERE name = 'extra'"), 0)
        self.assertEqual(
            self.inspect("SELECT COUNT(*) FROM sqlite_master WHERE name = 'chat_accounts'"), 0,
            "the whole migration is rolled back",
        )
        self.assertEqual(self.inspect("SELECT body FROM offline_messages"), "kept")
        self.assertEqual(fingerprint(self.path)[0], before[0])

    def test_newer_schema_refused_untouched(self) -> None:
        self.make_version_1()
        connection = sqlite3.connect(self.path)
        connection.execute("PRAGMA user_version = 7")
        connection.commit()
        connection.close()
        before, files = fingerprint(self.path), sibling_files(self.path)
        store = SQLiteStore(self.path)
        error = self.assertRaises(StoreError, store.open)
        self.assertIn(str(self.path), str(error))
        self.assertIn("schema version 7", str(error))
        self.assertEqual(fingerprint(self.path), before)
        self.assertEqual(sibling_files(self.path), files)
        self.assertRaises(StoreError, store.check)


class RefusedFileTests(SQLiteTestCase):
    """A file that is not a usable chat database is refused, named, and left as it was."""

    def assertRefused(self, *expected: str) -> StoreError:
        """open() and check() raise StoreError naming the file; nothing is changed."""
        before, files = fingerprint(self.path), sibling_files(self.path)
        store = SQLiteStore(self.path)
        error = self.assertRaises(StoreError, store.open)
        self.assertIn(str(self.path), str(error))
        for text in expected:
            self.assertIn(text, str(error))
        self.assertRaises(StoreError, store.check)
        self.assertEqual(fingerprint(self.path), before)
        self.assertEqual(sibling_files(self.path), files)
        self.assertRaises(StoreError, store.add_block, "yoda", "hans")
        return error

    def test_not_a_database(self) -> None:
        self.path.write_bytes(b"yoda wise\nhans falcon\n" * 300)
        self.assertRefused("not an SQLite database")

    def test_short_file(self) -> None:
        self.path.write_bytes(b"SQLite format 3\x00\x10\x00")
        self.assertRefused("not an SQLite database")

    def test_corrupt_pages(self) -> None:
        store = SQLiteStore(self.path)
        store.open()
        for i in range(300):
            store.add_offline("yoda", "hans", f"message {i} " * 20, T + i)
            store.add_history("broadcast", "yoda", f"entry {i} " * 20, T + i)
        store.close()
        data = bytearray(self.path.read_bytes())
        self.assertGreater(len(data), 8 * 4096)
        rng = random.Random(4)
        data[4096 : 8 * 4096] = bytes(rng.randrange(256) for _ in range(7 * 4096))
        self.path.write_bytes(bytes(data))
        self.assertRefused("corrupt")

    def test_foreign_database(self) -> None:
        connection = sqlite3.connect(self.path)
        connection.execute("CREATE TABLE accounts (name TEXT)")
        connection.commit()
        connection.close()
        self.assertRefused("not a chat database")

    def test_other_application(self) -> None:
        connection = sqlite3.connect(self.path)
        connection.execute("PRAGMA application_id = 1234")
        connection.execute("CREATE TABLE accounts (name TEXT)")
        connection.commit()
        connection.close()
        self.assertRefused("another program")

    def test_missing_tables(self) -> None:
        self.opened().close()
        connection = sqlite3.connect(self.path)
        connection.execute("DROP TABLE history")
        connection.execute("DROP TABLE chat_accounts")  # a table of version 2
        connection.commit()
        connection.close()
        self.assertRefused("lacks the tables chat_accounts, history")

    def test_unreadable_file(self) -> None:
        if os.geteuid() == 0:
            raise unittest.SkipTest("root can read any file")
        self.opened().close()
        os.chmod(self.path, 0)
        self.addCleanup(os.chmod, self.path, 0o600)
        error = self.assertRaises(StoreError, SQLiteStore(self.path).open)
        self.assertIn(str(self.path), str(error))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0)

    def test_directory_in_the_way(self) -> None:
        self.path.mkdir()
        error = self.assertRaises(StoreError, SQLiteStore(self.path).open)
        self.assertIn(str(self.path), str(error))
        self.assertIn("not a regular file", str(error))
        self.assertEqual(list(self.path.iterdir()), [])

    def test_missing_directory(self) -> None:
        path = self.directory / "nowhere" / "chat.sqlite3"
        store = SQLiteStore(path)
        error = self.assertRaises(StoreError, store.open)
        self.assertIn(str(path), str(error))
        self.assertIn(f"the directory {path.parent} does not exist", str(error))
        self.assertFalse(path.parent.exists())
        self.assertRaises(StoreError, store.check)

    def test_check_creates_nothing(self) -> None:
        store = SQLiteStore(self.path)
        self.assertEqual(store.check(), 0)
        self.assertEqual(sibling_files(self.path), [])
        store.open()
        store.close()
        self.assertEqual(store.check(), schema_version())
        self.assertEqual(sibling_files(self.path), ["chat.sqlite3"])


class ChatStateRestartTests(SQLiteTestCase):
    """A :class:`ChatState` on a reopened database gets back what the last one stored."""

    def state(self) -> Any:
        from twisted.internet.task import Clock

        from chatservice.auth.directory import StoredAccounts
        from chatservice.session import Session
        from chatservice.state import ChatState
        from chatservice.store.local import LocalStore

        clock = Clock()
        clock.advance(T)
        store = LocalStore(self.opened())
        state = ChatState(
            store, accounts=StoredAccounts(store, clock), clock=clock, session_factory=Session
        )
        self.successResultOf(state.load())
        return state

    def test_accounts_blocks_last_seen_rooms_history_survive(self) -> None:
        first = self.state()
        self.assertTrue(self.successResultOf(first.accounts.add("rey", "$scrypt$x", None)))
        self.successResultOf(first.block("yoda", "hans"))
        first.mark_seen("leia")
        room, created = self.successResultOf(first.rooms.create(frozenset({"yoda", "luke"})))
        self.assertTrue(created)
        self.successResultOf(first.post(room.channel, "yoda", "in the room"))
        self.successResultOf(first.post("broadcast", "luke", "to all"))
        self.successResultOf(first.store.close())

        second = self.state()
        self.assertEqual(second.accounts.usernames(), ["rey"])
        self.assertTrue(second.user_exists("rey"))
        self.assertTrue(second.has_blocked("yoda", "hans"))
        self.assertFalse(second.has_blocked("hans", "yoda"))
        self.assertIn("leia", list(second.seen_since(T - 1)))
        self.assertEqual([r.room_id for r in second.rooms.of("luke")], [room.room_id])
        again, created = self.successResultOf(second.rooms.create(frozenset({"luke", "obiwan"})))
        self.assertTrue(created)
        self.assertEqual(again.room_id, room.room_id + 1)
        self.assertEqual(self.successResultOf(second.post(room.channel, "luke", "again")).seq, 2)
        self.assertEqual(
            [e.text for e in second.store.local.history_after(["broadcast", room.channel], 0)],
            ["to all", "in the room", "again"],  # same second: broadcast first
        )


class EmptyFileInUsedDirectoryTests(SQLiteTestCase):
    """Issue 15 item 11: a zero-length database in a directory that was in use is refused.

    An empty ``chat.sqlite3`` was taken for a new database: a truncated file
    (a full disk, a bad copy) silently became an empty chat.  When the data
    directory shows it was in use (its activity logs are there), the file is
    refused and left as it is; in a fresh directory it still becomes a new
    database (``test_empty_file_becomes_database``).
    """

    def store(self) -> SQLiteStore:
        return SQLiteStore(self.path, in_use_signs=LOG_PATTERNS)

    def test_refused_when_the_activity_logs_are_there(self) -> None:
        for sign in ("userlog.txt", "messagelog.txt", "SR_12_messagelog.txt"):
            with self.subTest(sign=sign):
                directory = temporary_directory(self)
                self.path = directory / "chat.sqlite3"
                self.path.touch()
                (directory / sign).write_text("", encoding="utf-8")
                for call in (self.store().check, self.store().open):
                    with self.assertRaises(StoreError) as raised:
                        call()
                    message = str(raised.exception)
                    self.assertIn(f"The chat database {self.path} is empty", message)
                    self.assertIn(sign, message)
                self.assertEqual(sibling_files(self.path), sorted(["chat.sqlite3", sign]))
                self.assertEqual(self.path.stat().st_size, 0)

    def test_new_database_in_a_fresh_or_unrelated_directory(self) -> None:
        (self.directory / "notes.txt").write_text("x", encoding="utf-8")
        self.path.touch()
        store = self.store()
        store.open()
        self.addCleanup(store.close)
        store.add_block("yoda", "hans")

    def test_missing_file_is_a_new_database_even_in_a_used_directory(self) -> None:
        """Removing the file is how to start again with an empty chat."""
        (self.directory / "userlog.txt").write_text("", encoding="utf-8")
        self.assertEqual(self.store().check(), 0)
        store = self.store()
        store.open()
        self.addCleanup(store.close)

    def test_a_used_database_opens(self) -> None:
        store = self.store()
        store.open()
        store.add_block("yoda", "hans")
        store.close()
        (self.directory / "userlog.txt").write_text("", encoding="utf-8")
        store = self.opened(in_use_signs=LOG_PATTERNS)
        self.assertEqual(list(store.blocks()), [("yoda", "hans")])

    def test_the_server_refuses_to_start(self) -> None:
        """``twistd chat`` checks the file before starting, as for any unusable database."""
        data = self.directory / "data"
        data.mkdir()
        (data / "chat.sqlite3").touch()
        (data / "userlog.txt").write_text("", encoding="utf-8")
        (self.directory / "credentials.txt").write_text("yoda wise\n", encoding="utf-8")
        config = tap.Options()
        with self.assertRaises(usage.UsageError) as raised:
            config.parseOptions(
                ["--credentials", str(self.directory / "credentials.txt"), "--data-dir", str(data)]
            )
        self.assertIn("is empty", str(raised.exception))
        self.assertEqual((data / "chat.sqlite3").stat().st_size, 0)
