"""Tests for :mod:`chatservice.service`: what :class:`ChatService` does at start and stop.

The service is built by hand, as ``makeService`` builds it but without the
real reactor or listeners: the :class:`~tests.support.ChatHarness` supplies a
:class:`ChatState` over a :class:`MemoryStore`, the accounts, a
:class:`~twisted.internet.task.Clock`, the two login lock-outs and the
connection factory (whose connections write into StringTransports); the test
adds an :class:`ActivityLog` whose ``run_in_thread`` it controls.

A StringTransport never reports the connection closed by itself: a test calls
``Connection.drop()`` where the reactor would call ``connectionLost``.
Files go under a fresh temporary working directory (``self.mktemp()`` is
relative to the current directory, which under pytest is the project).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from twisted.internet import defer
from twisted.trial import unittest

from chatservice.activitylog import ActivityLog
from chatservice.auth.slowdown import DEFAULT_NAME_FAILURES
from chatservice.service import SHUTDOWN, ChatService
from chatservice.timefmt import format_timestamp
from tests.support import ChatHarness, Connection

SHUTDOWN_TEXT = "The server is shutting down."


class SyncRunner:
    """Writes at once, as ``defer.maybeDeferred`` does, and notes each write in the journal."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.calls = 0

    def __call__(self, f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        self.calls += 1
        self.journal.append("write logs")
        return defer.maybeDeferred(f, *args)


class ManualRunner:
    """Records each write; :meth:`finish` does it, notes it in the journal and fires its Deferred."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], defer.Deferred[Any]]] = []

    def __call__(self, f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.calls.append((f, args, d))
        return d

    def finish(self, index: int) -> None:
        f, args, d = self.calls[index]
        self.journal.append("write logs")
        d.callback(f(*args))


class ServiceTestCase(unittest.TestCase):
    """A ChatService over a harness, not yet started; its data directory does not exist.

    ``self.journal`` records, in order, the store being opened, its rooms read
    (loading), last-seen times written, log writes and the store being closed.
    """

    def setUp(self) -> None:
        workdir = tempfile.mkdtemp(prefix="chatservice-test-")
        self.addCleanup(shutil.rmtree, workdir, True)
        previous = os.getcwd()
        os.chdir(workdir)
        self.addCleanup(os.chdir, previous)

        self.harness = ChatHarness()
        self.clock = self.harness.clock
        self.start_time = self.clock.seconds()
        self.data_dir = Path(self.mktemp()).absolute() / "var" / "lib" / "chat" / "data"
        self.journal: list[str] = []
        self._journal_store()
        self.runner = self.make_runner()
        self.activity = ActivityLog(
            self.data_dir, self.clock, self.runner, self.harness.state.active_user_rows
        )
        self.harness.state.activity = self.activity
        self.service = ChatService(
            self.harness.state,
            self.harness.factory,
            [self.harness.lockout, self.harness.address_lockout, self.harness.slowdown],
            self.activity,
            self.data_dir,
        )
        self.addCleanup(self.assertNoDelayedCalls)

    def _journal_store(self) -> None:
        store = self.harness.store
        rooms, record_seen = store.rooms, store.record_seen

        def journal_rooms() -> Iterable[tuple[int, frozenset[str]]]:
            self.journal.append("load rooms")
            return rooms()

        def journal_seen(username: str, at: float) -> None:
            self.journal.append(f"seen {username}")
            record_seen(username, at)

        self.patch(store, "open", lambda: self.journal.append("open"))
        self.patch(store, "close", lambda: self.journal.append("close"))
        self.patch(store, "rooms", journal_rooms)
        self.patch(store, "record_seen", journal_seen)

    def make_runner(self) -> Any:
        return SyncRunner(self.journal)

    def close_leftovers(self) -> None:
        """Close every connection still open and run what that schedules.

        For tests that may stop half-way (the ``todo`` tests): registered in
        the test itself, it runs before the no-delayed-calls check.
        """
        for protocol in list(self.harness.factory.connections):
            protocol.connectionLost(None)
        self.clock.advance(0)

    def assertNoDelayedCalls(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def start(self) -> None:
        """Start the service and let its first log write run."""
        self.service.startService()
        self.clock.advance(0)

    def userlog(self) -> str:
        return (self.data_dir / "userlog.txt").read_text(encoding="utf-8")

    def messagelog(self) -> str:
        return (self.data_dir / "messagelog.txt").read_text(encoding="utf-8")

    def stop(self, *connections: Connection) -> None:
        """Stop the service, close ``connections`` as the reactor would, and check it stopped.

        Then one more reactor turn runs, for the log write that the last
        session's end schedules (see ``test_last_session_ends_before_store_closes``).
        """
        d = self.service.stopService()
        if connections:
            self.assertNoResult(d)
        for connection in connections:
            connection.drop()
        self.assertIsNone(self.successResultOf(d))
        self.clock.advance(0)


class StartTests(ServiceTestCase):
    def test_creates_nested_data_dir(self) -> None:
        self.assertFalse(self.data_dir.parent.parent.exists())
        self.service.startService()
        self.assertTrue(self.data_dir.is_dir())
        self.assertTrue(self.service.running)
        self.clock.advance(0)
        self.stop()

    def test_existing_data_dir_is_fine(self) -> None:
        self.data_dir.mkdir(parents=True)
        (self.data_dir / "keep.txt").write_text("kept", encoding="utf-8")
        self.start()
        self.assertEqual((self.data_dir / "keep.txt").read_text(encoding="utf-8"), "kept")
        self.stop()

    def test_writes_empty_userlog(self) -> None:
        self.service.startService()
        self.assertFalse((self.data_dir / "userlog.txt").exists())
        self.clock.advance(0)
        self.assertEqual(self.userlog(), "")
        self.assertEqual(self.runner.calls, 1)
        self.assertEqual(
            sorted(p.name for p in self.data_dir.iterdir()), ["chat.lock", "userlog.txt"]
        )
        self.stop()

    def test_replaces_stale_userlog(self) -> None:
        self.data_dir.mkdir(parents=True)
        (self.data_dir / "userlog.txt").write_text(
            "1; 01 Jun 2022 21:30:04; yoda; 127.0.0.1; 6666\n", encoding="utf-8"
        )
        self.start()
        self.assertEqual(self.userlog(), "")
        self.stop()

    def test_opens_store_then_loads_state(self) -> None:
        store = self.harness.store
        store.add_block("hans", "yoda")
        store.save_room(4, frozenset({"yoda", "luke"}))
        store.record_seen("luke", self.start_time - 100)
        self.journal.clear()
        self.service.startService()
        self.assertEqual(self.journal, ["open", "load rooms"])
        state = self.harness.state
        self.assertTrue(state.has_blocked("hans", "yoda"))
        self.assertFalse(state.has_blocked("yoda", "hans"))
        room = state.rooms.find(4)
        assert room is not None
        self.assertEqual(room.members, frozenset({"yoda", "luke"}))
        self.assertEqual(list(state.seen_since(self.start_time - 100)), ["luke"])
        room, _ = self.successResultOf(state.rooms.create(frozenset({"yoda", "hans"})))
        self.assertEqual(room.room_id, 5)
        self.clock.advance(0)
        self.stop()

    def test_userlog_follows_logins(self) -> None:
        self.start()
        yoda = self.harness.connect("127.0.0.1")
        yoda.login("yoda")
        self.clock.advance(1)
        hans = self.harness.connect("10.0.0.2")
        hans.send_json({"type": "login", "user": "hans", "password": "falcon", "udp_port": 6666})
        self.clock.advance(0)
        self.assertEqual(
            self.userlog(),
            f"1; {format_timestamp(self.start_time)}; yoda; 127.0.0.1; -\n"
            f"2; {format_timestamp(self.start_time + 1)}; hans; 10.0.0.2; 6666\n",
        )
        yoda.drop()
        self.clock.advance(0)
        self.assertEqual(
            self.userlog(), f"1; {format_timestamp(self.start_time + 1)}; hans; 10.0.0.2; 6666\n"
        )
        self.stop(hans)


class StopTests(ServiceTestCase):
    def test_shutdown_notice_to_every_connection(self) -> None:
        self.start()
        yoda, hans = self.harness.online("yoda", "hans")
        luke = self.harness.connect()
        luke.login_json("luke")
        stranger = self.harness.connect()  # not logged in yet
        self.clock.advance(0)
        self.assertEqual(yoda.lines(), ["luke logged in"])
        self.assertEqual(hans.lines(), ["luke logged in"])
        d = self.service.stopService()
        self.assertFalse(self.service.running)
        for connection in (yoda, hans, stranger):
            self.assertEqual(connection.lines(), [SHUTDOWN_TEXT])
        self.assertEqual(luke.json(), [{"type": "shutdown", "message": SHUTDOWN_TEXT}])
        for connection in (yoda, hans, luke, stranger):
            self.assertTrue(connection.closed)
        self.assertEqual((SHUTDOWN.reason, SHUTDOWN.message), ("shutdown", SHUTDOWN_TEXT))
        # The Deferred waits for the connections to close.
        self.assertNoResult(d)
        for connection in (yoda, hans, luke, stranger):
            connection.drop()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.harness.state.sessions, {})
        self.clock.advance(0)
        self.assertEqual(self.userlog(), "")

    def test_nobody_online(self) -> None:
        self.start()
        self.stop()
        self.assertEqual(self.journal, ["open", "load rooms", "write logs", "close"])

    def test_logs_flushed_then_store_closed(self) -> None:
        self.start()
        yoda, hans = self.harness.online("yoda", "hans")
        self.clock.advance(0)
        self.assertIn("; yoda; ", self.userlog())
        self.successResultOf(self.harness.state.post("broadcast", "yoda", "last words"))
        at_close: list[str] = []
        self.patch(self.harness.store, "close", lambda: at_close.append(self.messagelog()))
        # No reactor turn between the post and the stop: the flush must write it.
        self.stop(yoda, hans)
        self.assertEqual(
            at_close, [f"1; {format_timestamp(self.start_time)}; yoda; last words\n"]
        )
        self.assertEqual(self.userlog(), "")

    def test_last_session_ends_before_store_closes(self) -> None:
        """BUG: the last user's session ends after the logs are flushed and the store closed.

        ``ChatProtocol.connectionLost`` tells the factory the connection is
        gone before it ends the session.  When the last connection closes, the
        factory's ``disconnect_all`` Deferred fires, so stopService flushes the
        logs and closes the store at once, and only then is hans logged out:
        his last-seen time is written to the closed store, the user log still
        lists him, and a new log write is scheduled after the service stopped.
        """
        self.addCleanup(self.close_leftovers)
        self.start()
        yoda, hans = self.harness.online("yoda", "hans")
        self.clock.advance(0)
        self.journal.clear()
        d = self.service.stopService()
        yoda.drop()
        hans.drop()
        self.assertIsNone(self.successResultOf(d))
        # Both are logged out (in either order) before the logs and the store.
        self.assertEqual(sorted(self.journal[:2]), ["seen hans", "seen yoda"])
        self.assertEqual(self.journal[2:], ["write logs", "close"])
        self.assertEqual(self.userlog(), "")
        self.assertEqual(self.clock.getDelayedCalls(), [])


    def test_lockout_timers_cancelled(self) -> None:
        self.start()
        (yoda,) = self.harness.online("yoda")
        self.harness.lockout.failed("luke")
        for _ in range(DEFAULT_NAME_FAILURES):
            self.harness.slowdown.failed("leia")
        waiting = self.harness.slowdown.wait("leia")
        for _ in range(3):
            self.harness.address_lockout.failed("10.9.9.9")
        self.assertIsNotNone(self.harness.address_lockout.locked_for("10.9.9.9"))
        d = self.service.stopService()
        # Cancelled at once, before the connections have closed.
        self.assertIsNone(self.harness.address_lockout.locked_for("10.9.9.9"))
        self.assertIsNone(self.harness.lockout.locked_for("luke"))
        self.failureResultOf(waiting, defer.CancelledError)
        self.assertEqual(self.harness.slowdown.failures("leia"), 0)
        self.assertNoResult(d)
        yoda.drop()
        self.successResultOf(d)
        self.clock.advance(0)

    def test_stop_with_scheduled_write(self) -> None:
        self.service.startService()
        # The start's user log write is still scheduled (and the bans' next
        # reading from the store): stopping writes it now.
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        self.stop()
        self.assertEqual(self.userlog(), "")
        self.assertEqual(self.runner.calls, 1)

    def test_grace_period_for_connections_that_do_not_close(self) -> None:
        self.start()
        yoda, hans = self.harness.online("yoda", "hans")
        d = self.service.stopService()
        yoda.drop()
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertIsNone(self.successResultOf(d))
        self.assertIn("close", self.journal)
        hans.drop()
        self.clock.advance(0)

    def test_sessions_of_stragglers_end_before_store_closes(self) -> None:
        """BUG: after the grace period the store is closed while a user is still logged in.

        When a connection does not close within ``disconnect_all``'s grace
        period, stopService flushes the logs and closes the store anyway.  The
        user log written at stop still lists hans, and when his connection
        finally closes his last-seen time is written to the closed store and
        another log write is scheduled after the service stopped.
        """
        self.addCleanup(self.close_leftovers)
        self.start()
        (hans,) = self.harness.online("hans")
        self.clock.advance(0)
        self.journal.clear()
        d = self.service.stopService()
        self.clock.advance(2)
        self.successResultOf(d)
        self.assertEqual(self.userlog(), "")
        hans.drop()
        self.assertEqual(self.journal, ["seen hans", "write logs", "close"])
        self.assertEqual(self.clock.getDelayedCalls(), [])



class StopWaitsForWritesTests(ServiceTestCase):
    """With log writes that finish only when the test says so."""

    def make_runner(self) -> Any:
        return ManualRunner(self.journal)

    def test_deferred_fires_after_flush(self) -> None:
        self.start()
        self.runner.finish(0)
        (yoda,) = self.harness.online("yoda")
        self.successResultOf(self.harness.state.post("broadcast", "yoda", "bye"))
        self.clock.advance(0)
        # A write (yoda's login and message) is in flight when the service stops.
        self.assertEqual(len(self.runner.calls), 2)
        self.journal.clear()
        d = self.service.stopService()
        self.assertEqual(yoda.lines(), [SHUTDOWN_TEXT])
        yoda.drop()
        self.assertNoResult(d)
        self.assertEqual(self.journal, ["seen yoda"])
        self.runner.finish(1)
        # yoda's logout is written next, still before the store closes.
        self.assertNoResult(d)
        self.assertEqual(len(self.runner.calls), 3)
        self.runner.finish(2)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.journal, ["seen yoda", "write logs", "write logs", "close"])
        self.assertEqual(self.userlog(), "")
        self.assertEqual(self.messagelog(), f"1; {format_timestamp(self.start_time)}; yoda; bye\n")

    def test_nothing_pending_at_stop(self) -> None:
        self.start()
        self.runner.finish(0)
        self.stop()
        self.assertEqual(len(self.runner.calls), 1)
        self.assertEqual(self.journal[-1], "close")
