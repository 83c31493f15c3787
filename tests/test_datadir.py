"""One server per data directory (issue 15, item 9).

Two servers started on the same ``--data-dir`` both ran: the same user could
log in on each, and a block made on one was ignored by the other.  The
service now holds an exclusive lock on ``<data-dir>/chat.lock`` while it
runs; a second one refuses to start, naming the first one's pid.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from twisted.trial import unittest

from chatservice.datadir import LOCK_NAME, DataDirInUse, DataDirLock, check_unlocked
from tests.e2e_support import ChatServer, run_twistd
from tests.support import ChatHarness


def cannot_open() -> None:
    """A store's ``open`` that fails."""
    raise OSError("cannot open")


class LockTests(unittest.TestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()

    def test_second_lock_refused_naming_the_pid(self) -> None:
        first = DataDirLock(self.directory)
        first.acquire()
        self.addCleanup(first.release)
        self.assertTrue(first.held)
        self.assertEqual((self.directory / LOCK_NAME).read_text(), f"{os.getpid()}\n")
        second = DataDirLock(self.directory)
        with self.assertRaises(DataDirInUse) as raised:
            second.acquire()
        message = str(raised.exception)
        self.assertIn(f"pid {os.getpid()}", message)
        self.assertIn(str(self.directory), message)
        self.assertIn("--data-dir", message)
        self.assertFalse(second.held)
        self.assertRaises(DataDirInUse, check_unlocked, self.directory)
        first.release()
        self.assertFalse(first.held)
        check_unlocked(self.directory)
        second.acquire()
        second.release()

    def test_acquire_and_release_are_idempotent(self) -> None:
        lock = DataDirLock(self.directory)
        lock.acquire()
        lock.acquire()
        lock.release()
        lock.release()
        check_unlocked(self.directory)

    def test_check_creates_nothing(self) -> None:
        check_unlocked(self.directory)
        check_unlocked(self.directory / "missing")
        self.assertEqual(list(self.directory.iterdir()), [])
        self.assertFalse((self.directory / "missing").exists())

    def test_held_by_another_process_until_it_ends(self) -> None:
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    f"""
                    import sys
                    from pathlib import Path
                    from chatservice.datadir import DataDirLock
                    DataDirLock(Path({str(self.directory)!r})).acquire()
                    print("locked", flush=True)
                    sys.stdin.read()
                    """
                ),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            self.assertEqual(child.stdout.readline(), "locked\n")
            with self.assertRaises(DataDirInUse) as raised:
                DataDirLock(self.directory).acquire()
            self.assertIn(f"pid {child.pid}", str(raised.exception))
        finally:
            child.kill()  # as kill -9: the kernel lets the lock go
            child.wait()
        lock = DataDirLock(self.directory)
        lock.acquire()
        lock.release()


class ServiceTests(unittest.TestCase):
    """Two chat services on one directory, in one process (as two would be in two)."""

    def test_second_service_refused_until_the_first_stops(self) -> None:
        first, second = ChatHarness(), ChatHarness()
        self.addCleanup(first.close_all)
        self.addCleanup(second.close_all)
        directory = Path(self.mktemp())
        for harness in (first, second):
            harness.chat.service.data_dir = directory
            harness.chat.service.lock = DataDirLock(directory)
        first.chat.service.startService()
        opened: list[bool] = []
        self.patch(second.store, "open", lambda: opened.append(True))
        with self.assertRaises(DataDirInUse) as raised:
            second.chat.service.startService()
        self.assertIn(f"pid {os.getpid()}", str(raised.exception))
        self.assertFalse(second.chat.service.running)
        self.assertEqual(opened, [], "the store is not opened")
        self.successResultOf(first.chat.service.stopService())
        self.assertFalse(first.chat.service.lock.held)
        second.chat.service.startService()
        self.assertTrue(second.chat.service.lock.held)
        self.successResultOf(second.chat.service.stopService())

    def test_lock_released_when_the_store_cannot_open(self) -> None:
        harness = ChatHarness()
        self.addCleanup(harness.close_all)
        self.patch(harness.store, "open", cannot_open)
        self.assertRaises(OSError, harness.chat.service.startService)
        self.assertFalse(harness.chat.service.lock.held)
        check_unlocked(harness.directory)


class TestTwoServers:
    """The real ``twistd chat``: the second on one data directory exits, naming the first."""

    def test_second_server_refused(self, tmp_path: Path) -> None:
        with ChatServer() as server:
            result = run_twistd(
                ["-n", "--pidfile=", "chat", "--listen", "tcp:0:interface=127.0.0.1",
                 "--data-dir", str(server.data_dir)],
                cwd=tmp_path,
            )
            assert result.returncode != 0, result.stdout
            last = result.stdout.strip().splitlines()[-1]
            assert f"is in use by another chat server (pid {server.process.pid}," in last, last
            # The first one is unaffected.
            with server.connect() as client:
                client.login("yoda", "wise")
            assert "Traceback" not in server.log()
