"""bench.report's comparison of p99 at a peer's best rate, and bench.harness's probes (issue 17)."""

from __future__ import annotations

from twisted.trial import unittest

from bench.report import _step_at


def run(*rates: float) -> dict:
    return {"result": {"steps": [{"offered_msgs_per_s": rate, "latency": {"p99_ms": rate / 10}} for rate in rates]}}


class StepAtTests(unittest.TestCase):
    def test_the_step_at_that_rate(self) -> None:
        step = _step_at(run(100, 200, 400), 200.5)
        assert step is not None
        self.assertEqual(step["offered_msgs_per_s"], 200)

    def test_else_the_next_rate_above(self) -> None:
        step = _step_at(run(1600, 3200, 4000), 2795.08)
        assert step is not None
        self.assertEqual(step["offered_msgs_per_s"], 3200)

    def test_none_when_every_step_was_slower(self) -> None:
        self.assertIsNone(_step_at(run(100, 200), 2795.08))
        self.assertIsNone(_step_at(None, 100))


class FanoutProbesTests(unittest.TestCase):
    """How many receivers of a fan-out parse every line (bench.harness.fanout_probes)."""

    def test_a_tenth_of_the_receivers_between_ten_and_the_plans(self) -> None:
        from bench.harness import fanout_probes

        self.assertEqual(fanout_probes(100, 32), 10)
        self.assertEqual(fanout_probes(250, 32), 25)
        self.assertEqual(fanout_probes(1000, 32), 32)
        self.assertEqual(fanout_probes(10000, 32), 32)
        self.assertEqual(fanout_probes(20, 32), 10)
