"""The metrics a server counts, its live gauges, the store latency, the reactor lag and
the readiness checks, on a whole server over StringTransports and a ``Clock``.

Every figure is read as a scraper reads it: the registry rendered by
``prometheus_client.generate_latest`` and parsed back with its parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from chatservice.metrics import ChatMetrics
from chatservice.metrics.counters import Buckets, reason
from chatservice.metrics.health import Readiness
from chatservice.metrics.lag import ReactorLag
from chatservice.metrics.site import metrics_site
from chatservice.metrics.timedstore import TimedStore
from chatservice.auth.errors import AddressLocked, WrongPassword
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore
from tests.test_protocol import HarnessTestCase


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``registry``, as a scraper parses it: ``(name, labels) -> value``."""
    text = generate_latest(registry).decode("utf-8")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """One sample of :func:`scrape`'s result (``0`` when absent, as a counter not yet seen)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class CountedTests(HarnessTestCase):
    """Logins, lock-outs, commands, messages, deliveries and mailboxes move as the server works."""

    harness_options = {"max_failures": 2}

    def samples(self) -> dict[Any, float]:
        return scrape(self.harness.chat.metrics.registry)

    def test_logins_and_lockouts(self) -> None:
        (yoda,) = self.online("yoda")
        bad = self.connect()
        bad.send("hans")
        bad.send("wrong")
        self.connect().send("nobody")
        samples = self.samples()
        self.assertEqual(value(samples, "chat_logins_total", outcome="ok"), 1)
        self.assertEqual(value(samples, "chat_logins_total", outcome="wrong_password"), 1)
        self.assertEqual(value(samples, "chat_logins_total", outcome="unknown_user"), 1)
        self.assertEqual(value(samples, "chat_lockouts_total", kind="user"), 0)
        bad.send("wrong again")  # the password prompt again: the second failure locks
        samples = self.samples()
        # Two failures from one address: it is locked too.
        for kind in ("user", "address"):
            self.assertEqual(value(samples, "chat_lockouts_total", kind=kind), 1)
            self.assertEqual(value(samples, "chat_locked_out", kind=kind), 1)
        self.harness.clock.advance(60)  # the locks end
        samples = self.samples()
        self.assertEqual(value(samples, "chat_locked_out", kind="user"), 0)
        self.assertEqual(value(samples, "chat_lockouts_total", kind="user"), 1)

    def test_commands_messages_and_deliveries(self) -> None:
        yoda, hans, luke = self.online("yoda", "hans", "luke")
        before = self.samples()
        yoda.send("broadcast hello all")
        yoda.send("broadcast again")
        hans.send("message luke psst")
        luke.send("whoelse")
        samples = self.samples()

        def moved(name: str, **labels: str) -> float:
            return value(samples, name, **labels) - value(before, name, **labels)

        self.assertEqual(moved("chat_commands_total", command="broadcast"), 2)
        self.assertEqual(moved("chat_commands_total", command="message"), 1)
        self.assertEqual(moved("chat_commands_total", command="whoelse"), 1)
        self.assertEqual(moved("chat_messages_total", kind="broadcast"), 2)
        self.assertEqual(moved("chat_messages_total", kind="direct"), 1)
        self.assertEqual(moved("chat_deliveries_total", rule="message", outcome="delivered"), 4)
        self.assertEqual(moved("chat_deliveries_total", rule="direct", outcome="delivered"), 1)
        # Presence: each login told the users already online.
        self.assertEqual(value(samples, "chat_deliveries_total", rule="presence", outcome="delivered"), 3)

    def test_blocked_and_room_deliveries(self) -> None:
        yoda, hans, luke = self.online("yoda", "hans", "luke")
        hans.send("block yoda")
        yoda.send("broadcast hello")
        yoda.send("room create luke")
        yoda.send("room send 1 in the room")
        samples = self.samples()
        self.assertEqual(value(samples, "chat_deliveries_total", rule="message", outcome="skipped"), 1)
        self.assertEqual(value(samples, "chat_deliveries_total", rule="message", outcome="delivered"), 2)
        self.assertEqual(value(samples, "chat_messages_total", kind="room"), 1)

    def test_offline_mailbox_sizes(self) -> None:
        (yoda,) = self.online("yoda")
        for i in range(3):
            yoda.send(f"message hans kept {i}")
        samples = self.samples()
        self.assertEqual(value(samples, "chat_deliveries_total", rule="direct", outcome="stored"), 3)
        self.assertEqual(value(samples, "chat_offline_mailbox_size_count"), 3)
        self.assertEqual(value(samples, "chat_offline_mailbox_size_sum"), 1 + 2 + 3)
        self.assertEqual(value(samples, "chat_offline_mailbox_size_bucket", le="2.0"), 2)

    def test_store_calls_are_timed(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("broadcast kept")
        samples = self.samples()
        self.assertEqual(value(samples, "chat_store_call_seconds_count", call="add_history"), 1)
        # A local store answers at once: no time passes on the test clock.
        self.assertEqual(value(samples, "chat_store_call_seconds_sum", call="add_history"), 0)


class SlowReaderCountTests(HarnessTestCase):
    """Optional events dropped for a slow reader, and its disconnection, are counted."""

    harness_options = {"output_soft_limit": 1000, "output_hard_limit": 5000}

    def test_drops_then_disconnect(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        hans.connection.writer.pauseProducing()
        for _ in range(8):
            yoda.send("broadcast " + "x" * 200)
        dropped = hans.connection.writer._dropped
        self.assertGreaterEqual(dropped, 1)
        samples = scrape(self.harness.chat.metrics.registry)
        self.assertEqual(value(samples, "chat_slow_reader_drops_total"), dropped)
        self.assertEqual(value(samples, "chat_slow_reader_disconnects_total"), 0)
        backlog = hans.connection.writer.backlog
        self.assertGreater(backlog, 1000)
        self.assertEqual(value(samples, "chat_output_backlog_bytes"), backlog)
        self.assertEqual(value(samples, "chat_output_backlog_max_bytes"), backlog)
        for _ in range(30):
            hans.send("help")  # replies are not optional: on to the hard limit
        self.assertTrue(hans.connection.writer.closed)
        samples = scrape(self.harness.chat.metrics.registry)
        self.assertEqual(value(samples, "chat_slow_reader_disconnects_total"), 1)
        self.assertEqual(value(samples, "chat_connections", transport="other", state="closing"), 1)
        self.harness.clock.advance(0)  # the logout after the abort
        hans.drop()


class LiveGaugeTests(HarnessTestCase):
    """Connections by state, users online and readiness are read at each scrape."""

    def test_connections_by_state(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        waiting = self.connect()
        samples = scrape(self.harness.chat.metrics.registry)
        self.assertEqual(value(samples, "chat_connections", transport="other", state="chat"), 2)
        self.assertEqual(value(samples, "chat_connections", transport="other", state="login"), 1)
        self.assertEqual(value(samples, "chat_connections", transport="tcp", state="chat"), 0)
        self.assertEqual(value(samples, "chat_users_online", node="this"), 2)
        self.assertEqual(value(samples, "chat_serving"), 0)  # the harness's service is not started
        hans.send("logout")
        hans.drop()
        waiting.drop()
        samples = scrape(self.harness.chat.metrics.registry)
        self.assertEqual(value(samples, "chat_connections", transport="other", state="chat"), 1)
        self.assertEqual(value(samples, "chat_connections", transport="other", state="login"), 0)
        self.assertEqual(value(samples, "chat_users_online", node="this"), 1)

    def test_registries_are_per_server(self) -> None:
        """Two servers in one process count apart (no global registry)."""
        (yoda,) = self.online("yoda")
        other = ChatMetrics()
        self.assertEqual(value(scrape(other.registry), "chat_logins_total", outcome="ok"), 0)
        self.assertEqual(
            value(scrape(self.harness.chat.metrics.registry), "chat_logins_total", outcome="ok"), 1
        )


class DocumentedTests(HarnessTestCase):
    """docs/operating.rst names every metric the server exposes, and is valid reStructuredText."""

    def test_every_metric_documented(self) -> None:
        import docutils.core

        text = (Path(__file__).parent.parent / "docs" / "operating.rst").read_text(encoding="utf-8")
        docutils.core.publish_string(
            text, writer_name="null", settings_overrides={"halt_level": 2, "report_level": 5}
        )
        families = text_string_to_metric_families(
            generate_latest(self.harness.chat.metrics.registry).decode("utf-8")
        )
        names = {
            family.name for family in families
            if family.name.startswith("chat_") and not family.name.endswith("_created")
        }
        self.assertGreater(len(names), 15)
        for name in names:
            self.assertIn(f"``{name}", text, name)


class LoginReasonTests(unittest.TestCase):
    def test_reason_labels(self) -> None:
        self.assertEqual(reason(WrongPassword()), "wrong_password")
        self.assertEqual(reason(AddressLocked(3)), "address_locked")

    def test_failure_counted_by_reason(self) -> None:
        metrics = ChatMetrics()
        metrics.login_failed(AddressLocked(60, just_locked=True))
        samples = scrape(metrics.registry)
        self.assertEqual(value(samples, "chat_logins_total", outcome="address_locked"), 1)


class BucketsTests(unittest.TestCase):
    """The histogram counts as Prometheus does: ``le`` is inclusive."""

    def test_bounds_inclusive(self) -> None:
        buckets = Buckets((1, 2))
        for observation in (0, 1, 1.5, 2, 2.5):
            buckets.observe(observation)
        self.assertEqual(buckets.cumulative(), [("1.0", 2), ("2.0", 4), ("+Inf", 5)])
        self.assertEqual((buckets.count(), buckets.total), (5, 7.0))


class ManualStore:
    """A store whose ``highest_room_id`` answers when the test says (or never)."""

    def __init__(self) -> None:
        self.waiting: list[defer.Deferred[int]] = []

    def highest_room_id(self) -> defer.Deferred[int]:
        d: defer.Deferred[int] = defer.Deferred()
        self.waiting.append(d)
        return d


class TimedStoreTests(unittest.TestCase):
    """Each store call's time, from the call to its answer, on the clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.metrics = ChatMetrics()

    def observed(self, call: str) -> tuple[float, float]:
        samples = scrape(self.metrics.registry)
        return (
            value(samples, "chat_store_call_seconds_sum", call=call),
            value(samples, "chat_store_call_seconds_count", call=call),
        )

    def test_answer_later(self) -> None:
        slow = ManualStore()
        store = TimedStore(slow, self.metrics.store_call, self.clock)
        d = store.highest_room_id()
        self.clock.advance(2.5)
        self.assertEqual(self.observed("highest_room_id"), (0, 0))
        slow.waiting[0].callback(7)
        self.assertEqual(self.successResultOf(d), 7)
        self.assertEqual(self.observed("highest_room_id"), (2.5, 1))

    def test_failure_timed_too(self) -> None:
        slow = ManualStore()
        store = TimedStore(slow, self.metrics.store_call, self.clock)
        d = store.highest_room_id()
        self.clock.advance(1)
        slow.waiting[0].errback(RuntimeError("down"))
        self.failureResultOf(d, RuntimeError)
        self.assertEqual(self.observed("highest_room_id"), (1, 1))

    def test_local_store_and_other_attributes(self) -> None:
        memory = MemoryStore()
        store = TimedStore(LocalStore(memory), self.metrics.store_call, self.clock)
        self.assertEqual(self.successResultOf(store.highest_room_id()), 0)
        self.assertEqual(self.observed("highest_room_id"), (0, 1))
        self.assertIs(store.local, memory)  # not an interface call: the wrapped store's
        self.assertIsNone(getattr(store, "next_room_id", None))


class ReactorLagTests(unittest.TestCase):
    """The looping call observes how late it runs, counted from when it was due."""

    def test_lateness(self) -> None:
        clock = Clock()
        histogram = Buckets((0.1, 0.5, 1))
        lag = ReactorLag(clock, histogram, interval=1.0)
        lag.startService()
        clock.advance(1.0)  # on time
        clock.advance(1.3)  # due at 2, runs at 2.3
        clock.advance(2.5)  # due at 3 and 4 (skipped), runs at 4.8: late by 0.8 from 4
        lag.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertAlmostEqual(histogram.total, 0.3 + 0.8)
        self.assertEqual(histogram.counts, [1, 1, 1, 0])  # 0, 0.3, 0.8: one each up to 0.1, 0.5, 1
        self.assertEqual(
            histogram.cumulative(), [("0.1", 1), ("0.5", 2), ("1.0", 3), ("+Inf", 3)]
        )


class FakeLink:
    def __init__(self, connected: bool) -> None:
        self.connected = connected


class FakeCluster:
    """What readiness asks of a cluster node: its Redis link's state."""

    def __init__(self, connected: bool) -> None:
        self.link = FakeLink(connected)


class ReadinessTests(unittest.TestCase):
    """``/readyz``: the state, the store and the cluster link, each named."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.serving = True
        self.store: Any = LocalStore(MemoryStore())
        self.cluster: Any = None

    def render(self, path: bytes) -> tuple[int, str]:
        readiness = Readiness(lambda: self.serving, self.store, self.clock, self.cluster)
        site = metrics_site(ChatMetrics().registry, readiness)
        request = DummyRequest([path])
        resource = site.getResourceFor(request)
        body = resource.render(request)
        if isinstance(body, bytes):
            request.write(body)
            request.finish()
        return request.responseCode or 200, b"".join(request.written).decode("utf-8")

    def test_ready(self) -> None:
        self.assertEqual(
            self.render(b"readyz"), (200, "ready\nstate: ok (loaded)\nstore: ok (answers)\n")
        )
        self.assertEqual(self.render(b"healthz"), (200, "ok\n"))

    def test_not_loaded(self) -> None:
        self.serving = False
        code, body = self.render(b"readyz")
        self.assertEqual(code, 503)
        self.assertIn("state: FAIL (not loaded yet)", body)

    def test_store_silent(self) -> None:
        self.store = ManualStore()
        readiness = Readiness(lambda: True, self.store, self.clock, timeout=5)
        checks = readiness.check()
        self.assertNoResult(checks)
        self.clock.advance(5)
        self.assertIn(("store", False, "no answer within 5 s"), self.successResultOf(checks))
        self.store.waiting[0].callback(1)  # too late: changes nothing
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_store_fails(self) -> None:
        self.store = ManualStore()
        readiness = Readiness(lambda: True, self.store, self.clock)
        checks = readiness.check()
        self.store.waiting[0].errback(RuntimeError("connection refused"))
        self.assertIn(("store", False, "failed: connection refused"), self.successResultOf(checks))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_redis_link(self) -> None:
        self.cluster = FakeCluster(connected=False)
        code, body = self.render(b"readyz")
        self.assertEqual(code, 503)
        self.assertIn("redis: FAIL (not connected)", body)
        self.cluster = FakeCluster(connected=True)
        code, body = self.render(b"readyz")
        self.assertEqual(code, 200)
        self.assertIn("redis: ok (connected)", body)

    def test_metrics_page_content_types(self) -> None:
        metrics = ChatMetrics()
        site = metrics_site(metrics.registry, Readiness(lambda: True, self.store, self.clock))
        request = DummyRequest([b"metrics"])
        body = site.getResourceFor(request).render(request)
        self.assertTrue(request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        names = {family.name for family in text_string_to_metric_families(body.decode("utf-8"))}
        self.assertIn("chat_reactor_lag_seconds", names)
        request = DummyRequest([b"metrics"])
        request.requestHeaders.setRawHeaders(b"accept", [b"application/openmetrics-text"])
        body = site.getResourceFor(request).render(request)
        self.assertTrue(body.endswith(b"# EOF\n"))
