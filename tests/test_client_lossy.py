"""The lossy datagram wrapper: it drops, duplicates and delays as asked, and stops cleanly."""

from __future__ import annotations

import random

from twisted.internet.task import Clock
from twisted.trial import unittest

from chatservice.client.lossy import LossyWriter


class LossyWriterTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.out: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, datagram: bytes, address: tuple[str, int]) -> None:
        self.out.append((datagram, address))

    def test_perfect_by_default(self) -> None:
        writer = LossyWriter(self.write, self.clock, random.Random(1))
        for n in range(100):
            writer(bytes([n]), ("127.0.0.1", 1))
        self.assertEqual([d for d, _ in self.out], [bytes([n]) for n in range(100)])
        self.assertEqual((writer.sent, writer.dropped, writer.duplicated, writer.delayed), (100, 0, 0, 0))

    def test_rates_are_roughly_kept(self) -> None:
        writer = LossyWriter(self.write, self.clock, random.Random(2), loss=0.2, duplicate=0.1, reorder=0.3)
        for n in range(2000):
            writer(n.to_bytes(2, "big"), ("127.0.0.1", 1))
        self.clock.advance(1)
        self.assertLess(abs(writer.dropped / 2000 - 0.2), 0.03)
        self.assertLess(abs(writer.duplicated / (2000 - writer.dropped) - 0.1), 0.03)
        self.assertEqual(len(self.out), 2000 - writer.dropped + writer.duplicated)
        order = [int.from_bytes(d, "big") for d, _ in self.out]
        self.assertNotEqual(order, sorted(order))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_cancels_held_datagrams(self) -> None:
        writer = LossyWriter(self.write, self.clock, random.Random(3), reorder=1.0)
        writer(b"x", ("127.0.0.1", 1))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        writer.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.out, [])
