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

    def test_input_waiting_already_is_read_after_the_coalescing_sleep(self) -> None:
        """A loop that is behind (input waiting when it polls) still sleeps, so that
        more arrives and is read in the same call (the fan-out's load generator CPU)."""
        self.theirs.sendall(b"zqb 0 0 0\n")
        started = time.monotonic()
        self.loop.run(started + 2.0, lambda: bool(self.reader.read_at))
        self.assertEqual(len(self.reader.read_at), 1)
        self.assertGreaterEqual(self.reader.read_at[0] - started, COALESCE)
