"""The benchmark's peer IRC servers (``bench.peers``, ``bench.fetch_peers``) really serve IRC.

Each peer unpacked from Debian's packages is started as ``bench.run``
starts it (generated configuration, loopback) and driven by the load
generator's own IRC client (``bench.loadgen``): every client must register
and join the room, and every broadcast (``PRIVMSG #bench``) must reach
every receiver, counted as ``bench.run`` counts it (by bytes where the
peer's lines allow it).  A peer that is not unpacked here is skipped, saying how to
fetch it (``python3 -m bench.fetch_peers``).
"""

from __future__ import annotations

from twisted.trial import unittest

from bench import fetch_peers, loadgen, peers


class PatchStringsTests(unittest.TestCase):
    """:func:`bench.fetch_peers.patch_strings`: whole C strings, same size, found once."""

    def test_replaces_whole_strings_padding_with_nul(self) -> None:
        data = b"\0abc\0/usr/lib/x/\0tail/usr\0"
        patched = fetch_peers.patch_strings(data, ((b"/usr/lib/x/", b"m/"),))
        self.assertEqual(patched, b"\0abc\0m/\0\0\0\0\0\0\0\0\0\0tail/usr\0")
        self.assertEqual(len(patched), len(data))

    def test_a_string_only_part_of_another_is_not_replaced(self) -> None:
        # "/usr" occurs inside "/usr/lib" and at the end of "tail/usr": neither is the string "/usr".
        with self.assertRaises(ValueError):
            fetch_peers.patch_strings(b"\0/usr/lib\0tail/usr\0", ((b"/usr", b"."),))

    def test_refuses_a_longer_replacement_or_a_repeated_string(self) -> None:
        with self.assertRaises(ValueError):
            fetch_peers.patch_strings(b"\0ab\0", ((b"ab", b"abc"),))
        with self.assertRaises(ValueError):
            fetch_peers.patch_strings(b"\0ab\0ab\0", ((b"ab", b"a"),))


class PeerDeliversTests(unittest.TestCase):
    """Each peer accepts the load generator's clients and delivers their channel messages."""

    timeout = 120

    def deliver(self, server: str, package: str) -> None:
        if server != "ngircd" and fetch_peers.unpacked(package) is None:
            raise unittest.SkipTest(f"{package} is not unpacked: python3 -m bench.fetch_peers {package}")
        if server == "ngircd" and peers.ngircd_binary() is None:
            raise unittest.SkipTest("ngIRCd is neither installed nor unpacked: python3 -m bench.fetch_peers ngircd")
        receivers = 5
        names = [f"r{i}" for i in range(receivers)] + [f"s{receivers}"]
        peer = peers.STARTERS[server](names, None)
        self.addCleanup(peer.stop)
        spec = {
            "protocol": "irc", "port": peer.port, "channel": f"#{peers.ROOM}", "irc_pass": peer.irc_pass,
            "irc_join_after_welcome": peer.join_after_welcome, "password_format": peers.PASSWORD_FORMAT,
            "concurrency": 8, "login_limit": 30, "settle_limit": 10, "quiet": 0.3,
        }
        loop = loadgen.Loop()
        wire = loadgen.make_wire(spec)
        rx, tx, login = loadgen.open_room(loop, wire, spec, receivers, 1)
        self.addCleanup(lambda: [c.close() for c in rx + tx])
        self.assertTrue(login["complete"], f"{login}\n{peer.log_tail()}")
        fan = loadgen.FanOut(loop, wire, rx, tx, probes=2, pad=20)
        # As bench.run counts: by bytes, if the peer's lines from both senders are alike.
        counted_by = fan.calibrate()
        step = fan.run_step(20.0, 0.5, 5.0)
        self.assertGreater(step["sent"], 0)
        self.assertEqual(step["delivered_total"], step["sent"] * receivers, step)
        self.assertEqual(step["latency"]["lost"], 0, step)
        # Each probe's line was parsed as a PRIVMSG carrying the timed mark.
        self.assertEqual(step["probes_parsed"], step["sent"] * 2, step)
        if counted_by == "bytes":
            self.assertTrue(step["byte_counts_agree"], step)

    def test_inspircd(self) -> None:
        self.deliver("inspircd", "inspircd")

    def test_ircd_hybrid(self) -> None:
        self.deliver("hybrid", "ircd-hybrid")

    def test_ngircd(self) -> None:
        self.deliver("ngircd", "ngircd")


class IrcLoginFailureTests(unittest.TestCase):
    """The load generator's IRC client tells a refused login from a reply that only mentions the numeric."""

    def test_numerics_count_only_as_the_reply_code(self) -> None:
        wire = loadgen.IrcWire({"channel": "#bench"})
        self.assertFalse(wire.failure(b":srv 255 u431 :I have 433 clients and 0 servers\r\n"))
        self.assertFalse(wire.failure(b":srv 266 u431 :Current global users: 432  Max: 432\r\n"))
        self.assertTrue(wire.failure(b":srv 001 u1 :Welcome\r\n:srv 433 * u1 :Nickname is already in use\r\n"))
        self.assertTrue(wire.failure(b":srv 471 u1 #bench :Cannot join channel (+l)\r\n"))
        self.assertTrue(wire.failure(b"ERROR :Closing link\r\n"))
