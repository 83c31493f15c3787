"""Workload 3's background is one load for every server: half the best peer's fan-out maximum (bench.run)."""

from __future__ import annotations

from twisted.trial import unittest

from bench.run import common_background_rate


class CommonBackgroundTests(unittest.TestCase):
    def test_half_the_best_peers_maximum_for_everyone(self) -> None:
        maxima = {
            "chatservice": {1000: 4_000_000.0},
            "inspircd": {1000: 2_000_000.0, 5000: 1_000_000.0},
            "ngircd": {1000: 1_500_000.0},
        }
        # Scaled from the nearest size (1000) to 1000 users: half of 2 M deliveries/s.
        self.assertEqual(common_background_rate(maxima, 1000), 1000.0)

    def test_chatservice_alone_uses_its_own(self) -> None:
        self.assertEqual(common_background_rate({"chatservice": {100: 800_000.0}}, 100), 4000.0)

    def test_nothing_measured(self) -> None:
        self.assertEqual(common_background_rate({"chatservice": {}, "inspircd": {}}, 100), 10.0)
