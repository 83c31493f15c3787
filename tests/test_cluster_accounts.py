"""Account names across cluster nodes, through a real ``redis-server``: each node's cache follows the others'.

Two :class:`~chatservice.cluster.node.ClusterNode` objects on one Redis, each
with its own chat state and :class:`~chatservice.auth.directory.StoredAccounts`
over one shared store (as two nodes on one PostgreSQL database).  The
accounts' clocks never move, so their :data:`REFRESH_AFTER` reload never
runs: what a node learns of the other's registrations comes through Redis.
"""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.internet.task import Clock

from chatservice.auth.accounts import AccountManager
from chatservice.auth.credentials import run_here
from chatservice.auth.directory import StoredAccounts
from chatservice.cluster.node import ALL, ClusterNode
from chatservice.session import Session
from chatservice.state import ChatState
from tests.cluster_support import NodesOnOneStoreTestCase
from tests.test_redis_link import wait_until


class ClusterAccountsTests(NodesOnOneStoreTestCase):
    """Nodes ``a`` and ``b`` on one store and one Redis, and a listener on ``chat:all``."""

    async def started(self) -> None:
        """An account in the store; the nodes started and subscribed."""
        await self.store.add_account("yoda", "wise", None)
        await self.start_nodes()

    def announced(self) -> list[str]:
        return [m["u"] for m in self.published if m["k"] == "acct"]

    async def test_a_registration_on_one_node_is_known_on_the_other_at_once(self) -> None:
        await self.started()
        self.assertFalse(self.accounts["b"].exists("rey"))
        manager = AccountManager(self.accounts["a"], run_here)
        await manager.register("rey", "scavenger")
        await wait_until(lambda: self.accounts["b"].exists("rey"))
        self.assertTrue(self.states["b"].user_exists("rey"))
        self.assertEqual(self.accounts["b"].usernames(), ["rey", "yoda"])
        self.assertEqual(self.announced(), ["rey"])
        # A name taken already is not announced again.
        self.assertFalse(await self.accounts["b"].add("rey", "other", None))
        await self.listener.publish(ALL, json.dumps({"k": "mark", "n": "test"}))
        await wait_until(lambda: self.published[-1]["k"] == "mark")
        self.assertEqual(self.announced(), ["rey"])

    async def test_a_node_back_on_redis_reads_the_names_again(self) -> None:
        await self.started()
        self.redis.stop()
        await wait_until(lambda: not any(node.link.connected for node in self.nodes.values()))
        # Created while Redis is away: the announcement cannot go out.
        self.assertTrue(await self.accounts["a"].add("leia", "$scrypt$x", None))
        self.assertFalse(self.accounts["b"].exists("leia"))
        self.redis.start()
        await wait_until(lambda: self.accounts["b"].exists("leia"), timeout=20)
        self.assertEqual(self.announced(), [])
        self.flushLoggedErrors()

    async def test_an_announcement_for_a_node_without_accounts_is_ignored(self) -> None:
        """A node built without accounts (``accounts=None``) takes ``acct`` messages without failing."""
        state = ChatState(self.store, StoredAccounts(self.store, Clock()), Clock(), session_factory=Session)
        bare = ClusterNode(self.redis.url, "bare", state, reactor)
        bare.received(ALL, json.dumps({"k": "acct", "u": "rey", "n": "a"}))
        self.assertFalse(state.accounts.exists("rey"))
        self.nodes["a"].received(ALL, json.dumps({"k": "acct", "u": "rey", "n": "b"}))
        self.assertTrue(self.accounts["a"].exists("rey"))
        self.assertTrue(self.states["a"].user_exists("rey"))

    async def test_a_login_made_elsewhere_while_redis_was_away_ends_this_one(self) -> None:
        """A node joining Redis again claims its users' names again: one login per user."""
        from chatservice.cluster.node import ELSEWHERE, ONLINE, lease_key
        from tests.test_state import RecordingClient

        await self.started()
        client = RecordingClient()
        self.states["a"].attach("yoda", client).begin()
        kept = RecordingClient()
        self.states["a"].attach("rey", kept).begin()
        # As if b had taken yoda's name while a was cut off from Redis.
        commands = self.nodes["b"].link.commands
        await commands.hset(ONLINE, "yoda", json.dumps({"n": "b", "t": 1.0}))
        await commands.set(lease_key("b"), "1", expire=30)
        await self.nodes["a"]._subscribed()
        self.assertEqual(client.disconnects, [ELSEWHERE])
        self.assertEqual(kept.disconnects, [])
        self.assertEqual(json.loads(await commands.hget(ONLINE, "rey"))["n"], "a")
        self.assertEqual(json.loads(await commands.hget(ONLINE, "yoda"))["n"], "b")
