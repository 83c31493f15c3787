"""A cluster node's handling of other nodes' messages, without Redis: what it does with each."""

from __future__ import annotations

import json
from typing import Any


from chatservice.cluster.node import ClusterNode, node_channel
from tests.test_state import StateTestCase


class ForwardingTests(StateTestCase):
    """An announcement of a kept direct message for a user who has moved to another node."""

    def setUp(self) -> None:
        super().setUp()
        self.node = ClusterNode("redis://127.0.0.1:1/0", "a", self.state, self.clock)
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.node._publish = lambda channel, message: self.published.append((channel, message))  # type: ignore[method-assign]

    def receive(self, message: dict[str, Any]) -> None:
        self.node.received(node_channel("a"), json.dumps(dict(message, n="b")))

    def test_forwarded_once_to_the_node_that_has_the_user_now(self) -> None:
        self.node.received(
            "chat:all",
            json.dumps({"k": "on", "u": "hans", "i": {"n": "c", "t": 1.0, "h": "10.0.0.1"}, "n": "c"}),
        )
        self.receive({"k": "dm", "u": "hans", "id": 7, "e": {"type": "message", "from": "yoda",
                                                              "message": "hi", "timestamp": 1}})
        self.receive({"k": "kept", "u": "hans"})
        self.assertEqual(
            self.published, [(node_channel("c"), {"k": "kept", "u": "hans", "f": 1})] * 2
        )
        self.published.clear()
        self.receive({"k": "kept", "u": "hans", "f": 1})  # forwarded already: not again
        self.receive({"k": "kept", "u": "luke"})  # online nowhere: waits for the next login
        self.assertEqual(self.published, [])

    def test_a_user_here_is_not_forwarded(self) -> None:
        (hans,) = self.online("hans")
        self.store.add_offline("yoda", "hans", "kept", 1.0)
        self.receive({"k": "kept", "u": "hans"})
        self.assertEqual(self.published, [])
        self.assertEqual([event[0] for event in self.clients["hans"].take()], ["DirectMessage"])
        self.clock.advance(0)  # written: forgotten
        self.assertEqual(self.store.offline_messages("hans"), [])
