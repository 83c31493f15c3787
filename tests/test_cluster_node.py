"""A cluster node's handling of other nodes' messages: what it does with each."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor

from chatservice.cluster.link import RedisLink
from chatservice.cluster.node import ONLINE, ClusterNode, node_channel
from chatservice.cluster.outbox import messages_in
from tests.redis_support import RedisServer
from tests.test_redis_link import wait_until
from tests.test_state import START, StateTestCase


class ForwardingTests(StateTestCase):
    """An announcement of a kept direct message for a user who has moved to another node."""

    def setUp(self) -> None:
        super().setUp()
        self.node = ClusterNode("redis://127.0.0.1:1/0", "a", self.state, self.clock)
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.node._publish = lambda channel, message: self.published.append((channel, message))  # type: ignore[method-assign]

    def receive(self, message: dict[str, Any]) -> None:
        self.node.received(node_channel("a"), json.dumps(dict(message, n="b")))

    def test_a_user_here_is_not_forwarded(self) -> None:
        (hans,) = self.online("hans")
        self.store.add_offline("yoda", "hans", "kept", 1.0)
        self.receive({"k": "kept", "u": "hans"})
        self.assertEqual(self.published, [])
        self.assertEqual([event[0] for event in self.clients["hans"].take()], ["DirectMessage"])
        self.clock.advance(0)  # written: forgotten
        self.assertEqual(self.store.offline_messages("hans"), [])


class BatchReceivedTests(StateTestCase):
    """A turn's messages of another node, published together as one JSON array."""

    def setUp(self) -> None:
        super().setUp()
        self.node = ClusterNode("redis://127.0.0.1:1/0", "a", self.state, self.clock)

    def test_each_is_handled_in_order_and_a_bad_one_only_loses_itself(self) -> None:
        batch = [
            {"k": "blk", "a": "luke", "b": "hans", "on": True, "n": "b"},
            {"k": "room", "n": "b"},  # no room fields: fails alone
            7,  # not a message at all: fails alone
            {"k": "blk", "a": "luke", "b": "hans", "on": False, "n": "b"},  # after the block: unblocked
            {"k": "blk", "a": "leia", "b": "hans", "on": True, "n": "b"},
            {"k": "blk", "a": "yoda", "b": "hans", "on": True, "n": "a"},  # this node's own: ignored
        ]
        self.node.received("chat:all", json.dumps(batch))
        self.assertEqual(
            [self.state.has_blocked(name, "hans") for name in ("luke", "leia", "yoda")], [False, True, False]
        )
        self.assertEqual(len(self.flushLoggedErrors(KeyError, AttributeError)), 2)


class ForwardingThroughRedisTests(StateTestCase):
    """A kept direct message announced to node ``a`` for a user who is not there: ``a`` reads
    in ``chat:online`` (a real ``redis-server``) where the user is, and tells that node."""

    def setUp(self) -> None:
        super().setUp()
        self.redis = RedisServer().start()
        self.addCleanup(self.redis.cleanup)
        self.node = ClusterNode(self.redis.url, "a", self.state, reactor)
        self.heard: list[tuple[str, dict[str, Any]]] = []
        self.listener = RedisLink(
            self.redis.url, reactor, [node_channel("b"), node_channel("c")],
            self.hear,
        )

    def hear(self, channel: str, text: str) -> None:
        """One message, or a turn's messages for ``channel`` together (an array)."""
        self.heard.extend((channel, message) for message in messages_in(text))

    async def started(self) -> None:
        for service in (self.node, self.listener):
            service.startService()
            self.addCleanup(service.stopService)
        await wait_until(lambda: self.node.link.connected and self.listener.connected)

    async def online_on(self, username: str, node: str) -> None:
        """``chat:online`` says ``username`` is on ``node``."""
        await self.node.link.commands.hset(ONLINE, username, json.dumps({"n": node, "t": 1.0}))

    def receive(self, message: dict[str, Any]) -> None:
        self.node.received(node_channel("a"), json.dumps(dict(message, n="b")))

    async def heard_for(self, username: str) -> list[tuple[str, dict[str, Any]]]:
        """What the other nodes were told, once ``a`` has forwarded an announcement for
        ``username`` (who is on ``c``): everything ``a`` did before has been heard too."""
        await self.online_on(username, "c")
        self.receive({"k": "kept", "u": username})
        await wait_until(lambda: any(m["u"] == username for _, m in self.heard))
        return [(channel, m) for channel, m in self.heard if m["u"] != username]

    async def test_what_waits_in_the_outbox_is_published_before_the_node_stops(self) -> None:
        """Published in the turn the node stops in: sent before the link goes, and answered."""
        await self.started()
        sent = self.node._publish(node_channel("b"), {"k": "kept", "u": "leia", "n": "a"})
        await self.node.stopService()
        self.assertEqual(self.successResultOf(sent), 1)
        await wait_until(lambda: bool(self.heard))
        self.assertEqual(self.heard, [(node_channel("b"), {"k": "kept", "u": "leia", "n": "a"})])

    async def test_forwarded_to_the_node_chat_online_names(self) -> None:
        """a's copy says b (b's logout not heard yet); chat:online says c: c is told, once."""
        await self.started()
        self.node.received(
            "chat:all",
            json.dumps({"k": "on", "u": "hans", "i": {"n": "b", "t": 1.0, "h": "10.0.0.1"}, "n": "b"}),
        )
        await self.online_on("hans", "c")
        self.receive({"k": "dm", "u": "hans", "id": 7, "e": {"type": "message", "from": "yoda",
                                                              "message": "hi", "timestamp": 1}})
        self.receive({"k": "kept", "u": "hans"})
        self.receive({"k": "kept", "u": "hans", "f": 1})  # forwarded already: not again
        self.assertEqual(
            await self.heard_for("leia"), [(node_channel("c"), {"k": "kept", "u": "hans", "f": 1})] * 2
        )

    async def test_forwarded_to_a_login_this_node_has_not_heard_of(self) -> None:
        """a has no copy of hans (his login on c not heard yet): c is told all the same."""
        await self.started()
        await self.online_on("hans", "c")
        self.receive({"k": "kept", "u": "hans"})
        self.assertEqual(
            await self.heard_for("leia"), [(node_channel("c"), {"k": "kept", "u": "hans", "f": 1})]
        )

    async def test_online_nowhere_shown_at_the_login(self) -> None:
        """Logged in nowhere (or claimed here, the session not started): no one is told; the
        login, which claims the name after this reading, fetches it."""
        await self.started()
        self.store.add_offline("yoda", "hans", "kept for you", START)
        self.receive({"k": "kept", "u": "hans"})
        await self.online_on("luke", "a")
        self.receive({"k": "kept", "u": "luke"})
        self.assertEqual(await self.heard_for("leia"), [])
        self.login("hans")
        self.assertEqual(
            [event[:3] for event in self.clients["hans"].take()],
            [("DirectMessage", "yoda", "kept for you")],
        )
        self.clock.advance(0)
