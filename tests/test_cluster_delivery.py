"""Fan-outs across cluster nodes, through a real ``redis-server``: who got them, and what the sender is told.

Two :class:`~chatservice.cluster.node.ClusterNode` objects on one Redis and
one shared store (as two nodes on one PostgreSQL database), each with its
chat state and recording clients.  A fan-out goes on each target node's own
channel, and the sender's report waits for ``PUBLISH``'s receiver counts: a
node that is not subscribed at that moment (away from Redis, re-subscribing
after a restart) has its recipients reported ``unreached``, never counted as
delivered.
"""

from __future__ import annotations

from typing import Any

import txredisapi

from chatservice.cluster.node import ClusterNode
from chatservice.cluster.outbox import messages_in
from chatservice.delivery import Delivery
from chatservice.metrics.counters import DELIVERY_OUTCOMES
from tests.cluster_support import NodesTestCase
from tests.test_redis_link import wait_until
from tests.test_state import ACCOUNTS, RecordingClient


class ClusterFanOutTests(NodesTestCase):
    """Nodes ``a`` and ``b``; the senders are on ``a``."""

    def setUp(self) -> None:
        super().setUp()
        self.clients: dict[str, RecordingClient] = {}
        for name in ("a", "b"):
            self.add_node(name)

    async def started(self) -> None:  # type: ignore[override]
        await super().started(ACCOUNTS)

    async def online(self, node: str, *usernames: str) -> list[Any]:
        """Log ``usernames`` in on ``node``, once the other node knows them."""
        here, there = self.nodes[node], self.nodes["b" if node == "a" else "a"]
        sessions = []
        for username in usernames:
            client = self.clients[username] = RecordingClient()
            sessions.append(await here.state.attach(username, client))
            await wait_until(lambda u=username: there.online(u) is not None)
        return sessions

    @staticmethod
    def unreached(node: ClusterNode) -> int:
        """How many broadcast and room recipients ``node``'s metrics count as unreached."""
        return node.state.metrics.deliveries[Delivery.MESSAGE][DELIVERY_OUTCOMES.index("unreached")]

    def received(self, username: str) -> list[tuple[Any, ...]]:
        return self.clients[username].take()

    async def test_a_node_away_from_redis_is_reported_unreached_not_delivered(self) -> None:
        """The known gap: the other node is not subscribed when the broadcast goes out."""
        await self.started()
        a, b = self.nodes["a"], self.nodes["b"]
        yoda, _ = await self.online("a", "yoda", "leia")
        await self.online("b", "hans", "luke")
        room = await yoda.room_create(("hans",))
        await wait_until(lambda: b.state.rooms.find(room.room_id) is not None)
        self.received("hans")

        await b.link.stopService()  # as while it re-subscribes after a Redis restart
        await wait_until(lambda: not b.link.connected)
        self.assertIsNotNone(a.online("hans"), "a still holds b's users")
        self.assertEqual(self.unreached(a), 0)

        sent = await yoda.broadcast("anybody there")
        self.assertEqual((sent.delivered, sent.skipped, sent.unreached), (1, 0, 2))
        posted = await yoda.room_send(room.room_id, "hans?")
        self.assertEqual((posted.delivered, posted.unreached), (0, 1))
        self.assertEqual(self.unreached(a), 3)

        b.link.startService()
        await wait_until(lambda: b.link.connected)
        sent = await yoda.broadcast("back again")
        self.assertEqual((sent.delivered, sent.unreached), (3, 0))
        await wait_until(lambda: bool(self.clients["hans"].delivered))
        # Not there while b was away (it is in the history for read); once after.
        self.assertEqual(
            [(e[0], e[2]) for e in self.received("hans")], [("BroadcastMessage", "back again")]
        )
        self.assertEqual([e[2] for e in self.received("leia")], ["anybody there", "back again"])

    async def test_a_publish_redis_does_not_answer_in_time_is_unreached(self) -> None:
        """Redis holds the ``PUBLISH`` (``CLIENT PAUSE ... WRITE``) past the reply timeout."""
        await self.started()
        yoda, _ = await self.online("a", "yoda", "leia")
        await self.online("b", "hans")
        operator = await txredisapi.Connection("127.0.0.1", self.redis.port, reconnect=False)
        self.addCleanup(operator.disconnect)
        self.patch(self.nodes["a"].outbox, "reply_seconds", 0.3)
        await operator.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
        sent = await yoda.broadcast("held up")
        self.assertEqual((sent.delivered, sent.unreached), (1, 1))
        self.assertEqual(self.unreached(self.nodes["a"]), 1)
        # Reported unreached (it may still arrive once Redis runs it: never counted
        # as delivered when that is not known).
        await operator.execute_command("CLIENT", "UNPAUSE")
        sent = await yoda.broadcast("answered")
        self.assertEqual((sent.delivered, sent.unreached), (2, 0))

    async def test_the_other_node_applies_the_rules_and_delivers_once(self) -> None:
        """Blocks and busy users on the other node, counted as its copy says; nobody gets it twice."""
        await self.started()
        a, b = self.nodes["a"], self.nodes["b"]
        (yoda,) = await self.online("a", "yoda")
        hans, luke, _ = await self.online("b", "hans", "luke", "leia")
        hans.busy("gone fishing")
        await luke.block("yoda")
        await wait_until(lambda: a.state.has_blocked("luke", "yoda"))
        await wait_until(lambda: a.online("hans").auto_reply == "gone fishing")

        sent = await yoda.broadcast("first")
        self.assertEqual(
            (sent.delivered, sent.skipped, sent.unreached, sent.auto_replies),
            (1, 1, 0, (("hans", "gone fishing"),)),
        )
        sent = await yoda.broadcast("second")
        self.assertEqual((sent.delivered, sent.auto_replies), (1, ()))  # once per busy period
        await wait_until(lambda: len(self.clients["leia"].delivered) >= 2)
        self.assertEqual([e[2] for e in self.received("leia")], ["first", "second"])
        self.assertEqual(self.received("luke"), [])
        self.assertEqual(self.received("hans"), [])
        self.assertEqual(b.state.sessions["hans"]._missed, 2)

    async def test_a_block_then_a_logout_reach_the_other_node_in_that_order(self) -> None:
        """The block goes on ``chat:all``, the logout notice on ``b``'s channel: Redis keeps their order."""
        await self.started()
        b = self.nodes["b"]
        arrived: list[tuple[str, str, str]] = []
        published: list[tuple[str, list[str]]] = []
        handle = b.link.on_message

        def record(channel: str, text: str) -> None:
            messages = messages_in(text)  # (one, or a turn's together)
            published.append((channel, [message["k"] for message in messages]))
            for message in messages:
                arrived.append((channel, message["k"], message.get("u") or message.get("s") or message.get("a")))
            handle(channel, text)

        b.link.on_message = record
        yoda, leia = await self.online("a", "yoda", "leia")
        await self.online("b", "hans")
        self.received("hans")
        arrived.clear()
        await yoda.block("hans")
        yoda.end()  # no notice for hans, whom yoda blocked: b must hold the block first
        leia.end()
        await wait_until(lambda: ("chat:all", "off", "leia") in arrived)
        self.assertEqual(
            [m for m in arrived if m[1] in ("blk", "d")],
            [("chat:all", "blk", "yoda"), ("chat:node:b", "d", "yoda"), ("chat:node:b", "d", "leia")],
        )
        # Messages of one turn went as one PUBLISH (an array), never across a chat:all one:
        # yoda's logout says when he was last seen (chat:all) before his notice to b.
        self.assertTrue(any(len(kinds) > 1 for _, kinds in published), published)
        self.assertNotIn(("chat:node:b", ["d", "d"]), published)
        self.assertEqual(self.received("hans"), [("Presence", "leia", False)])
