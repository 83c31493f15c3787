"""Cluster nodes in one test process: each with its own chat state, all on one store and one real Redis.

:class:`NodesOnOneStoreTestCase` builds them (as several nodes on one
PostgreSQL database would be: here one shared memory store), with a
listener on ``chat:all`` recording what the nodes announce.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from chatservice.auth.directory import StoredAccounts
from chatservice.cluster.link import RedisLink
from chatservice.cluster.node import ALL, ClusterNode
from chatservice.session import Session
from chatservice.state import ChatState
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore
from tests.redis_support import RedisServer
from tests.test_redis_link import wait_until


class NodesOnOneStoreTestCase(unittest.TestCase):
    """Nodes named :attr:`NODES` on one store and one Redis, and a listener on ``chat:all``.

    Their accounts' and states' clocks never move.  :meth:`state_store`
    says which store a node's state writes through (the shared one unless
    a test case says otherwise).
    """

    NODES: tuple[str, ...] = ("a", "b")

    def setUp(self) -> None:
        self.redis = RedisServer().start()
        self.addCleanup(self.redis.cleanup)
        self.store = LocalStore(MemoryStore())
        self.accounts: dict[str, StoredAccounts] = {}
        self.states: dict[str, ChatState] = {}
        self.nodes: dict[str, ClusterNode] = {}
        for name in self.NODES:
            accounts = StoredAccounts(self.store, Clock())
            state = ChatState(self.state_store(name), accounts, Clock(), session_factory=Session)
            node = ClusterNode(self.redis.url, name, state, reactor, [], accounts)
            self.accounts[name], self.states[name], self.nodes[name] = accounts, state, node
        self.published: list[dict[str, Any]] = []
        self.listener = RedisLink(
            self.redis.url, reactor, [ALL], lambda _, text: self.published.append(json.loads(text))
        )

    def state_store(self, node: str) -> Any:
        """The store node ``node``'s chat state writes through."""
        return self.store

    async def start_nodes(self) -> None:
        """Load the states, start the nodes and the listener, and wait until all are subscribed."""
        for name, node in self.nodes.items():
            await self.states[name].load()
            node.startService()
            self.addCleanup(node.stopService)
        self.listener.startService()
        self.addCleanup(self.listener.stopService)
        links = [node.link for node in self.nodes.values()] + [self.listener]
        await wait_until(lambda: all(link.connected for link in links))
