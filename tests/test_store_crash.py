"""``kill -9`` of a process writing to :class:`~chatservice.store.sqlite.SQLiteStore` loses nothing it acknowledged.

A child process (``tests/store_crash_child.py``) stores offline messages as
fast as it can, printing an acknowledgement after each ``add_offline``
returns and after each ``remove_offline`` of a delivered batch.  The test
reads some acknowledgements, kills the child with ``SIGKILL`` in the middle of
its burst, reads what was already acknowledged, opens the database itself and
checks that every acknowledged message is there exactly once, that every
acknowledged removal happened, and that nothing else is there except the one
call that was in flight.  It does this several times on the same file.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from twisted.trial import unittest

import chatservice
from chatservice.store.sqlite import SQLiteStore

CHILD = Path(__file__).with_name("store_crash_child.py")
RECIPIENTS = ("hans", "leia", "luke")
CYCLES = 4
DEADLINE = 20.0
"""Seconds after which a stuck child is killed and the test fails."""


@dataclass
class Acknowledged:
    """What one child said before it was killed."""

    added: dict[int, int] = field(default_factory=dict)
    """Message number -> message id, for each ``A`` line."""
    removed: set[int] = field(default_factory=set)
    """Message numbers whose removal was acknowledged (``R`` lines)."""
    lines: int = 0


def parse(line: str, acknowledged: Acknowledged) -> None:
    kind, first, second = line.split()
    if kind == "A":
        acknowledged.added[int(second)] = int(first)
    elif kind == "R":
        acknowledged.removed.update(range(int(first), int(second) + 1))
    else:
        raise AssertionError(f"unexpected line from the child: {line!r}")
    acknowledged.lines += 1


class CrashTests(unittest.TestCase):
    """SIGKILL mid-burst, reopen, compare with the acknowledgements."""

    def setUp(self) -> None:
        if not sys.platform.startswith("linux"):
            raise unittest.SkipTest("the crash test runs on Linux")
        directory = Path(tempfile.mkdtemp(prefix="chat-crash-test-"))
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = directory / "chat.sqlite3"

    def run_and_kill(self, tag: str, wanted: int) -> Acknowledged:
        """Start a child, read ``wanted`` acknowledgement lines, SIGKILL it, read the rest."""
        env = dict(os.environ)
        source_root = str(Path(chatservice.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(self.path), tag],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        watchdog = threading.Timer(DEADLINE, child.kill)
        watchdog.start()
        acknowledged = Acknowledged()
        try:
            assert child.stdout is not None and child.stderr is not None
            while acknowledged.lines < wanted:
                line = child.stdout.readline()
                if not line.endswith("\n"):
                    child.kill()
                    child.wait()
                    self.fail(
                        f"the child stopped after {acknowledged.lines} lines"
                        f" (exit {child.returncode}): {child.stderr.read()}"
                    )
                parse(line, acknowledged)
            self.assertIsNone(child.poll(), "the child must still be writing when killed")
            os.kill(child.pid, signal.SIGKILL)
            # Whatever the child had written before it died was acknowledged too.
            for line in child.stdout:
                if line.endswith("\n"):
                    parse(line, acknowledged)
            child.wait()
            errors = child.stderr.read()
        finally:
            watchdog.cancel()
            if child.poll() is None:
                child.kill()
                child.wait()
            for stream in (child.stdout, child.stderr):
                if stream is not None:
                    stream.close()
        self.assertEqual(child.returncode, -signal.SIGKILL, errors)
        return acknowledged

    def check(self, tag: str, acknowledged: Acknowledged) -> set[int]:
        """Compare the database with ``acknowledged``; return the ids that must stay."""
        store = SQLiteStore(self.path)
        store.open()
        try:
            stored = [m for r in RECIPIENTS for m in store.offline_messages(r)]
        finally:
            store.close()
        mine = [m for m in stored if m.text.startswith(tag + " ")]
        numbers = [int(m.text.split()[1]) for m in mine]
        self.assertEqual(len(numbers), len(set(numbers)), "a message is stored twice")
        by_number = {int(m.text.split()[1]): m for m in mine}

        last = max(acknowledged.added, default=-1)
        # If the last acknowledged message closed a batch of ten and its
        # removal was not acknowledged, that removal was in flight: either way.
        in_flight_removal: set[int] = set()
        if last % 10 == 9 and last - 9 not in acknowledged.removed:
            in_flight_removal = set(range(last - 9, last - 4))

        must_stay: set[int] = set()
        for number, message_id in acknowledged.added.items():
            if number in acknowledged.removed:
                self.assertNotIn(number, by_number, f"message {number} was removed")
            elif number in in_flight_removal:
                if number in by_number:
                    self.assertEqual(by_number[number].message_id, message_id)
            else:
                self.assertIn(number, by_number, f"acknowledged message {number} is lost")
                message = by_number[number]
                self.assertEqual(message.message_id, message_id)
                self.assertEqual(message.recipient, RECIPIENTS[number % 3])
                self.assertEqual(message.sender, "yoda")
                must_stay.add(message_id)
        unacknowledged = set(by_number) - set(acknowledged.added)
        self.assertLessEqual(
            unacknowledged, {last + 1}, "only the add in flight may be there unacknowledged"
        )
        return must_stay

    def test_sigkill_loses_nothing_acknowledged(self) -> None:
        seed = random.randrange(2**32)
        rng = random.Random(seed)
        must_stay: set[int] = set()
        started = time.monotonic()
        for cycle in range(CYCLES):
            tag = f"c{cycle}"
            wanted = rng.choice([1, rng.randrange(20, 200), rng.randrange(200, 1500)])
            acknowledged = self.run_and_kill(tag, wanted)
            self.assertGreaterEqual(acknowledged.lines, wanted)
            must_stay |= self.check(tag, acknowledged)
            # What earlier children acknowledged is still there.
            store = SQLiteStore(self.path)
            store.open()
            try:
                ids = {m.message_id for r in RECIPIENTS for m in store.offline_messages(r)}
            finally:
                store.close()
            self.assertLessEqual(must_stay, ids, f"seed {seed}")
        self.assertTrue(must_stay, f"seed {seed}: nothing was acknowledged")
        self.assertLess(time.monotonic() - started, DEADLINE)
