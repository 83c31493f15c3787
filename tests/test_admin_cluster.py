"""chatservice-admin in a cluster, through a real ``redis-server``: one node acts, every node follows.

Two :class:`~chatservice.cluster.node.ClusterNode` objects on one Redis and
one shared store (as two nodes on one PostgreSQL database), each with its
chat state, accounts and lock-outs; the admin actions run on node ``a`` (as
its admin socket would run them).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor, task

from chatservice.admin.actions import AdminActions, AdminError, LiveServer
from chatservice.auth.lockout import LoginLockout
from chatservice.auth.slowdown import LoginSlowdown
from chatservice.cluster.node import MUTE_PREFIX
from chatservice.moderation import Mute
from chatservice.state import REMOVED
from tests.cluster_support import NodesTestCase
from tests.test_redis_link import wait_until
from tests.test_state import RecordingClient


class ClusterAdminTests(NodesTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.lockouts: dict[str, list[LoginLockout]] = {}
        self.slowdowns: dict[str, LoginSlowdown] = {}
        for name in ("a", "b"):
            lockouts = [LoginLockout(self.clock, 3, 60), LoginLockout(self.clock, 3, 60, kind="address")]
            slowdown = LoginSlowdown(self.clock, 10, 60)
            self.add_node(name, lockouts=lockouts, slowdown=slowdown)
            self.lockouts[name], self.slowdowns[name] = lockouts, slowdown
            self.addCleanup(lambda l=lockouts, s=slowdown: [x.stop() for x in (*l, s)])
        a = self.nodes["a"]
        self.actions = AdminActions(
            a.accounts, self.clock, LiveServer(a.state, self.lockouts["a"], self.slowdowns["a"], a)
        )

    async def started(self) -> None:  # type: ignore[override]
        await super().started({"yoda": "secret", "hans": "secret"})

    async def test_remove_on_one_node_ends_the_session_on_the_other(self) -> None:
        await self.started()
        b = self.nodes["b"]
        hans = RecordingClient(on_disconnect=lambda: b.state.sessions["hans"].end())
        await b.state.attach("hans", hans)
        await self.store.add_block("hans", "yoda")
        b.state.block_changed_elsewhere("hans", "yoda", True)
        self.nodes["a"].state.block_changed_elsewhere("hans", "yoda", True)
        await wait_until(lambda: self.nodes["a"].online("hans") is not None)

        result = await self.actions.run({"action": "remove", "username": "hans"})
        self.assertEqual(result, {"user": "hans", "action": "removed"})
        await wait_until(lambda: hans.disconnects == [REMOVED])
        self.assertNotIn("hans", b.state.sessions)
        for node in self.nodes.values():
            await wait_until(lambda n=node: not n.accounts.exists("hans"))
            self.assertFalse(node.state.has_blocked("hans", "yoda"))
            self.assertIsNone(node.state.last_seen_at("hans"))
        # b forgot him in the store too, after his logout (no last-seen time left).
        await wait_until(lambda: "hans" not in dict(self.store.local.last_seen()))
        self.assertIsNone(self.store.local.account("hans"))

    async def test_remove_ends_a_mute_on_every_node_and_in_redis(self) -> None:
        """A removed account's mute goes everywhere: a node joining later does not read it either."""
        await self.started()
        a, b = self.nodes["a"], self.nodes["b"]
        until = reactor.seconds() + 3600  # (the node keeps it in Redis until then, by the reactor's time)
        a.state.moderation.mute("hans", Mute(until, "yoda"))
        a.state.moderation.tell_cluster({"do": "mute", "u": "hans", "until": until, "by": "yoda", "reason": ""})
        await wait_until(lambda: b.state.moderation.muted("hans") is not None)
        commands, key = a.link.commands, MUTE_PREFIX + "hans"
        self.assertIsNotNone(await commands.get(key))
        await self.actions.run({"action": "remove", "username": "hans"})
        self.assertIsNone(a.state.moderation.muted("hans"))
        await wait_until(lambda: b.state.moderation.muted("hans") is None)
        for _ in range(100):
            if await commands.get(key) is None:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        self.assertIsNone(await commands.get(key))

    async def test_unlock_clears_redis_and_every_node(self) -> None:
        await self.started()
        commands = self.nodes["a"].link.commands
        # Locked on b, as b would lock it: counted in Redis, held on every node.
        b_user = self.lockouts["b"][0]
        for _ in range(3):
            await b_user.failed("yoda@203.0.113.9")
        await wait_until(lambda: self.lockouts["a"][0].locked_for("yoda@203.0.113.9") is not None)
        self.assertIsNotNone(await commands.get("chat:lock:user:yoda@203.0.113.9"))

        result: dict[str, Any] = await self.actions.run({"action": "unlock", "username": "yoda"})
        self.assertEqual(result["locks"], 1)
        self.assertEqual(result["redis_keys"], 2)  # the count and the lock
        await wait_until(lambda: b_user.locked_for("yoda@203.0.113.9") is None)
        self.assertIsNone(self.lockouts["a"][0].locked_for("yoda@203.0.113.9"))
        self.assertEqual(await commands.keys("chat:*:user:*"), [])

    async def test_unlock_without_redis_is_reported(self) -> None:
        await self.started()
        self.redis.stop()
        await wait_until(lambda: not self.nodes["a"].link.connected)
        with self.assertRaises(AdminError) as raised:
            await self.actions.run({"action": "unlock", "address": "203.0.113.9"})
        self.assertEqual(raised.exception.code, "unavailable")
        self.flushLoggedErrors()
