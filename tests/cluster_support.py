"""Cluster nodes in the test process: :class:`NodesTestCase`.

Each :class:`~chatservice.cluster.node.ClusterNode` has its own chat state
and account cache; all share one real ``redis-server``
(:mod:`tests.redis_support`) and one in-memory store (as nodes share one
PostgreSQL database), and a :class:`~twisted.internet.task.Clock` that never
moves (Redis's side runs on the reactor).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from chatservice.auth.directory import StoredAccounts
from chatservice.cluster.node import ClusterNode
from chatservice.session import Session
from chatservice.state import ChatState
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore
from tests.redis_support import RedisServer
from tests.test_redis_link import wait_until


class NodesTestCase(unittest.TestCase):
    """A real Redis, a shared store and a clock; :meth:`add_node` makes the nodes."""

    def setUp(self) -> None:
        self.redis = RedisServer().start()
        self.addCleanup(self.redis.cleanup)
        self.store = LocalStore(MemoryStore())
        self.clock = Clock()
        self.nodes: dict[str, ClusterNode] = {}

    def add_node(self, name: str, **options: Any) -> ClusterNode:
        """Node ``name``, the cluster of its own chat state.

        :param options: :class:`ClusterNode`'s ``lockouts`` and ``slowdown``.
        """
        accounts = StoredAccounts(self.store, self.clock)
        state = ChatState(self.store, accounts, self.clock, session_factory=Session)
        node = ClusterNode(self.redis.url, name, state, reactor, accounts=accounts, **options)
        state.cluster = node
        self.nodes[name] = node
        return node

    async def started(self, accounts: dict[str, str]) -> None:
        """Add ``accounts`` (name to password) to the store, load every node's state, start
        the nodes and wait until all are subscribed."""
        for account, password in accounts.items():
            await self.store.add_account(account, password, None)
        for node in self.nodes.values():
            await node.state.load()
            node.startService()
            self.addCleanup(node.stopService)
        await wait_until(lambda: all(node.link.connected for node in self.nodes.values()))
