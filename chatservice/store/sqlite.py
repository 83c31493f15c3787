"""An :class:`~chatservice.store.interface.ILocalChatStore` kept in an SQLite file: the durable store.

:class:`SQLiteStore` keeps the accounts, blocks, last-seen times, offline
messages, rooms and history in one database file (Python's :mod:`sqlite3`), with exactly the
behaviour of :class:`~chatservice.store.memory.MemoryStore`.

Durability
----------
The database runs in WAL mode with ``PRAGMA synchronous=NORMAL``, and every
call that changes something commits before it returns.  A commit appends the
transaction to the write-ahead log with ``write(2)``, so once a call has
returned its change is in the operating system's file cache, and **a crash of
the server process** (``SIGKILL``, the OOM killer, an interpreter crash) loses
nothing: the next :meth:`SQLiteStore.open` replays the log.  In particular a
message that :meth:`~SQLiteStore.add_offline` returned for, and that the sender
was then told was kept, survives ``kill -9``; ``tests/test_store_crash.py``
checks this with a real process.

``NORMAL`` does not fsync at each commit, so a crash of the *operating system*
or a power cut may roll back the last few commits (the file stays consistent).
Pass ``synchronous="FULL"`` to fsync the log at every commit when that matters
more than latency (``bench/store_latency.py`` measures both).

Time on the reactor
-------------------
The chat state calls the store on the reactor thread, so each call is one to
three small statements on indexed columns (offline messages by recipient,
history by channel and time, rooms by number), and a commit only appends to
the log.  A server groups the history rows added between two writes of its
output into one transaction (:meth:`SQLiteStore.group_history`): a
broadcast's row is then an insert, and the commit is shared, made before
anything reporting on the rows leaves for a client (see "Grouped history
rows" below).  The slow part of WAL, copying the log back into the database
(a *checkpoint*, with two fsyncs), is done by a background thread with its own
connection (:class:`_Checkpointer`): passive checkpoints, which never block the
writer, every :data:`CHECKPOINT_EVERY` commits and :data:`CHECKPOINT_IDLE`
seconds after the last one.  The log can only be reset when a checkpoint has
copied all of it before the next commit starts, which the thread achieves
whenever commits leave gaps of a few milliseconds (any real chat load).  Under
a write load so steady that it never does, a commit checkpoints on the
caller's thread once the log reaches :data:`LOG_LIMIT_PAGES` pages, as
SQLite does by default, so the log stays bounded; ``bench/store_latency.py``
measures both cases.  The one call whose cost grows with the data is
``history_after`` over a long span, which returns every matching row; the
server reads history a page at a time instead (``history_page``: at most
``limit`` rows per channel, from the index).

History retention (``purge_history``) deletes at most ``limit`` rows a
call, found through the channel table and the history's indexes, so each
call stays as small as the others however large the history
(``bench/store_latency.py`` measures it); the caller spreads the batches
over reactor turns.  Each channel's last number is kept in
``history_channels``, so numbering goes on after its entries are deleted.

Grouped history rows
--------------------
A commit costs more than the insert it commits (``bench/store_latency.py``):
about 40 µs for a broadcast's history row alone, 15 µs a row in groups of
ten.  After :meth:`SQLiteStore.group_history`, :meth:`~SQLiteStore.add_history`
opens a transaction at the first row of a group and leaves it open; the
group is committed by :meth:`~SQLiteStore.commit_history`, which the caller
has run before anything the group's callers answered can be seen (the
server: before its output batcher's next write, which is at most a flush
interval away, and before any output that does not go through the
batcher),
and by any other call of the store first, so every other call sees the
rows and commits exactly as before.  A group's first row of a channel is
numbered after the channel's last number in ``history_channels`` by its
insert; the group counts on from there in memory (it holds the write lock
from that insert to its commit, so no other writer numbers rows
meanwhile), and writes each channel's last number just before it commits:
a later row is one plain insert.  If the commit fails (a full disk), the
group's rows are lost from the history; this is logged, with their number.

Opening
-------
:meth:`SQLiteStore.open` first runs :meth:`SQLiteStore.check`, which looks at
the file without changing it (its header, then a read-only connection: schema
version, application id, ``PRAGMA quick_check``), and raises
:class:`StoreError` naming the file when it is not a usable chat database:
missing directory, not a regular or readable file, not an SQLite database,
corrupt, another program's database, or a schema version newer than this code
knows, or an empty file in a directory that shows it held a database (a
file truncated by a full disk or a bad copy is not a new database; see
``in_use_signs``).  The file is then left exactly as it was.  Otherwise ``open`` creates
the file if needed (mode ``0600``: it holds private messages; SQLite gives the
log files the same mode), turns on WAL and creates or migrates the schema in
one transaction, recording its version in ``PRAGMA user_version``.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import os
import sqlite3
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from twisted.logger import Logger
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

__all__ = [
    "APPLICATION_ID",
    "CHECKPOINT_EVERY",
    "CHECKPOINT_IDLE",
    "LOG_LIMIT_PAGES",
    "MIGRATIONS",
    "SQLiteStore",
    "StoreError",
    "schema_version",
]

log = Logger()

APPLICATION_ID = 0x43484154
"""``PRAGMA application_id`` of a chat database (``"CHAT"``), so another program's file is recognised."""

MIGRATIONS: list[Sequence[str]] = [
    # Version 1: everything the chat state keeps.
    (
        """
        CREATE TABLE offline_messages (
            message_id INTEGER PRIMARY KEY AUTOINCREMENT,
            sender TEXT NOT NULL,
            recipient TEXT NOT NULL,
            body TEXT NOT NULL,
            sent_at REAL NOT NULL
        )
        """,
        "CREATE INDEX offline_messages_by_recipient"
        " ON offline_messages (recipient, message_id)",
        """
        CREATE TABLE blocks (
            blocker TEXT NOT NULL,
            blocked TEXT NOT NULL,
            PRIMARY KEY (blocker, blocked)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE last_seen (
            username TEXT NOT NULL PRIMARY KEY,
            seen_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE history (
            channel TEXT NOT NULL,
            seq INTEGER NOT NULL,
            sender TEXT NOT NULL,
            body TEXT NOT NULL,
            sent_at REAL NOT NULL,
            PRIMARY KEY (channel, seq)
        )
        """,
        "CREATE INDEX history_by_channel_time ON history (channel, sent_at, seq)",
        "CREATE TABLE rooms (room_id INTEGER NOT NULL PRIMARY KEY)",
        """
        CREATE TABLE room_members (
            room_id INTEGER NOT NULL,
            username TEXT NOT NULL,
            PRIMARY KEY (room_id, username)
        ) WITHOUT ROWID
        """,
    ),
    # Version 2: the accounts (until then in the credentials file).
    (
        """
        CREATE TABLE chat_accounts (
            username TEXT NOT NULL PRIMARY KEY,
            secret TEXT NOT NULL,
            scram TEXT
        ) WITHOUT ROWID
        """,
    ),
    # Version 3: each channel's last history number, kept when its entries are purged.
    (
        """
        CREATE TABLE history_channels (
            channel TEXT NOT NULL PRIMARY KEY,
            last_seq INTEGER NOT NULL
        ) WITHOUT ROWID
        """,
        "INSERT INTO history_channels (channel, last_seq)"
        " SELECT channel, MAX(seq) FROM history GROUP BY channel",
    ),
    # Version 4: the operators, and the bans they set.
    (
        """
        CREATE TABLE chat_operators (
            username TEXT NOT NULL PRIMARY KEY
                REFERENCES chat_accounts (username) ON DELETE CASCADE
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE bans (
            ban_id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('user', 'address', 'network')),
            target TEXT NOT NULL,
            set_by TEXT NOT NULL,
            set_at REAL NOT NULL,
            expires_at REAL,
            reason TEXT NOT NULL,
            UNIQUE (kind, target)
        )
        """,
    ),
    # Version 5: what a user sent, found by sender (chatservice-admin's export and delete).
    (
        "CREATE INDEX history_by_sender ON history (sender, sent_at, channel, seq)",
        "CREATE INDEX offline_messages_by_sender ON offline_messages (sender)",
    ),
    # Version 6: a channel's last number follows each history insert (add_history is one
    # statement, so one implicit transaction instead of BEGIN, two statements and COMMIT).
    (
        """
        CREATE TRIGGER history_numbered AFTER INSERT ON history BEGIN
            INSERT INTO history_channels (channel, last_seq) VALUES (NEW.channel, NEW.seq)
            ON CONFLICT (channel) DO UPDATE SET last_seq = excluded.last_seq;
        END
        """,
        "INSERT INTO history_channels (channel, last_seq)"
        " SELECT channel, MAX(seq) FROM history WHERE true GROUP BY channel"
        " ON CONFLICT (channel) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)",
    ),
    # Version 7: each room's version (rooms kept before start at 0, older than
    # every change made from now on).
    ("ALTER TABLE rooms ADD COLUMN version INTEGER NOT NULL DEFAULT 0",),
    # Version 8: add_history keeps a channel's last number itself, once a
    # group of rows (the broadcasts between two flushes) and not once a row:
    # numbered from the table at a group's first row of the channel, counted
    # on in memory while the group holds the write lock, and written with
    # its commit.
    ("DROP TRIGGER history_numbered",),
]
"""Schema changes: ``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1``.

Append to this list to change the schema; never edit an entry that has shipped.
"""

REQUIRED_TABLES = frozenset(
    {"offline_messages", "blocks", "last_seen", "history", "rooms", "room_members"}
)
"""Tables every chat database of version 1 or later has."""

ADDED_TABLES = {
    2: frozenset({"chat_accounts"}),
    3: frozenset({"history_channels"}),
    4: frozenset({"chat_operators", "bans"}),
}
"""Tables a chat database has from the version given on."""

ROOM_VERSIONS_SINCE = 7
"""The schema version from which rooms have a version."""

_LAST_SEQ = 2**63 - 1
"""Above every history number."""

def _row_position(row: tuple[str, int, str, str, float]) -> tuple[float, str, int]:
    """A history row's :class:`~chatservice.store.interface.HistoryPosition`, as a plain tuple."""
    return (row[4], row[0], row[1])


CHECKPOINT_EVERY = 100
"""Commits after which the background thread checkpoints, however busy the writer is."""

CHECKPOINT_IDLE = 0.5
"""Seconds after which the background thread checkpoints what the last commits wrote."""

CHECKPOINT_PASSES = 4
"""Passive checkpoints the thread runs in a row while the writer keeps adding to the log."""

LOG_LIMIT_PAGES = 4000
"""Log size (pages of 4 KiB) past which a commit checkpoints on the caller's thread anyway.

This only happens under a write load so steady that the background thread
never finds a gap to finish in: it keeps the log from growing without bound.
"""

SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_SIZE = 100
_DELETE_CHUNK = 500


def schema_version() -> int:
    """The schema version this code creates and understands."""
    return len(MIGRATIONS)


class StoreError(Exception):
    """The chat database cannot be used; the message names the file and says why."""


@implementer(ILocalChatStore)
class SQLiteStore:
    """Chat data in the SQLite database file ``path``, durable when each call returns.

    :param path: the database file; its directory must exist.  SQLite keeps
        ``<path>-wal`` and ``<path>-shm`` beside it while it is open.
    :param synchronous: ``"NORMAL"`` (durable against a crash of the process)
        or ``"FULL"`` (also against a crash of the machine, one fsync per commit).
    :param busy_timeout: seconds a call waits for another process's lock before
        failing; only one server should use a file, so this should never wait.
    :param background_checkpoints: copy the log into the database from a
        thread of the store's own (the default), with a commit on the
        caller's thread doing it only past :data:`LOG_LIMIT_PAGES`; when
        false, SQLite does it inside a commit every thousand pages.
    :param in_use_signs: names (glob patterns) of files beside ``path``
        whose presence shows the directory was in use (the server's activity
        logs): then an empty ``path`` is refused as a lost database instead
        of becoming a new one.
    """

    def __init__(
        self,
        path: Path,
        synchronous: str = "NORMAL",
        busy_timeout: float = 1.0,
        background_checkpoints: bool = True,
        in_use_signs: Sequence[str] = (),
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.background_checkpoints = background_checkpoints
        self.in_use_signs = tuple(in_use_signs)
        self._connection: sqlite3.Connection | None = None
        self._checkpointer: _Checkpointer | None = None
        self._history_grouped: Callable[[Callable[[], None]], object] | None = None
        self._history_rows = 0
        """History rows inserted in the open transaction, not yet committed."""
        self._next_seq: dict[str, int] = {}
        """The next history number of each channel the open group has rows in.

        Valid while the group's transaction holds the write lock; its
        channels' ``history_channels`` rows are brought up to date just
        before it commits.
        """
        self._room_version = 0
        """The last room version given (:class:`~chatservice.store.interface.StoredRoom`).

        Counted here, from the highest version of the rooms kept when the file
        is opened, so that a change costs no write of a counter: only one
        server uses the file, and what it holds of the rooms it reads from the
        file at start, so a version given to a room removed before a restart
        (and given again after it) is held nowhere.
        """

    def __repr__(self) -> str:
        return f"<SQLiteStore {str(self.path)!r}>"

    def group_history(self, schedule: Callable[[Callable[[], None]], object] | None) -> None:
        """Commit history rows in groups: ``schedule(self.commit_history)`` at each group's first row.

        :param schedule: told that a group was opened; the caller then runs
            :meth:`commit_history` before anything that reports on the
            group's rows can be seen, and soon in any case (the server's
            output batcher: before its next write, at most a flush interval
            later, and before any output that does not go through it;
            ``lambda f: reactor.callLater(0, f)`` is the simple choice).
            ``None``: every row commits by itself again.
        """
        self.commit_history()
        self._history_grouped = schedule

    def commit_history(self) -> None:
        """Commit the open group of history rows, if any (see "Grouped history rows").

        Each of its channels' last number is written with it.
        """
        rows, self._history_rows = self._history_rows, 0
        numbered, self._next_seq = self._next_seq, {}
        connection = self._connection
        if not rows or connection is None or not connection.in_transaction:
            return
        try:
            connection.executemany(_KEEP_LAST_SEQ, [(c, n - 1) for c, n in numbered.items()])
            connection.execute("COMMIT")
        except sqlite3.Error:
            _rollback(connection)
            log.failure(
                "Chat database {path}: {rows} history entries could not be committed",
                path=str(self.path), rows=rows,
            )
            return
        self._committed()

    # Opening and closing ---------------------------------------------------------

    def check(self) -> int:
        """Check that :meth:`open` can use the file, without changing it.

        :return: the file's schema version: 0 when there is no database yet
            (no file, or an empty one in a directory with none of
            ``in_use_signs``).
        :raises StoreError: naming the file, when it cannot be used.
        """
        path = self.path
        if not path.parent.is_dir():
            raise StoreError(
                f"Cannot open the chat database {path}:"
                f" the directory {path.parent} does not exist."
            )
        try:
            status = os.stat(path)
        except FileNotFoundError:
            return 0
        except OSError as e:
            raise StoreError(f"Cannot open the chat database {path}: {e.strerror}.") from None
        if not stat.S_ISREG(status.st_mode):
            raise StoreError(f"Cannot open the chat database {path}: it is not a regular file.")
        try:
            with open(path, "rb") as f:
                header = f.read(_HEADER_SIZE)
        except OSError as e:
            raise StoreError(f"Cannot read the chat database {path}: {e.strerror}.") from None
        if not header and not _wal_path(path).exists():
            signs = self._signs_of_use()
            if signs:
                raise StoreError(
                    f"The chat database {path} is empty, but its directory was in use"
                    f" ({', '.join(signs)} there): the database was lost (truncated?),"
                    " not new. Restore it from a backup, or remove the empty file to"
                    " start with an empty chat. It was left as it is."
                )
            return 0
        if len(header) < _HEADER_SIZE or not header.startswith(SQLITE_MAGIC):
            raise StoreError(
                f"The chat database {path} is not an SQLite database (corrupt, or"
                " another kind of file); it was left as it is."
            )
        return self._check_readonly()

    def _signs_of_use(self) -> list[str]:
        """The files beside the database that match ``in_use_signs``, sorted."""
        directory = self.path.parent
        return sorted(
            {found.name for sign in self.in_use_signs for found in directory.glob(sign)}
        )

    def _check_readonly(self) -> int:
        """Read the file's version and check its pages without writing anything.

        A file closed cleanly has no ``-wal`` log: it is read as immutable,
        which creates no file beside it.  After a crash the log is there and
        holds committed transactions, so it is read through a read-only
        connection (which may add the ``-shm`` index file if that is missing,
        but never writes the database or its log).
        """
        path = self.path
        mode = "mode=ro" if _wal_path(path).exists() else "immutable=1"
        try:
            connection = sqlite3.connect(
                f"{path.absolute().as_uri()}?{mode}", uri=True, isolation_level=None
            )
        except sqlite3.Error as e:
            raise StoreError(f"Cannot open the chat database {path}: {e}.") from None
        try:
            application_id = connection.execute("PRAGMA application_id").fetchone()[0]
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            tables = {
                row[0]
                for row in connection.execute(
                    "SELECT name FROM sqlite_master"
                    " WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                )
            }
            problems = [row[0] for row in connection.execute("PRAGMA quick_check(5)")]
        except sqlite3.Error as e:
            raise StoreError(
                f"The chat database {path} is corrupt or unreadable ({e});"
                " it was left as it is."
            ) from None
        finally:
            connection.close()
        if problems != ["ok"]:
            found = "; ".join(line for problem in problems for line in problem.splitlines())
            raise StoreError(
                f"The chat database {path} is corrupt ({found});"
                " it was left as it is."
            )
        if application_id not in (0, APPLICATION_ID):
            raise StoreError(
                f"{path} is another program's SQLite database"
                f" (application id {application_id:#x}), not a chat database;"
                " it was left as it is."
            )
        if version > schema_version():
            raise StoreError(
                f"The chat database {path} has schema version {version}, newer than"
                f" this server knows ({schema_version()}): run a newer chatservice"
                " or use another data directory. It was left as it is."
            )
        if version == 0 and tables:
            raise StoreError(
                f"{path} is an SQLite database with tables but no chat schema"
                " version: not a chat database; it was left as it is."
            )
        required = REQUIRED_TABLES.union(
            *(added for since, added in ADDED_TABLES.items() if version >= since)
        )
        missing = required - tables if version >= 1 else frozenset()
        if missing:
            raise StoreError(
                f"The chat database {path} (schema version {version}) lacks the"
                f" tables {', '.join(sorted(missing))}; it was left as it is."
            )
        return version

    def open(self) -> None:
        """Check the file, create it or migrate its schema, and get ready for calls.

        :raises StoreError: naming the file, when it cannot be used (it is then
            left as it was).
        """
        if self._connection is not None:
            raise StoreError(f"The chat database {self.path} is already open.")
        found = self.check()
        path = self.path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as e:
            raise StoreError(f"Cannot create the chat database {path}: {e.strerror}.") from None
        else:
            os.close(fd)
        try:
            connection = sqlite3.connect(
                path, isolation_level=None, timeout=self.busy_timeout
            )
        except sqlite3.Error as e:
            raise StoreError(f"Cannot open the chat database {path}: {e}.") from None
        try:
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(
                    f"Cannot put the chat database {path} in WAL mode (it is in {mode} mode)."
                )
            connection.execute(f"PRAGMA synchronous = {self.synchronous}")
            # An account removed takes its operator status with it.
            connection.execute("PRAGMA foreign_keys = ON")
            if self.background_checkpoints:
                connection.execute(f"PRAGMA wal_autocheckpoint = {LOG_LIMIT_PAGES:d}")
            version = self._migrate(connection)
            if version >= ROOM_VERSIONS_SINCE:
                (self._room_version,) = connection.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM rooms"
                ).fetchone()
        except sqlite3.Error as e:
            connection.close()
            raise StoreError(f"Cannot set up the chat database {path}: {e}.") from None
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        if self.background_checkpoints:
            self._checkpointer = _Checkpointer(path, self.busy_timeout)
            self._checkpointer.start()
        log.info(
            "Chat database {path} open (schema version {version}{was})",
            path=str(path),
            version=version,
            was="" if found == version else f", was {found}",
        )

    def _migrate(self, connection: sqlite3.Connection) -> int:
        """Bring the schema up to :func:`schema_version` in one transaction."""
        target = schema_version()
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > target:
                raise StoreError(
                    f"The chat database {self.path} has schema version {version},"
                    f" newer than this server knows ({target})."
                )
            for step in range(version, target):
                for statement in MIGRATIONS[step]:
                    connection.execute(statement)
                log.info(
                    "Chat database {path}: schema migrated to version {version}",
                    path=str(self.path),
                    version=step + 1,
                )
            if version < target:
                connection.execute(f"PRAGMA user_version = {target:d}")
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
            connection.execute("COMMIT")
        except BaseException:
            _rollback(connection)
            raise
        return target

    def close(self) -> None:
        """Stop the checkpoint thread and close the database (SQLite checkpoints it)."""
        self.commit_history()
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    # Helpers -----------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        connection = self._connection
        if connection is None:
            raise StoreError(f"The chat database {self.path} is not open.")
        if self._history_rows:
            self.commit_history()
        return connection

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn an SQLite failure into a :class:`StoreError` naming the file."""
        try:
            yield
        except sqlite3.Error as e:
            raise StoreError(f"Chat database {self.path}: {e}") from e

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Several statements committed together (one statement commits by itself)."""
        with self._errors():
            connection = self._db
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                _rollback(connection)
                raise
        self._committed()

    def _write(self, sql: str, parameters: Sequence[object]) -> sqlite3.Cursor:
        """Run one changing statement, committed when it returns."""
        with self._errors():
            cursor = self._db.execute(sql, parameters)
        self._committed()
        return cursor

    def _committed(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.committed()

    # Blocks -------------------------------------------------------------------------

    def blocks(self) -> Iterable[tuple[str, str]]:
        with self._errors():
            return self._db.execute(
                "SELECT blocker, blocked FROM blocks ORDER BY blocker, blocked"
            ).fetchall()

    def add_block(self, blocker: str, blocked: str) -> None:
        self._write(
            "INSERT OR IGNORE INTO blocks (blocker, blocked) VALUES (?, ?)", (blocker, blocked)
        )

    def remove_block(self, blocker: str, blocked: str) -> None:
        self._write("DELETE FROM blocks WHERE blocker = ? AND blocked = ?", (blocker, blocked))

    # Last seen ----------------------------------------------------------------------

    def last_seen(self) -> Iterable[tuple[str, float]]:
        with self._errors():
            return self._db.execute("SELECT username, seen_at FROM last_seen").fetchall()

    def record_seen(self, username: str, at: float) -> None:
        self._write(
            "INSERT INTO last_seen (username, seen_at) VALUES (?, ?)"
            " ON CONFLICT (username) DO UPDATE SET seen_at = excluded.seen_at",
            (username, at),
        )

    # Offline messages ---------------------------------------------------------------

    def add_offline(
        self, sender: str, recipient: str, text: str, sent_at: float
    ) -> StoredMessage:
        text = _storable(text)
        cursor = self._write(
            "INSERT INTO offline_messages (sender, recipient, body, sent_at)"
            " VALUES (?, ?, ?, ?)",
            (sender, recipient, text, sent_at),
        )
        assert cursor.lastrowid is not None
        return StoredMessage(cursor.lastrowid, sender, recipient, text, sent_at)

    def offline_messages(self, recipient: str) -> list[StoredMessage]:
        with self._errors():
            rows = self._db.execute(
                "SELECT message_id, sender, recipient, body, sent_at FROM offline_messages"
                " WHERE recipient = ? ORDER BY message_id",
                (recipient,),
            ).fetchall()
        return [StoredMessage(*row) for row in rows]

    def remove_offline(self, message_ids: Iterable[int]) -> None:
        ids = list(message_ids)
        if not ids:
            return
        if len(ids) == 1:
            self._write("DELETE FROM offline_messages WHERE message_id = ?", ids)
            return
        with self._transaction() as connection:
            for start in range(0, len(ids), _DELETE_CHUNK):
                chunk = ids[start : start + _DELETE_CHUNK]
                marks = ", ".join("?" * len(chunk))
                connection.execute(
                    f"DELETE FROM offline_messages WHERE message_id IN ({marks})", chunk
                )

    def take_offline(self, message_id: int) -> bool:
        cursor = self._write("DELETE FROM offline_messages WHERE message_id = ?", (message_id,))
        return cursor.rowcount > 0

    def count_offline(self, recipient: str) -> int:
        with self._errors():
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM offline_messages WHERE recipient = ?", (recipient,)
            ).fetchone()
        return int(count)

    def keep_offline(
        self, sender: str, recipient: str, text: str, sent_at: float, max_waiting: int,
        max_from_sender: int,
    ) -> KeptOffline:
        text = _storable(text)
        # One transaction (taking the write lock first): counted and inserted
        # with no other writer in between.
        with self._transaction() as connection:
            (waiting, from_sender) = connection.execute(
                "SELECT COUNT(*), COUNT(CASE WHEN sender = ? THEN 1 END)"
                " FROM offline_messages WHERE recipient = ?",
                (sender, recipient),
            ).fetchone()
            if waiting >= max_waiting or from_sender >= max_from_sender:
                return KeptOffline(None, waiting, from_sender)
            cursor = connection.execute(
                "INSERT INTO offline_messages (sender, recipient, body, sent_at)"
                " VALUES (?, ?, ?, ?)",
                (sender, recipient, text, sent_at),
            )
        assert cursor.lastrowid is not None
        message = StoredMessage(cursor.lastrowid, sender, recipient, text, sent_at)
        return KeptOffline(message, waiting, from_sender)

    # History ------------------------------------------------------------------------

    def add_history(
        self, channel: str, sender: str, text: str, sent_at: float
    ) -> HistoryEntry:
        text = _storable(text)
        connection = self._connection
        grouped = self._history_grouped
        if connection is None or grouped is None:
            with self._transaction() as connection:
                (seq,) = connection.execute(_INSERT_NUMBERED, (channel, sender, text, sent_at)).fetchone()
                connection.execute(_KEEP_LAST_SEQ, (channel, seq))
            return HistoryEntry(channel, seq, sender, text, sent_at)
        if not self._history_rows:
            # The group's first row: its transaction stays open until the
            # group is committed (see "Grouped history rows").
            with self._errors():
                connection.execute("BEGIN")
            grouped(self.commit_history)
        next_seq = self._next_seq
        seq = next_seq.get(channel)
        try:
            if seq is None:
                # The channel's first row in the group: numbered from the table
                # (this insert takes the write lock, which the group then keeps).
                (seq,) = connection.execute(_INSERT_NUMBERED, (channel, sender, text, sent_at)).fetchone()
            else:
                connection.execute(_INSERT, (channel, seq, sender, text, sent_at))
        except sqlite3.Error as e:
            self._history_failed()
            raise StoreError(f"Chat database {self.path}: {e}") from e
        next_seq[channel] = seq + 1
        self._history_rows += 1
        return HistoryEntry(channel, seq, sender, text, sent_at)

    def _history_failed(self) -> None:
        """After a failed insert: what of the open group SQLite rolled back is lost (logged)."""
        rows = self._history_rows
        connection = self._connection
        if connection is None:
            return
        if connection.in_transaction:
            if rows:
                self.commit_history()  # the group's earlier rows stand
            else:
                _rollback(connection)  # the group's BEGIN, with nothing in it
            return
        self._next_seq = {}
        if rows:
            self._history_rows = 0
            log.error(
                "Chat database {path}: {rows} history entries rolled back with a failed insert",
                path=str(self.path), rows=rows,
            )

    def history_after(self, channels: Iterable[str], after: float) -> list[HistoryEntry]:
        found: list[HistoryEntry] = []
        with self._errors():
            connection = self._db
            for channel in channels:
                rows = connection.execute(
                    "SELECT channel, seq, sender, body, sent_at FROM history"
                    " WHERE channel = ? AND sent_at > ? ORDER BY sent_at, seq",
                    (channel, after),
                ).fetchall()
                found.extend(HistoryEntry(*row) for row in rows)
        found.sort(key=lambda entry: (entry.sent_at, entry.channel, entry.seq))
        return found

    def history_page(
        self, channels: Iterable[str], start: HistoryPosition, limit: int
    ) -> list[HistoryEntry]:
        after, after_channel, after_seq = start
        with self._errors():
            connection = self._db
            cursors = []
            for channel in dict.fromkeys(channels):
                # At start's time, the entries after it in this channel: all
                # of a later channel, those numbered after it in its own.
                if channel > after_channel:
                    seq = -1
                elif channel == after_channel:
                    seq = after_seq
                else:
                    seq = _LAST_SEQ
                cursors.append(
                    connection.execute(
                        "SELECT channel, seq, sender, body, sent_at FROM history"
                        " WHERE channel = ? AND (sent_at, seq) > (?, ?)"
                        " ORDER BY sent_at, seq LIMIT ?",
                        (channel, after, seq, limit),
                    )
                )
            # Each cursor yields its channel in order; merged lazily, only
            # about ``limit`` rows are read and made entries, whatever the
            # number of channels.
            try:
                rows = list(itertools.islice(heapq.merge(*cursors, key=_row_position), limit))
            finally:
                for cursor in cursors:
                    cursor.close()
        return [HistoryEntry(*row) for row in rows]

    def purge_history(self, before: float | None, keep: int | None, limit: int) -> int:
        removed = 0
        rules = [
            (rule, value)
            for rule, value in (("h.seq <= c.last_seq - ?", keep), ("h.sent_at < ?", before))
            if value is not None
        ]
        if not rules:
            return 0
        with self._transaction() as connection:
            for rule, value in rules:
                if removed >= limit:
                    break
                # Channel by channel (CROSS JOIN keeps that order), each
                # through an index: a batch costs its rows, not the table.
                removed += connection.execute(
                    "DELETE FROM history WHERE rowid IN ("
                    " SELECT h.rowid FROM history_channels AS c CROSS JOIN history AS h"
                    f" ON h.channel = c.channel AND {rule} LIMIT ?)",
                    (value, limit - removed),
                ).rowcount
        return removed

    # Rooms --------------------------------------------------------------------------

    def rooms(self) -> Iterable[StoredRoom]:
        rooms: dict[int, tuple[set[str], int]] = {}
        with self._errors():
            for room_id, version, username in self._db.execute(
                "SELECT rooms.room_id, rooms.version, room_members.username FROM rooms"
                " LEFT JOIN room_members ON room_members.room_id = rooms.room_id"
                " ORDER BY rooms.room_id"
            ):
                names, _ = rooms.setdefault(room_id, (set(), version))
                if username is not None:
                    names.add(username)
        return [
            StoredRoom(room_id, frozenset(names), version)
            for room_id, (names, version) in rooms.items()
        ]

    def save_room(self, room_id: int, members: frozenset[str]) -> int:
        version = self._next_room_version()
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO rooms (room_id, version) VALUES (?, ?)"
                " ON CONFLICT (room_id) DO UPDATE SET version = excluded.version",
                (room_id, version),
            )
            connection.execute("DELETE FROM room_members WHERE room_id = ?", (room_id,))
            connection.executemany(
                "INSERT INTO room_members (room_id, username) VALUES (?, ?)",
                [(room_id, username) for username in members],
            )
        return version

    def delete_room(self, room_id: int) -> None:
        with self._transaction() as connection:
            connection.execute("DELETE FROM room_members WHERE room_id = ?", (room_id,))
            connection.execute("DELETE FROM rooms WHERE room_id = ?", (room_id,))

    def leave_room(self, room_id: int, username: str) -> StoredRoom:
        with self._transaction() as connection:
            connection.execute(
                "DELETE FROM room_members WHERE room_id = ? AND username = ?", (room_id, username)
            )
            left = frozenset(
                name for (name,) in connection.execute(
                    "SELECT username FROM room_members WHERE room_id = ?", (room_id,)
                )
            )
            version = self._next_room_version()
            if left:
                connection.execute(
                    "UPDATE rooms SET version = ? WHERE room_id = ?", (version, room_id)
                )
            else:
                connection.execute("DELETE FROM rooms WHERE room_id = ?", (room_id,))
        return StoredRoom(room_id, left, version)

    def last_room_version(self) -> int:
        return self._room_version

    def _next_room_version(self) -> int:
        """A room version higher than every one given before."""
        self._room_version += 1
        return self._room_version

    def highest_room_id(self) -> int:
        with self._errors():
            (highest,) = self._db.execute(
                "SELECT MAX(n) FROM ("
                " SELECT MAX(room_id) AS n FROM rooms"
                " UNION ALL"
                " SELECT MAX(CAST(substr(channel, 6) AS INTEGER)) FROM history_channels"
                "  WHERE channel >= 'room:' AND channel < 'room;'"
                ")"
            ).fetchone()
        return int(highest or 0)

    # Accounts -----------------------------------------------------------------------

    def account(self, username: str) -> tuple[str, str | None] | None:
        with self._errors():
            row = self._db.execute(
                "SELECT secret, scram FROM chat_accounts WHERE username = ?", (username,)
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def usernames(self) -> list[str]:
        with self._errors():
            rows = self._db.execute(
                "SELECT username FROM chat_accounts ORDER BY username"
            ).fetchall()
        return [row[0] for row in rows]

    def add_account(self, username: str, secret: str, scram: str | None) -> bool:
        cursor = self._write(
            "INSERT OR IGNORE INTO chat_accounts (username, secret, scram) VALUES (?, ?, ?)",
            (username, secret, scram),
        )
        return cursor.rowcount == 1

    def set_secret(self, username: str, secret: str, scram: str | None) -> bool:
        cursor = self._write(
            "UPDATE chat_accounts SET secret = ?, scram = ? WHERE username = ?",
            (secret, scram, username),
        )
        return cursor.rowcount == 1

    def add_scram_keys(self, username: str, secret: str, scram: str) -> bool:
        cursor = self._write(
            "UPDATE chat_accounts SET scram = ?"
            " WHERE username = ? AND secret = ? AND scram IS NULL",
            (scram, username, secret),
        )
        return cursor.rowcount == 1

    def import_accounts(self, entries: Iterable[tuple[str, str, str | None]]) -> int:
        rows = list(entries)
        with self._transaction() as connection:
            before = connection.total_changes
            connection.executemany(
                "INSERT OR IGNORE INTO chat_accounts (username, secret, scram) VALUES (?, ?, ?)",
                rows,
            )
            return connection.total_changes - before

    # Users --------------------------------------------------------------------------

    def forget_user(self, username: str) -> None:
        with self._transaction() as connection:
            for statement in _FORGET_USER:
                connection.execute(statement, (username,))

    # Administration (chatservice-admin) -------------------------------------------

    def user_data(self, username: str) -> UserData:
        with self._errors():
            db = self._db
            account = db.execute(
                "SELECT 1 FROM chat_accounts WHERE username = ?", (username,)
            ).fetchone()
            blocking = db.execute(
                "SELECT blocked FROM blocks WHERE blocker = ? ORDER BY blocked", (username,)
            ).fetchall()
            blocked_by = db.execute(
                "SELECT blocker FROM blocks WHERE blocked = ? ORDER BY blocker", (username,)
            ).fetchall()
            rooms = db.execute(
                "SELECT room_id FROM room_members WHERE username = ? ORDER BY room_id",
                (username,),
            ).fetchall()
            seen = db.execute(
                "SELECT seen_at FROM last_seen WHERE username = ?", (username,)
            ).fetchone()
            sent = db.execute(
                "SELECT message_id, sender, recipient, body, sent_at FROM offline_messages"
                " WHERE sender = ? ORDER BY message_id",
                (username,),
            ).fetchall()
        return UserData(
            account=account is not None,
            blocking=tuple(row[0] for row in blocking),
            blocked_by=tuple(row[0] for row in blocked_by),
            rooms=tuple(row[0] for row in rooms),
            last_seen=None if seen is None else seen[0],
            messages_to=tuple(self.offline_messages(username)),
            messages_from=tuple(StoredMessage(*row) for row in sent),
        )

    def delete_user(self, username: str, sent: bool) -> bool:
        with self._transaction() as connection:
            existed = connection.execute(
                "DELETE FROM chat_accounts WHERE username = ?", (username,)
            ).rowcount > 0
            for statement in _FORGET_USER:
                connection.execute(statement, (username,))
            if sent:
                connection.execute("DELETE FROM offline_messages WHERE sender = ?", (username,))
            rooms = connection.execute(
                "DELETE FROM room_members WHERE username = ? RETURNING room_id", (username,)
            ).fetchall()
            # Its rooms left without members go (others' empty rooms stay).
            connection.executemany(
                "DELETE FROM rooms WHERE room_id = ? AND NOT EXISTS"
                " (SELECT 1 FROM room_members WHERE room_members.room_id = rooms.room_id)",
                rooms,
            )
            for (room_id,) in sorted(rooms):
                connection.execute(
                    "UPDATE rooms SET version = ? WHERE room_id = ?",
                    (self._next_room_version(), room_id),
                )
        return existed

    def history_of(self, username: str, start: HistoryPosition, limit: int) -> list[HistoryEntry]:
        with self._errors():
            rows = self._db.execute(
                "SELECT channel, seq, sender, body, sent_at FROM history"
                " WHERE sender = ? AND (sent_at, channel, seq) > (?, ?, ?)"
                " ORDER BY sent_at, channel, seq LIMIT ?",
                (username, *start, limit),
            ).fetchall()
        return [HistoryEntry(*row) for row in rows]

    def forget_history_of(self, username: str, limit: int) -> int:
        return self._write(
            "DELETE FROM history WHERE rowid IN"
            " (SELECT rowid FROM history WHERE sender = ? LIMIT ?)",
            (username, limit),
        ).rowcount


    # Operators ----------------------------------------------------------------------

    def operators(self) -> set[str]:
        with self._errors():
            rows = self._db.execute(
                "SELECT o.username FROM chat_operators AS o"
                " JOIN chat_accounts AS a ON a.username = o.username"
            ).fetchall()
        return {row[0] for row in rows}

    def set_operator(self, username: str, operator: bool) -> bool:
        with self._transaction() as connection:
            if connection.execute(
                "SELECT 1 FROM chat_accounts WHERE username = ?", (username,)
            ).fetchone() is None:
                return False
            if operator:
                connection.execute(
                    "INSERT OR IGNORE INTO chat_operators (username) VALUES (?)", (username,)
                )
            else:
                connection.execute("DELETE FROM chat_operators WHERE username = ?", (username,))
        return True

    # Bans ---------------------------------------------------------------------------

    def bans(self) -> list[Ban]:
        with self._errors():
            rows = self._db.execute(f"{_SELECT_BANS} ORDER BY ban_id").fetchall()
        return [_ban(row) for row in rows]

    def add_ban(self, ban: Ban) -> Ban:
        reason = _storable(ban.reason)
        with self._transaction() as connection:
            (ban_id,) = connection.execute(
                "INSERT INTO bans (kind, target, set_by, set_at, expires_at, reason)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (kind, target) DO UPDATE SET set_by = excluded.set_by,"
                " set_at = excluded.set_at, expires_at = excluded.expires_at,"
                " reason = excluded.reason"
                " RETURNING ban_id",
                (ban.kind, ban.target, ban.set_by, ban.set_at, ban.expires_at, reason),
            ).fetchone()
        return dataclasses.replace(ban, reason=reason, ban_id=ban_id)

    def remove_ban(self, ban: int | str) -> int:
        if isinstance(ban, str):
            cursor = self._write("DELETE FROM bans WHERE target = ?", (ban,))
        elif int(ban) in _INTEGER:
            cursor = self._write("DELETE FROM bans WHERE ban_id = ?", (int(ban),))
        else:
            return 0
        return cursor.rowcount


_SELECT_BANS = "SELECT kind, target, set_by, set_at, expires_at, reason, ban_id FROM bans"
"""The columns of a :class:`~chatservice.store.interface.Ban`, in its order."""

_INTEGER = range(-(2**63), 2**63)
"""The numbers an SQLite integer holds."""


def _ban(row: tuple[str, str, str, float, float | None, str, int]) -> Ban:
    kind, target, set_by, set_at, expires_at, reason, ban_id = row
    return Ban(kind, target, set_by, set_at, expires_at, reason, ban_id)  # type: ignore[arg-type]


_FORGET_USER = (
    "DELETE FROM blocks WHERE blocker = ?",
    "DELETE FROM blocks WHERE blocked = ?",
    "DELETE FROM last_seen WHERE username = ?",
    "DELETE FROM offline_messages WHERE recipient = ?",
)
"""What :meth:`SQLiteStore.forget_user` runs, in one transaction."""


class _Checkpointer:
    """A thread with its own connection that copies the log into the database.

    It runs passive checkpoints, which never block the writer, when
    :data:`CHECKPOINT_EVERY` commits have been made or :data:`CHECKPOINT_IDLE`
    seconds after the last commit, repeating while the writer added to the log
    meanwhile (up to :data:`CHECKPOINT_PASSES` times).  The writer resets the
    log once a checkpoint has copied all of it.
    """

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._commits = 0
        self._dirty = False
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"checkpoint {path.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def committed(self) -> None:
        """Count a commit (on the caller's thread); wake the thread every so many."""
        self._dirty = True
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            self._wake.set()

    def stop(self) -> None:
        """Let the thread finish its checkpoint, if any, and end."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        connection = sqlite3.connect(
            self.path, isolation_level=None, timeout=self.busy_timeout, check_same_thread=False
        )
        try:
            while True:
                self._wake.wait(CHECKPOINT_IDLE)
                self._wake.clear()
                if self._stopping:
                    return
                if self._dirty:
                    self._dirty = False
                    self._checkpoint(connection)
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        for _ in range(CHECKPOINT_PASSES):
            try:
                busy, in_log, copied = connection.execute(
                    "PRAGMA wal_checkpoint(PASSIVE)"
                ).fetchone()
            except sqlite3.Error as e:
                log.warn(
                    "Checkpoint of the chat database {path} failed: {error}",
                    path=str(self.path),
                    error=str(e),
                )
                return
            if busy or copied >= in_log or self._stopping:
                return


_INSERT_NUMBERED = (
    "INSERT INTO history (channel, seq, sender, body, sent_at) VALUES (?1,"
    " (SELECT IFNULL(MAX(last_seq), 0) + 1 FROM history_channels WHERE channel = ?1),"
    " ?2, ?3, ?4) RETURNING seq"
)
"""A history row numbered after its channel's last number."""

_INSERT = "INSERT INTO history (channel, seq, sender, body, sent_at) VALUES (?, ?, ?, ?, ?)"
"""A history row whose number is known (the next of a channel in the open group)."""

_KEEP_LAST_SEQ = (
    "INSERT INTO history_channels (channel, last_seq) VALUES (?, ?)"
    " ON CONFLICT (channel) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)"
)
"""A channel's last history number, kept when its rows are deleted (schema version 8)."""


def _rollback(connection: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any, keeping the error that caused it."""
    if connection.in_transaction:
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _storable(text: str) -> str:
    """``text``, with any lone surrogate (which UTF-8 cannot hold) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
