"""``twistd chat --store postgresql://...`` for real: a node on a PostgreSQL database, restarted.

A real ``twistd chat`` process on 127.0.0.1 keeps its data in a database of
the test PostgreSQL cluster (``tests/pg_support.py``); what it was told to
keep is there after a restart, and an unreachable database stops it with a
clear message instead of serving an empty state.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.trial import unittest

from tests.e2e_support import ChatServer, run_twistd
from tests.pg_support import PASSWORD, cluster, new_database

ACCOUNTS = {"yoda": "wise", "hans": "falcon", "luke": "jedi", "probe": "pw-probe"}


class TwistdTestCase(unittest.TestCase):
    def mktemp_dir(self) -> Path:
        """A fresh working directory for a twistd run, removed after the test."""
        path = Path(tempfile.mkdtemp(prefix="chat-pg-e2e-"))
        self.addCleanup(shutil.rmtree, path, True)
        return path


class PostgresNodeTests(TwistdTestCase):
    """One node on PostgreSQL: the durable data survives a restart of the node."""

    def test_kept_messages_blocks_and_history_survive_a_restart(self) -> None:
        dsn = new_database(self)
        server = ChatServer(ACCOUNTS, timeout=30, options=["--store", dsn])
        self.addCleanup(server.stop)
        server.start()
        with server.connect() as yoda, server.connect() as luke:
            yoda.login("yoda", "wise")
            luke.login("luke", "jedi")
            assert yoda.read_line() == "luke logged in"
            yoda.send("message hans kept in the database")
            assert yoda.read_line() == (
                "hans is offline; your message will be delivered when they log in."
            )
            yoda.send("block luke")
            assert yoda.read_line() == "luke is now blocked."
            luke.send("broadcast to all, durably")
            assert luke.read_line().startswith("Broadcast message, #1 broadcast at ")
        assert PASSWORD not in server.log()
        server.terminate()
        server.restart()
        with server.connect() as hans, server.connect() as luke:
            hans.login("hans", "falcon")
            kept = hans.read_line()
            assert kept.startswith("[offline ") and kept.endswith("] yoda: kept in the database"), kept
            hans.send("read 1 Jan 2000 00:00:00")
            history = hans.read_line()
            assert history.startswith("#1 broadcast, luke: to all, durably, posted at"), history
            luke.login("luke", "jedi")
            assert hans.read_line() == "luke logged in"
            luke.send("message yoda you blocked me")
            assert luke.read_line() == "Your message could not be delivered as the recipient has blocked you."
        log = server.log()
        assert "Traceback" not in log, log

    def test_an_unreachable_database_stops_the_node(self) -> None:
        dead = cluster().dsn("nowhere").replace(f":{cluster().port}/", ":1/")
        result = run_twistd(
            ["-n", "--pidfile=", "chat", "--listen", "tcp:0:interface=127.0.0.1", "--store", dead],
            cwd=self.mktemp_dir(),
            timeout=60,
        )
        assert result.returncode != 0, result.stdout
        assert "could not be opened" in result.stdout, result.stdout
        assert PASSWORD not in result.stdout


class RetentionOnSharedDatabaseTests(TwistdTestCase):
    """Two nodes on one database both sweep history: the bound holds, each row goes once, no error."""

    def test_two_nodes_purge_one_history(self) -> None:
        import time

        import psycopg

        dsn = new_database(self)
        options = ["--store", dsn, "--history-max-entries", "3", "--history-purge-interval", "0.1"]
        first = ChatServer(ACCOUNTS, timeout=30, options=options)
        self.addCleanup(first.stop)
        first.start()
        second = ChatServer(ACCOUNTS, timeout=30, options=options)
        self.addCleanup(second.stop)
        second.start()
        with psycopg.connect(dsn, autocommit=True) as connection:
            # 2000 broadcasts at once, as if the bound had just been set: swept in batches.
            connection.execute(
                "INSERT INTO history_channels (channel, last_seq) VALUES ('broadcast', 2000)"
                " ON CONFLICT (channel) DO UPDATE SET last_seq = 2000"
            )
            connection.execute(
                "INSERT INTO history (channel, seq, sender, body, sent_at)"
                " SELECT 'broadcast', s, 'luke', 'old ' || s, %s + s FROM generate_series(1, 2000) AS s",
                (time.time() - 10_000,),
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                (left,) = connection.execute("SELECT COUNT(*) FROM history").fetchone()
                if left == 3:
                    break
                time.sleep(0.1)
        assert left == 3, left
        with first.connect() as hans:
            hans.login("hans", "falcon")
            hans.send("read 1 Jan 2000 00:00:00")
            assert [line.split(",")[0] for line in hans.sync()] == [
                "#1998 broadcast", "#1999 broadcast", "#2000 broadcast"
            ]
        for server in (first, second):
            log = server.log()
            assert "Traceback" not in log and "could not forget" not in log, log
        forgot = [
            int(line.split("forgot ")[1].split(" ")[0])
            for server in (first, second)
            for line in server.log().splitlines()
            if "History retention forgot" in line
        ]
        assert sum(forgot) == 1997, forgot


class StoreOptionTests(TwistdTestCase):
    def test_a_malformed_url_is_refused_at_once(self) -> None:
        result = run_twistd(["-n", "chat", "--store", "postgresql://a b c"], cwd=self.mktemp_dir(), timeout=60)
        assert result.returncode != 0
        assert "--store" in result.stdout, result.stdout

    def test_anything_else_is_refused(self) -> None:
        result = run_twistd(["-n", "chat", "--store", "mysql://x"], cwd=self.mktemp_dir(), timeout=60)
        assert result.returncode != 0
        assert "postgresql://" in result.stdout, result.stdout

