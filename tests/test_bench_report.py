"""bench.report's comparison of p99 at a peer's best rate, and bench.harness's probes (issue 17)."""

from __future__ import annotations

from twisted.trial import unittest

from bench.report import _step_at, direct_figures


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


class ByteCountCheckTests(unittest.TestCase):
    """A fan-out figure counted by bytes that the probes' marks contradict is marked invalid."""

    def record(self, agree: bool) -> dict:
        step = {
            "p99_s": 0.1, "loadgen_cpu_percent": 50.0, "delivered_per_s": 1000.0,
            "latency": {"p99_ms": 100.0}, "delivered_total": 4000, "deliveries_wanted": 4000,
            "counted_by": "bytes", "byte_counts_agree": agree,
        }
        return {"result": {"steps": [step], "login": {"complete": True}}}

    def test_only_when_the_probes_disagree(self) -> None:
        from bench.report import fanout_figures

        self.assertTrue(fanout_figures(self.record(True), 80.0)["delivered/s"].valid)
        figure = fanout_figures(self.record(False), 80.0)["delivered/s"]
        self.assertFalse(figure.valid)
        self.assertIn("bytes", figure.why)


class PeerTargetsTests(unittest.TestCase):
    """Issue 17's comparisons against the best valid peer."""

    def test_a_finite_p99_beats_a_peer_that_lost_everything(self) -> None:
        from bench.report import peer_targets

        def cell(value: object) -> dict:
            return {"value": value, "valid": True, "why": None, "text": None}

        row = {
            "workload": "direct", "figure": "RTT p99 ms", "size": 1000, "higher_is_better": False,
            "values": {"chatservice": cell(63.6), "hybrid": cell("inf"),
                       "inspircd": dict(cell(158.5), valid=False)},
        }
        (target,) = peer_targets({"runs": []}, [row])
        self.assertEqual(target["ratio"], 0.0)
        self.assertTrue(target["met"])
        # Said, so that a 0.00 against the one valid peer is not read as a comparison with the rest.
        self.assertEqual(target["note"], "ircd-hybrid lost messages (an infinite p99); InspIRCd invalid here")


class BacklogTests(unittest.TestCase):
    """A step that counted an earlier step's backlog is not a fan-out's best."""

    def test_best_step_skips_one_with_more_deliveries_than_sent(self) -> None:
        from bench.report import fanout_best

        def step(rate: float, delivered: int, wanted: int) -> dict:
            return {"offered_msgs_per_s": rate, "p99_s": 0.1, "loadgen_cpu_percent": 50.0,
                    "delivered_per_s": delivered / 4, "delivered_total": delivered, "deliveries_wanted": wanted}

        overloaded = dict(step(400, 10000, 16000), p99_s=2.5)
        record = {"result": {"steps": [step(100, 4000, 4000), overloaded, step(200, 9000, 8000)]}}
        best = fanout_best(record)
        assert best is not None
        self.assertEqual(best["offered_msgs_per_s"], 100)

    def test_after_clean_steps_a_few_more_deliveries_are_this_steps_own(self) -> None:
        """InspIRCd at 16 000 broadcasts/s (2 Dec): 6,400,000 delivered, 6,387,200 counted as sent."""
        from bench.report import fanout_best

        def step(rate: float, delivered: int, wanted: int, p99: float | None = 0.05) -> dict:
            return {"offered_msgs_per_s": rate, "p99_s": p99, "loadgen_cpu_percent": 50.0,
                    "delivered_per_s": delivered / 4, "delivered_total": delivered, "deliveries_wanted": wanted}

        record = {"result": {"steps": [
            step(8000, 3_200_000, 3_197_400), step(16000, 6_400_000, 6_387_200),
            step(32000, 11_149_300, 12_777_000, None), step(17448, 7_214_665, 6_978_700, 0.9),
        ]}}
        best = fanout_best(record)
        assert best is not None
        self.assertEqual(best["offered_msgs_per_s"], 16000, "the last step counted the overloaded one's backlog")


class LowerBoundTests(unittest.TestCase):
    """A fan-out whose ramp stopped before the server was saturated gives a lower bound."""

    def record(self, stopped: str, last_p99: float) -> dict:
        def step(rate: float, p99: float) -> dict:
            return {"offered_msgs_per_s": rate, "p99_s": p99, "loadgen_cpu_percent": 20.0,
                    "delivered_per_s": rate * 100, "delivered_total": rate * 400,
                    "deliveries_wanted": rate * 400, "latency": {"p99_ms": p99 * 1000}}

        return {"result": {"stopped": stopped, "steps": [step(100, 0.3), step(200, last_p99)]}}

    def test_the_ramp_out_of_steps_on_a_healthy_step(self) -> None:
        """chatservice at 10 000 receivers (2 Dec): 18 steps, the last at p99 376 ms."""
        from bench.report import fanout_figures

        figure = fanout_figures(self.record("max steps", 0.376), 80.0)["delivered/s"]
        self.assertEqual((figure.value, figure.text), (20000, ">= 20,000"))
        self.assertIn("ran out of steps", figure.why)

    def test_not_when_the_last_step_was_overloaded(self) -> None:
        from bench.report import fanout_figures

        figure = fanout_figures(self.record("max steps", 1.5), 80.0)["delivered/s"]
        self.assertEqual((figure.value, figure.text), (10000, None))
        figure = fanout_figures(self.record("converged below the rate where p99 > 1 s", 0.376), 80.0)["delivered/s"]
        self.assertIsNone(figure.text)


class DirectFiguresTests(unittest.TestCase):
    """Workload 3's figures: a generator past its limit is shown with how its input came."""

    def record(self, cpu: float) -> dict:
        return {"result": {
            "rtt": {"p50_ms": 50.0, "p99_ms": 150.0}, "background_delivered_per_s": 773000.0,
            "loadgen_cpu_percent": cpu, "loadgen_kernel_percent": 55.0,
            "reads_per_s": 40959.8, "bytes_per_read": 2026.0,
        }}

    def test_invalid_past_the_limit_with_the_reads(self) -> None:
        figure = direct_figures(self.record(83.7), 80.0)["RTT p99 ms"]
        self.assertFalse(figure.valid)
        self.assertEqual(
            figure.why,
            "load generator at 84% CPU (> 80%), 55% in the kernel: 40,960 reads/s of 2,026 bytes",
        )

    def test_valid_under_it(self) -> None:
        figure = direct_figures(self.record(72.0), 80.0)["RTT p99 ms"]
        self.assertTrue(figure.valid)
        self.assertEqual(figure.value, 150.0)
