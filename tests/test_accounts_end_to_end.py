"""Accounts in the store, for real: ``twistd chat`` processes on SQLite and on PostgreSQL.

- On SQLite, a registration and a password change survive a restart, and
  ``chatservice-passwd --data-dir`` changes a password a running server uses.
- On PostgreSQL, two nodes on one database: an account registered on one logs
  in on the other at once, a password changed on one counts on the other, and
  ``chatservice-passwd --store`` changes it for both.
- Neither the credentials file nor anything else but the store is written:
  its bytes and modification time are the same after registrations and
  password changes.

Every wait is bounded; everything is on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from tests.e2e_support import (
    ChatServer,
    stored_account,
    subprocess_environment,
    unknown_user,
    welcome,
)
from tests.pg_support import PASSWORD, new_database

ACCOUNTS = {"yoda": "wise", "hans": "falcon", "luke": "jedi"}
REGISTER = ["--allow-register"]


def register(server: ChatServer, username: str, password: str) -> None:
    """Create ``username`` over JSON on a fresh connection to ``server``."""
    with server.connect() as client:
        client.greeted()
        client.send_json({"type": "register", "user": username, "password": password, "id": 1})
        assert client.read_line() == ""  # the prompt's line ends when JSON starts
        reply = client.read_json()
        assert (reply["type"], reply["status"]) == ("register_status", True), reply


def passwd(server: ChatServer, username: str, old: str, new: str) -> None:
    """Change ``username``'s password with the ``passwd`` command."""
    with server.connect() as client:
        client.login(username, old)
        client.send(f"passwd {old} {new}")
        assert client.read_line() == "Your password has been changed."


def login_refused(server: ChatServer, username: str, password: str) -> str:
    """Log in over JSON expecting a refusal: its reason."""
    with server.connect() as client:
        client.greeted()
        client.send_json({"type": "login", "user": username, "password": password})
        assert client.read_line() == ""
        reply = client.read_json()
        assert reply["success"] is False, reply
        return str(reply["reason"])


def run_passwd(arguments: list[str], password: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``chatservice-passwd *arguments`` in a subprocess, the password given twice on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "chatservice.tools.passwd", *arguments],
        input=f"{password}\n{password}\n",
        cwd=cwd,
        env=subprocess_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), os.stat(path).st_mtime_ns


class SQLiteAccountsTests(unittest.TestCase):
    """One node on its SQLite store."""

    def test_registration_and_passwd_survive_a_restart(self) -> None:
        server = ChatServer(ACCOUNTS, timeout=30, options=REGISTER)
        self.addCleanup(server.stop)
        server.start()
        credentials = server.directory / "credentials.txt"
        before = fingerprint(credentials)
        register(server, "rey", "scavenger")
        passwd(server, "yoda", "wise", "wiser")
        account = stored_account(server.data_dir / "chat.sqlite3", "rey")
        assert account is not None and account[0].startswith("$scrypt$"), account
        server.restart()
        server.logged_in("rey", "scavenger").close()
        server.logged_in("yoda", "wiser").close()
        self.assertEqual(login_refused(server, "yoda", "wise"), "wrong_password")
        self.assertEqual(fingerprint(credentials), before)
        log = server.log()
        self.assertIn("3 imported from", log)
        self.assertIn("0 imported from", log)
        self.assertIn("3 already in the store kept as they are", log)
        self.assertNotIn("Traceback", log)

    def test_look_alike_and_bad_names_refused(self) -> None:
        """Issue 15 item 4: ``yоda`` (Cyrillic о) next to ``yoda``, and ``#hash``, are refused."""
        server = ChatServer(ACCOUNTS, timeout=30, options=REGISTER)
        self.addCleanup(server.stop)
        server.start()
        with server.connect() as client:
            client.greeted()
            client.send_json({"type": "register", "user": "y\u043eda", "password": "dark-side"})
            assert client.read_line() == ""
            reply = client.read_json()
            client.send_json({"type": "register", "user": "#hash", "password": "dark-side"})
            second = client.read_json()
        self.assertEqual((reply["status"], reply["code"]), (False, "taken"), reply)
        self.assertIn("looks too like yoda", reply["additional_info"])
        self.assertEqual((second["status"], second["code"]), (False, "invalid_username"), second)
        self.assertIsNone(stored_account(server.data_dir / "chat.sqlite3", "y\u043eda"))
        self.assertIsNone(stored_account(server.data_dir / "chat.sqlite3", "#hash"))
        server.logged_in("yoda", "wise").close()
        self.assertNotIn("Traceback", server.log())

    def test_chatservice_passwd_on_the_store_of_a_running_server(self) -> None:
        server = ChatServer(ACCOUNTS, timeout=30)
        self.addCleanup(server.stop)
        server.start()
        credentials = server.directory / "credentials.txt"
        before = fingerprint(credentials)
        result = run_passwd(["--data-dir", str(server.data_dir), "hans"], "millennium", server.directory)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("hans changed in", result.stdout)
        result = run_passwd(["--data-dir", str(server.data_dir), "rey"], "scavenger", server.directory)
        self.assertIn("rey added in", result.stdout)
        server.logged_in("hans", "millennium").close()
        server.logged_in("rey", "scavenger").close()  # unknown to its cache: found in the store
        self.assertEqual(login_refused(server, "hans", "falcon"), "wrong_password")
        self.assertEqual(fingerprint(credentials), before)


class PostgresAccountsTests(unittest.TestCase):
    """Two nodes on one PostgreSQL database."""

    def nodes(self, options: list[str] = REGISTER) -> tuple[ChatServer, ChatServer, str]:
        dsn = new_database(self)
        servers = []
        for _ in range(2):
            server = ChatServer(ACCOUNTS, timeout=30, options=["--store", dsn, *options])
            self.addCleanup(server.stop)
            server.start()
            servers.append(server)
        return servers[0], servers[1], dsn

    def test_registered_on_one_node_logs_in_on_the_other(self) -> None:
        a, b, _dsn = self.nodes()
        files = {path: fingerprint(path) for path in (a.directory / "credentials.txt", b.directory / "credentials.txt")}
        register(a, "rey", "scavenger")
        with b.logged_in("rey", "scavenger") as rey, a.logged_in("yoda", "wise") as yoda:
            yoda.send("message rey hello from a")
            assert yoda.read_line() == "rey is offline; your message will be delivered when they log in."
        # A password changed on b counts on a.
        passwd(b, "hans", "falcon", "millennium")
        self.assertEqual(login_refused(a, "hans", "falcon"), "wrong_password")
        a.logged_in("hans", "millennium").close()
        # b's registration check knows the name a registered.
        with b.connect() as client:
            client.greeted()
            client.send_json({"type": "register", "user": "rey", "id": 1})
            assert client.read_line() == ""
            self.assertEqual(client.read_json()["taken"], True)
        for path, before in files.items():
            self.assertEqual(fingerprint(path), before, path)
        for server in (a, b):
            self.assertNotIn("Traceback", server.log())
            self.assertNotIn(PASSWORD, server.log())
        self.assertIn("3 imported from", a.log())
        self.assertIn("0 imported from", b.log())

    def test_an_unknown_name_stays_unknown_on_both(self) -> None:
        a, b, _dsn = self.nodes(options=[])
        with b.connect() as client:
            client.greeted()
            client.send("rey")
            self.assertEqual(client.read_line(), unknown_user("rey"))

    def test_chatservice_passwd_on_the_database(self) -> None:
        a, b, dsn = self.nodes(options=[])
        result = run_passwd(["--store", dsn, "luke"], "skywalker", a.directory)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("luke changed in", result.stdout)
        self.assertNotIn(PASSWORD, result.stdout + result.stderr)
        result = run_passwd(["--store", dsn, "rey"], "scavenger", a.directory)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("rey added in", result.stdout)
        for server in (a, b):
            server.logged_in("luke", "skywalker").close()
            self.assertEqual(login_refused(server, "luke", "jedi"), "wrong_password")
        with b.logged_in("rey", "scavenger") as rey:
            rey.send("whoelse")
            self.assertEqual(rey.read_line(), "No other users are online.")
