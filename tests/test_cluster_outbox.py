"""The outbox: a turn's messages for a channel published as one, in an order every node keeps."""

from __future__ import annotations

import json

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from chatservice.cluster import outbox as outbox_module
from chatservice.cluster.outbox import Outbox, messages_in

ALL = "chat:all"


class OutboxTests(unittest.TestCase):
    """An :class:`Outbox` on a clock, publishing through :meth:`publish` (answered by hand)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.published: list[tuple[str, str, defer.Deferred[int]]] = []
        self.outbox = Outbox(self.publish, self.clock, 5.0, ALL)

    def publish(self, channel: str, text: str) -> defer.Deferred[int]:
        d: defer.Deferred[int] = defer.Deferred()
        self.published.append((channel, text, d))
        return d

    def sent(self) -> list[tuple[str, object]]:
        """``(channel, payload)`` of each ``PUBLISH`` so far, the payload parsed."""
        return [(channel, json.loads(text)) for channel, text, _ in self.published]

    def numbers(self) -> list[tuple[str, list[int]]]:
        """``(channel, the "i" of each of its messages)`` of each ``PUBLISH`` so far."""
        return [(channel, [m["i"] for m in messages_in(text)]) for channel, text, _ in self.published]

    def put_all(self, *messages: tuple[str, int]) -> list[defer.Deferred[int]]:
        return [self.outbox.put(channel, json.dumps({"i": number})) for channel, number in messages]

    def tearDown(self) -> None:
        for _, _, d in self.published:
            if not d.called:
                d.callback(1)
        self.outbox.stop()  # (its timer for the replies goes with it)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_turns_messages_for_a_channel_go_as_one_publish(self) -> None:
        first, second = self.put_all(("chat:node:b", 1), ("chat:node:b", 2))
        self.assertEqual(self.published, [])  # not before the end of the turn
        self.clock.advance(0)
        self.assertEqual(self.sent(), [("chat:node:b", [{"i": 1}, {"i": 2}])])
        self.assertNoResult(first)
        self.published[0][2].callback(1)
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (1, 1))

    def test_one_message_goes_as_itself(self) -> None:
        (d,) = self.put_all((ALL, 7))
        self.clock.advance(0)
        self.assertEqual(self.sent(), [(ALL, {"i": 7})])
        self.published[0][2].callback(0)
        self.assertEqual(self.successResultOf(d), 0)

    def test_node_channels_are_grouped_between_shared_messages(self) -> None:
        """Three nodes: b's and c's messages alternate; each node's go together, and
        none crosses a ``chat:all`` message, which every node gets."""
        self.put_all(("b", 1), ("c", 2), ("b", 3), (ALL, 4), (ALL, 5), ("c", 6), ("b", 7), ("c", 8), (ALL, 9))
        self.clock.advance(0)
        self.assertEqual(
            self.numbers(),
            [("b", [1, 3]), ("c", [2]), (ALL, [4, 5]), ("c", [6, 8]), ("b", [7]), (ALL, [9])],
        )

    def test_what_each_node_receives_is_in_the_order_given(self) -> None:
        """Whatever the grouping, node b (``chat:all`` and ``b``) and node c (``chat:all``
        and ``c``) each get their messages in the order they were put."""
        given = [("b", 1), (ALL, 2), ("c", 3), ("b", 4), ("c", 5), (ALL, 6), ("b", 7), ("b", 8), (ALL, 9), ("c", 10)]
        self.put_all(*given)
        self.clock.advance(0)
        for node in ("b", "c"):
            got = [n for channel, numbers in self.numbers() if channel in (node, ALL) for n in numbers]
            self.assertEqual(got, [n for channel, n in given if channel in (node, ALL)])

    def test_the_next_turn_publishes_again(self) -> None:
        self.put_all(("a", 1))
        self.clock.advance(0)
        self.put_all(("a", 2))
        self.clock.advance(0)
        self.assertEqual(self.numbers(), [("a", [1]), ("a", [2])])

    def test_a_batch_stays_under_the_size_limit(self) -> None:
        self.patch(outbox_module, "MAX_BATCH_CHARACTERS", 53)
        for number in range(5):
            self.outbox.put("a", json.dumps({"text": "x" * 5, "i": number}))  # 25 characters each
        self.outbox.put("a", json.dumps({"text": "x" * 80, "i": 5}))  # longer than the limit: alone
        self.clock.advance(0)
        self.assertEqual([len(text) for _, text, _ in self.published], [53, 53, 25, 100])
        self.assertEqual(self.numbers(), [("a", [0, 1]), ("a", [2, 3]), ("a", [4]), ("a", [5])])

    def test_a_failed_publish_counts_nobody_for_each_message(self) -> None:
        logged: list[dict] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        messages = self.put_all(("a", 1), ("a", 2))
        self.clock.advance(0)
        self.published[0][2].errback(ConnectionError("gone"))
        self.assertEqual([self.successResultOf(d) for d in messages], [0, 0])
        warnings = [e for e in logged if e.get("log_level") == LogLevel.warn]
        self.assertEqual([(e["count"], e["channel"]) for e in warnings], [(2, "a")])

    def test_a_publish_that_raises_counts_nobody_and_is_logged(self) -> None:
        def broken(channel: str, text: str) -> defer.Deferred[int]:
            raise RuntimeError("a bug")

        outbox = Outbox(broken, self.clock, 5.0, ALL)
        d = outbox.put("a", '{"i":1}')
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_an_unanswered_publish_counts_nobody_after_the_reply_time(self) -> None:
        (d,) = self.put_all(("a", 1))
        self.clock.advance(0)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.assertEqual(self.successResultOf(d), 0)

    def test_one_timer_times_out_every_publish_when_each_is_due(self) -> None:
        """Publishes in three turns: one timer, and each counts nobody at its own time."""
        logged: list[dict] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        first = self.put_all(("a", 1))[0]
        self.clock.advance(0)
        self.clock.advance(1.0)
        second = self.put_all(("a", 2))[0]
        self.clock.advance(0)
        self.clock.advance(1.0)
        third = self.put_all(("a", 3))[0]
        self.clock.advance(0)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.published[1][2].callback(1)  # the second is answered in time
        self.clock.advance(3.0)  # 5 s after the first
        self.assertEqual(self.successResultOf(first), 0)
        self.assertEqual(self.successResultOf(second), 1)
        self.assertNoResult(third)
        self.clock.advance(1.9)
        self.assertNoResult(third)
        self.clock.advance(0.1)  # 5 s after the third
        self.assertEqual(self.successResultOf(third), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])  # nothing under way: no timer
        warnings = [e["log_format"].format(**e) for e in logged if e.get("log_level") == LogLevel.warn]
        self.assertEqual(warnings, ["Publishing 1 message(s) to a failed: not answered within 5.0 s"] * 2)

    def test_a_shorter_reply_time_brings_the_timer_forward(self) -> None:
        first = self.put_all(("a", 1))[0]
        self.clock.advance(0)
        self.outbox.reply_seconds = 0.5
        second = self.put_all(("a", 2))[0]
        self.clock.advance(0)
        self.clock.advance(0.5)
        self.assertEqual(self.successResultOf(second), 0)
        self.assertNoResult(first)
        self.clock.advance(4.5)
        self.assertEqual(self.successResultOf(first), 0)

    def test_a_late_answer_after_the_timeout_changes_nothing(self) -> None:
        (d,) = self.put_all(("a", 1))
        self.clock.advance(0)
        self.clock.advance(5.0)
        self.assertEqual(self.successResultOf(d), 0)
        self.assertTrue(self.published[0][2].called)  # given up on: a late reply goes nowhere

    def test_stop_publishes_what_waits_and_leaves_no_timer(self) -> None:
        (d,) = self.put_all(("a", 1))
        self.outbox.stop()
        self.assertEqual(self.numbers(), [("a", [1])])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.published[0][2].callback(1)
        self.assertEqual(self.successResultOf(d), 1)

    def test_a_cancelled_message_does_not_keep_the_others_from_their_answer(self) -> None:
        first, second = self.put_all(("a", 1), ("a", 2))
        self.clock.advance(0)
        first.cancel()
        self.failureResultOf(first, defer.CancelledError)
        self.published[0][2].callback(1)
        self.assertEqual(self.successResultOf(second), 1)

    def test_a_message_put_by_an_answer_goes_at_the_end_of_that_turn(self) -> None:
        (first,) = self.put_all(("a", 1))
        follow_up: list[defer.Deferred[int]] = []
        first.addCallback(lambda _: follow_up.extend(self.put_all(("a", 2))))
        self.clock.advance(0)
        self.published[0][2].callback(1)
        self.assertEqual(self.numbers(), [("a", [1])])
        self.clock.advance(0)
        self.assertEqual(self.numbers(), [("a", [1]), ("a", [2])])
        self.published[1][2].callback(1)
        self.assertEqual(self.successResultOf(follow_up[0]), 1)

    def test_send_publishes_now_and_cancels_the_end_of_turn(self) -> None:
        (d,) = self.put_all(("a", 1))
        self.outbox.send()
        self.assertEqual(self.numbers(), [("a", [1])])
        self.published[0][2].callback(2)
        self.assertEqual(self.successResultOf(d), 2)
        self.clock.advance(0)
        self.assertEqual(len(self.published), 1)


class MessagesInTests(unittest.TestCase):
    def test_one_message_or_an_array(self) -> None:
        self.assertEqual(messages_in('{"k":"d"}'), [{"k": "d"}])
        self.assertEqual(messages_in('[{"k":"d"},{"k":"on"}]'), [{"k": "d"}, {"k": "on"}])
