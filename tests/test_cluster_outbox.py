"""The outbox: a turn's messages for a channel published as one, in the order they were given."""

from __future__ import annotations

import json

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from chatservice.cluster import outbox as outbox_module
from chatservice.cluster.outbox import Outbox


class OutboxTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.published: list[tuple[str, str, defer.Deferred[int]]] = []
        self.outbox = Outbox(self.publish, self.clock, 5.0)

    def publish(self, channel: str, text: str) -> defer.Deferred[int]:
        d: defer.Deferred[int] = defer.Deferred()
        self.published.append((channel, text, d))
        return d

    def sent(self) -> list[tuple[str, object]]:
        return [(channel, json.loads(text)) for channel, text, _ in self.published]

    def tearDown(self) -> None:
        for _, _, d in self.published:
            if not d.called:
                d.callback(1)  # (answered: its timeout is cancelled)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_turns_messages_for_a_channel_go_as_one_publish(self) -> None:
        first = self.outbox.put("chat:node:b", '{"k":"d","i":1}')
        second = self.outbox.put("chat:node:b", '{"k":"d","i":2}')
        self.assertEqual(self.published, [])  # not before the end of the turn
        self.clock.advance(0)
        self.assertEqual(self.sent(), [("chat:node:b", [{"k": "d", "i": 1}, {"k": "d", "i": 2}])])
        self.assertNoResult(first)
        self.published[0][2].callback(1)
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (1, 1))

    def test_one_message_goes_as_itself(self) -> None:
        d = self.outbox.put("chat:all", '{"k":"seen"}')
        self.clock.advance(0)
        self.assertEqual(self.sent(), [("chat:all", {"k": "seen"})])
        self.published[0][2].callback(0)
        self.assertEqual(self.successResultOf(d), 0)

    def test_the_order_of_the_calls_is_kept_across_channels(self) -> None:
        for channel, number in [("a", 1), ("a", 2), ("b", 3), ("a", 4), ("a", 5)]:
            self.outbox.put(channel, json.dumps({"i": number}))
        self.clock.advance(0)
        self.assertEqual(
            self.sent(),
            [("a", [{"i": 1}, {"i": 2}]), ("b", {"i": 3}), ("a", [{"i": 4}, {"i": 5}])],
        )

    def test_the_next_turn_publishes_again(self) -> None:
        self.outbox.put("a", '{"i":1}')
        self.clock.advance(0)
        self.outbox.put("a", '{"i":2}')
        self.clock.advance(0)
        self.assertEqual(self.sent(), [("a", {"i": 1}), ("a", {"i": 2})])

    def test_a_batch_stays_under_the_size_limit(self) -> None:
        self.patch(outbox_module, "MAX_BATCH_BYTES", 60)
        for number in range(5):
            self.outbox.put("a", json.dumps({"text": "x" * 5, "i": number}))  # 25 bytes each
        self.clock.advance(0)
        self.assertEqual([len(text) for _, text, _ in self.published], [53, 53, 25])
        self.assertEqual(
            [[m["i"] for m in (ms if isinstance(ms, list) else [ms])] for _, ms in self.sent()],
            [[0, 1], [2, 3], [4]],
        )

    def test_a_failed_publish_counts_nobody_for_each_message(self) -> None:
        logged: list[dict] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        messages = [self.outbox.put("a", '{"i":1}'), self.outbox.put("a", '{"i":2}')]
        self.clock.advance(0)
        self.published[0][2].errback(ConnectionError("gone"))
        self.assertEqual([self.successResultOf(d) for d in messages], [0, 0])
        warnings = [e for e in logged if e.get("log_level") == LogLevel.warn]
        self.assertEqual([(e["count"], e["channel"]) for e in warnings], [(2, "a")])

    def test_a_publish_that_raises_counts_nobody(self) -> None:
        def broken(channel: str, text: str) -> defer.Deferred[int]:
            raise RuntimeError("not connected")

        outbox = Outbox(broken, self.clock, 5.0)
        d = outbox.put("a", '{"i":1}')
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 0)

    def test_an_unanswered_publish_counts_nobody_after_the_reply_time(self) -> None:
        d = self.outbox.put("a", '{"i":1}')
        self.clock.advance(0)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.assertEqual(self.successResultOf(d), 0)

    def test_send_publishes_now_and_cancels_the_end_of_turn(self) -> None:
        d = self.outbox.put("a", '{"i":1}')
        self.outbox.send()
        self.assertEqual(self.sent(), [("a", {"i": 1})])
        self.published[0][2].callback(2)
        self.assertEqual(self.successResultOf(d), 2)
        self.clock.advance(0)
        self.assertEqual(len(self.published), 1)
