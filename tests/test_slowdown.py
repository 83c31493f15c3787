"""Tests for the per-name slowdown: :class:`LoginSlowdown`, through :class:`LoginGate` and a connection.

Guessing one name's password from many addresses (each below the lock-outs'
limits) is slowed: past ``--name-failures`` failures of that name, every
login of it is answered after 1 s, 2 s, 4 s ... (at most ``max_delay``),
right or wrong, from any address; the password is checked and counted on
arrival.  Time is a
:class:`~twisted.internet.task.Clock`; every test ends with no timer left.
"""

from __future__ import annotations


from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from chatservice.auth.directory import CredentialsChecker
from chatservice.auth.lockout import LoginLockout
from chatservice.auth.login import LockoutChecker, LoginGate
from chatservice.auth.realm import ChatRealm
from chatservice.auth.slowdown import LoginSlowdown
from chatservice.session import Session
from chatservice.state import ChatState
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore
from tests.support import ChatHarness, Connection, memory_accounts
from tests.test_lockout import ACCOUNTS, FakeClient, refusal

THRESHOLD = 5
WINDOW = 60.0


class LoginSlowdownTests(unittest.TestCase):
    """The counts, the delays, the timers."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.slowdown = LoginSlowdown(self.clock, THRESHOLD, WINDOW, max_delay=30)
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))

    def test_delays_grow_from_the_threshold_and_are_capped(self) -> None:
        self.assertEqual(
            [self.slowdown.delay(n) for n in range(12)],
            [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 30, 30],
        )
        self.assertEqual(self.slowdown.delay(10**9), 30)

    def test_no_wait_under_the_threshold(self) -> None:
        for _ in range(THRESHOLD - 1):
            self.assertFalse(self.slowdown.failed("yoda"))
        self.assertEqual(self.successResultOf(self.slowdown.wait("yoda")), 0)
        self.slowdown.stop()

    def test_wait_fires_after_the_delay_on_the_clock(self) -> None:
        for _ in range(THRESHOLD + 2):
            self.slowdown.failed("yoda")
        d = self.slowdown.wait("yoda")
        self.clock.advance(3.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), 4)
        # Other names do not wait.
        self.assertEqual(self.successResultOf(self.slowdown.wait("hans")), 0)
        self.slowdown.stop()

    def test_failures_forgotten_window_after_the_last(self) -> None:
        for _ in range(THRESHOLD):
            self.slowdown.failed("yoda")
            self.clock.advance(50)
        self.assertEqual(self.slowdown.failures("yoda"), THRESHOLD)
        self.clock.advance(10)
        self.assertEqual(self.slowdown.failures("yoda"), 0)
        self.assertEqual(self.successResultOf(self.slowdown.wait("yoda")), 0)

    def test_cancelling_a_wait_cancels_its_timer(self) -> None:
        for _ in range(THRESHOLD):
            self.slowdown.failed("yoda")
        d = self.slowdown.wait("yoda")
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # only the count's
        self.slowdown.stop()

    def test_stop_cancels_waits_and_counts(self) -> None:
        for _ in range(THRESHOLD):
            self.slowdown.failed("yoda")
        d = self.slowdown.wait("yoda")
        self.slowdown.stop()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(self.slowdown.failures("yoda"), 0)


class SlowdownGateTests(unittest.TestCase):
    """Logins through :class:`LoginGate` with the lock-outs (3 failures) and the slowdown (5)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.lockout = LoginLockout(self.clock, 3, WINDOW)
        self.address_lockout = LoginLockout(self.clock, 3, WINDOW, kind="address")
        self.slowdown = LoginSlowdown(self.clock, THRESHOLD, WINDOW, max_delay=30)
        accounts = memory_accounts(ACCOUNTS, self.clock)
        self.state = ChatState(
            LocalStore(MemoryStore()), accounts, self.clock, session_factory=Session
        )
        checker = LockoutChecker(
            CredentialsChecker(accounts), self.lockout, self.address_lockout, self.slowdown
        )
        self.gate = LoginGate(
            Portal(ChatRealm(self.state), [checker]), accounts, self.lockout, self.address_lockout
        )
        self.addCleanup(self.stop)

    def stop(self) -> None:
        self.lockout.stop()
        self.address_lockout.stop()
        self.slowdown.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def guess_from_many_addresses(self, count: int, first: int = 1) -> None:
        """One wrong password for yoda from each of ``count`` addresses (no lock-out reached).

        Each is answered after the delay it has to wait.
        """
        for n in range(first, first + count):
            delay = self.slowdown.delay(self.slowdown.failures("yoda"))  # type: ignore[arg-type]
            d = self.gate.login("yoda", "guess", FakeClient(f"198.51.100.{n}"))
            self.clock.advance(delay)
            self.assertEqual(refusal(self, d, "yoda")[0], "wrong_password")

    def test_guessing_from_many_addresses_slows_the_name(self) -> None:
        self.guess_from_many_addresses(THRESHOLD)
        # A wrong guess now waits a second before its answer.
        d = self.gate.login("yoda", "guess", FakeClient("198.51.100.99"))
        self.clock.advance(0.999)
        self.assertNoResult(d)
        self.clock.advance(0.001)
        self.assertEqual(refusal(self, d, "yoda")[0], "wrong_password")
        # The next one two seconds: the delays grow.
        d = self.gate.login("yoda", "guess", FakeClient("198.51.100.98"))
        self.clock.advance(1.999)
        self.assertNoResult(d)
        self.clock.advance(0.001)
        self.assertEqual(refusal(self, d, "yoda")[0], "wrong_password")

    def test_the_owner_is_slowed_never_locked_out(self) -> None:
        self.guess_from_many_addresses(THRESHOLD + 3)
        d = self.gate.login("yoda", "wise", FakeClient("10.1.1.1"))
        # The right password is not answered sooner than a wrong one would be
        # (an early answer would tell the attacker it was right).
        self.clock.advance(7.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        session, logout = self.successResultOf(d)
        self.assertEqual(session.username, "yoda")
        logout()

    def test_other_names_are_not_slowed(self) -> None:
        self.guess_from_many_addresses(THRESHOLD + 5)
        session, logout = self.successResultOf(self.gate.login("hans", "falcon", FakeClient()))
        self.assertEqual(session.username, "hans")
        logout()
        self.assertEqual(refusal(self, self.gate.login("luke", "x", FakeClient()), "luke")[0], "wrong_password")

    def test_parallel_guesses_wait_longer_and_longer(self) -> None:
        """Each guess counts on arrival, so guesses sent side by side wait 1 s, 2 s, 4 s."""
        self.guess_from_many_addresses(THRESHOLD)
        waiting = [
            self.gate.login("yoda", "guess", FakeClient(f"203.0.113.{n}")) for n in range(1, 4)
        ]
        start = self.clock.seconds()
        for answered_after, d in zip((1, 2, 4), waiting):
            self.clock.advance(start + answered_after - 0.001 - self.clock.seconds())
            self.assertNoResult(d)
            self.clock.advance(0.001)
            self.assertEqual(refusal(self, d, "yoda")[0], "wrong_password")

    def test_waiting_side_by_side_does_not_get_past_the_lock_outs(self) -> None:
        """Guesses sent together from one address while the name is slowed: the third locks it.

        Each is checked and counted on arrival; the fourth and fifth are
        refused at once, not checked once the waits are over.
        """
        self.guess_from_many_addresses(THRESHOLD)
        waiting = [
            self.gate.login("yoda", f"guess{n}", FakeClient("203.0.113.9")) for n in range(3)
        ]
        later = [self.gate.login("yoda", "wise", FakeClient("203.0.113.9")) for _ in range(2)]
        for d in later:
            self.assertEqual(refusal(self, d, "yoda")[0], "address_blocked")
        for d in waiting:
            self.assertNoResult(d)
        self.clock.advance(4)
        self.assertEqual(
            [refusal(self, d, "yoda")[0] for d in waiting],
            ["wrong_password", "wrong_password", "locked"],
        )

    def test_a_locked_address_is_refused_without_waiting(self) -> None:
        self.guess_from_many_addresses(THRESHOLD)
        for _ in range(2):
            d = self.gate.login("hans", "guess", FakeClient("203.0.113.7"))
            self.assertEqual(refusal(self, d, "hans")[0], "wrong_password")
        d = self.gate.login("luke", "guess", FakeClient("203.0.113.7"))
        self.assertEqual(refusal(self, d, "luke")[0], "address_locked")
        d = self.gate.login("yoda", "wise", FakeClient("203.0.113.7"))
        self.assertEqual(refusal(self, d, "yoda")[0], "address_blocked")

    def test_a_login_waiting_when_the_server_stops_is_unavailable(self) -> None:
        self.guess_from_many_addresses(THRESHOLD)
        d = self.gate.login("yoda", "wise", FakeClient("10.1.1.1"))
        self.slowdown.stop()
        self.assertEqual(refusal(self, d, "yoda")[0], "unavailable")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_the_owner_s_success_does_not_reset_the_name_count(self) -> None:
        """An attack from elsewhere goes on whether the owner logs in or not."""
        self.guess_from_many_addresses(THRESHOLD)
        d = self.gate.login("yoda", "wise", FakeClient("10.1.1.1"))
        self.clock.advance(1)
        _session, logout = self.successResultOf(d)
        logout()
        self.assertEqual(self.slowdown.failures("yoda"), THRESHOLD)
        self.clock.advance(WINDOW)
        self.assertEqual(self.slowdown.failures("yoda"), 0)


class SlowdownConnectionTests(unittest.TestCase):
    """Through real connections: a slowed login waits, every other connection goes on."""

    def setUp(self) -> None:
        self.harness = ChatHarness(name_failures=4)
        self.connections: list[Connection] = []

    def tearDown(self) -> None:
        self.harness.close_all(*self.connections)
        self.assertEqual(self.harness.clock.getDelayedCalls(), [])

    def connect(self, host: str | None = None) -> Connection:
        connection = self.harness.connect(host=host)
        self.connections.append(connection)
        return connection

    def test_a_slowed_login_is_answered_later_and_others_go_on(self) -> None:
        hans, luke = self.harness.online("hans", "luke")
        self.connections += [hans, luke]
        for n in range(1, 5):
            attacker = self.connect(f"198.51.100.{n}")
            attacker.send("yoda")
            attacker.send("guess")
            self.assertIn("Invalid Password. Please try again", attacker.output())
        owner = self.connect("10.20.30.40")
        owner.send("yoda")
        self.assertEqual(owner.output(), "Password: ")
        owner.send("wise")
        owner.send("whoelse")  # waits, in order, behind the login
        self.assertEqual(owner.output(), "")
        # Meanwhile the others chat as ever.
        hans.send("message luke still here")
        self.assertEqual(luke.output(), "hans: still here\r\n")
        self.harness.clock.advance(0.5)
        self.assertEqual(owner.output(), "")
        self.harness.clock.advance(0.5)
        out = owner.output()
        self.assertIn("Welcome to chatservice, yoda!", out)
        self.assertTrue(out.rstrip().endswith(("hans\r\nluke", "luke\r\nhans")), out)

    def test_a_connection_that_leaves_while_waiting_is_not_logged_in(self) -> None:
        for n in range(1, 5):
            attacker = self.connect(f"198.51.100.{n}")
            attacker.send("yoda")
            attacker.send("guess")
        owner = self.connect("10.20.30.40")
        owner.send("yoda")
        owner.send("wise")
        owner.drop()
        self.harness.clock.advance(1)
        self.assertNotIn("yoda", self.harness.state.sessions)
