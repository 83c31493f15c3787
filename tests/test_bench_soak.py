"""The soak with the attackers of issue 15 (``python3 -m bench.soak --attackers``), in its smallest run.

Runs the benchmark as a user does (a subprocess, on loopback, real
``twistd chat`` servers it starts and stops itself) with the smallest sizes,
bounded to well under a minute, and checks its report: both phases there,
every attacker kind attacked and was answered as the limits say, and no
ordinary user's acknowledged message was lost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial import unittest

from tests.e2e_support import SOURCE_ROOT, subprocess_environment

HANDSHAKE_DEADLINE = 2
"""``--tls-handshake-deadline`` of the servers (within the 5 s run)."""
TIME_LIMIT = 55.0
"""Seconds the smallest run may take (it takes about 30 on an idle machine)."""

SMALLEST = [
    "--attackers", "--quick", "--clients", "10", "--bad-fraction", "0.4", "--seconds", "5", "--second-wave", "2",
    "--settle", "1", "--drain-seconds", "5", "--history-mb", "0.5", "--idle-tls", "44",
    "--amplifiers", "1", "--absent", "2", f"--server-option=--tls-handshake-deadline={HANDSHAKE_DEADLINE}",
    "--server-option=--output-soft-limit=131072", "--server-option=--output-hard-limit=262144",
]
"""The smallest run: 10 clients (4 of them the misbehaving minority, one of each kind), 5 s, 44 idle TLS sockets (22 an address: past the cap of 20); the
output limits a quarter of the default, so the amplifiers reach the hard limit within the run."""


class SmallestSoak(unittest.TestCase):
    """One smallest ``--attackers`` run, shared by the checks (it starts two servers)."""

    results: dict = {}
    output = ""

    @classmethod
    def setUpClass(cls) -> None:
        work = Path(tempfile.mkdtemp(prefix="soak-test-"))
        path = work / "soak.json"
        completed = subprocess.run(
            [sys.executable, "-m", "bench.soak", *SMALLEST, "--output", str(path)],
            cwd=SOURCE_ROOT, env=subprocess_environment(), capture_output=True, text=True, timeout=TIME_LIMIT,
        )
        cls.output = completed.stdout + completed.stderr
        cls.returncode = completed.returncode
        cls.results = json.loads(path.read_text()) if path.exists() else {}

    def test_nothing_lost(self) -> None:
        """Exit status 0, every acknowledged message of the ordinary users arrived, in both phases, and
        the server logged no traceback."""
        self.assertEqual(self.returncode, 0, self.output[-3000:])
        for phase in ("without_attackers", "with_attackers"):
            ordinary = self.results[phase]["well_behaved"]
            self.assertEqual(ordinary["messages_lost"], 0, phase)
            self.assertGreater(ordinary["dms_acked"], 0, phase)
            self.assertGreater(ordinary["broadcast_deliveries_expected"], 0, phase)
            self.assertGreater(ordinary["room_deliveries_expected"], 0, phase)
            self.assertGreater(ordinary["offline"]["acked_kept"], 0, phase)
            self.assertEqual(ordinary["offline"]["lost"], 0, phase)
            self.assertEqual(ordinary["offline"]["duplicated"], 0, phase)
            server = self.results[phase]["server"]
            self.assertEqual((server["log_tracebacks"], server["log_unhandled_errors"]), (0, 0), phase)

    def test_side_by_side(self) -> None:
        """The comparison has the p99 ratios, peak RSS, the memory check and the load generator's share."""
        comparison = self.results["comparison"]
        for kind in ("direct", "broadcast", "room", "all", "login (prober)"):
            figures = comparison["p99"][kind]
            self.assertIsNotNone(figures["p99_ms_without"], kind)
            self.assertIsNotNone(figures["p99_ms_with"], kind)
            self.assertIsNotNone(figures["ratio"], kind)
        self.assertGreater(comparison["peak_rss_mib"]["with"], 0)
        self.assertIsNotNone(comparison["second_wave_rss_growth_mib"])
        self.assertIn("memory_returned", comparison)
        self.assertTrue(comparison["loadgen_under_limit"], comparison["loadgen_cpu_percent"])
        self.assertIn("chatservice_sha1", self.results["code"])
        self.assertIn("with/without", self.output)

    def test_attackers_answered(self) -> None:
        """Each attacker kind ran and met the limit meant for it."""
        attacked = self.results["with_attackers"]
        attackers = attacked["attackers"]
        self.assertEqual(
            set(attackers), {"idle_tls", "read_amplifier", "pager", "mailbox_flooder", "lockout", "telnet_flood"}
        )
        self.assertEqual(
            set(attacked["misbehaving"]), {"never_reader", "flooder", "garbage", "disconnecter"}
        )
        # Idle TLS sockets: ended by the server at the handshake deadline, or
        # at once past the per-address cap; none left open.
        idle = attackers["idle_tls"]
        self.assertGreater(idle["notes"]["closed after the deadline"], 0)
        self.assertGreater(idle["notes"]["refused at once (< 0.5 s)"], 0)
        self.assertEqual(idle["still_open_at_end"], 0)
        self.assertLess(idle["lifetime_s_max"], HANDSHAKE_DEADLINE + 2.5)
        # Read amplifiers: closed by the server once their backlog passed the hard limit.
        for kind in ("read_amplifier", "pager"):
            self.assertGreater(sum(attackers[kind]["closed_by_server"].values()), 0, kind)
        # The mailbox flooder kept at most its share of any mailbox.
        self.assertGreater(attackers["mailbox_flooder"]["kept"], 0)
        self.assertLessEqual(attacked["well_behaved"]["offline"]["flooder_most_in_one_mailbox"], 25)
        self.assertEqual(attacked["well_behaved"]["offline"]["refused"], {})
        # The telnet flooder wrote all along (its cost is in the others' latency).
        self.assertGreater(attackers["telnet_flood"]["notes"]["64 KiB writes"], 10)
        # Guessing the prober's password from elsewhere never locked the prober out.
        self.assertNotIn("accepted!", attackers["lockout"]["login_refused"])
        prober = attacked["well_behaved"]["login_prober"]
        self.assertGreater(prober["logins"], 0)
        self.assertEqual(prober["refused"], {})
