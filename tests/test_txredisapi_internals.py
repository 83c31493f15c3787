"""The ``txredisapi`` internals :mod:`chatservice.cluster.publisher` relies on, against a real Redis.

:func:`~chatservice.cluster.publisher.publish_now` writes ``PUBLISH`` itself on
the command connection and takes its reply from the connection's reply queue.
That needs ``RedisFactory.pool``, ``BaseRedisProtocol.connected``,
``pipelining``, ``inMulti``, ``replyQueue`` and ``transport`` to mean what
they mean in txredisapi 1.4-1.6.  If a release renames or changes one, the
first test here fails and says which, instead of replies going to the wrong
command.  The others check what the node counts on: replies in order with
txredisapi's own commands, a cancelled publish that does not shift them, a
lost connection that fails what waits, and the subscriber handing each
message on as it was published.
"""

from __future__ import annotations

import txredisapi
from twisted.internet import defer, reactor, tcp
from twisted.python.failure import Failure
from twisted.trial import unittest

from chatservice.cluster.link import RedisLink, reply_parser
from chatservice.cluster.publisher import _answered, command, publish_now, ready_connection
from tests.redis_support import RedisServer
from tests.test_redis_link import wait_until


class PublisherTests(unittest.TestCase):
    """A link on a real Redis, its command connection used by txredisapi and by :func:`publish_now`."""

    def setUp(self) -> None:
        self.redis = RedisServer().start()
        self.addCleanup(self.redis.cleanup)
        self.received: list[tuple[str, str]] = []
        self.link = RedisLink(self.redis.url, reactor, ["chat:all"], lambda c, m: self.received.append((c, m)))
        self.link.startService()
        self.addCleanup(self.link.stopService)

    async def ready(self) -> object:
        await wait_until(lambda: self.link.connected and ready_connection(self.link._commands_factory) is not None)
        return ready_connection(self.link._commands_factory)

    async def operator(self) -> txredisapi.BaseRedisProtocol:
        connection = await txredisapi.Connection("127.0.0.1", self.redis.port, reconnect=False)
        self.addCleanup(connection.disconnect)
        return connection

    async def test_the_fields_exist_with_the_meaning_relied_on(self) -> None:
        factory = self.link._commands_factory
        self.assertIsInstance(factory, txredisapi.RedisFactory)
        connection = await self.ready()
        self.assertEqual(factory.pool, [connection])
        self.assertIn(connection.connected, (1, True))
        self.assertFalse(connection.pipelining)
        self.assertFalse(connection.inMulti)
        self.assertIsInstance(connection.replyQueue, defer.DeferredQueue)
        self.assertIsInstance(connection.transport, tcp.Client)
        # A reply is put on the queue, in order: a command's Deferred takes the next one.
        waiting = connection.replyQueue.get()
        connection.transport.write(command(b"PING"))
        self.assertEqual(await waiting, "PONG")

    async def test_replies_stay_in_order_with_txredisapis_commands(self) -> None:
        connection = await self.ready()
        commands = self.link.commands
        results = [
            commands.set("chat:test", "v"),
            publish_now(connection, "chat:all", "one"),
            commands.get("chat:test"),
            publish_now(connection, "chat:node:nobody", "two"),
            commands.incr("chat:count"),
        ]
        self.assertEqual(await defer.gatherResults(results), ["OK", 1, "v", 0, 1])
        await wait_until(lambda: self.received == [("chat:all", "one")])

    async def test_a_cancelled_publish_leaves_the_replies_in_order(self) -> None:
        """Redis holds the PUBLISH; the caller gives up on it; the next command still gets its own reply."""
        connection = await self.ready()
        operator = await self.operator()
        await operator.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
        given_up = publish_now(connection, "chat:all", "late")
        given_up.cancel()
        self.failureResultOf(given_up, defer.CancelledError)
        await operator.execute_command("CLIENT", "UNPAUSE")
        await self.link.commands.set("chat:test", "mine")
        self.assertEqual(await self.link.commands.get("chat:test"), "mine")
        self.assertEqual(await publish_now(connection, "chat:all", "next"), 1)
        await wait_until(lambda: self.received == [("chat:all", "late"), ("chat:all", "next")])

    async def test_a_lost_connection_fails_what_waits(self) -> None:
        connection = await self.ready()
        operator = await self.operator()
        await operator.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
        waiting = publish_now(connection, "chat:all", "held")
        connection.transport.abortConnection()
        with self.assertRaises(txredisapi.ConnectionError):
            await waiting
        await operator.execute_command("CLIENT", "UNPAUSE")

    async def test_publish_before_the_connection_is_ready_waits_for_it(self) -> None:
        """Through txredisapi while no connection is ready (its queue waits for one)."""
        self.assertIsNone(ready_connection(self.link._commands_factory))
        sent = self.link.publish("chat:all", "early")
        await self.ready()
        self.assertEqual(await sent, 1)

    async def test_messages_arrive_as_published_even_when_they_look_like_numbers(self) -> None:
        """txredisapi would read ``1.50`` as the float 1.5; the subscriber hands on the text
        (with hiredis's parser, which hands it the whole reply: the nodes' messages are
        JSON objects or arrays, which no parser takes for numbers)."""
        if reply_parser() != "hiredis":
            raise unittest.SkipTest("txredisapi's own parser converts each part before")
        await self.ready()
        for text in ("1.50", "007", '{"k":"d"}'):
            self.assertEqual(await self.link.publish("chat:all", text), 1)
        await wait_until(lambda: len(self.received) == 3)
        self.assertEqual(self.received, [("chat:all", "1.50"), ("chat:all", "007"), ("chat:all", '{"k":"d"}')])


class AnsweredTests(unittest.TestCase):
    """How a reply from the queue is handed on (:func:`~chatservice.cluster.publisher._answered`)."""

    def test_an_error_reply_fails_the_publish(self) -> None:
        d: defer.Deferred[int] = defer.Deferred()
        _answered(txredisapi.ResponseError("ERR no"), d)
        self.failureResultOf(d, txredisapi.ResponseError)

    def test_a_failure_fails_it_and_a_count_is_its_result(self) -> None:
        failed: defer.Deferred[int] = defer.Deferred()
        _answered(Failure(ConnectionError("gone")), failed)
        self.failureResultOf(failed, ConnectionError)
        counted: defer.Deferred[int] = defer.Deferred()
        _answered(2, counted)
        self.assertEqual(self.successResultOf(counted), 2)

    def test_a_reply_after_the_caller_gave_up_goes_nowhere(self) -> None:
        d: defer.Deferred[int] = defer.Deferred()
        d.cancel()
        _answered(1, d)
        self.failureResultOf(d, defer.CancelledError)

    def test_command_is_resp(self) -> None:
        self.assertEqual(command(b"PUBLISH", b"c", b"hi"), b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\nhi\r\n")
