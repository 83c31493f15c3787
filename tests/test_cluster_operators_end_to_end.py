"""Operators in a cluster: real ``twistd chat`` nodes on one Redis and one PostgreSQL database.

An operator on node ``a`` acts on users of node ``b``: ``whois`` names
their node, ``announce`` reaches them, ``mute`` refuses their messages,
``kick`` and ``ban`` end their sessions there; a ban is refused at login
on every node, including one started after it was set (read from the
shared store when it joins), and a mute set before a node joined holds
there too (kept in Redis).
"""

from __future__ import annotations

from tests.test_cluster_end_to_end import ClusterTestCase


class ClusterOperatorTests(ClusterTestCase):
    """Nodes ``a`` and ``b`` (``c`` joins later); ann is an operator."""

    node_names = ("a", "b")
    node_options = ("--operator", "ann")

    def test_an_operator_on_a_acts_on_users_of_b(self) -> None:
        ann = self.user("ann", "a")
        bob = self.user("bob", "b")
        cat = self.user("cat", "b")
        for line in ("bob logged in", "cat logged in"):
            self.assertEqual(ann.read_line(timeout=10), line)
        bob.sync()

        ann.send("whois bob")
        self.assertEqual(ann.read_line(timeout=10), "bob from 127.0.0.1 (text, not encrypted)")
        self.assertTrue(ann.read_line().startswith("  logged in at "))
        self.assertEqual(ann.read_line(), "  on node b")

        ann.send("announce across the cluster")
        self.assertEqual(ann.read_line(timeout=10), "Server notice sent to 2 users online.")
        for client in (bob, cat):
            self.assertEqual(client.read_line(timeout=10), "*** Server notice from ann: across the cluster")

        ann.send("mute cat 10m")
        self.assertTrue(ann.read_line(timeout=10).startswith("cat is muted until "))
        self.assertTrue(cat.read_line(timeout=10).startswith("*** Server notice from ann: You are muted until "))
        cat.send("broadcast can you hear me")
        self.assertTrue(cat.read_line(timeout=10).startswith("Error. You are muted until "))

        ann.send("kick bob go home")
        self.assertEqual(bob.read_line(timeout=10), "You have been kicked off this server by ann (reason: go home).")
        bob.wait_closed(timeout=10)
        self.assertEqual(ann.read_line(timeout=10), "Kicked bob (reason: go home).")
        self.assertEqual(ann.read_line(timeout=10), "bob logged out")
        self.assertEqual(cat.read_line(timeout=10), "bob logged out")

        ann.send("ban cat 1h")
        self.assertTrue(
            cat.read_line(timeout=10).startswith("You have been banned from this server by ann until ")
        )
        cat.wait_closed(timeout=10)
        self.assertTrue(ann.read_line(timeout=10).startswith("Ban #1: user cat is banned until "))
        self.assertEqual(ann.read_line(timeout=10), "cat logged out")
        for node in ("a", "b"):
            refused, reply = self.try_login("cat", node)
            self.assertTrue(reply.startswith("Error. You are banned from this server until "), reply)
            refused.wait_closed(timeout=10)

        # A node that joins afterwards reads the ban from the store, and the mute from Redis.
        self.start_node("c")
        refused, reply = self.try_login("cat", "c")
        self.assertTrue(reply.startswith("Error. You are banned from this server until "), reply)
        ann.send("unban cat")
        self.assertEqual(ann.read_line(timeout=10), "Removed 1 ban of cat.")
        cat = self.user("cat", "c")
        cat.send("message ann still muted?")
        self.assertTrue(cat.read_line(timeout=10).startswith("Error. You are muted until "))
        self.assertIn("Operator ann: ban cat", self.nodes["a"].log())
        self.assertIn("Ending the session of cat from 127.0.0.1: ban #1", self.nodes["b"].log())
