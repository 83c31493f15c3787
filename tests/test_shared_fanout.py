"""A broadcast to everyone for one append (:mod:`chatservice.server.fanout`).

Connections that write through the batcher (``ChatHarness(batched=True)``,
as on plain TCP) share broadcasts and presence notices through the fan-out's
segments; the others (``batched=False``, as over TLS) get them one by one.
Whatever the mix, every client must read exactly what it read when each
connection was handed each event in turn, in the same order.
"""

from __future__ import annotations

import random

from twisted.trial import unittest

from chatservice import events
from chatservice.interfaces import OneByOne
from chatservice.server.fanout import SharedFanout
from tests.support import SAMPLE_ACCOUNTS, ChatHarness, Connection

USERS = sorted(SAMPLE_ACCOUNTS)


class SharedFanoutTests(unittest.TestCase):
    """The fan-out through the wire, on a batched harness."""

    def setUp(self) -> None:
        self.harness = ChatHarness(batched=True)
        self.batcher = self.harness.factory.output_batcher
        self.fanout = self.batcher.fanout
        self.clients = {name: self.harness.connect() for name in USERS[:4]}
        for name, client in self.clients.items():
            client.login(name)
        for client in self.clients.values():
            client.output()
        self.addCleanup(self.harness.close_all, *self.clients.values())

    def end_turn(self) -> None:
        self.harness.clock.advance(self.harness.policy.flush_interval)

    def test_the_server_uses_the_shared_fanout(self) -> None:
        self.assertIsInstance(self.harness.state.fanout, SharedFanout)
        self.assertIs(self.harness.state.fanout, self.fanout)

    def test_members_in_step_after_their_output_is_written(self) -> None:
        self.assertEqual(len(self.fanout.in_step), 4)
        self.assertEqual(self.fanout.apart, {})

    def test_a_broadcast_is_one_append_and_reaches_everyone_but_the_sender(self) -> None:
        sender, *others = self.clients.values()
        sender.send("broadcast hello all")
        self.assertEqual(len(self.fanout.segment.entries), 1)
        self.end_turn()
        for client in others:
            self.assertIn("hello all", client.output())
        self.assertNotIn("hello all] ", sender.output().split("Broadcast")[0])

    def test_all_in_step_clients_are_sent_the_same_bytes_object(self) -> None:
        names = list(self.clients)
        sends: dict[str, list[bytes]] = {name: [] for name in names}
        for name in names[1:]:
            transport = self.clients[name].transport
            real = transport.write

            def recording(data: bytes, real=real, log=sends[name]) -> None:
                log.append(data)
                real(data)

            transport.write = recording  # type: ignore[method-assign]
        self.clients[names[0]].send("broadcast one")
        self.clients[names[0]].send("broadcast two")
        self.end_turn()
        firsts = [sends[name][0] for name in names[1:]]
        self.assertEqual(len(firsts), 3)
        self.assertTrue(all(data is firsts[0] for data in firsts), "one joined bytes object for all")
        self.assertIn(b"one", firsts[0])
        self.assertIn(b"two", firsts[0])

    def test_a_direct_message_comes_after_the_broadcasts_shared_before_it(self) -> None:
        a, b, c, _ = USERS[:4]
        self.clients[a].send("broadcast before")
        self.clients[c].send(f"message {b} direct")
        self.assertNotIn(self.clients[b].connection.writer, self.fanout.in_step)
        self.clients[a].send("broadcast after")
        output = self.clients[b].output()
        self.assertLess(output.index("before"), output.index("direct"))
        self.assertLess(output.index("direct"), output.index("after"))
        self.end_turn()
        self.assertIn(self.clients[b].connection.writer, self.fanout.in_step)

    def test_left_out_blockers_and_busy_users(self) -> None:
        a, b, c, d = USERS[:4]
        self.clients[b].send(f"block {a}")
        self.clients[c].send("busy away")
        for client in self.clients.values():
            client.output()
        self.clients[a].send("broadcast anyone")
        reply = self.clients[a].output()
        self.assertIn("away", reply)  # c's auto-reply
        self.assertNotIn("anyone", self.clients[b].output())
        self.assertNotIn("anyone", self.clients[c].output())
        self.assertIn("anyone", self.clients[d].output())

    def test_a_client_that_stops_reading_steps_out_and_back(self) -> None:
        a, b = USERS[:2]
        writer = self.clients[b].connection.writer
        self.clients[a].send("broadcast first")
        writer.pauseProducing()
        self.assertIsNone(writer.position)
        self.assertIn(self.clients[b].connection, self.fanout.apart)
        self.clients[a].send("broadcast second")
        writer.resumeProducing()
        self.clients[a].send("broadcast third")
        output = self.clients[b].output()  # its own output written: in step again
        self.assertLess(output.index("first"), output.index("second"))
        self.assertLess(output.index("second"), output.index("third"))
        self.assertIn(writer, self.fanout.in_step)
        self.clients[a].send("broadcast fourth")
        self.assertIn("fourth", self.clients[b].output())

    def test_what_was_shared_counts_towards_the_backlog(self) -> None:
        a, b = USERS[:2]
        writer = self.clients[b].connection.writer
        writer._measured = True  # as on TCP, whose buffers it reads (none here)
        before = writer.backlog
        self.clients[a].send("broadcast " + "x" * 500)
        self.assertGreater(self.fanout.pending_size(writer), 500)
        self.assertGreater(writer.backlog, before + 500)
        self.end_turn()
        self.assertEqual(writer.backlog, before)

    def test_logout_gets_what_was_shared_before_and_nothing_after(self) -> None:
        a, b = USERS[:2]
        self.clients[a].send("broadcast before you go")
        self.clients[b].send("logout")
        self.clients[a].send("broadcast after you went")
        output = self.clients[b].output()
        self.assertIn("before you go", output)
        self.assertNotIn("after you went", output)
        self.assertNotIn(self.clients[b].connection.writer, self.fanout.in_step)
        self.assertNotIn(self.clients[b].connection, self.fanout.apart)

    def test_a_lost_connection_is_forgotten(self) -> None:
        a, b = USERS[:2]
        self.clients[a].send("broadcast one")
        writer = self.clients[b].connection.writer
        self.clients[b].drop()
        self.assertNotIn(writer, self.fanout.in_step)
        self.clients[a].send("broadcast two")
        self.end_turn()
        self.assertEqual(self.clients[b].transport.value(), b"")

    def test_a_flush_spread_over_turns_sends_each_broadcast_once(self) -> None:
        self.batcher.per_turn = 1
        a = USERS[0]
        self.clients[a].send("broadcast one")
        self.harness.clock.advance(self.harness.policy.flush_interval)  # first of three turns
        self.clients[a].send("broadcast two")  # shared while the flush goes on
        for _ in range(6):
            self.end_turn()
        for name in USERS[1:4]:
            output = self.clients[name].output()
            self.assertEqual(output.count("one"), 1, name)
            self.assertEqual(output.count("two"), 1, name)
            self.assertLess(output.index("one"), output.index("two"))


class OneByOneTests(unittest.TestCase):
    def test_delivers_to_each_member_but_those_left_out(self) -> None:
        got: dict[str, list[events.Event]] = {"a": [], "b": [], "c": []}

        class Client:
            def __init__(self, name: str) -> None:
                self.name = name

            def deliver(self, event: events.Event) -> None:
                got[self.name].append(event)

        fanout = OneByOne()
        clients = {name: Client(name) for name in got}
        for client in clients.values():
            fanout.join(client)  # type: ignore[arg-type]
        fanout.leave(clients["c"])  # type: ignore[arg-type]
        event = events.Presence("x", True)
        fanout.share(event, {clients["a"]})
        self.assertEqual(got, {"a": [], "b": [event], "c": []})


class SameAsOneByOneTests(unittest.TestCase):
    """Random sessions: every client reads what it read when delivered to one by one."""

    ACTIONS = 160

    def script(self, seed: int) -> list[tuple[str, str, str]]:
        """(kind, user, argument) steps; the same for both harnesses."""
        rng = random.Random(seed)
        steps = []
        for n in range(self.ACTIONS):
            user = rng.choice(USERS)
            other = rng.choice([u for u in USERS if u != user])
            kind = rng.choice(
                ["broadcast"] * 6 + ["message", "block", "unblock", "busy", "idle", "logout",
                 "login", "turn", "flush", "pause", "resume", "room"]
            )
            steps.append((kind, user, other if kind in ("message", "block", "unblock", "room") else str(n)))
        return steps

    def run_script(self, batched: bool, steps: list[tuple[str, str, str]], mixed: bool) -> dict[str, str]:
        harness = ChatHarness(batched=batched)
        clients: dict[str, Connection] = {}
        transcript = {name: [] for name in USERS}

        def collect(name: str) -> None:
            client = clients.get(name)
            if client is not None:
                transcript[name].append(client.raw_output().decode("utf-8"))

        def log_in(name: str) -> None:
            client = harness.connect()
            if batched and mixed and name == USERS[0]:
                # This one writes at once, as over TLS: it stays apart.
                client.connection.writer._batcher = None  # type: ignore[attr-defined]
                client.connection.writer._socket = None  # type: ignore[attr-defined]
                client.batcher = None
            client.login(name)
            clients[name] = client

        for name in USERS:
            log_in(name)
        for name in USERS:
            collect(name)
        paused: set[str] = set()
        for kind, user, argument in steps:
            client = clients.get(user)
            if kind == "login":
                if client is None:
                    log_in(user)
                continue
            if client is None or client.closed:
                continue
            if kind == "broadcast":
                client.send(f"broadcast b{argument} from {user}")
            elif kind == "message":
                client.send(f"message {argument} dm from {user}")
            elif kind in ("block", "unblock"):
                client.send(f"{kind} {argument}")
            elif kind == "busy":
                client.send("busy gone fishing")
            elif kind == "idle":
                client.send("idle")
            elif kind == "room":
                client.send(f"room create {argument}")
            elif kind == "logout":
                client.send("logout")
                collect(user)
                del clients[user]
                paused.discard(user)
            elif kind == "turn":
                harness.clock.advance(0)
            elif kind == "flush":
                harness.clock.advance(harness.policy.flush_interval)
            elif kind == "pause" and user not in paused:
                client.connection.writer.pauseProducing()
                paused.add(user)
            elif kind == "resume" and user in paused:
                client.connection.writer.resumeProducing()
                paused.discard(user)
        for name in list(clients):
            collect(name)
        harness.close_all(*clients.values())
        return {name: "".join(parts) for name, parts in transcript.items()}

    def check(self, seed: int, mixed: bool = False) -> None:
        steps = self.script(seed)
        one_by_one = self.run_script(False, steps, mixed)
        shared = self.run_script(True, steps, mixed)
        for name in USERS:
            self.assertEqual(shared[name], one_by_one[name], f"seed {seed}, {name}")
        self.assertTrue(any("b" in text for text in shared.values()))

    def test_random_sessions(self) -> None:
        for seed in range(12):
            self.check(seed)

    def test_random_sessions_with_a_client_that_is_never_in_step(self) -> None:
        for seed in range(100, 106):
            self.check(seed, mixed=True)
