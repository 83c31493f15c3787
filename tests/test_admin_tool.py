"""``chatservice-admin``'s own decisions, in-process: where a request goes, passwords, dates.

What it does end to end (subprocesses against a real ``twistd chat``) is in
``test_admin_end_to_end.py``.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from chatservice.datadir import DataDirLock
from chatservice.tools.admin import ToolError, parse_date, read_password, resolve_target


class TargetTests(unittest.TestCase):
    def setUp(self) -> None:
        self.data = Path(self.mktemp())
        self.data.mkdir()

    def test_a_held_data_directory_means_its_socket(self) -> None:
        server = DataDirLock(self.data)  # as a running server holds it
        server.acquire()
        self.addCleanup(server.release)
        target = resolve_target(self.data, None, None, "list")
        self.assertEqual(target.socket_path, self.data / "admin.sock")
        self.assertIsNone(target.open_store)

    def test_a_free_data_directory_means_its_store_under_the_lock(self) -> None:
        target = resolve_target(self.data, None, None, "add")
        self.assertIsNone(target.socket_path)
        self.assertEqual(target.where, str(self.data / "chat.sqlite3"))
        # A server that starts between the look and the work: the tool backs off.
        server = DataDirLock(self.data)
        server.acquire()
        self.addCleanup(server.release)
        with self.assertRaises(ToolError) as raised:
            target.run({"action": "list"})
        self.assertIn("a server started meanwhile: try again", str(raised.exception))
        self.assertFalse((self.data / "chat.sqlite3").exists())

    def test_the_lock_is_held_while_the_tool_works_and_let_go_after(self) -> None:
        target = resolve_target(self.data, None, None, "passwd")
        seen: list[bool] = []
        opened = target.open_store

        def store() -> Any:
            other = DataDirLock(self.data)
            try:
                other.acquire()
            except Exception:
                seen.append(True)  # a server starting now is refused
            else:
                other.release()
                seen.append(False)
            assert opened is not None
            return opened()

        target.open_store = store
        self.assertEqual(target.run({"action": "list"}), [])
        self.assertEqual(seen, [True])
        after = DataDirLock(self.data)
        after.acquire()  # free again
        after.release()

    def test_shared_store_refusals(self) -> None:
        for action, status, text in (
            ("unlock", 2, "needs a running node: give --socket PATH"),
            ("remove", 2, "give --socket PATH of one node (it tells the others), or --no-server"),
            ("ban", 2, "--no-server"),
        ):
            with self.assertRaises(ToolError) as raised:
                resolve_target(None, "postgresql://u@127.0.0.1:1/db", None, action)
            self.assertEqual(raised.exception.status, status)
            self.assertIn(text, str(raised.exception))
        target = resolve_target(None, "postgresql://u:secret@127.0.0.1:1/db", None, "remove", no_server=True)
        self.assertEqual(target.where, "postgresql://u@127.0.0.1:1/db")


class PasswordTests(unittest.TestCase):
    def test_one_line_from_stdin(self) -> None:
        self.assertEqual(read_password(io.StringIO("s3cret-pw\nignored\n"), True), "s3cret-pw")

    def test_refusals(self) -> None:
        for stdin, from_stdin, status, text in (
            ("", True, 1, "no password given; nothing changed"),
            ("abc\n", True, 1, "a password has 4 to 256 characters; nothing changed"),
            (" padded \n", True, 1, "cannot start or end with spaces"),
            ("s3cret-pw\n", False, 2, "no terminal to ask the password on: use --password-stdin"),
        ):
            with self.assertRaises(ToolError) as raised:
                read_password(io.StringIO(stdin), from_stdin)
            self.assertEqual(raised.exception.status, status)
            self.assertIn(text, str(raised.exception))


class DateTests(unittest.TestCase):
    def test_dates(self) -> None:
        self.assertEqual(parse_date("2026-01-01"), 1767225600.0)
        self.assertEqual(parse_date("2026-01-01T01:00:00+01:00"), 1767225600.0)
        self.assertRaises(argparse.ArgumentTypeError, parse_date, "tomorrow")
