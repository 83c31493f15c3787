"""The load generator's event loop (``bench.loadgen.Loop``): when it waits to coalesce reads."""

from __future__ import annotations

import socket
import threading
import time

from twisted.trial import unittest

from bench.loadgen import EPOLL_READ, Loop

COALESCE = 0.4
"""Long enough that a sleep of the loop stands out of a busy machine's scheduling noise."""


class Reader:
    """What the loop needs of a client: its socket and what to do when it is readable."""

    def __init__(self, loop: Loop, sock: socket.socket) -> None:
        self.sock = sock
        self.read_at: list[float] = []
        loop.clients[sock.fileno()] = self  # type: ignore[assignment]
        loop.ep.register(sock.fileno(), EPOLL_READ)

    def on_readable(self) -> None:
        self.sock.recv(65536)
        self.read_at.append(time.monotonic())

    def on_writable(self) -> None:
        pass


class CoalesceTests(unittest.TestCase):
    def setUp(self) -> None:
        self.loop = Loop()
        self.loop.coalesce = COALESCE
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        self.addCleanup(self.loop.ep.close)
        self.theirs = theirs
        self.reader = Reader(self.loop, ours)

    def test_input_that_comes_while_the_loop_waits_is_read_at_once(self) -> None:
        """A ping to an idle client is read when it comes, not a coalescing sleep later
        (which the DM round trip measured, once per wake-up)."""
        sent: list[float] = []

        def send_later() -> None:
            time.sleep(0.1)
            sent.append(time.monotonic())
            self.theirs.sendall(b"zqp 0 0 0\n")

        sender = threading.Thread(target=send_later)
        sender.start()
        self.loop.run(time.monotonic() + 2.0, lambda: bool(self.reader.read_at))
        sender.join()
        self.assertEqual(len(self.reader.read_at), 1)
        self.assertLess(self.reader.read_at[0] - sent[0], COALESCE / 2)

    def test_a_few_messages_together_are_read_without_a_sleep(self) -> None:
        """Replies to two clients written in one turn (one node's DM: the sender's
        reply and the delivery) do not make the loop sleep between them."""
        other, theirs = socket.socketpair()
        self.addCleanup(other.close)
        self.addCleanup(theirs.close)
        second = Reader(self.loop, other)
        self.theirs.sendall(b"message sent\n")
        theirs.sendall(b"zqp 0 0 0\n")
        started = time.monotonic()
        self.loop.run(started + 2.0, lambda: bool(self.reader.read_at and second.read_at))
        self.assertLess(max(self.reader.read_at + second.read_at) - started, COALESCE / 2)

    def test_a_loop_that_stays_behind_sleeps_to_read_more_at_once(self) -> None:
        """Input waiting at poll after poll (a fan-out's load) is read after the
        coalescing sleep, so that more is read in each call (the generator's CPU)."""
        def more() -> None:
            Reader.on_readable(self.reader)
            if len(self.reader.read_at) < 2:
                self.theirs.sendall(b"zqb 0 0 0\n")  # waiting at the next poll

        self.reader.on_readable = more  # type: ignore[method-assign]
        self.theirs.sendall(b"zqb 0 0 0\n")
        started = time.monotonic()
        self.loop.run(started + 3.0, lambda: len(self.reader.read_at) == 2)
        first, second = self.reader.read_at
        self.assertLess(first - started, COALESCE / 2)
        self.assertGreaterEqual(second - first, COALESCE)
