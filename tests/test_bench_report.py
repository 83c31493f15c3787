"""bench.report's comparison of p99 at a peer's best rate (issue 17)."""

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
