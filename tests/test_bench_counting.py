"""The load generator counts a fan-out's deliveries by bytes only when that is exact (``bench.loadgen``).

Against a real ``twistd chat`` started as :mod:`bench.run` starts it: over
the text protocol every timed broadcast reaches a receiver as the same
number of bytes, so :meth:`~bench.loadgen.FanOut.calibrate` lets the
counting receivers count bytes (read with ``MSG_TRUNC``), and a step's
count must still be every delivery exactly, as the probes (which count
both ways) confirm.  Over JSON lines (a time stamp and a number of the
server's own in each) it keeps counting marks.
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from bench import loadgen, peers


class ByteCountingTests(unittest.TestCase):
    timeout = 120

    def fan_out(self, protocol: str, receivers: int = 12, probes: int = 3) -> tuple[loadgen.FanOut, dict[str, Any]]:
        """A chatservice with ``receivers`` and two senders logged in over ``protocol``; the fan-out."""
        names = [f"r{i}" for i in range(receivers)] + [f"s{i}" for i in range(receivers, receivers + 2)]
        peer = peers.start_chat(names, None)
        self.addCleanup(peer.stop)
        spec = {
            "protocol": protocol, "port": peer.port, "password_format": peers.PASSWORD_FORMAT,
            "concurrency": 8, "login_limit": 30, "settle_limit": 10, "quiet": 0.3,
        }
        loop = loadgen.Loop()
        wire = loadgen.make_wire(spec)
        rx, tx, login = loadgen.open_room(loop, wire, spec, receivers, 2)
        self.addCleanup(lambda: [c.close() for c in rx + tx])
        self.assertTrue(login["complete"], login)
        return loadgen.FanOut(loop, wire, rx, tx, probes=probes, pad=20), spec

    def test_text_lines_are_counted_by_bytes_exactly(self) -> None:
        fan, _ = self.fan_out("chat")
        self.assertEqual(fan.calibrate(), "bytes")
        assert fan.line_size is not None
        self.assertEqual(fan.line_size, len(b"[broadcast] s12: " + loadgen.TIMED_BROADCAST % (0, 0, 0, fan.pad) + b"\r\n"))
        counting = [c for c in fan.receivers if c not in fan.probes]
        self.assertTrue(counting and all(c.bytes_only for c in counting))
        self.assertFalse(any(c.bytes_only for c in fan.probes))
        step = fan.run_step(40.0, 0.5, 5.0)
        self.assertGreater(step["sent"], 0)
        self.assertEqual(step["counted_by"], "bytes")
        self.assertTrue(step["byte_counts_agree"], step)
        self.assertEqual(step["delivered_total"], step["sent"] * len(fan.receivers), step)
        self.assertEqual(step["latency"]["lost"], 0, step)
        # What the counting receivers read was dropped by the kernel, yet counted to the byte.
        for client in counting:
            self.assertEqual(client.rx, (2 + step["sent"]) * fan.line_size)

    def test_a_stray_line_makes_the_probes_disagree(self) -> None:
        fan, _ = self.fan_out("chat")
        self.assertEqual(fan.calibrate(), "bytes")
        # A direct message to every probe: bytes that no timed line accounts for.
        for probe in fan.probes:
            fan.senders[0].send(b"message " + probe.name.encode() + b" hello\n")
        step = fan.run_step(40.0, 0.5, 5.0)
        self.assertFalse(step["byte_counts_agree"], step)

    def test_json_lines_keep_counting_marks(self) -> None:
        fan, _ = self.fan_out("json")
        self.assertEqual(fan.calibrate(), "marks")
        self.assertIsNone(fan.line_size)
        step = fan.run_step(40.0, 0.5, 5.0)
        self.assertEqual(step["counted_by"], "marks")
        self.assertEqual(step["delivered_total"], step["sent"] * len(fan.receivers), step)


class StartedServerTests(unittest.TestCase):
    """``bench.servers.start_chatservice`` returns once the server serves, not once it listens."""

    timeout = 60

    def test_the_first_connection_is_welcomed_not_told_to_wait(self) -> None:
        import socket

        peer = peers.start_chat(["r0", "s0"], None)
        self.addCleanup(peer.stop)
        log = peer.log_tail(100_000)
        self.assertIn("Chat service started:", log)
        with socket.create_connection(("127.0.0.1", peer.port), timeout=10) as sock:
            first = sock.recv(4096)
        self.assertNotIn(b"starting", first)
        self.assertTrue(first, "the server closed the connection")
