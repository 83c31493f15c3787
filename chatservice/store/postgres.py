"""An :class:`~chatservice.store.interface.IChatStore` kept in PostgreSQL, shared by several nodes.

:class:`PostgresStore` keeps the accounts, blocks, last-seen times, offline
messages, rooms and history in a PostgreSQL database, with exactly the behaviour of
:class:`~chatservice.store.memory.MemoryStore` and
:class:`~chatservice.store.sqlite.SQLiteStore`, and is safe to use from
several server processes ("nodes") at once.  It is reached through
:class:`twisted.enterprise.adbapi.ConnectionPool` with psycopg 3, so no call
blocks the reactor: each runs in the pool's thread and fires its Deferred on
the reactor thread.  psycopg is imported only by this module, which is only
imported when a ``postgresql://`` store is asked for.

Order of calls
--------------
A node has **one** connection, used by one thread that takes the calls in the
order they were made: a call takes effect after every call made before it (as
with the local stores), so the chat state may make several calls without
waiting for each, and a read sees the writes made before it.  Each call is one
round trip for most calls (one statement in autocommit mode, atomic by
itself); ``save_room`` is a short transaction.  ``bench/store_latency.py
--postgres DSN`` measures the cost.

Several nodes
-------------
Every call is correct while other nodes use the same database:

- history numbers: a row per channel in ``history_channels`` holds the last
  number given.  ``add_history`` is one statement that increments it with
  ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` (which locks that row
  until the statement commits) and inserts the message with that number, so
  two nodes never give the same number and, as the increment and the insert
  commit or fail together, no number is skipped.  The rows a node asks for
  while its last group commits go together, as one transaction (group
  commit: one commit and one lock of the counter for the group, where every
  broadcast of every node used to wait for the last one's commit);
- offline message ids come from an identity column (a sequence): unique
  across nodes and never reused, oldest first;
- a mailbox's bounds: ``keep_offline`` is one call of the function
  ``chat_keep_offline`` (one round trip), which locks the recipient's
  mailbox (an advisory lock held until it commits), counts and inserts, so
  messages kept at once from several nodes never take it past its bounds;
- accounts: ``add_account`` (and ``import_accounts``) insert with ``ON
  CONFLICT DO NOTHING``, so of two nodes registering one name at once the
  second waits for the first to commit and is told the name is taken;
  ``add_scram_keys`` only updates a row whose secret is unchanged and has no
  keys yet;
- operators: ``set_operator`` is one statement that grants only to an
  account there is; an account removed takes its operator row with it
  (``ON DELETE CASCADE``);
- bans: ``add_ban`` is one upsert on the ban's ``(kind, target)``, so two
  nodes banning one target at once leave one ban, numbered by an identity
  column;
- blocks, last-seen times and room members are upserts or idempotent deletes;
  ``save_room`` locks the room's row, so two nodes saving one room leave the
  members of one of them, not a mixture; ``leave_room`` takes out only its
  member (under the same lock), so members leaving at once are all out;
  each of them gives the room the next number of the ``room_versions``
  sequence while it holds that lock, so the later of two changes of a room
  has the higher version (the nodes keep the newest one announced);
- ``highest_room_id`` also counts the rooms that only have history (their
  ``history_channels`` row), so a room number is never given again after its
  room was deleted; ``next_room_id`` (not in the interface yet) gives each
  node a number of its own from one sequence, raised past those numbers;
- ``history_page`` reads each channel's rows after the page's start from the
  index (a ``LATERAL`` subquery per channel, ``LIMIT`` rows each), so a page
  costs its rows, not the history; ``purge_history`` deletes at most
  ``limit`` rows a call, found the same way, and leaves ``history_channels``
  alone, so numbering goes on.  Nodes purging at once (each node runs its
  own retention) delete each row once: a row another node is deleting is
  skipped (``FOR UPDATE SKIP LOCKED``), so they never wait on each other.

Schema
------
:data:`MIGRATIONS` lists the schema changes; the ``schema_version`` table
records those applied (version 1 is the data model of the SQLite store,
version 2 adds the accounts, version 3 the operators and bans, version 4
the indexes by sender that ``chatservice-admin``'s export and delete use,
version 5 the function that keeps a direct message within its recipient's
mailbox bounds in one round trip).
:meth:`PostgresStore.open` creates or migrates the schema in one transaction,
holding an advisory lock so that nodes starting together migrate once, and
refuses a database whose schema is newer than this code, or that has tables of
these names but no ``schema_version`` (another program's), leaving it as it is.

The DSN
-------
The store is named by a libpq URL, ``postgresql://user[:password]@host[:port]/dbname``
(or any libpq connection string).  Errors and log messages show it without its
password (:func:`redact`), and any error text is scrubbed of the password.
The connection waits at most ``connect_timeout`` seconds (10 unless the DSN
says otherwise) for the server.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Any, Callable, Iterable, Sequence, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from twisted.enterprise.adbapi import ConnectionLost, ConnectionPool
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatservice.store.interface import (
    Ban,
    HistoryEntry,
    HistoryPosition,
    IChatStore,
    KeptOffline,
    StoredMessage,
    StoredRoom,
    UserData,
)
from chatservice.store.sqlite import StoreError, _storable

__all__ = ["MIGRATIONS", "PostgresStore", "StoreError", "redact", "schema_version"]

log = Logger()

_T = TypeVar("_T")

MIGRATIONS: list[Sequence[str]] = [
    # Version 1: everything the chat state keeps (the SQLite store's data model).
    # Names are compared and sorted by code point (COLLATE "C"), as in Python.
    (
        """
        CREATE TABLE offline_messages (
            message_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            sender TEXT COLLATE "C" NOT NULL,
            recipient TEXT COLLATE "C" NOT NULL,
            body TEXT NOT NULL,
            sent_at DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX offline_messages_by_recipient"
        " ON offline_messages (recipient, message_id)",
        """
        CREATE TABLE blocks (
            blocker TEXT COLLATE "C" NOT NULL,
            blocked TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (blocker, blocked)
        )
        """,
        """
        CREATE TABLE last_seen (
            username TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            seen_at DOUBLE PRECISION NOT NULL
        )
        """,
        """
        CREATE TABLE history_channels (
            channel TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            last_seq BIGINT NOT NULL
        )
        """,
        """
        CREATE TABLE history (
            channel TEXT COLLATE "C" NOT NULL,
            seq BIGINT NOT NULL,
            sender TEXT COLLATE "C" NOT NULL,
            body TEXT NOT NULL,
            sent_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (channel, seq)
        )
        """,
        "CREATE INDEX history_by_channel_time ON history (channel, sent_at, seq)",
        "CREATE TABLE rooms (room_id BIGINT NOT NULL PRIMARY KEY)",
        "CREATE SEQUENCE room_numbers AS BIGINT",
        """
        CREATE TABLE room_members (
            room_id BIGINT NOT NULL REFERENCES rooms ON DELETE CASCADE,
            username TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (room_id, username)
        )
        """,
    ),
    # Version 2: the accounts (until then in the credentials file).
    (
        """
        CREATE TABLE chat_accounts (
            username TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            secret TEXT NOT NULL,
            scram TEXT
        )
        """,
    ),
    # Version 3: the operators, and the bans they set.
    (
        """
        CREATE TABLE chat_operators (
            username TEXT COLLATE "C" NOT NULL PRIMARY KEY
                REFERENCES chat_accounts ON DELETE CASCADE
        )
        """,
        """
        CREATE TABLE bans (
            ban_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('user', 'address', 'network')),
            target TEXT COLLATE "C" NOT NULL,
            set_by TEXT COLLATE "C" NOT NULL,
            set_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION,
            reason TEXT NOT NULL,
            UNIQUE (kind, target)
        )
        """,
    ),
    # Version 4: what a user sent, found by sender (chatservice-admin's export and delete).
    (
        "CREATE INDEX history_by_sender ON history (sender, sent_at, channel, seq)",
        "CREATE INDEX offline_messages_by_sender ON offline_messages (sender)",
    ),
    # Version 5: a direct message counted against its recipient's mailbox and
    # kept in one round trip (``keep_offline``).  The advisory lock (two int4
    # keys: a space of its own, apart from the bigint keys above) holds one
    # mailbox until the caller's transaction ends; each statement of a
    # PL/pgSQL function takes a new snapshot, so the count sees every message
    # committed by a node that held the lock before.
    (
        f"""
        CREATE FUNCTION chat_keep_offline(
            p_sender TEXT, p_recipient TEXT, p_body TEXT, p_sent_at DOUBLE PRECISION,
            p_max_waiting BIGINT, p_max_from_sender BIGINT,
            OUT message_id BIGINT, OUT waiting BIGINT, OUT from_sender BIGINT)
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock({0x43484D42}, hashtext(p_recipient));
            SELECT COUNT(*), COUNT(*) FILTER (WHERE m.sender = p_sender)
                INTO waiting, from_sender
                FROM offline_messages AS m WHERE m.recipient = p_recipient;
            IF waiting < p_max_waiting AND from_sender < p_max_from_sender THEN
                INSERT INTO offline_messages (sender, recipient, body, sent_at)
                    VALUES (p_sender, p_recipient, p_body, p_sent_at)
                    RETURNING offline_messages.message_id INTO message_id;
            END IF;
        END
        $$
        """,
    ),
    # Version 6: each room's version, from one sequence for all rooms, taken
    # under the room's row lock (rooms kept before start at 0, older than
    # every change made from now on).
    (
        "ALTER TABLE rooms ADD COLUMN version BIGINT NOT NULL DEFAULT 0",
        "CREATE SEQUENCE room_versions AS BIGINT",
    ),
]
"""Schema changes: ``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1``.

Append to this list to change the schema; never edit an entry that has shipped.
"""

TABLES = frozenset(
    {"offline_messages", "blocks", "last_seen", "history_channels", "history", "rooms",
     "room_members", "chat_accounts", "chat_operators", "bans"}
)
"""The tables of the schema: a database with one of them but no ``schema_version`` is refused."""

MIGRATION_LOCK = 0x43484154_53544F52
"""The advisory lock key (``"CHATSTOR"``) held while the schema is checked and migrated."""

ROOM_NUMBER_LOCK = 0x43484154_524F4F4D
"""The advisory lock key (``"CHATROOM"``) held while :meth:`PostgresStore.next_room_id` takes a number."""

_HIGHEST_ROOM_ID = (
    "SELECT COALESCE(GREATEST("
    " (SELECT MAX(room_id) FROM rooms),"
    " (SELECT MAX(substr(channel, 6)::numeric) FROM history_channels"
    "   WHERE channel ~ '^room:[0-9]+$'),"
    " (SELECT last_value FROM room_numbers WHERE is_called)), 0)"
)
"""The highest room number in use, in the history, or given by :meth:`PostgresStore.next_room_id`."""

CONNECT_TIMEOUT = 10
"""Seconds a connection attempt waits for the server unless the DSN says otherwise."""

_BIGINT = range(-(2**63), 2**63)


def schema_version() -> int:
    """The schema version this code creates and understands."""
    return len(MIGRATIONS)


def redact(dsn: str) -> str:
    """``dsn`` without its password: what errors and logs show.

    :param dsn: a ``postgresql://`` URL or a ``key=value`` connection string
        (or any text that may contain them).
    """
    # libpq ends a URL's user information at the first "@" or "/".
    shown = re.sub(r"(\w+://[^:/@\s]*):[^@/\s]*@", r"\1@", dsn)
    return re.sub(
        r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", r"\1***", shown, flags=re.IGNORECASE
    )


@implementer(IChatStore)
class PostgresStore:
    """Chat data in the PostgreSQL database ``dsn``, shared with other nodes.

    :param dsn: ``postgresql://user[:password]@host[:port]/dbname``.
    :param reactor: the reactor: the pool starts when it runs, stops when it
        stops, and delivers its results on its thread.
    :raises StoreError: when ``dsn`` is not a valid connection string.
    """

    def __init__(self, dsn: str, reactor: IReactorThreads) -> None:
        self.name = redact(dsn)
        """The DSN without its password: what messages show."""
        self._dsn = dsn
        self._password = ""
        try:
            settings = conninfo_to_dict(dsn)
        except psycopg.Error as e:
            raise StoreError(
                f"{self.name} is not a valid PostgreSQL DSN: {self._scrub(str(e))}."
            ) from None
        self._password = str(settings.get("password") or "")
        self._connect_options: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in settings:
            self._connect_options["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" not in settings:
            self._connect_options["application_name"] = "chatservice"
        self.reactor = reactor
        self._pool: ConnectionPool | None = None
        self._history_waiting: list[tuple[tuple[str, str, str, float], Deferred[HistoryEntry]]] = []
        """History rows asked for while a group of them is being committed: the next group."""
        self._history_in_flight = False

    def __repr__(self) -> str:
        return f"<PostgresStore {self.name}>"

    # Opening and closing ---------------------------------------------------------

    def open(self) -> Deferred[None]:
        """Connect, create or migrate the schema, and get ready for calls.

        :return: a Deferred that fails with :class:`StoreError`, naming the
            database without its password, when the server cannot be reached,
            refuses the login, or has a database this code cannot use.
        """
        if self._pool is not None:
            return fail(StoreError(f"The chat database {self.name} is already open."))
        pool = ConnectionPool(
            "psycopg",
            self._dsn,
            cp_min=1,
            cp_max=1,
            cp_reactor=self.reactor,
            cp_reconnect=True,
            cp_good_sql="SELECT 1",
            **self._connect_options,
        )
        self._pool = pool
        opening = pool.runWithConnection(self._migrate)

        def opened(versions: tuple[int, int]) -> None:
            found, version = versions
            log.info(
                "Chat database {name} open (schema version {version}{was})",
                name=self.name,
                version=version,
                was="" if found == version else f", was {found}",
            )

        def failed(reason: Failure) -> Failure:
            if self._pool is pool:
                self._pool = None
            pool.close()
            if reason.check(StoreError):
                return reason
            return Failure(
                StoreError(f"Cannot open the chat database {self.name}: {self._describe(reason)}")
            )

        return opening.addCallbacks(opened, failed)

    def _migrate(self, connection: Any) -> tuple[int, int]:
        """Bring the schema up to :func:`schema_version` in one transaction (pool thread).

        :return: the version found and the version now.
        """
        target = schema_version()
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            (known,) = connection.execute(
                "SELECT to_regclass('schema_version') IS NOT NULL"
            ).fetchone()
            if known:
                (version,) = connection.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_version"
                ).fetchone()
            else:
                version = 0
                (clash,) = connection.execute(
                    "SELECT array_agg(tablename::text ORDER BY tablename) FROM pg_tables"
                    " WHERE schemaname = current_schema() AND tablename = ANY(%s)",
                    (sorted(TABLES),),
                ).fetchone()
                if clash:
                    raise StoreError(
                        f"The database {self.name} has tables named {', '.join(clash)}"
                        " but no schema_version table: not a chat database; it was left"
                        " as it is."
                    )
                connection.execute(
                    "CREATE TABLE schema_version ("
                    " version INTEGER NOT NULL PRIMARY KEY,"
                    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
            if version > target:
                raise StoreError(
                    f"The chat database {self.name} has schema version {version}, newer"
                    f" than this server knows ({target}); it was left as it is."
                )
            for reached, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    connection.execute(statement)
                connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (reached,))
        return version, target

    def close(self) -> Deferred[None]:
        """Let the calls already made finish, then close the connection.

        Closing a store that is not open does nothing.
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return succeed(None)
        if not pool.running:
            pool.close()
            return succeed(None)
        # The pool's one thread takes work in order: this runs after every call made so far.
        drained: Deferred[None] = deferToThreadPool(self.reactor, pool.threadpool, lambda: None)
        drained.addBoth(lambda _: pool.close())
        return drained

    # Helpers -----------------------------------------------------------------------

    def _run(self, work: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """Run ``work(connection, *args)`` in the pool's thread, after the calls made before."""
        pool = self._pool
        if pool is None:
            return fail(StoreError(f"The chat database {self.name} is not open."))
        result: Deferred[_T] = pool.runWithConnection(work, *args)
        result.addErrback(self._failed)
        return result

    def _failed(self, reason: Failure) -> Failure:
        """Turn a database failure into a :class:`StoreError` naming the database."""
        if reason.check(StoreError):
            return reason
        if reason.check(psycopg.Error, ConnectionLost):
            return Failure(StoreError(f"Chat database {self.name}: {self._describe(reason)}"))
        return reason

    def _describe(self, reason: Failure) -> str:
        """The failure's message on one line, without the DSN's password."""
        if reason.check(ConnectionLost):
            text = "the connection to the server was lost; the next call reconnects"
        else:
            text = str(reason.value) or reason.type.__name__
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        """``text`` on one line, with neither the DSN's password nor the DSN itself."""
        text = " ".join(text.split()).replace(self._dsn, self.name)
        if self._password:
            text = text.replace(self._password, "***")
        return redact(text)

    # Blocks -------------------------------------------------------------------------

    def blocks(self) -> Deferred[Iterable[tuple[str, str]]]:
        return self._run(_fetch_all, "SELECT blocker, blocked FROM blocks ORDER BY blocker, blocked")

    def add_block(self, blocker: str, blocked: str) -> Deferred[None]:
        return self._run(
            _execute,
            "INSERT INTO blocks (blocker, blocked) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (blocker, blocked),
        )

    def remove_block(self, blocker: str, blocked: str) -> Deferred[None]:
        return self._run(
            _execute, "DELETE FROM blocks WHERE blocker = %s AND blocked = %s", (blocker, blocked)
        )

    # Last seen ----------------------------------------------------------------------

    def last_seen(self) -> Deferred[Iterable[tuple[str, float]]]:
        return self._run(_fetch_all, "SELECT username, seen_at FROM last_seen")

    def record_seen(self, username: str, at: float) -> Deferred[None]:
        return self._run(
            _execute,
            "INSERT INTO last_seen (username, seen_at) VALUES (%s, %s)"
            " ON CONFLICT (username) DO UPDATE SET seen_at = excluded.seen_at",
            (username, float(at)),
        )

    # Offline messages ---------------------------------------------------------------

    def add_offline(
        self, sender: str, recipient: str, text: str, sent_at: float
    ) -> Deferred[StoredMessage]:
        return self._run(_add_offline, sender, recipient, _text(text), float(sent_at))

    def offline_messages(self, recipient: str) -> Deferred[list[StoredMessage]]:
        return self._run(_offline_messages, recipient)

    def remove_offline(self, message_ids: Iterable[int]) -> Deferred[None]:
        ids = sorted({int(i) for i in message_ids if int(i) in _BIGINT})
        if not ids:
            return self._run(_nothing)
        return self._run(
            _execute, "DELETE FROM offline_messages WHERE message_id = ANY(%s::bigint[])", (ids,)
        )

    def take_offline(self, message_id: int) -> Deferred[bool]:
        if int(message_id) not in _BIGINT:
            return self._run(_nothing).addCallback(lambda _: False)
        return self._run(
            _changed, "DELETE FROM offline_messages WHERE message_id = %s", (int(message_id),)
        )

    def count_offline(self, recipient: str) -> Deferred[int]:
        return self._run(
            _fetch_value, "SELECT COUNT(*) FROM offline_messages WHERE recipient = %s", (recipient,)
        )

    def keep_offline(
        self, sender: str, recipient: str, text: str, sent_at: float, max_waiting: int,
        max_from_sender: int,
    ) -> Deferred[KeptOffline]:
        return self._run(
            _keep_offline, sender, recipient, _text(text), float(sent_at),
            _clamped(max_waiting), _clamped(max_from_sender),
        )

    # History ------------------------------------------------------------------------

    def add_history(
        self, channel: str, sender: str, text: str, sent_at: float
    ) -> Deferred[HistoryEntry]:
        """Keep a broadcast or room message; committed with the others asked for meanwhile.

        Group commit: the first row goes at once; rows asked for while a
        group is being committed wait and go together as the next, one
        transaction (one commit, the channel's counter locked once) in
        one pipelined round trip.  Each still fires when its group is
        committed, and in the order asked (the groups take their turn in
        the pool's one thread, between the other calls).  If a group
        fails, each of its rows is tried again alone, so one bad row
        fails only its own call.
        """
        waiting: Deferred[HistoryEntry] = Deferred()
        self._history_waiting.append(((channel, sender, _text(text), float(sent_at)), waiting))
        if not self._history_in_flight:
            self._commit_history()
        return waiting

    def _commit_history(self) -> None:
        """Send the waiting history rows as one group."""
        group, self._history_waiting = self._history_waiting, []
        self._history_in_flight = True
        d = self._run(_add_history_rows, [row for row, _ in group])
        d.addBoth(self._history_committed, group)

    def _history_committed(
        self,
        result: list[HistoryEntry] | Failure,
        group: list[tuple[tuple[str, str, str, float], Deferred[HistoryEntry]]],
    ) -> None:
        self._history_in_flight = False
        if not isinstance(result, Failure):
            for (_, waiting), entry in zip(group, result):
                waiting.callback(entry)
        elif len(group) == 1:
            group[0][1].errback(result)
        else:
            for row, waiting in group:
                alone = self._run(_add_history_rows, [row])
                alone.addCallback(lambda entries: entries[0]).chainDeferred(waiting)
        if self._history_waiting:
            self._commit_history()

    def history_after(
        self, channels: Iterable[str], after: float
    ) -> Deferred[list[HistoryEntry]]:
        return self._run(_history_after, list(channels), float(after))

    def history_page(
        self, channels: Iterable[str], start: HistoryPosition, limit: int
    ) -> Deferred[list[HistoryEntry]]:
        after, channel, seq = start
        return self._run(
            _history_page, list(dict.fromkeys(channels)), float(after), channel,
            min(max(int(seq), -1), _BIGINT.stop - 1), int(limit),
        )

    def purge_history(
        self, before: float | None, keep: int | None, limit: int
    ) -> Deferred[int]:
        return self._run(
            _purge_history,
            None if before is None else float(before),
            None if keep is None else int(keep),
            int(limit),
        )

    # Rooms --------------------------------------------------------------------------

    def rooms(self) -> Deferred[Iterable[StoredRoom]]:
        return self._run(_rooms)

    def save_room(self, room_id: int, members: frozenset[str]) -> Deferred[int]:
        return self._run(_save_room, int(room_id), sorted(members))

    def delete_room(self, room_id: int) -> Deferred[None]:
        # Its members go with it (ON DELETE CASCADE); its history and number stay.
        return self._run(_execute, "DELETE FROM rooms WHERE room_id = %s", (int(room_id),))

    def leave_room(self, room_id: int, username: str) -> Deferred[StoredRoom]:
        return self._run(_leave_room, int(room_id), username)

    def last_room_version(self) -> Deferred[int]:
        return self._run(
            _fetch_value, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM room_versions"
        )

    def highest_room_id(self) -> Deferred[int]:
        return self._run(_fetch_value, _HIGHEST_ROOM_ID)

    # Accounts -----------------------------------------------------------------------

    def account(self, username: str) -> Deferred[tuple[str, str | None] | None]:
        return self._run(_account, username)

    def usernames(self) -> Deferred[list[str]]:
        return self._run(_usernames)

    def add_account(self, username: str, secret: str, scram: str | None) -> Deferred[bool]:
        # ON CONFLICT DO NOTHING: of two nodes inserting one name at once, the
        # second waits for the first to commit, then inserts nothing.
        return self._run(
            _changed,
            "INSERT INTO chat_accounts (username, secret, scram) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (username, secret, scram),
        )

    def set_secret(self, username: str, secret: str, scram: str | None) -> Deferred[bool]:
        return self._run(
            _changed,
            "UPDATE chat_accounts SET secret = %s, scram = %s WHERE username = %s",
            (secret, scram, username),
        )

    def add_scram_keys(self, username: str, secret: str, scram: str) -> Deferred[bool]:
        return self._run(
            _changed,
            "UPDATE chat_accounts SET scram = %s"
            " WHERE username = %s AND secret = %s AND scram IS NULL",
            (scram, username, secret),
        )

    def import_accounts(self, entries: Iterable[tuple[str, str, str | None]]) -> Deferred[int]:
        rows = list(entries)
        return self._run(_import_accounts, rows)

    # Users --------------------------------------------------------------------------

    def forget_user(self, username: str) -> Deferred[None]:
        return self._run(_forget_user, username)

    # Operators ----------------------------------------------------------------------

    def operators(self) -> Deferred[set[str]]:
        return self._run(_operators)

    def set_operator(self, username: str, operator: bool) -> Deferred[bool]:
        return self._run(_set_operator, username, bool(operator))

    # Bans ---------------------------------------------------------------------------

    def bans(self) -> Deferred[list[Ban]]:
        return self._run(_bans)

    def add_ban(self, ban: Ban) -> Deferred[Ban]:
        return self._run(_add_ban, dataclasses.replace(ban, reason=_text(ban.reason)))

    def remove_ban(self, ban: int | str) -> Deferred[int]:
        if isinstance(ban, str):
            return self._run(_count_changed, "DELETE FROM bans WHERE target = %s", (ban,))
        if int(ban) not in _BIGINT:
            return self._run(_nothing).addCallback(lambda _: 0)
        return self._run(_count_changed, "DELETE FROM bans WHERE ban_id = %s", (int(ban),))

    def next_room_id(self) -> Deferred[int]:
        """A room number no node was given before, higher than :meth:`highest_room_id`.

        Not part of :class:`IChatStore` (yet): the numbers come from one
        sequence, raised past any number in use or in the history, so nodes
        creating rooms at once never take the same number.
        """
        return self._run(_next_room_id)

    # Administration (chatservice-admin) -------------------------------------------

    def user_data(self, username: str) -> Deferred[UserData]:
        return self._run(_user_data, username)

    def delete_user(self, username: str, sent: bool) -> Deferred[bool]:
        return self._run(_delete_user, username, bool(sent))

    def history_of(
        self, username: str, start: HistoryPosition, limit: int
    ) -> Deferred[list[HistoryEntry]]:
        after, channel, seq = start
        return self._run(
            _history_of, username, float(after), channel,
            min(max(int(seq), -1), _BIGINT.stop - 1), int(limit),
        )

    def forget_history_of(self, username: str, limit: int) -> Deferred[int]:
        return self._run(_forget_history_of, username, int(limit))


# The work done in the pool's thread, each given the connection (autocommit). ------


def _nothing(connection: Any) -> None:
    """Nothing: keeps a call that needs no statement in its place in the order."""


def _execute(connection: Any, sql: str, parameters: Sequence[object] = ()) -> None:
    connection.execute(sql, parameters)


def _fetch_all(connection: Any, sql: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    return list(connection.execute(sql, parameters).fetchall())


def _fetch_value(connection: Any, sql: str, parameters: Sequence[object] = ()) -> int:
    (value,) = connection.execute(sql, parameters).fetchone()
    return int(value)


def _add_offline(
    connection: Any, sender: str, recipient: str, text: str, sent_at: float
) -> StoredMessage:
    (message_id,) = connection.execute(
        "INSERT INTO offline_messages (sender, recipient, body, sent_at)"
        " VALUES (%s, %s, %s, %s) RETURNING message_id",
        (sender, recipient, text, sent_at),
    ).fetchone()
    return StoredMessage(message_id, sender, recipient, text, sent_at)


def _keep_offline(
    connection: Any, sender: str, recipient: str, text: str, sent_at: float, max_waiting: int,
    max_from_sender: int,
) -> KeptOffline:
    message_id, waiting, from_sender = connection.execute(
        "SELECT * FROM chat_keep_offline(%s, %s, %s, %s, %s, %s)",
        (sender, recipient, text, sent_at, max_waiting, max_from_sender),
    ).fetchone()
    message = (
        None if message_id is None
        else StoredMessage(message_id, sender, recipient, text, sent_at)
    )
    return KeptOffline(message, int(waiting), int(from_sender))


def _offline_messages(connection: Any, recipient: str) -> list[StoredMessage]:
    rows = connection.execute(
        "SELECT message_id, sender, recipient, body, sent_at FROM offline_messages"
        " WHERE recipient = %s ORDER BY message_id",
        (recipient,),
    ).fetchall()
    return [StoredMessage(*row) for row in rows]


_ADD_HISTORY = (
    # The counter row stays locked until the message is in, and both commit
    # (or fail) together.
    "WITH counter AS ("
    " INSERT INTO history_channels AS c (channel, last_seq) VALUES (%(channel)s, 1)"
    " ON CONFLICT (channel) DO UPDATE SET last_seq = c.last_seq + 1"
    " RETURNING last_seq)"
    " INSERT INTO history (channel, seq, sender, body, sent_at)"
    " SELECT %(channel)s, last_seq, %(sender)s, %(body)s, %(sent_at)s FROM counter"
    " RETURNING seq"
)


def _add_history_rows(
    connection: Any, rows: list[tuple[str, str, str, float]]
) -> list[HistoryEntry]:
    """Keep ``rows`` (channel, sender, text, time) in one transaction, numbered in order."""
    with connection.transaction():
        cursor = connection.cursor()
        # Pipelined by psycopg: one round trip for the group.
        cursor.executemany(
            _ADD_HISTORY,
            [{"channel": c, "sender": s, "body": t, "sent_at": a} for c, s, t, a in rows],
            returning=True,
        )
        seqs = [cursor.fetchone()[0]]
        while cursor.nextset():
            seqs.append(cursor.fetchone()[0])
    return [
        HistoryEntry(channel, seq, sender, text, sent_at)
        for (channel, sender, text, sent_at), seq in zip(rows, seqs)
    ]


def _history_after(connection: Any, channels: list[str], after: float) -> list[HistoryEntry]:
    # A channel asked twice is answered twice, as by the local stores.
    asked = Counter(channels)
    if not asked:
        return []
    rows = connection.execute(
        "SELECT channel, seq, sender, body, sent_at FROM history"
        " WHERE channel = ANY(%s) AND sent_at > %s ORDER BY sent_at, channel, seq",
        (list(asked), after),
    ).fetchall()
    return [HistoryEntry(*row) for row in rows for _ in range(asked[row[0]])]


def _history_page(
    connection: Any, channels: list[str], after: float, after_channel: str, after_seq: int,
    limit: int,
) -> list[HistoryEntry]:
    if not channels:
        return []
    # At the start's time, the entries after it in a channel: all of a later
    # channel, those numbered after it in its own (the index's row order).
    rows = connection.execute(
        "SELECT h.channel, h.seq, h.sender, h.body, h.sent_at"
        " FROM unnest(%(channels)s::text[]) AS c(name) CROSS JOIN LATERAL ("
        "  SELECT * FROM history WHERE channel = c.name AND (sent_at, seq) > (%(after)s,"
        "   CASE WHEN c.name COLLATE \"C\" > %(channel)s THEN -1"
        "    WHEN c.name COLLATE \"C\" = %(channel)s THEN %(seq)s"
        "    ELSE 9223372036854775807 END)"
        "  ORDER BY sent_at, seq LIMIT %(limit)s) AS h"
        " ORDER BY h.sent_at, h.channel, h.seq LIMIT %(limit)s",
        {"channels": channels, "after": after, "channel": after_channel, "seq": after_seq,
         "limit": limit},
    ).fetchall()
    return [HistoryEntry(*row) for row in rows]


def _purge_history(connection: Any, before: float | None, keep: int | None, limit: int) -> int:
    removed = 0
    for rule, value in (("h.seq <= c.last_seq - %(value)s", keep), ("h.sent_at < %(value)s", before)):
        if value is None or removed >= limit:
            continue
        # Channel by channel through an index (LATERAL), so that a batch costs
        # its rows, and nothing when none is due, however large the history.
        # Rows another node is deleting are skipped, not waited for: nodes
        # purging at once never wait on each other nor deadlock, and each
        # row is deleted (and counted) by one of them.
        cursor = connection.execute(
            "DELETE FROM history WHERE (channel, seq) IN ("
            " SELECT h.channel, h.seq FROM history_channels AS c CROSS JOIN LATERAL ("
            f"  SELECT channel, seq FROM history AS h WHERE h.channel = c.channel AND {rule}"
            "  LIMIT %(limit)s FOR UPDATE SKIP LOCKED) AS h LIMIT %(limit)s)",
            {"value": value, "limit": limit - removed},
        )
        removed += cursor.rowcount
    return removed


def _rooms(connection: Any) -> list[StoredRoom]:
    rows = connection.execute(
        "SELECT room_id, array_remove(array_agg(username), NULL), version FROM rooms"
        " LEFT JOIN room_members USING (room_id) GROUP BY room_id ORDER BY room_id"
    ).fetchall()
    return [StoredRoom(room_id, frozenset(names), version) for room_id, names, version in rows]


_NEW_ROOM_VERSION = (
    "UPDATE rooms SET version = nextval('room_versions') WHERE room_id = %s RETURNING version"
)
"""Gives a room the next version; run while holding the room's row lock, so that of two
changes of one room the later takes the higher version."""


def _save_room(connection: Any, room_id: int, members: list[str]) -> int:
    with connection.transaction():
        connection.execute(
            "INSERT INTO rooms (room_id) VALUES (%s) ON CONFLICT DO NOTHING", (room_id,)
        )
        # Another node saving this room waits here until this one commits.
        connection.execute("SELECT 1 FROM rooms WHERE room_id = %s FOR UPDATE", (room_id,))
        connection.execute(
            "DELETE FROM room_members WHERE room_id = %s AND username <> ALL(%s::text[])",
            (room_id, members),
        )
        connection.execute(
            "INSERT INTO room_members (room_id, username)"
            " SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (room_id, members),
        )
        (version,) = connection.execute(_NEW_ROOM_VERSION, (room_id,)).fetchone()
    return int(version)


def _leave_room(connection: Any, room_id: int, username: str) -> StoredRoom:
    with connection.transaction():
        # Another node saving or leaving this room waits here until this one commits.
        connection.execute("SELECT 1 FROM rooms WHERE room_id = %s FOR UPDATE", (room_id,))
        connection.execute(
            "DELETE FROM room_members WHERE room_id = %s AND username = %s", (room_id, username)
        )
        rows = connection.execute(
            "SELECT username FROM room_members WHERE room_id = %s", (room_id,)
        ).fetchall()
        if rows:
            (version,) = connection.execute(_NEW_ROOM_VERSION, (room_id,)).fetchone()
        else:
            # Taken after the removal is in this transaction: any change of the
            # room committed before had the lock first, and a lower number.
            connection.execute("DELETE FROM rooms WHERE room_id = %s", (room_id,))
            (version,) = connection.execute("SELECT nextval('room_versions')").fetchone()
    return StoredRoom(room_id, frozenset(name for (name,) in rows), int(version))


def _forget_user(connection: Any, username: str) -> None:
    with connection.transaction():
        connection.execute(
            "DELETE FROM blocks WHERE blocker = %(user)s OR blocked = %(user)s", {"user": username}
        )
        connection.execute("DELETE FROM last_seen WHERE username = %s", (username,))
        connection.execute("DELETE FROM offline_messages WHERE recipient = %s", (username,))


def _user_data(connection: Any, username: str) -> UserData:
    with connection.transaction():  # one snapshot

        def column(sql: str) -> tuple[Any, ...]:
            return tuple(row[0] for row in connection.execute(sql, (username,)).fetchall())

        account = column("SELECT 1 FROM chat_accounts WHERE username = %s")
        seen = column("SELECT seen_at FROM last_seen WHERE username = %s")
        sent = connection.execute(
            "SELECT message_id, sender, recipient, body, sent_at FROM offline_messages"
            " WHERE sender = %s ORDER BY message_id",
            (username,),
        ).fetchall()
        return UserData(
            account=bool(account),
            blocking=column("SELECT blocked FROM blocks WHERE blocker = %s ORDER BY blocked"),
            blocked_by=column("SELECT blocker FROM blocks WHERE blocked = %s ORDER BY blocker"),
            rooms=tuple(int(n) for n in column(
                "SELECT room_id FROM room_members WHERE username = %s ORDER BY room_id"
            )),
            last_seen=seen[0] if seen else None,
            messages_to=tuple(_offline_messages(connection, username)),
            messages_from=tuple(StoredMessage(*row) for row in sent),
        )


def _history_of(
    connection: Any, username: str, after: float, channel: str, seq: int, limit: int
) -> list[HistoryEntry]:
    rows = connection.execute(
        "SELECT channel, seq, sender, body, sent_at FROM history WHERE sender = %s"
        " AND (sent_at, channel, seq) > (%s, %s COLLATE \"C\", %s)"
        " ORDER BY sent_at, channel, seq LIMIT %s",
        (username, after, channel, seq, limit),
    ).fetchall()
    return [HistoryEntry(*row) for row in rows]


def _forget_history_of(connection: Any, username: str, limit: int) -> int:
    # Rows another node is deleting are skipped, as by the retention.
    cursor = connection.execute(
        "DELETE FROM history WHERE (channel, seq) IN ("
        " SELECT channel, seq FROM history WHERE sender = %s LIMIT %s FOR UPDATE SKIP LOCKED)",
        (username, limit),
    )
    return int(cursor.rowcount)


def _delete_user(connection: Any, username: str, sent: bool) -> bool:
    with connection.transaction():
        # Its rooms' rows first, in order, as a leave or a save locks a room
        # before its members: two nodes never wait on each other.
        connection.execute(
            "SELECT 1 FROM rooms WHERE room_id IN"
            " (SELECT room_id FROM room_members WHERE username = %s)"
            " ORDER BY room_id FOR UPDATE",
            (username,),
        )
        existed = connection.execute(
            "DELETE FROM chat_accounts WHERE username = %s", (username,)
        ).rowcount > 0
        _forget_user(connection, username)
        if sent:
            connection.execute("DELETE FROM offline_messages WHERE sender = %s", (username,))
        rooms = connection.execute(
            "DELETE FROM room_members WHERE username = %s RETURNING room_id", (username,)
        ).fetchall()
        # Its rooms left without members go (others' empty rooms stay).
        connection.execute(
            "DELETE FROM rooms WHERE room_id = ANY(%s::bigint[]) AND NOT EXISTS"
            " (SELECT 1 FROM room_members WHERE room_members.room_id = rooms.room_id)",
            ([row[0] for row in rooms],),
        )
        # Each room it was in takes a version (as in the other stores, a removed one too).
        for room_id in sorted(row[0] for row in rooms):
            (version,) = connection.execute("SELECT nextval('room_versions')").fetchone()
            connection.execute(
                "UPDATE rooms SET version = %s WHERE room_id = %s", (version, room_id)
            )
    return existed


def _next_room_id(connection: Any) -> int:
    with connection.transaction():
        # One node at a time, so that raising the sequence never lowers it.
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (ROOM_NUMBER_LOCK,))
        (highest,) = connection.execute(_HIGHEST_ROOM_ID).fetchone()
        (number,) = connection.execute("SELECT nextval('room_numbers')").fetchone()
        if number <= highest:
            number = int(highest) + 1
            connection.execute("SELECT setval('room_numbers', %s)", (number,))
    return int(number)


def _account(connection: Any, username: str) -> tuple[str, str | None] | None:
    row = connection.execute(
        "SELECT secret, scram FROM chat_accounts WHERE username = %s", (username,)
    ).fetchone()
    return None if row is None else (row[0], row[1])


def _usernames(connection: Any) -> list[str]:
    rows = connection.execute("SELECT username FROM chat_accounts ORDER BY username").fetchall()
    return [row[0] for row in rows]


def _changed(connection: Any, sql: str, parameters: Sequence[object]) -> bool:
    """Run one changing statement: whether it changed a row."""
    return bool(connection.execute(sql, parameters).rowcount == 1)


def _import_accounts(connection: Any, rows: list[tuple[str, str, str | None]]) -> int:
    if not rows:
        return 0
    names, secrets, keys = (list(column) for column in zip(*rows))
    # One statement: the accounts missing are added, the others left as they are.
    cursor = connection.execute(
        "INSERT INTO chat_accounts (username, secret, scram)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])"
        " ON CONFLICT DO NOTHING",
        (names, secrets, keys),
    )
    return int(cursor.rowcount)


def _count_changed(connection: Any, sql: str, parameters: Sequence[object]) -> int:
    """Run one changing statement: how many rows it changed."""
    return int(connection.execute(sql, parameters).rowcount)


def _operators(connection: Any) -> set[str]:
    rows = connection.execute("SELECT username FROM chat_operators").fetchall()
    return {row[0] for row in rows}


def _set_operator(connection: Any, username: str, operator: bool) -> bool:
    # One statement: only an account there is becomes an operator.
    change = (
        "INSERT INTO chat_operators (username) SELECT username FROM account"
        " ON CONFLICT DO NOTHING"
        if operator
        else "DELETE FROM chat_operators WHERE username IN (SELECT username FROM account)"
    )
    (found,) = connection.execute(
        "WITH account AS (SELECT username FROM chat_accounts WHERE username = %s),"
        f" changed AS ({change} RETURNING 1)"
        " SELECT COUNT(*) FROM account",
        (username,),
    ).fetchone()
    return bool(found)


def _bans(connection: Any) -> list[Ban]:
    rows = connection.execute(
        "SELECT kind, target, set_by, set_at, expires_at, reason, ban_id FROM bans"
        " ORDER BY ban_id"
    ).fetchall()
    return [Ban(*row) for row in rows]


def _add_ban(connection: Any, ban: Ban) -> Ban:
    (ban_id,) = connection.execute(
        "INSERT INTO bans (kind, target, set_by, set_at, expires_at, reason)"
        " VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (kind, target) DO UPDATE SET set_by = excluded.set_by,"
        " set_at = excluded.set_at, expires_at = excluded.expires_at, reason = excluded.reason"
        " RETURNING ban_id",
        (ban.kind, ban.target, ban.set_by, float(ban.set_at),
         None if ban.expires_at is None else float(ban.expires_at), ban.reason),
    ).fetchone()
    return dataclasses.replace(ban, ban_id=int(ban_id))


def _clamped(number: int) -> int:
    """``number`` within PostgreSQL's ``BIGINT``."""
    return min(max(int(number), _BIGINT.start), _BIGINT.stop - 1)


def _text(text: str) -> str:
    """``text`` as PostgreSQL can keep it: lone surrogates and NUL become U+FFFD."""
    return _storable(text).replace("\x00", "\ufffd")
