"""Account names across cluster nodes, through a real ``redis-server``: each node's cache follows the others'.

Two :class:`~chatservice.cluster.node.ClusterNode` objects on one Redis, each
with its own chat state and :class:`~chatservice.auth.directory.StoredAccounts`
over one shared store (as two nodes on one PostgreSQL database).  The
accounts' clocks never move, so their :data:`REFRESH_AFTER` reload never
runs: what a node learns of the other's registrations comes through Redis.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from chatservice.auth.accounts import AccountManager
from chatservice.auth.credentials import run_here
from chatservice.auth.directory import StoredAccounts
from chatservice.cluster.link import RedisLink
from chatservice.cluster.node import ALL, ClusterNode
from chatservice.cluster.outbox import messages_in
from chatservice.session import Session
from chatservice.state import ChatState
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore
from tests.redis_support import RedisServer
from tests.test_redis_link import wait_until


class ClusterAccountsTests(unittest.TestCase):
    """Nodes ``a`` and ``b`` on one store and one Redis, and a listener on ``chat:all``."""

    def setUp(self) -> None:
        self.redis = RedisServer().start()
        self.addCleanup(self.redis.cleanup)
        self.store = LocalStore(MemoryStore())
        self.accounts: dict[str, StoredAccounts] = {}
        self.states: dict[str, ChatState] = {}
        self.nodes: dict[str, ClusterNode] = {}
        for name in ("a", "b"):
            accounts = StoredAccounts(self.store, Clock())
            state = ChatState(self.store, accounts, Clock(), session_factory=Session)
            node = ClusterNode(self.redis.url, name, state, reactor, [], accounts)
            self.accounts[name], self.states[name], self.nodes[name] = accounts, state, node
        self.published: list[dict[str, Any]] = []
        self.listener = RedisLink(
            self.redis.url, reactor, [ALL], lambda _, text: self.published.extend(messages_in(text))
        )

    async def started(self) -> None:
        """Load both states, start the nodes and the listener, and wait until all are subscribed."""
        await self.store.add_account("yoda", "wise", None)
        for name, node in self.nodes.items():
            await self.states[name].load()
            node.startService()
            self.addCleanup(node.stopService)
        self.listener.startService()
        self.addCleanup(self.listener.stopService)
        links = [node.link for node in self.nodes.values()] + [self.listener]
        await wait_until(lambda: all(link.connected for link in links))

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
