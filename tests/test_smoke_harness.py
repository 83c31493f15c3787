"""The test harness itself logs users in and leaves no timers behind."""

from twisted.trial import unittest

from tests.support import ChatHarness


class HarnessTests(unittest.TestCase):
    def test_two_users_chat(self) -> None:
        harness = ChatHarness()
        yoda, hans = harness.online("yoda", "hans")
        yoda.send("message hans Hey Dude")
        self.assertEqual(hans.lines(), ["yoda: Hey Dude"])
        harness.close_all(yoda, hans)
        self.assertEqual(harness.clock.getDelayedCalls(), [])
