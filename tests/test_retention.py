"""History retention (:mod:`chatservice.retention`): ``--history-max-age`` and ``--history-max-entries``.

Unit tests on a ``Clock`` with a local store and with a store that answers
later (:class:`~tests.test_async_store.ManualStore`): sweeps run periodically,
in batches spread over reactor turns, one store call at a time, and stop
cleanly; then through the chat service; then end to end, a real
``twistd chat`` forgetting what is past the bounds while it runs.
"""

from __future__ import annotations

import time

from twisted.internet import task
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from chatservice.retention import HistoryRetention, parse_duration
from chatservice.service import ChatService
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore
from chatservice.store.sqlite import SQLiteStore
from tests.e2e_support import ChatServer
from tests.support import ChatHarness
from tests.test_async_store import ManualStore, NoLogs, StoreDown, use_store

T = 1_700_000_000.0


class DurationTests(unittest.TestCase):
    def test_units(self) -> None:
        for text, seconds in (("90", 90), ("1.5", 1.5), ("30s", 30), ("2m", 120), ("3h", 10800),
                              ("30d", 2_592_000), (" 7D ", 604_800), ("0", 0)):
            with self.subTest(text=text):
                self.assertEqual(parse_duration(text), seconds)

    def test_refused(self) -> None:
        for text in ("", "d", "-1", "1w", "1e9", "nan", "inf", "1 d", "١٢", "9" * 13):
            with self.subTest(text=text):
                self.assertRaises(ValueError, parse_duration, text)


class RetentionTests(unittest.TestCase):
    """Sweeps on a clock, against a memory store behind the asynchronous interface."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(T)
        self.local = MemoryStore()
        self.store = LocalStore(self.local)

    def retention(self, **options: object) -> HistoryRetention:
        retention = HistoryRetention(self.store, self.clock, **options)  # type: ignore[arg-type]
        self.addCleanup(self.assertEqual, self.clock.getDelayedCalls(), [])
        self.addCleanup(lambda: self.successResultOf(retention.stop()))
        return retention

    def add(self, channel: str, count: int, start: float, step: float = 1) -> None:
        for i in range(count):
            self.local.add_history(channel, "yoda", f"{channel} {i}", start + i * step)

    def texts(self, channel: str) -> list[str]:
        return [entry.text for entry in self.local.history_after([channel], 0)]

    def test_max_age(self) -> None:
        self.add("broadcast", 10, T - 100, 10)  # sent 100, 90, ... 10 seconds ago
        retention = self.retention(max_age=45, max_entries=None, interval=30)
        retention.start()
        self.clock.advance(0)
        self.assertEqual(self.texts("broadcast"), [f"broadcast {i}" for i in range(6, 10)])
        # Periodic: 30 s later, what has aged past 45 s since goes too.
        self.clock.advance(29)
        self.assertEqual(len(self.texts("broadcast")), 4)
        self.clock.advance(1)
        self.assertEqual(self.texts("broadcast"), ["broadcast 9"])
        self.assertEqual(retention.purged, 9)

    def test_max_entries_per_channel(self) -> None:
        self.add("broadcast", 12, T - 50)
        self.add("room:1", 3, T - 50)
        self.add("room:2", 7, T - 50)
        retention = self.retention(max_age=None, max_entries=5, interval=60)
        retention.start()
        self.clock.advance(0)
        self.assertEqual(self.texts("broadcast"), [f"broadcast {i}" for i in range(7, 12)])
        self.assertEqual(len(self.texts("room:1")), 3)
        self.assertEqual(self.texts("room:2"), [f"room:2 {i}" for i in range(2, 7)])
        # New messages: the next sweep keeps the last five again, numbering goes on.
        entry = self.local.add_history("room:2", "hans", "new", T)
        self.assertEqual(entry.seq, 8)
        self.clock.advance(60)
        self.assertEqual(self.texts("room:2"), [f"room:2 {i}" for i in range(3, 7)] + ["new"])

    def test_batches_over_turns(self) -> None:
        """A large backlog is forgotten a batch a reactor turn (a timer each), not in one call."""
        self.add("broadcast", 95, T - 1000)
        steps: list[tuple[str, float]] = []
        purge = self.local.purge_history
        call_later = self.clock.callLater

        def counted(before: float | None, keep: int | None, limit: int) -> int:
            removed = purge(before, keep, limit)
            steps.append(("purged", removed))
            return removed

        def timer(delay: float, *args: object, **kwargs: object) -> object:
            steps.append(("timer", delay))
            return call_later(delay, *args, **kwargs)

        self.local.purge_history = counted  # type: ignore[method-assign]
        self.clock.callLater = timer  # type: ignore[method-assign]
        retention = self.retention(max_age=10, max_entries=None, batch=20)
        retention.start()
        self.assertEqual(steps, [("timer", 0)], "not on the caller's turn")
        self.clock.advance(0)
        self.assertEqual(
            steps,
            [("timer", 0)]
            + [("purged", 20), ("timer", 0)] * 4
            + [("purged", 15), ("timer", 60)],
        )
        self.assertEqual(self.texts("broadcast"), [])
        self.assertEqual(retention.purged, 95)

    def test_no_bound_no_timer(self) -> None:
        retention = self.retention(max_age=None, max_entries=None)
        retention.start()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bad_bounds_refused(self) -> None:
        for options in ({"max_age": 0, "max_entries": None}, {"max_age": None, "max_entries": 0},
                        {"max_age": 5, "max_entries": None, "batch": 0}):
            with self.subTest(options=options):
                self.assertRaises(ValueError, HistoryRetention, self.store, self.clock, **options)


class SlowStoreRetentionTests(unittest.TestCase):
    """With a store that answers later (PostgreSQL): one call at a time, failures retried, stop waits."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(T)
        self.local = MemoryStore()
        self.store = ManualStore(self.local)
        self.retention = HistoryRetention(self.store, self.clock, 100, None, interval=60, batch=2)

    def test_one_call_at_a_time(self) -> None:
        for i in range(3):
            self.local.add_history("broadcast", "yoda", f"{i}", T - 500)
        self.retention.start()
        self.clock.advance(0)
        self.assertEqual(self.store.waiting(), ["purge_history"])
        (_name, args, _d) = self.store.pending[0]
        self.assertEqual(args, (T - 100, None, 2), "the clock's time less max_age")
        self.clock.advance(120)
        self.assertEqual(self.store.waiting(), ["purge_history"], "no second call while one is in flight")
        self.store.answer("purge_history")  # a full batch: the next one at the next turn
        self.clock.advance(0)
        self.store.answer("purge_history")
        self.assertEqual(self.retention.purged, 3)
        self.assertEqual([call.getTime() - self.clock.seconds() for call in self.clock.getDelayedCalls()], [60])
        self.successResultOf(self.retention.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failure_logged_and_retried(self) -> None:
        self.retention.start()
        self.clock.advance(0)
        self.store.refuse("purge_history")
        self.assertEqual(len(self.flushLoggedErrors(StoreDown)), 1)
        self.clock.advance(59)
        self.assertEqual(self.store.waiting(), [])
        self.clock.advance(1)
        self.store.answer("purge_history")
        self.successResultOf(self.retention.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_waits_for_the_call_in_flight(self) -> None:
        self.retention.start()
        self.clock.advance(0)
        d = self.retention.stop()
        self.assertNoResult(d)
        self.store.answer("purge_history")
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [], "no sweep after the stop")


class ServiceRetentionTests(unittest.TestCase):
    """The chat service starts retention once loaded, and closes the store only after its call."""

    def test_started_when_serving_and_waited_for_at_stop(self) -> None:
        harness = ChatHarness()
        self.addCleanup(harness.close_all)
        slow = ManualStore(harness.store)
        use_store(harness.state, slow)
        reactor = MemoryReactorClock()
        reactor.advance(T)
        harness.store.add_history("broadcast", "yoda", "old", T - 1000)
        retention = HistoryRetention(slow, reactor, 100, None)
        service = ChatService(
            harness.state,
            harness.factory,
            [harness.lockout, harness.address_lockout],
            NoLogs(),
            harness.directory / "data",
            retention=retention,
        )
        service.startService()
        reactor.advance(0)
        self.assertNotIn("purge_history", slow.waiting(), "not before the state is loaded")
        for call in ("open", "blocks", "last_seen", "rooms", "highest_room_id", "operators", "bans"):
            slow.answer(call)
        reactor.advance(0)
        self.assertEqual(slow.waiting(), ["purge_history"])
        d = service.stopService()
        self.assertEqual(slow.waiting(), ["purge_history"], "the store stays open for the call in flight")
        slow.answer("purge_history")
        slow.answer("close")
        self.successResultOf(d)
        self.assertEqual(harness.store.history_after(["broadcast"], 0), [])
        self.assertEqual(reactor.getDelayedCalls(), [])


class RetentionEndToEndTests(unittest.TestCase):
    """A real ``twistd chat`` forgets history past its bounds while it runs."""

    def test_twistd_purges_by_count_and_age(self) -> None:
        chat = ChatServer(options=[
            "--history-max-entries", "3", "--history-max-age", "1h",
            "--history-purge-interval", "0.2",
        ])
        chat.start()
        self.addCleanup(chat.stop)
        with chat.connect() as hans:
            hans.login("hans", "falcon")
            for i in range(6):
                hans.send(f"bcm news {i}")
                hans.read_until(f"#{i + 1} broadcast")
            deadline = time.monotonic() + 10
            while True:
                hans.send("read 1 Jan 2000 00:00:00")
                lines = hans.sync()
                shown = [line for line in lines if "news" in line]
                if len(shown) == 3 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.assertEqual([line.split(",")[0] for line in shown],
                             ["#4 broadcast", "#5 broadcast", "#6 broadcast"])
        chat.terminate()
        # An old message (two hours ago) put in the database goes at the next start.
        store = SQLiteStore(chat.data_dir / "chat.sqlite3")
        store.open()
        store.add_history("room:9", "yoda", "ancient", time.time() - 7200)
        store.close()
        chat.restart()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "forgot 1 message" not in chat.log():
            time.sleep(0.1)
        self.assertIn("History retention forgot 1 message(s)", chat.log())
        self.assertNotIn("Traceback", chat.log())
