"""``chatservice-admin`` against a real ``twistd chat``: through its admin socket while it runs, on its store when not.

The tool runs as a subprocess (``python3 -m chatservice.tools.admin``, the
checkout first on ``PYTHONPATH``), as an operator runs it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from tests.e2e_support import (
    ADDRESS_LOCKED,
    JUST_LOCKED,
    LOCKED,
    PASSWORD_PROMPT,
    WRONG_PASSWORD,
    ChatServer,
    assert_refused,
    subprocess_environment,
    unknown_user,
)
from tests.pg_support import PASSWORD as PG_PASSWORD
from tests.pg_support import new_database


def admin(*arguments: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``chatservice-admin *arguments`` in a subprocess, ``stdin`` on its standard input."""
    return subprocess.run(
        [sys.executable, "-m", "chatservice.tools.admin", *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        env=subprocess_environment(),
        cwd=cwd,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a run that succeeded."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def lock_out(server: ChatServer, username: str) -> None:
    """Give ``server`` wrong passwords for ``username`` until it locks the name (``--max-failures 3``)."""
    with server.connect() as client:
        client.greeted()
        client.send(username)
        client.read_until(PASSWORD_PROMPT)
        for attempt in range(3):
            client.send(f"guess-{attempt}")
            if attempt < 2:
                assert client.read_line() == WRONG_PASSWORD
                client.read_until(PASSWORD_PROMPT)
            else:
                assert_refused(client.read_line(), JUST_LOCKED)


class RunningServerTests(unittest.TestCase):
    """One server on an SQLite data directory; every action through its admin socket."""

    def setUp(self) -> None:
        self.server = ChatServer(timeout=60, max_failures=3, block_duration=600)
        self.addCleanup(self.server.stop)
        self.server.start()
        self.data = ["--data-dir", str(self.server.data_dir)]

    def test_socket_file(self) -> None:
        path = self.server.data_dir / "admin.sock"
        mode = os.stat(path).st_mode
        self.assertTrue(stat.S_ISSOCK(mode))
        self.assertEqual(stat.S_IMODE(mode), 0o600)
        self.assertIn("Admin socket listening on", self.server.log())
        self.server.terminate()
        self.assertFalse(path.exists())

    def test_add_logs_in_at_once_and_passwd_counts_at_once(self) -> None:
        out = ok(admin(*self.data, "add", "rey", "--password-stdin", stdin="scavenger\n"))
        self.assertEqual(out, f"rey added in the running server ({self.server.data_dir / 'admin.sock'})\n")
        self.server.logged_in("rey", "scavenger").close()
        ok(admin(*self.data, "passwd", "rey", "--password-stdin", stdin="jakku-one\n"))
        with self.server.connect() as client:
            client.greeted()
            client.send("rey")
            client.read_until(PASSWORD_PROMPT)
            client.send("scavenger")
            self.assertEqual(client.read_line(), WRONG_PASSWORD)
        self.server.logged_in("rey", "jakku-one").close()
        # The server's rules for names; no password from the command line.
        refused = admin(*self.data, "add", "y\u043eda", "--password-stdin", stdin="pw-pw-pw\n")
        self.assertEqual(refused.returncode, 1)
        self.assertIn("it looks too like yoda", refused.stderr)
        refused = admin(*self.data, "add", "finn")
        self.assertEqual(refused.returncode, 2)
        self.assertIn("use --password-stdin", refused.stderr)
        self.assertNotIn("Traceback", self.server.log())

    def test_list(self) -> None:
        with self.server.logged_in("yoda", "wise"):
            out = ok(admin(*self.data, "list"))
            lines = out.splitlines()
            self.assertEqual(lines[0].split(), ["USER", "OPERATOR", "LAST", "SEEN", "(UTC)", "ONLINE"])
            rows = {line.split()[0]: line.split()[-1] for line in lines[1:]}
            self.assertEqual(rows, {"hans": "no", "leia": "no", "luke": "no", "obiwan": "no", "yoda": "yes"})
            listed = json.loads(ok(admin(*self.data, "--json", "list")))
            self.assertEqual([row["user"] for row in listed], ["hans", "leia", "luke", "obiwan", "yoda"])

    def test_delete_a_logged_in_user(self) -> None:
        hans = self.server.logged_in("hans", "falcon")
        yoda = self.server.logged_in("yoda", "wise")
        hans.send("broadcast hans was here")
        yoda.sync()
        result = admin(*self.data, "delete", "hans")
        self.assertIn("hans deleted in the running server", ok(result))
        self.assertEqual(
            result.stderr,
            f"chatservice-admin: warning: hans is in the credentials file"
            f" {self.server.directory / 'credentials.txt'}, which the server imports at start:"
            " remove the line, or the account comes back at the next start\n",
        )
        hans.read_until("Your account was removed by the administrator; this session ends.")
        hans.wait_closed()
        self.assertIn("hans logged out", "\n".join(yoda.sync()))
        with self.server.connect() as again:
            again.greeted()
            again.send("hans")
            self.assertEqual(again.read_line(), unknown_user("hans"))
        refused = admin(*self.data, "export", "hans")
        self.assertEqual((refused.returncode, refused.stderr), (1, "chatservice-admin: Nothing is kept about hans.\n"))
        refused = admin(*self.data, "delete", "hans")
        self.assertEqual((refused.returncode, refused.stderr), (1, "chatservice-admin: There is no account hans.\n"))
        yoda.close()

    def test_export(self) -> None:
        with self.server.logged_in("yoda", "wise") as yoda:
            yoda.send("block luke")
            yoda.send("message leia see you")
            yoda.sync()
            exported = json.loads(ok(admin(*self.data, "export", "yoda")))
        self.assertEqual(exported["user"], "yoda")
        self.assertEqual(exported["account"], {
            "password": "plain text from a sample credentials file (kept, not exported)",
            "scram_keys": False,
            "operator": False,
        })
        self.assertEqual(exported["blocking"], ["luke"])
        self.assertEqual([(m["to"], m["text"]) for m in exported["messages_from"]], [("leia", "see you")])
        self.assertIs(exported["online"], True)
        self.assertNotIn("wise", json.dumps(exported["account"]))

    def test_grant_and_revoke(self) -> None:
        with self.server.logged_in("luke", "jedi") as luke:
            out = ok(admin(*self.data, "grant", "luke"))
            self.assertEqual(out, f"luke is an operator now (the running server ({self.server.data_dir / 'admin.sock'}))\n")
            luke.send("whois luke")
            self.assertIn("luke", "\n".join(luke.sync()))
            self.assertEqual(json.loads(ok(admin(*self.data, "export", "luke")))["account"]["operator"], True)
            ok(admin(*self.data, "revoke", "luke"))
            luke.send("whois luke")
            self.assertEqual(luke.read_line(), "Error. Invalid command (type help for the list)")

    def test_ban_and_unban(self) -> None:
        hans = self.server.logged_in("hans", "falcon")
        out = ok(admin(*self.data, "ban", "hans", "--for", "10m", "--reason", "spam"))
        self.assertRegex(out, r"^ban #1: user hans until \S+ \S+ UTC; 1 session\(s\) ended\n$")
        hans.read_until("You have been banned from this server by chatservice-admin")
        hans.wait_closed()
        lines = ok(admin(*self.data, "bans")).splitlines()
        self.assertEqual(lines[0].split(), ["#", "KIND", "TARGET", "BY", "SET", "(UTC)", "UNTIL", "(UTC)", "REASON"])
        self.assertEqual(lines[1].split()[:4] + lines[1].split()[-1:], ["1", "user", "hans", "chatservice-admin", "spam"])
        self.assertEqual(ok(admin(*self.data, "unban", "#1")), "1 ban(s) of 1 removed\n")
        self.server.logged_in("hans", "falcon").close()
        self.assertEqual(ok(admin(*self.data, "bans")), "No bans.\n")

    def test_unlock(self) -> None:
        lock_out(self.server, "obiwan")
        # The address failed as often: it is locked too.
        with self.server.connect() as refused:
            refused.greeted()
            refused.send("obiwan")
            assert_refused(refused.read_line(), ADDRESS_LOCKED)
        out = ok(admin(*self.data, "unlock", "--address", "127.0.0.1"))
        self.assertEqual(out, "127.0.0.1 unlocked: 1 lock(s) cleared\n")
        with self.server.connect() as refused:
            refused.greeted()
            refused.send("obiwan")
            assert_refused(refused.read_line(), LOCKED)
        out = ok(admin(*self.data, "unlock", "obiwan"))
        self.assertEqual(out, "obiwan unlocked: 1 lock(s) cleared\n")
        self.server.logged_in("obiwan", "kenobi").close()

    def test_purge(self) -> None:
        with self.server.logged_in("yoda", "wise") as yoda:
            yoda.send("broadcast old news")
            yoda.send("broadcast older news")
            yoda.sync()
        out = ok(admin(*self.data, "purge", "--before", "2999-01-01"))
        self.assertEqual(out, "2 history entries sent before 2999-01-01T00:00:00+00:00 forgotten.\n")
        self.assertEqual(json.loads(ok(admin(*self.data, "export", "yoda")))["history"], [])
        self.assertEqual(
            json.loads(ok(admin(*self.data, "--json", "purge", "--older-than", "1d")))["purged"], 0
        )
        refused = admin(*self.data, "purge", "--before", "someday")
        self.assertEqual(refused.returncode, 2)
        self.assertIn("not a date: 'someday'", refused.stderr)


class OfflineTests(unittest.TestCase):
    """No server runs on the data directory: the tool works on the SQLite store, holding the lock."""

    def test_offline_then_started(self) -> None:
        server = ChatServer(timeout=60)
        self.addCleanup(server.stop)
        server.start()
        with server.logged_in("yoda", "wise") as yoda:
            yoda.send("block luke")
            yoda.sync()
        server.terminate()
        data = ["--data-dir", str(server.data_dir)]
        database = server.data_dir / "chat.sqlite3"
        self.assertEqual(
            ok(admin(*data, "add", "rey", "--password-stdin", stdin="scavenger\n")),
            f"rey added in {database}\n",
        )
        exported = json.loads(ok(admin(*data, "export", "yoda")))
        self.assertEqual(exported["blocking"], ["luke"])
        self.assertNotIn("online", exported)
        ok(admin(*data, "add", "finn", "--password-stdin", stdin="stormtrooper\n"))
        self.assertEqual(ok(admin(*data, "remove", "finn")), f"finn removed in {database}\n")
        refused = admin(*data, "unlock", "yoda")
        self.assertEqual(refused.returncode, 1)
        self.assertIn("no server runs on", refused.stderr)
        server.restart()
        server.logged_in("rey", "scavenger").close()
        with server.connect() as client:
            client.greeted()
            client.send("finn")
            self.assertEqual(client.read_line(), unknown_user("finn"))

    def test_errors(self) -> None:
        missing = admin("--data-dir", "/nonexistent/chat", "list")
        self.assertEqual((missing.returncode, missing.stderr),
                         (1, "chatservice-admin: the data directory /nonexistent/chat does not exist\n"))
        empty = Path(self.mktemp())
        empty.mkdir()
        result = admin("--data-dir", str(empty), "list")
        self.assertEqual(result.returncode, 1)
        self.assertIn("there is no chat database in", result.stderr)
        (empty / "userlog.txt").write_text("")  # a server ran here, on another store
        result = admin("--data-dir", str(empty), "add", "rey", "--password-stdin", stdin="scavenger\n")
        self.assertEqual(result.returncode, 1)
        self.assertIn("but a server used it (userlog.txt): if it keeps its data in PostgreSQL", result.stderr)
        self.assertFalse((empty / "chat.sqlite3").exists())
        self.assertEqual(admin("list").returncode, 2)
        self.assertEqual(admin("--data-dir", str(empty), "frob").returncode, 2)
        self.assertEqual(admin("--store", "sqlite", "list").returncode, 2)


class PostgresTests(unittest.TestCase):
    """A server on a PostgreSQL store: the tool on the store directly, or through the node's socket."""

    def test_list_add_export_remove(self) -> None:
        dsn = new_database(self)
        server = ChatServer(timeout=60, options=["--store", dsn])
        self.addCleanup(server.stop)
        server.start()
        store = ["--store", dsn]
        self.assertIn("yoda", [row["user"] for row in json.loads(ok(admin(*store, "--json", "list")))])
        out = ok(admin(*store, "add", "rey", "--password-stdin", stdin="scavenger\n"))
        self.assertEqual(out, f"rey added in {dsn.replace(':' + PG_PASSWORD, '')}\n")
        server.logged_in("rey", "scavenger").close()  # a name the node did not know: looked up
        exported: dict[str, Any] = json.loads(ok(admin(*store, "export", "rey")))
        self.assertEqual(exported["account"]["scram_keys"], True)
        self.assertIsNotNone(exported["last_seen"])
        for action in ("remove", "ban"):
            refused = admin(*store, action, "rey")
            self.assertEqual(refused.returncode, 2)
            self.assertIn("give --socket PATH of one node", refused.stderr)
        rey = server.logged_in("rey", "scavenger")
        out = ok(admin("--socket", str(server.data_dir / "admin.sock"), "remove", "rey"))
        self.assertIn("rey removed in the server at", out)
        rey.wait_closed()
        for result in (refused, ):
            self.assertNotIn(PG_PASSWORD, result.stdout + result.stderr)
        self.assertNotIn("Traceback", server.log())


class ClusterTests(unittest.TestCase):
    """Two nodes on one PostgreSQL database and one Redis: the tool talks to node ``a``'s socket."""

    def setUp(self) -> None:
        from tests.redis_support import RedisServer

        self.redis = RedisServer().start()
        self.addCleanup(self.redis.cleanup)
        dsn = new_database(self)
        self.nodes: dict[str, ChatServer] = {}
        for name in ("a", "b"):
            node = ChatServer(
                timeout=60, max_failures=3, block_duration=600,
                options=["--store", dsn, "--redis", self.redis.url, "--node-name", name],
            )
            self.addCleanup(node.stop)
            self.nodes[name] = node.start()
        self.socket = ["--socket", str(self.nodes["a"].data_dir / "admin.sock")]

    def test_delete_on_a_ends_the_session_on_b(self) -> None:
        hans = self.nodes["b"].logged_in("hans", "falcon")
        yoda = self.nodes["b"].logged_in("yoda", "wise")
        yoda.sync()
        self.assertIn("hans deleted in the server at", ok(admin(*self.socket, "delete", "hans")))
        hans.read_until("Your account was removed by the administrator; this session ends.")
        hans.wait_closed()
        self.assertIn("hans logged out", "\n".join(yoda.sync()))
        for node in self.nodes.values():
            with node.connect() as again:
                again.greeted()
                again.send("hans")
                self.assertEqual(again.read_line(), unknown_user("hans"))
        yoda.close()
        for node in self.nodes.values():
            self.assertNotIn("Traceback", node.log())

    def test_unlock_on_a_clears_a_lock_taken_on_b(self) -> None:
        lock_out(self.nodes["b"], "leia")
        out = ok(admin(*self.socket, "unlock", "leia"))
        self.assertIn("leia unlocked", out)
        self.assertIn("Redis key(s) deleted", out)
        ok(admin(*self.socket, "unlock", "--address", "127.0.0.1"))
        # Each node held the lock; the announcement cleared it on b too.
        deadline = time.monotonic() + 5
        while True:
            with self.nodes["b"].connect() as probe:
                probe.greeted()
                probe.send("leia")
                line = probe.read_until(": ")
            if line == PASSWORD_PROMPT or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(line, PASSWORD_PROMPT)
        self.nodes["b"].logged_in("leia", "princess").close()
