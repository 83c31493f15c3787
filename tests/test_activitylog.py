"""Tests for :mod:`chatservice.activitylog`: the log file functions and :class:`ActivityLog`.

:class:`ActivityLog` is driven with a :class:`~twisted.internet.task.Clock`
and a ``run_in_thread`` the test controls: either a synchronous runner that
counts its calls, or a manual runner that hands back Deferreds the test fires
when it chooses, to stand for a write still running in a thread.

Files go under a fresh temporary working directory (``self.mktemp()`` is
relative to the current directory, which under pytest is the project).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from chatservice import activitylog
from chatservice.activitylog import (
    ActivityLog,
    UserRow,
    log_file_name,
    message_line,
    user_lines,
    write_logs,
)
from chatservice.store.interface import HistoryEntry
from chatservice.timefmt import format_timestamp

T = 1_700_000_000.0


def entry(channel: str, seq: int, sender: str, text: str, at: float = T) -> HistoryEntry:
    """A history entry."""
    return HistoryEntry(channel, seq, sender, text, at)


def line(seq: int, sender: str, text: str, at: float = T) -> str:
    """The expected message log line."""
    return f"{seq}; {format_timestamp(at)}; {sender}; {text}\n"


class TempDirTestCase(unittest.TestCase):
    """Runs each test in its own temporary working directory; ``self.dir`` is an empty directory in it."""

    def setUp(self) -> None:
        workdir = tempfile.mkdtemp(prefix="chatservice-test-")
        self.addCleanup(shutil.rmtree, workdir, True)
        previous = os.getcwd()
        os.chdir(workdir)
        self.addCleanup(os.chdir, previous)
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir(parents=True)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


class LogFileNameTests(unittest.TestCase):
    def test_broadcast(self) -> None:
        self.assertEqual(log_file_name("broadcast"), "messagelog.txt")

    def test_room(self) -> None:
        self.assertEqual(log_file_name("room:1"), "SR_1_messagelog.txt")
        self.assertEqual(log_file_name("room:42"), "SR_42_messagelog.txt")


class MessageLineTests(unittest.TestCase):
    def test_line(self) -> None:
        self.assertEqual(
            message_line(entry("broadcast", 3, "yoda", "Hello, all; how are you?", T + 4)),
            f"3; {format_timestamp(T + 4)}; yoda; Hello, all; how are you?\n",
        )

    def test_room_line_has_same_shape(self) -> None:
        self.assertEqual(
            message_line(entry("room:7", 1, "hans", "hi room")),
            f"1; {format_timestamp(T)}; hans; hi room\n",
        )


class UserLinesTests(unittest.TestCase):
    def test_empty(self) -> None:
        self.assertEqual(user_lines([]), "")

    def test_numbered_from_one_with_dash_for_no_port(self) -> None:
        rows: list[UserRow] = [
            (T, "yoda", "127.0.0.1", 6666),
            (T + 10, "hans", "10.0.0.2", None),
            (T + 20, "luke", "10.0.0.3", 7000),
        ]
        self.assertEqual(
            user_lines(rows),
            f"1; {format_timestamp(T)}; yoda; 127.0.0.1; 6666\n"
            f"2; {format_timestamp(T + 10)}; hans; 10.0.0.2; -\n"
            f"3; {format_timestamp(T + 20)}; luke; 10.0.0.3; 7000\n",
        )

    def test_renumbered_when_a_user_leaves(self) -> None:
        rows: list[UserRow] = [
            (T, "yoda", "127.0.0.1", 6666),
            (T + 20, "luke", "10.0.0.3", None),
        ]
        self.assertEqual(
            user_lines(rows[1:]), f"1; {format_timestamp(T + 20)}; luke; 10.0.0.3; -\n"
        )


class WriteLogsTests(TempDirTestCase):
    """write_logs() appends message lines and replaces the user log."""

    def test_appends_to_each_log(self) -> None:
        (self.dir / "messagelog.txt").write_text("earlier line\n", encoding="utf-8")
        write_logs(
            self.dir,
            [
                entry("broadcast", 1, "yoda", "b one"),
                entry("room:3", 1, "hans", "r one", T + 1),
                entry("broadcast", 2, "luke", "b two", T + 2),
                entry("room:3", 2, "yoda", "r two", T + 3),
                entry("room:12", 1, "leia", "other room", T + 4),
            ],
            None,
        )
        self.assertEqual(
            read(self.dir / "messagelog.txt"),
            "earlier line\n" + line(1, "yoda", "b one") + line(2, "luke", "b two", T + 2),
        )
        self.assertEqual(
            read(self.dir / "SR_3_messagelog.txt"),
            line(1, "hans", "r one", T + 1) + line(2, "yoda", "r two", T + 3),
        )
        self.assertEqual(
            read(self.dir / "SR_12_messagelog.txt"), line(1, "leia", "other room", T + 4)
        )
        self.assertEqual(
            sorted(os.listdir(self.dir)),
            ["SR_12_messagelog.txt", "SR_3_messagelog.txt", "messagelog.txt"],
        )

    def test_second_call_appends(self) -> None:
        write_logs(self.dir, [entry("broadcast", 1, "yoda", "one")], None)
        write_logs(self.dir, [entry("broadcast", 2, "hans", "two")], None)
        self.assertEqual(
            read(self.dir / "messagelog.txt"),
            line(1, "yoda", "one") + line(2, "hans", "two"),
        )

    def test_non_ascii_text(self) -> None:
        write_logs(self.dir, [entry("broadcast", 1, "yoda", "héllo ☃")], None)
        self.assertEqual(
            (self.dir / "messagelog.txt").read_bytes(),
            line(1, "yoda", "héllo ☃").encode("utf-8"),
        )

    def test_nothing_to_do(self) -> None:
        write_logs(self.dir, [], None)
        self.assertEqual(os.listdir(self.dir), [])

    def test_user_log_written(self) -> None:
        rows: list[UserRow] = [(T, "yoda", "127.0.0.1", 6666), (T + 1, "hans", "10.0.0.2", None)]
        write_logs(self.dir, [], rows)
        self.assertEqual(read(self.dir / "userlog.txt"), user_lines(rows))
        self.assertEqual(os.listdir(self.dir), ["userlog.txt"])

    def test_empty_user_log_written(self) -> None:
        write_logs(self.dir, [], [])
        self.assertEqual(read(self.dir / "userlog.txt"), "")

    def test_user_log_replaced_atomically(self) -> None:
        """The user log is a new file renamed over the old one, never rewritten in place.

        A hard link to the old file (as a reader holding it open would) keeps
        the old content, and no temporary file is left behind.
        """
        userlog = self.dir / "userlog.txt"
        userlog.write_text("1; old; yoda; 127.0.0.1; -\n", encoding="utf-8")
        os.link(userlog, self.dir / "old-link")
        rows: list[UserRow] = [(T, "hans", "10.0.0.2", 9000)]
        write_logs(self.dir, [], rows)
        self.assertEqual(read(userlog), f"1; {format_timestamp(T)}; hans; 10.0.0.2; 9000\n")
        self.assertEqual(read(self.dir / "old-link"), "1; old; yoda; 127.0.0.1; -\n")
        self.assertEqual(sorted(os.listdir(self.dir)), ["old-link", "userlog.txt"])

    def test_failed_rename_keeps_old_user_log(self) -> None:
        userlog = self.dir / "userlog.txt"
        userlog.write_text("old\n", encoding="utf-8")
        renames: list[tuple[Any, Any]] = []

        def failing_replace(src: Any, dst: Any) -> None:
            renames.append((Path(src).name, Path(dst).name))
            raise OSError("disk on fire")

        self.patch(activitylog.os, "replace", failing_replace)
        self.assertRaises(OSError, write_logs, self.dir, [], [(T, "yoda", "h", None)])
        self.assertEqual(renames, [("userlog.txt.tmp", "userlog.txt")])
        self.assertEqual(read(userlog), "old\n")

    def test_messages_and_users_together(self) -> None:
        write_logs(self.dir, [entry("room:1", 1, "yoda", "hi")], [(T, "yoda", "h", None)])
        self.assertEqual(read(self.dir / "SR_1_messagelog.txt"), line(1, "yoda", "hi"))
        self.assertEqual(read(self.dir / "userlog.txt"), f"1; {format_timestamp(T)}; yoda; h; -\n")


class SyncRunner:
    """Runs the write at once, as ``defer.maybeDeferred`` would, and records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        self.calls.append(args)
        return defer.maybeDeferred(f, *args)


class ManualRunner:
    """Records each write and returns a Deferred; :meth:`finish` does the write and fires it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], defer.Deferred[Any]]] = []

    def __call__(self, f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.calls.append((f, args, d))
        return d

    def args(self, index: int) -> tuple[Any, ...]:
        """The (directory, appends, users) of write number ``index``."""
        return self.calls[index][1]

    def finish(self, index: int) -> None:
        """Do write number ``index`` now and fire its Deferred."""
        f, args, d = self.calls[index]
        d.callback(f(*args))

    def fail(self, index: int) -> None:
        """Fire write number ``index`` with an error, without writing."""
        self.calls[index][2].errback(OSError("write failed"))


class ActivityLogTestCase(TempDirTestCase):
    """An ActivityLog over a temporary directory, a Clock and a list of online users."""

    runner: Any

    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()
        self.clock.advance(T)
        self.users: list[UserRow] = []
        self.user_reads = 0
        self.log = ActivityLog(self.dir, self.clock, self.runner, self.active_users)
        self.addCleanup(self.assertNoDelayedCalls)

    def active_users(self) -> Sequence[UserRow]:
        self.user_reads += 1
        return list(self.users)

    def assertNoDelayedCalls(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def file(self, name: str) -> str:
        return read(self.dir / name)


class SynchronousTests(ActivityLogTestCase):
    """With a runner that writes at once."""

    def setUp(self) -> None:
        self.runner = SyncRunner()
        super().setUp()

    def test_nothing_written_before_next_turn(self) -> None:
        self.log.message_posted(entry("broadcast", 1, "yoda", "hi"))
        self.log.users_changed()
        self.assertEqual(self.runner.calls, [])
        self.assertEqual(os.listdir(self.dir), [])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(len(self.runner.calls), 1)

    def test_files_written(self) -> None:
        self.users = [(T - 5, "yoda", "127.0.0.1", 6666), (T - 1, "hans", "10.0.0.2", None)]
        self.log.users_changed()
        self.log.message_posted(entry("broadcast", 1, "yoda", "hello all"))
        self.log.message_posted(entry("room:2", 1, "hans", "hello room", T + 1))
        self.clock.advance(0)
        self.assertEqual(self.file("messagelog.txt"), line(1, "yoda", "hello all"))
        self.assertEqual(self.file("SR_2_messagelog.txt"), line(1, "hans", "hello room", T + 1))
        self.assertEqual(
            self.file("userlog.txt"),
            f"1; {format_timestamp(T - 5)}; yoda; 127.0.0.1; 6666\n"
            f"2; {format_timestamp(T - 1)}; hans; 10.0.0.2; -\n",
        )
        self.assertEqual(
            sorted(os.listdir(self.dir)),
            ["SR_2_messagelog.txt", "messagelog.txt", "userlog.txt"],
        )

    def test_many_posts_one_write(self) -> None:
        posted = [entry("broadcast", n, "yoda", f"message {n}", T + n) for n in range(1, 21)]
        for e in posted:
            self.log.message_posted(e)
            self.log.users_changed()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(self.runner.calls, [(self.dir, posted, [])])
        self.assertEqual(self.user_reads, 1)
        self.assertEqual(
            self.file("messagelog.txt"),
            "".join(line(n, "yoda", f"message {n}", T + n) for n in range(1, 21)),
        )

    def test_each_turn_writes_only_new_entries(self) -> None:
        first = entry("broadcast", 1, "yoda", "one")
        second = entry("broadcast", 2, "hans", "two", T + 1)
        self.log.message_posted(first)
        self.clock.advance(0)
        self.log.message_posted(second)
        self.clock.advance(0)
        self.assertEqual(
            self.runner.calls, [(self.dir, [first], None), (self.dir, [second], None)]
        )
        self.assertEqual(self.file("messagelog.txt"), line(1, "yoda", "one") + line(2, "hans", "two", T + 1))

    def test_messages_only_leave_user_log_alone(self) -> None:
        self.log.message_posted(entry("broadcast", 1, "yoda", "one"))
        self.clock.advance(0)
        self.assertEqual(self.user_reads, 0)
        self.assertFalse((self.dir / "userlog.txt").exists())

    def test_users_only(self) -> None:
        self.log.users_changed()
        self.clock.advance(0)
        self.assertEqual(self.runner.calls, [(self.dir, [], [])])
        self.assertEqual(os.listdir(self.dir), ["userlog.txt"])
        self.assertEqual(self.file("userlog.txt"), "")

    def test_user_rows_read_at_write_time(self) -> None:
        self.log.users_changed()
        self.users = [(T, "luke", "10.0.0.3", 5000)]
        self.clock.advance(0)
        self.assertEqual(self.file("userlog.txt"), f"1; {format_timestamp(T)}; luke; 10.0.0.3; 5000\n")
        self.users = []
        self.log.users_changed()
        self.clock.advance(0)
        self.assertEqual(self.file("userlog.txt"), "")
        self.assertEqual(self.user_reads, 2)

    def test_flush_nothing_pending(self) -> None:
        d = self.log.flush()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.runner.calls, [])

    def test_flush_writes_scheduled_entries_now(self) -> None:
        e = entry("broadcast", 1, "yoda", "one")
        self.log.message_posted(e)
        d = self.log.flush()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.runner.calls, [(self.dir, [e], None)])
        self.assertEqual(self.file("messagelog.txt"), line(1, "yoda", "one"))
        # The scheduled write was cancelled, not left to run again.
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(0)
        self.assertEqual(len(self.runner.calls), 1)

    def test_flush_after_everything_written(self) -> None:
        self.log.message_posted(entry("broadcast", 1, "yoda", "one"))
        self.clock.advance(0)
        d = self.log.flush()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.runner.calls), 1)


class ManualTests(ActivityLogTestCase):
    """With a runner whose writes finish only when the test says so."""

    def setUp(self) -> None:
        self.runner = ManualRunner()
        super().setUp()

    def test_no_concurrent_writes(self) -> None:
        e1 = entry("broadcast", 1, "yoda", "one")
        e2 = entry("broadcast", 2, "hans", "two", T + 1)
        e3 = entry("room:1", 1, "luke", "three", T + 2)
        self.log.message_posted(e1)
        self.clock.advance(0)
        self.assertEqual(len(self.runner.calls), 1)
        # A write is in flight: new activity is queued, not scheduled or written.
        self.log.message_posted(e2)
        self.log.users_changed()
        self.log.message_posted(e3)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.finish(0)
        self.assertEqual(len(self.runner.calls), 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(len(self.runner.calls), 2)
        self.assertEqual(self.runner.args(1), (self.dir, [e2, e3], []))
        self.runner.finish(1)
        self.assertEqual(self.file("messagelog.txt"), line(1, "yoda", "one") + line(2, "hans", "two", T + 1))
        self.assertEqual(self.file("SR_1_messagelog.txt"), line(1, "luke", "three", T + 2))
        self.assertEqual(self.file("userlog.txt"), "")
        self.clock.advance(0)
        self.assertEqual(len(self.runner.calls), 2)

    def test_nothing_queued_nothing_more_written(self) -> None:
        self.log.message_posted(entry("broadcast", 1, "yoda", "one"))
        self.clock.advance(0)
        self.runner.finish(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.runner.calls), 1)

    def test_flush_waits_for_write_in_flight_and_queued(self) -> None:
        e1 = entry("broadcast", 1, "yoda", "one")
        e2 = entry("broadcast", 2, "hans", "two", T + 1)
        self.log.message_posted(e1)
        self.clock.advance(0)
        self.log.message_posted(e2)
        d = self.log.flush()
        self.assertNoResult(d)
        # No second write while the first is in flight, even for a flush.
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.finish(0)
        self.assertNoResult(d)
        # The flush starts the next write at once, without waiting for a turn.
        self.assertEqual(len(self.runner.calls), 2)
        self.assertEqual(self.runner.args(1), (self.dir, [e2], None))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.runner.finish(1)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.file("messagelog.txt"), line(1, "yoda", "one") + line(2, "hans", "two", T + 1))

    def test_flush_of_scheduled_write(self) -> None:
        e1 = entry("broadcast", 1, "yoda", "one")
        self.log.message_posted(e1)
        d = self.log.flush()
        self.assertEqual(len(self.runner.calls), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertNoResult(d)
        self.runner.finish(0)
        self.assertIsNone(self.successResultOf(d))

    def test_flush_waits_for_write_in_flight(self) -> None:
        self.log.users_changed()
        self.clock.advance(0)
        d = self.log.flush()
        self.assertNoResult(d)
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.finish(0)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.runner.calls), 1)

    def test_several_flushes(self) -> None:
        self.log.message_posted(entry("broadcast", 1, "yoda", "one"))
        d1 = self.log.flush()
        self.log.message_posted(entry("broadcast", 2, "yoda", "two"))
        d2 = self.log.flush()
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.finish(0)
        self.assertNoResult(d1)
        self.assertNoResult(d2)
        self.runner.finish(1)
        self.assertIsNone(self.successResultOf(d1))
        self.assertIsNone(self.successResultOf(d2))
        self.assertEqual(len(self.runner.calls), 2)

    def test_flush_nothing_pending(self) -> None:
        d = self.log.flush()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.runner.calls, [])

    def test_failed_write_logged_and_later_writes_happen(self) -> None:
        e1 = entry("broadcast", 1, "yoda", "lost")
        e2 = entry("broadcast", 2, "hans", "kept", T + 1)
        self.log.message_posted(e1)
        self.clock.advance(0)
        self.log.message_posted(e2)
        self.runner.fail(0)
        errors = self.flushLoggedErrors(OSError)
        self.assertEqual(len(errors), 1)
        self.assertEqual(str(errors[0].value), "write failed")
        self.clock.advance(0)
        self.assertEqual(self.runner.args(1), (self.dir, [e2], None))
        self.runner.finish(1)
        self.assertEqual(self.file("messagelog.txt"), line(2, "hans", "kept", T + 1))

    def test_flush_fires_after_failed_write(self) -> None:
        self.log.message_posted(entry("broadcast", 1, "yoda", "lost"))
        d = self.log.flush()
        self.runner.fail(0)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class FailingRunnerTests(ActivityLogTestCase):
    """A runner that fails its first write (``defer.fail(OSError())``) and then works."""

    def setUp(self) -> None:
        self.attempts: list[tuple[Any, ...]] = []
        super().setUp()

    def runner(self, f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        self.attempts.append(args)
        if len(self.attempts) == 1:
            return defer.fail(OSError())
        return defer.maybeDeferred(f, *args)

    def test_failure_logged_once_then_writes_continue(self) -> None:
        e1 = entry("broadcast", 1, "yoda", "lost")
        e2 = entry("broadcast", 2, "hans", "kept", T + 1)
        self.log.message_posted(e1)
        self.clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertFalse((self.dir / "messagelog.txt").exists())
        self.log.message_posted(e2)
        self.log.users_changed()
        self.clock.advance(0)
        self.assertEqual(self.attempts, [(self.dir, [e1], None), (self.dir, [e2], [])])
        self.assertEqual(self.file("messagelog.txt"), line(2, "hans", "kept", T + 1))
        self.assertEqual(self.file("userlog.txt"), "")
        self.assertEqual(self.flushLoggedErrors(OSError), [])

    def test_flush_after_failure(self) -> None:
        self.log.users_changed()
        d = self.log.flush()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        d = self.log.flush()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.attempts), 1)


class IntervalTests(ActivityLogTestCase):
    """A running server's log: writes at least ``interval`` seconds apart."""

    def setUp(self) -> None:
        self.runner = SyncRunner()
        super().setUp()
        self.log.interval = 0.5

    def test_first_write_at_next_turn_later_ones_wait(self) -> None:
        first = entry("broadcast", 1, "yoda", "one")
        second = entry("broadcast", 2, "hans", "two", T + 1)
        third = entry("broadcast", 3, "hans", "three", T + 1)
        self.log.message_posted(first)
        self.clock.advance(0)
        self.assertEqual(self.runner.calls, [(self.dir, [first], None)])
        self.log.message_posted(second)
        self.clock.advance(0.1)
        self.log.message_posted(third)
        self.log.users_changed()
        self.clock.advance(0.3)
        self.assertEqual(len(self.runner.calls), 1)  # not yet: 0.4 s after the first
        self.clock.advance(0.11)
        self.assertEqual(self.runner.calls[1], (self.dir, [second, third], []))
        self.assertEqual(self.user_reads, 1)
        self.assertEqual(
            self.file("messagelog.txt"),
            line(1, "yoda", "one") + line(2, "hans", "two", T + 1) + line(3, "hans", "three", T + 1),
        )

    def test_quiet_time_writes_at_next_turn(self) -> None:
        self.log.message_posted(entry("broadcast", 1, "yoda", "one"))
        self.clock.advance(0)
        self.clock.advance(5)
        self.log.message_posted(entry("broadcast", 2, "yoda", "two"))
        self.clock.advance(0)
        self.assertEqual(len(self.runner.calls), 2)

    def test_flush_does_not_wait(self) -> None:
        self.log.message_posted(entry("broadcast", 1, "yoda", "one"))
        self.clock.advance(0)
        self.log.message_posted(entry("broadcast", 2, "yoda", "two"))
        done = self.log.flush()
        self.successResultOf(done)
        self.assertEqual(len(self.runner.calls), 2)
