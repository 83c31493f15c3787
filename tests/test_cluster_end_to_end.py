"""Three real ``twistd chat`` nodes on one Redis and one PostgreSQL database, behaving as one server.

Every node is a real process on 127.0.0.1 (``tests/e2e_support.ChatServer``)
with ``--redis`` (a real ``redis-server``, ``tests/redis_support.py``) and
``--store postgresql://...`` (a database of the test cluster,
``tests/pg_support.py``); users are plain text connections to different
nodes.  Then a node is killed with SIGKILL, and Redis is restarted, in the
middle of a conversation.  Accounts are in the shared store: one registered
on a node logs in on another at once, and a password changed on one is
refused, in its old form, on every other.
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
LEASE_BOUND = 15.0
"""A dead node's users are gone everywhere within this (lease 10 s, then at most one 3 s heartbeat)."""


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class ClusterTestCase(unittest.TestCase):
    """Redis, a database, and three nodes ``a``, ``b``, ``c`` (:attr:`node_names`)."""

    node_names: tuple[str, ...] = ("a", "b", "c")
    """The nodes started for each test."""
    node_options: tuple[str, ...] = ("--allow-register",)
    """Options of every node besides its store, Redis and name."""

    def setUp(self) -> None:
        self.redis = RedisServer().start()
        self.addCleanup(self.redis.cleanup)
        self.dsn = new_database(self)
        self.nodes: dict[str, ChatServer] = {}
        for name in self.node_names:
            self.start_node(name)
        self.clients: list[LineClient] = []

    def start_node(self, name: str) -> ChatServer:
        """Start the node ``name`` (on the test's Redis and database)."""
        node = ChatServer(
            ACCOUNTS,
            timeout=120,
            options=[
                "--store", self.dsn, "--redis", self.redis.url, "--node-name", name,
                *self.node_options,
            ],
        )
        self.addCleanup(node.stop)
        self.nodes[name] = node.start()
        return node

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

    def login_reply(self, name: str, node: str) -> str:
        """The reply to ``name``'s login on ``node`` (for a login that is refused)."""
        return self.try_login(name, node)[1]

    def try_login(self, name: str, node: str) -> tuple[LineClient, str]:
        """A connection to ``node`` that tried to log ``name`` in, and the reply."""
        client = self.nodes[node].connect()
        self.clients.append(client)
        client.greeted()
        client.send(name)
        client.read_until("Password: ")
        client.send(ACCOUNTS[name])
        return client, client.read_line(timeout=10)

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

    def failed_login(self, node: str, source: str, name: str = "dan") -> tuple[str, float]:
        """A wrong password for ``name`` on ``node`` from ``source``: the reply and how long it took."""
        client = self.nodes[node].connect(source=source)
        self.clients.append(client)
        client.greeted()
        client.send(name)
        client.read_until("Password: ")
        started = time.monotonic()
        client.send("wrong")
        return client.read_line(timeout=40), time.monotonic() - started

    def test_failures_on_several_nodes_count_together(self) -> None:
        # From one address, on two nodes: two failures; then ann logs in from
        # there (forgetting the address's count on every node, not dan's there).
        for node in ("a", "b"):
            self.assertEqual(self.failed_login(node, "127.0.0.2")[0], "Invalid Password. Please try again")
        ann = self.nodes["c"].connect(source="127.0.0.2")
        self.clients.append(ann)
        ann.login("ann", ACCOUNTS["ann"])
        assert_refused(self.failed_login("c", "127.0.0.2")[0], JUST_LOCKED)
        time.sleep(0.3)
        # dan is locked for that address on every node ...
        late = self.nodes["a"].connect(source="127.0.0.2")
        self.clients.append(late)
        late.greeted()
        late.send("dan")
        assert_refused(late.read_line(timeout=10), LOCKED)
        # ... not for its owner elsewhere.
        owner = self.nodes["b"].connect(source="127.0.0.5")
        self.clients.append(owner)
        owner.login("dan", ACCOUNTS["dan"])
        # Guessing dan from many addresses on every node: the cluster's count
        # (10 with the default --name-failures) slows dan's logins on all.
        for n in range(7):
            node = "abc"[n % 3]
            reply, took = self.failed_login(node, f"127.0.0.{6 + n}")
            self.assertEqual(reply, "Invalid Password. Please try again")
            self.assertLess(took, 0.9)
        reply, took = self.failed_login("a", "127.0.0.20")
        self.assertEqual(reply, "Invalid Password. Please try again")
        self.assertGreaterEqual(took, 0.95)
        reply, took = self.failed_login("b", "127.0.0.21")
        self.assertEqual(reply, "Invalid Password. Please try again")
        self.assertGreaterEqual(took, 1.95)

    def test_one_login_per_user_across_the_cluster(self) -> None:
        self.user("eve", "a")
        self.assertEqual(self.login_reply("eve", "b"), "Error. eve is already logged in elsewhere.")


class ClusterAccountTests(ClusterTestCase):
    def register(self, node: str, name: str, password: str) -> LineClient:
        """Create ``name`` at the text prompts of ``node``, as a person at telnet: logged in after."""
        client = self.nodes[node].connect()
        self.clients.append(client)
        client.greeted()
        client.send(name)
        self.assertEqual(client.read_line(), f"There is no account {name}.")
        client.read_until("Create a new account with that name? (yes/no) ")
        client.send("yes")
        client.read_until("New password: ")
        client.send(password)
        client.read_until("Repeat the password: ")
        client.send(password)
        self.assertEqual(client.read_line(timeout=20), f"Account {name} created.")
        self.assertEqual(
            client.read_line(timeout=20), f"Welcome to chatservice, {name}! Type help for the list of commands."
        )
        return client

    def log_out(self, client: LineClient, name: str) -> None:
        client.send("logout")
        self.assertEqual(client.read_line(), f"Goodbye, {name}!")
        self.assertEqual(client.wait_closed(), b"")

    def test_registered_on_a_logs_in_on_b_and_passwd_on_b_counts_on_c(self) -> None:
        ann = self.user("ann", "c")
        rey = self.register("a", "rey", "scavenger")
        self.assertEqual(ann.read_line(timeout=10), "rey logged in")
        self.log_out(rey, "rey")
        self.assertEqual(ann.read_line(timeout=10), "rey logged out")
        # Node c's cache of the names has rey at once (the registration was
        # announced through Redis): a command that checks its argument there.
        ann.send("users offline")
        self.assertIn("rey", " ".join(ann.sync(timeout=10)))
        ann.send("block rey")
        self.assertEqual(ann.read_line(timeout=10), "rey is now blocked.")
        ann.send("unblock rey")
        self.assertEqual(ann.read_line(timeout=10), "rey is unblocked.")
        ann.send("message rey welcome aboard")
        self.assertEqual(
            ann.read_line(timeout=10), "rey is offline; your message will be delivered when they log in."
        )
        # Registered on a, logs in on b at once, and finds what ann kept on c.
        rey = self.nodes["b"].connect()
        self.clients.append(rey)
        rey.login("rey", "scavenger")
        self.assertTrue(rey.read_line(timeout=10).endswith("] ann: welcome aboard"))
        self.assertEqual(ann.read_line(timeout=10), "rey logged in")
        # A password changed on b ...
        rey.send("passwd scavenger falcon-2")
        self.assertEqual(rey.read_line(timeout=20), "Your password has been changed.")
        self.log_out(rey, "rey")
        # ... is refused in its old form on c, and taken in its new form.
        again = self.nodes["c"].connect()
        self.clients.append(again)
        again.greeted()
        again.send("rey")
        again.read_until("Password: ")
        again.send("scavenger")
        self.assertEqual(again.read_line(timeout=20), "Invalid Password. Please try again")
        again.read_until("Password: ")
        again.send("falcon-2")
        self.assertEqual(
            again.read_line(timeout=20), "Welcome to chatservice, rey! Type help for the list of commands."
        )
        # And the name is taken for a registration on any node.
        taken = self.nodes["a"].connect()
        self.clients.append(taken)
        taken.greeted()
        taken.send_json({"type": "register", "user": "rey", "id": 1})
        self.assertEqual(taken.read_line(), "")
        self.assertEqual(taken.read_json(timeout=10)["taken"], True)


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

    def test_a_node_killed_mid_burst_loses_no_acknowledged_message(self) -> None:
        # ann (node a) sends fay (node c) direct messages one after another;
        # node c is killed in the middle.  Each one ann was told was delivered
        # or kept reaches fay: before the kill on c, or at her next login.
        ann = self.user("ann", "a")
        fay = self.user("fay", "c")
        self.assertEqual(ann.read_line(timeout=10), "fay logged in")
        acknowledged: list[int] = []
        for i in range(30):
            if i == 12:
                self.nodes["c"].process.send_signal(signal.SIGKILL)
            ann.send(f"message fay burst {i}")
            while True:
                reply = ann.read_line(timeout=10)
                if reply == "Message delivered to fay." or reply.startswith("fay is offline"):
                    acknowledged.append(i)
                    break
                if reply.startswith("Error. You have 25 messages waiting for fay already"):
                    # Refused, not acknowledged: ann's share of fay's mailbox
                    # is full of the messages kept since c died (and those c
                    # had shown but not yet forgotten).
                    self.assertGreater(i, 12, reply)
                    break
                self.assertIn(reply, ("fay logged out",), f"message {i}: {reply}")
        self.nodes["c"].process.wait(10)
        self.nodes["c"].process = None  # killed: nothing to stop
        received = [
            line for line in fay.wait_closed(timeout=10).decode("utf-8", "replace").splitlines()
            if "ann: burst " in line
        ]
        # fay logs in again on b once c's lease is gone (refused until then).
        deadline = time.monotonic() + LEASE_BOUND + 5
        while True:
            again, line = self.try_login("fay", "b")
            if line.startswith("Welcome"):
                break
            self.assertLess(time.monotonic(), deadline, line)
            again.close()
            time.sleep(0.5)
        kept = [line for line in again.sync(timeout=20) if "ann: burst " in line]
        live = [int(line.rsplit(" ", 1)[1]) for line in received]
        later = [int(line.rsplit(" ", 1)[1]) for line in kept]
        self.assertEqual(sorted(set(live + later)), acknowledged, f"live: {received}; kept: {kept}")
        # Each is shown live once, or kept once; one shown twice (once live,
        # once kept) is one c had shown but not yet told the store about
        # when it died: shown before the kill, and the second time as kept.
        self.assertEqual(len(live), len(set(live)), live)
        self.assertEqual(len(later), len(set(later)), later)
        twice = set(live) & set(later)
        self.assertLess(max(twice, default=-1), 12, (live, later))
        self.assertTrue(all(line.startswith("[offline ") for line in kept), kept)

    def test_a_node_restarted_at_once_under_its_name_logs_its_former_users_out(self) -> None:
        # Its lease never ran out, so no other node sweeps: the node itself
        # removes what its former run left in chat:online when it joins.
        ann = self.user("ann", "a")
        self.user("fay", "c")
        self.assertEqual(ann.read_line(timeout=10), "fay logged in")
        self.nodes["c"].process.send_signal(signal.SIGKILL)
        self.nodes["c"].process.wait(10)
        started = time.monotonic()
        self.nodes["c"].restart()
        self.assertEqual(ann.read_line(timeout=10), "fay logged out")
        self.assertLess(time.monotonic() - started, 10)
        self.user("fay", "b")
        self.assertEqual(ann.read_line(timeout=10), "fay logged in")

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
        # No login while the names cannot be claimed: refused as unavailable.
        wait_for(lambda: "Lost the Redis subscription" in self.nodes["c"].log(), 10, "node c to notice")
        self.assertEqual(
            self.login_reply("cat", "c"), "Error. Logging in is not possible right now; please try again."
        )
        self.redis.start()
        # Kept in the store while the announcement could not go out; found and
        # shown (as kept) when bob's node is back on Redis.
        late = bob.read_line(timeout=20)
        self.assertTrue(late.startswith("[offline ") and late.endswith("] ann: sent while Redis was down"), late)
        # The connections stayed up, and the cluster works again once the
        # nodes have registered their users anew (until then a message to a
        # user of another node is kept, and shown as kept: not lost).
        seen: list[list[str]] = []
        try:
            wait_for(lambda: seen.append(self.others_online(bob)) or seen[-1] == ["ann"], 20, "node b to see ann")
        except AssertionError:
            raise AssertionError(f"node b never saw ann again: {seen[:2]} ... {seen[-2:]}") from None
        bob.send("message ann and after")
        self.assertEqual(ann.read_line(timeout=20), "bob: and after")

    def test_blocks_and_rooms_changed_while_a_node_was_away_hold_there_after(self) -> None:
        """Their announcements are lost while Redis is down; the node reads them from the store when it is back."""
        ann = self.user("ann", "a")
        bob = self.user("bob", "b")
        self.assertEqual(ann.read_line(timeout=10), "bob logged in")
        self.redis.stop()
        for name in ("a", "b"):
            wait_for(lambda n=name: "Lost the Redis subscription" in self.nodes[n].log(), 10, f"node {name} to notice")
        ann.send("block bob")
        self.assertEqual(ann.read_line(timeout=10), "bob is now blocked.")
        ann.send("room create bob")
        created = ann.read_line(timeout=10)
        self.assertTrue(created.endswith("created with ann, bob."), created)
        room = created.split()[1]
        self.redis.start()
        reread = "Blocks, last-seen times and rooms read again from the store"
        wait_for(lambda: self.nodes["b"].log().count(reread) == 2, 20, "node b to read them again")
        bob.send("message ann are you there")
        self.assertEqual(
            bob.read_line(timeout=10), "Your message could not be delivered as the recipient has blocked you."
        )
        bob.send("rooms")
        self.assertEqual(bob.sync(timeout=10), [f"Room {room}: ann, bob"])
        self.assertEqual(ann.sync(timeout=5), [])
