"""Three real ``twistd chat`` nodes on one Redis and one PostgreSQL database, behaving as one server.

Every node is a real process on 127.0.0.1 (``tests/e2e_support.ChatServer``)
with ``--redis`` (a real ``redis-server``, ``tests/redis_support.py``) and
``--store postgresql://...`` (a database of the test cluster,
``tests/pg_support.py``); users are plain text connections to different
nodes.  Then a node is killed with SIGKILL, and Redis is restarted, in the
middle of a conversation.
"""

from __future__ import annotations

import signal
import time
from typing import Callable

from twisted.trial import unittest

from tests.e2e_support import JUST_LOCKED, LOCKED, ChatServer, LineClient, assert_refused
from tests.pg_support import new_database
from tests.redis_support import RedisServer

ACCOUNTS = {name: f"pw-{name}" for name in ("ann", "bob", "cat", "dan", "eve", "fay", "probe")}
LEASE_BOUND = 25.0
"""A dead node's users are gone everywhere within this (lease 15 s, heartbeat 5 s)."""


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class ClusterTestCase(unittest.TestCase):
    """Redis, a database, and three nodes ``a``, ``b``, ``c``."""

    def setUp(self) -> None:
        self.redis = RedisServer().start()
        self.addCleanup(self.redis.cleanup)
        dsn = new_database(self)
        self.nodes: dict[str, ChatServer] = {}
        for name in ("a", "b", "c"):
            node = ChatServer(
                ACCOUNTS,
                timeout=120,
                options=["--store", dsn, "--redis", self.redis.url, "--node-name", name],
            )
            self.addCleanup(node.stop)
            self.nodes[name] = node.start()
        self.clients: list[LineClient] = []

    def tearDown(self) -> None:
        for client in self.clients:
            client.close()
        for name, node in self.nodes.items():
            log = node.log()
            self.assertNotIn("Traceback", log, f"node {name}:\n{log}")

    def user(self, name: str, node: str) -> LineClient:
        client = self.nodes[node].connect()
        self.clients.append(client)
        client.login(name, ACCOUNTS[name])
        return client

    def others_online(self, client: LineClient) -> list[str]:
        client.send("whoelse")
        return [line for line in client.sync() if not line.endswith(("logged in", "logged out"))]


class ClusterChatTests(ClusterTestCase):
    def test_every_feature_across_nodes(self) -> None:
        ann = self.user("ann", "a")
        bob = self.user("bob", "b")
        self.assertEqual(ann.read_line(timeout=10), "bob logged in")
        cat = self.user("cat", "c")
        self.assertEqual(ann.read_line(timeout=10), "cat logged in")
        self.assertEqual(bob.read_line(timeout=10), "cat logged in")
        self.assertEqual(self.others_online(ann), ["bob", "cat"])
        self.assertEqual(self.others_online(cat), ["ann", "bob"])

        # Direct messages, to a user on another node.
        ann.send("message bob hello from node a")
        self.assertEqual(bob.read_line(timeout=10), "ann: hello from node a")
        self.assertEqual(ann.sync(), ["Message delivered to bob."])
        # Broadcasts reach every node.
        cat.send("broadcast hello everyone")
        self.assertTrue(cat.read_line().startswith("Broadcast message, #"))
        self.assertEqual(ann.read_line(timeout=10), "[broadcast] cat: hello everyone")
        self.assertEqual(bob.read_line(timeout=10), "[broadcast] cat: hello everyone")
        # Rooms with members on three nodes.
        ann.send("room create bob cat")
        created = ann.read_line()
        self.assertTrue(created.startswith("Room ") and created.endswith("created with ann, bob, cat."), created)
        room = created.split()[1]
        self.assertEqual(bob.read_line(timeout=10), f"ann added you to room {room} with ann, bob, cat.")
        self.assertEqual(cat.read_line(timeout=10), f"ann added you to room {room} with ann, bob, cat.")
        bob.send(f"room send {room} in the room")
        self.assertTrue(bob.read_line().startswith(f"Room {room} message, #1"))
        self.assertEqual(ann.read_line(timeout=10), f"[room {room}] bob: in the room")
        self.assertEqual(cat.read_line(timeout=10), f"[room {room}] bob: in the room")
        # Blocks, stored on one node, in effect on the others.
        bob.send("block ann")
        self.assertEqual(bob.read_line(), "ann is now blocked.")
        time.sleep(0.3)
        ann.send("message bob are you there")
        self.assertEqual(
            ann.read_line(timeout=10), "Your message could not be delivered as the recipient has blocked you."
        )
        # Busy users on another node: kept, with the auto-reply.
        cat.send("busy in a meeting")
        self.assertTrue(cat.read_line().startswith("You are busy."))
        time.sleep(0.3)
        ann.send("message cat later then")
        self.assertEqual(
            ann.read_line(timeout=10), "cat is busy; your message will be delivered when they are available."
        )
        self.assertEqual(ann.read_line(timeout=10), "Auto-reply from cat: in a meeting")
        cat.send("idle")
        self.assertTrue(cat.read_line(timeout=10).endswith("] ann: later then"))
        # A message kept for a user who is offline, delivered at login on another node.
        ann.send("message dan see you later")
        self.assertEqual(
            ann.read_line(timeout=10), "dan is offline; your message will be delivered when they log in."
        )
        dan = self.nodes["c"].connect()
        self.clients.append(dan)
        dan.greeted()
        dan.send("dan")
        dan.read_until("Password: ")
        dan.send(ACCOUNTS["dan"])
        dan.read_line()
        self.assertTrue(dan.read_line(timeout=10).endswith("] ann: see you later"))

    def test_failures_on_several_nodes_lock_the_name_everywhere(self) -> None:
        for node, source in (("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4")):
            client = self.nodes[node].connect(source=source)
            self.clients.append(client)
            client.greeted()
            client.send("dan")
            client.read_until("Password: ")
            client.send("wrong")
            reply = client.read_line(timeout=10)
            if node != "c":
                self.assertEqual(reply, "Invalid Password. Please try again")
        assert_refused(reply, JUST_LOCKED)
        time.sleep(0.3)
        late = self.nodes["a"].connect(source="127.0.0.5")
        self.clients.append(late)
        late.greeted()
        late.send("dan")
        assert_refused(late.read_line(timeout=10), LOCKED)

    def test_one_login_per_user_across_the_cluster(self) -> None:
        self.user("eve", "a")
        second = self.nodes["b"].connect()
        self.clients.append(second)
        second.greeted()
        second.send("eve")
        second.read_until("Password: ")
        second.send(ACCOUNTS["eve"])
        self.assertEqual(second.read_line(timeout=10), "Error. eve is already logged in elsewhere.")


class ClusterFailureTests(ClusterTestCase):
    def test_a_killed_node_s_users_are_logged_out_everywhere(self) -> None:
        ann = self.user("ann", "a")
        self.user("fay", "c")
        self.assertEqual(ann.read_line(timeout=10), "fay logged in")
        self.nodes["c"].process.send_signal(signal.SIGKILL)
        self.nodes["c"].process.wait(10)
        started = time.monotonic()
        self.assertEqual(ann.read_line(timeout=LEASE_BOUND + 5), "fay logged out")
        self.assertLess(time.monotonic() - started, LEASE_BOUND)
        # And fay may log in again, on another node.
        self.user("fay", "b")
        self.assertEqual(ann.read_line(timeout=10), "fay logged in")
        self.nodes["c"].process = None  # killed: nothing to stop

    def test_a_redis_restart_loses_nothing_acknowledged(self) -> None:
        ann = self.user("ann", "a")
        bob = self.user("bob", "b")
        self.assertEqual(ann.read_line(timeout=10), "bob logged in")
        self.redis.stop()
        ann.send("message bob sent while Redis was down")
        self.assertEqual(ann.sync(timeout=10), ["Message delivered to bob."])  # acknowledged
        wait_for(lambda: "Lost the Redis subscription" in self.nodes["a"].log(), 10, "node a to notice")
        ann.send("broadcast is anybody there")
        receipt = ann.sync(timeout=10)
        self.assertTrue(receipt[0].startswith("Broadcast message, #"), receipt)
        self.assertEqual(
            receipt[1],
            "1 recipient(s) on other servers of this chat service could not be reached"
            " (their link is down); they can find it with read.",
        )
        self.redis.start()
        # Kept in the store while the announcement could not go out; found and
        # shown (as kept) when bob's node is back on Redis.
        late = bob.read_line(timeout=20)
        self.assertTrue(late.startswith("[offline ") and late.endswith("] ann: sent while Redis was down"), late)
        # The connections stayed up, and the cluster works again.
        bob.send("message ann and after")
        self.assertEqual(ann.read_line(timeout=20), "bob: and after")
