"""The node's Redis link against a real ``redis-server`` on loopback: subscribe, publish, survive a restart."""

from __future__ import annotations

import importlib.util
from typing import Callable

import txredisapi
from twisted.internet import defer, reactor, task
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from chatservice.cluster.link import (
    RedisLink,
    RedisURLError,
    _CommandsFactory,
    _SubscriberFactory,
    parse_redis_url,
    reply_parser,
)
from tests.redis_support import RedisServer


async def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the reactor run until ``check()`` (or fail after ``timeout`` seconds)."""
    waited = 0.0
    while not check():
        if waited > timeout:
            raise AssertionError("timed out waiting")
        await task.deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


class ParseURLTests(unittest.TestCase):
    def test_urls(self) -> None:
        self.assertEqual(parse_redis_url("redis://127.0.0.1:6380/2"), ("127.0.0.1", 6380, 2, None))
        self.assertEqual(parse_redis_url("redis://:secret@host"), ("host", 6379, 0, "secret"))
        for bad in ("http://x", "redis://", "redis://h:port", "redis://h/x", "redis://h/-1"):
            self.assertRaises(RedisURLError, parse_redis_url, bad)


class ReplyParserTests(unittest.TestCase):
    """hiredis's parser when it is installed (``chatservice[cluster]``), txredisapi's own otherwise."""

    def test_the_installed_parser_reads_both_connections(self) -> None:
        expected = "hiredis" if importlib.util.find_spec("hiredis") else "python"
        self.assertEqual(reply_parser(), expected)
        fast = expected == "hiredis"
        self.assertEqual(issubclass(_SubscriberFactory.protocol, txredisapi.HiredisProtocol), fast)
        self.assertEqual(issubclass(_CommandsFactory.protocol, txredisapi.HiredisProtocol), fast)


class RedisLinkTests(unittest.TestCase):
    """Two links (two nodes) on one real Redis."""

    def setUp(self) -> None:
        self.redis = RedisServer().start()
        self.addCleanup(self.redis.cleanup)
        self.received: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}
        self.subscriptions = {"a": 0, "b": 0}
        self.links = {name: self.link(name) for name in ("a", "b")}

    def link(self, name: str) -> RedisLink:
        link = RedisLink(
            self.redis.url,
            reactor,
            ["chat:all", f"chat:node:{name}"],
            lambda channel, message: self.received[name].append((channel, message)),
        )

        def subscribed() -> None:
            self.subscriptions[name] += 1

        link.when_subscribed(subscribed)
        link.startService()
        self.addCleanup(link.stopService)
        return link

    async def connected(self) -> None:
        await wait_until(lambda: all(link.connected for link in self.links.values()))

    async def test_publish_to_all_and_to_one_node(self) -> None:
        await self.connected()
        self.assertEqual(await self.links["a"].publish("chat:all", "to everyone"), 2)
        self.assertEqual(await self.links["a"].publish("chat:node:b", "to b"), 1)
        # Each link reads on its own connection: wait for both (a's may come a turn after b's).
        await wait_until(lambda: len(self.received["b"]) == 2 and len(self.received["a"]) >= 1)
        self.assertEqual(self.received["a"], [("chat:all", "to everyone")])
        self.assertEqual(self.received["b"], [("chat:all", "to everyone"), ("chat:node:b", "to b")])

    async def test_both_connections_send_without_nagles_delay(self) -> None:
        """TCP_NODELAY on the command and the subscribed connection: a small PUBLISH
        leaves at once, not after the reply to the command before it."""
        await self.connected()
        link = self.links["a"]
        await link.publish("chat:all", "connected")
        (commands,) = link.commands._factory.pool
        self.assertTrue(commands.transport.getTcpNoDelay())
        self.assertTrue(link._subscriber.transport.getTcpNoDelay())

    async def test_commands(self) -> None:
        await self.connected()
        commands = self.links["a"].commands
        self.assertEqual(await commands.hsetnx("chat:test", "yoda", "a"), 1)
        self.assertEqual(await commands.hsetnx("chat:test", "yoda", "b"), 0)
        self.assertEqual(await commands.hget("chat:test", "yoda"), "a")

    async def test_redis_restart_resubscribes_and_says_so(self) -> None:
        await self.connected()
        self.assertEqual(self.subscriptions, {"a": 1, "b": 1})
        self.redis.stop()
        await wait_until(lambda: not any(link.connected for link in self.links.values()))
        self.redis.start()
        await wait_until(lambda: self.subscriptions == {"a": 2, "b": 2}, timeout=20)
        await self.connected()
        self.assertEqual(await self.links["b"].publish("chat:node:a", "after the restart"), 1)
        await wait_until(lambda: self.received["a"] == [("chat:node:a", "after the restart")])

    async def test_a_message_handler_that_fails_is_logged_and_the_link_goes_on(self) -> None:
        def handle(channel: str, message: str) -> None:
            if message == "boom":
                raise ZeroDivisionError(message)
            self.received["a"].append((channel, message))

        failing = RedisLink(self.redis.url, reactor, ["chat:all"], handle)
        failing.startService()
        self.addCleanup(failing.stopService)
        await wait_until(lambda: failing.connected)
        await self.connected()
        await self.links["a"].publish("chat:all", "boom")
        errors: list[object] = []
        await wait_until(lambda: bool(errors.extend(self.flushLoggedErrors(ZeroDivisionError)) or errors))
        await self.links["a"].publish("chat:all", "still there")
        await wait_until(lambda: self.received["a"].count(("chat:all", "still there")) == 2)

    async def test_losing_redis_again_while_joining_is_a_warning_and_a_bug_is_a_failure(self) -> None:
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        await self.connected()
        link = self.links["a"]
        link.when_subscribed(lambda: defer.fail(txredisapi.ConnectionError("Lost connection")))
        link.when_subscribed(lambda: defer.fail(ZeroDivisionError("a bug")))
        link.subscribed(link._subscriber)
        warned = [e for e in events if e.get("log_format", "").startswith("Redis went away while this node joined")]
        self.assertEqual(len(warned), 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.flushLoggedErrors(txredisapi.ConnectionError), [])


class TimedCommandsTests(unittest.TestCase):
    """A command Redis does not answer (txredisapi queues it while Redis is away) fails in time."""

    def test_an_unanswered_command_times_out_and_an_answered_one_passes(self) -> None:
        from chatservice.cluster.node import REPLY_SECONDS, TimedCommands

        class Commands:
            def __init__(self) -> None:
                self.waiting: list[defer.Deferred[object]] = []

            def get(self, key: str) -> defer.Deferred[object]:
                d: defer.Deferred[object] = defer.Deferred()
                self.waiting.append(d)
                return d

        class Link:
            commands = Commands()

        clock = task.Clock()
        commands = Link.commands
        timed = TimedCommands(Link, clock)
        answered = timed.get("chat:x")
        commands.waiting[0].callback("value")
        self.assertEqual(self.successResultOf(answered), "value")
        stuck = timed.get("chat:y")
        clock.advance(REPLY_SECONDS - 0.1)
        self.assertNoResult(stuck)
        clock.advance(0.2)
        self.failureResultOf(stuck, defer.TimeoutError)
        commands.waiting[1].callback("too late")  # ignored, no AlreadyCalledError
        self.assertEqual(clock.getDelayedCalls(), [])
