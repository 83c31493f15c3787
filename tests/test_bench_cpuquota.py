"""``bench.cpuquota``: a process in a group held to a fifth of a core gets about that much."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from twisted.trial import unittest

from bench import cluster
from bench.cpuquota import CPUQuota, QuotaUnavailable
from bench.report import Figure


class CPUQuotaTests(unittest.TestCase):
    def test_a_busy_process_gets_its_quota(self) -> None:
        try:
            quota = CPUQuota(f"chatbench-test-{os.getpid()}", 0.2)
        except QuotaUnavailable as e:
            raise unittest.SkipTest(str(e))
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            quota.add(busy.pid)
            started = time.monotonic()
            time.sleep(1.0)
            with open(f"/proc/{busy.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            wall = time.monotonic() - started
        finally:
            busy.kill()
            busy.wait()
        quota.remove()
        self.assertLess(cpu / wall, 0.35)  # (a fifth of a core, and the ticks' rounding)
        self.assertGreater(cpu / wall, 0.05)
        self.assertFalse(quota.path.exists())

    def test_a_quota_must_make_sense(self) -> None:
        self.assertRaises(ValueError, CPUQuota, "never-made", 0.0)


class DerivedTests(unittest.TestCase):
    """``bench.cluster.derived``: the capacity measured under a quota, and estimated from CPU."""

    def results(self, quota: float | None) -> dict:
        cells = {
            ("fanout", "one"): {"delivered/s": Figure(1_000_000), "nodes us/delivery": Figure(0.5)},
            ("fanout", "two"): {"delivered/s": Figure(1_600_000), "nodes us/delivery": Figure(0.8)},
            ("direct", "one"): {"RTT p99 ms": Figure(10.0)},
            ("direct", "two"): {"RTT p99 ms": Figure(30.0)},
        }
        self.patch(cluster, "figures", lambda record: cells[(record["workload"], record["config"])])
        runs = [{"workload": w, "config": c} for w, c in cells]
        return {"runs": runs, "receivers": 1000, "node_quota": quota}

    def test_with_a_quota_the_measured_ratio_is_the_target(self) -> None:
        derived = {d["figure"].split(":")[0]: d for d in cluster.derived(self.results(0.45))}
        measured = derived["fan-out delivered/s, each node held to 0.45 of a core"]
        self.assertEqual((measured["value"], measured["met"]), (1.6, True))
        estimate = derived["fan-out capacity from CPU per delivery at the best steps"]
        self.assertEqual((estimate["value"], estimate["met"]), (1.25, None))
        # A throttled node waits for its next period: the DM target is not judged under a quota.
        dm = derived["DM RTT p99"]
        self.assertEqual((dm["value"], dm["target"], dm["met"]), (3.0, None, None))

    def test_without_a_quota_the_estimate_and_the_dm_ratio_are_the_targets(self) -> None:
        derived = cluster.derived(self.results(None))
        self.assertEqual(
            [(d["value"], d["met"]) for d in derived if d["target"]], [(1.25, False), (3.0, False)]
        )
