"""Tests for the login lock-out: :class:`LoginLockout`, :class:`LockoutChecker` and :class:`LoginGate`.

Time is a :class:`~twisted.internet.task.Clock`; every test ends with no timer left.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface import implementer

from chatservice import events
from chatservice.auth.directory import CredentialsChecker
from chatservice.auth.errors import (
    AccountLocked,
    AddressLocked,
    LoginUnavailable,
    UnknownUser,
    WrongPassword,
)
from chatservice.auth.lockout import LoginLockout
from chatservice.auth.login import EXPECTED_ERRORS, CredentialsFrom, LockoutChecker, LoginGate
from chatservice.server.replies import (
    ADDRESS_JUST_LOCKED,
    ADDRESS_LOCKED,
    JUST_LOCKED,
    LOCKED,
    WRONG_PASSWORD,
    login_rejection,
)
from chatservice.auth.realm import ChatRealm
from chatservice.session import Session
from chatservice.state import ChatState
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore
from tests.support import memory_accounts

ACCOUNTS = {"yoda": "wise", "hans": "falcon", "luke": "jedi"}


def refusal(
    test: unittest.TestCase, d: Deferred[object], username: str
) -> tuple[str, str, float | None]:
    """How the refused login ``d`` is worded: ``(reason, message, retry_after)``."""
    failure = test.failureResultOf(d, *EXPECTED_ERRORS, LoginUnavailable)
    rejection = login_rejection(failure.value, username)
    test.assertIsInstance(rejection, events.LoginRejected)
    return (rejection.reason, rejection.message, rejection.retry_after)
START = 1000.0
MAX_FAILURES = 3
DURATION = 60.0


class FakeClient:
    """A minimal :class:`~chatservice.interfaces.ClientConnection`."""

    def __init__(self, host: str = "10.0.0.1") -> None:
        self.host = host
        self.p2p_port: int | None = None
        self.udp_port: int | None = None
        self.delivered: list[events.Event] = []
        self.disconnects: list[events.Disconnected] = []

    def deliver(self, event: events.Event) -> None:
        self.delivered.append(event)

    def disconnect(self, event: events.Disconnected) -> None:
        self.disconnects.append(event)


class ClockTestCase(unittest.TestCase):
    """A Clock at START, a LoginLockout (3 failures, 60 seconds), and no timer left at the end."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.lockout = LoginLockout(self.clock, MAX_FAILURES, DURATION)
        self.addCleanup(self.assertNoDelayedCalls)

    def assertNoDelayedCalls(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LoginLockoutTests(ClockTestCase):
    """LoginLockout counts failures in a row and locks for a while."""

    def test_locks_after_max_failures(self) -> None:
        self.assertFalse(self.lockout.failed("yoda"))
        self.assertIsNone(self.lockout.locked_for("yoda"))
        self.assertFalse(self.lockout.failed("yoda"))
        self.assertIsNone(self.lockout.locked_for("yoda"))
        self.assertTrue(self.lockout.failed("yoda"))
        self.assertEqual(self.lockout.locked_for("yoda"), 60.0)
        self.lockout.stop()

    def test_one_timer_per_key(self) -> None:
        for _ in range(3):
            self.lockout.failed("yoda")
        self.lockout.failed("hans")
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        self.lockout.stop()

    def test_locked_for_counts_down(self) -> None:
        for _ in range(3):
            self.lockout.failed("yoda")
        self.clock.advance(15)
        self.assertEqual(self.lockout.locked_for("yoda"), 45.0)
        self.clock.advance(44.5)
        self.assertEqual(self.lockout.locked_for("yoda"), 0.5)
        self.clock.advance(0.5)
        self.assertIsNone(self.lockout.locked_for("yoda"))

    def test_lock_expires_exactly_after_duration(self) -> None:
        self.lockout.failed("yoda")
        self.clock.advance(10)
        self.lockout.failed("yoda")
        self.clock.advance(10)
        self.assertTrue(self.lockout.failed("yoda"))
        self.clock.advance(59)
        self.assertEqual(self.lockout.locked_for("yoda"), 1.0)
        self.clock.advance(1)
        self.assertIsNone(self.lockout.locked_for("yoda"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # After the lock, the count starts again from zero.
        self.assertFalse(self.lockout.failed("yoda"))
        self.assertFalse(self.lockout.failed("yoda"))
        self.assertTrue(self.lockout.failed("yoda"))
        self.lockout.stop()

    def test_keys_are_independent(self) -> None:
        for _ in range(3):
            self.lockout.failed("yoda")
        self.assertIsNone(self.lockout.locked_for("hans"))
        self.assertFalse(self.lockout.failed("hans"))
        self.lockout.stop()

    def test_succeeded_resets_count(self) -> None:
        self.lockout.failed("yoda")
        self.lockout.failed("yoda")
        self.lockout.succeeded("yoda")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(self.lockout.failed("yoda"))
        self.assertFalse(self.lockout.failed("yoda"))
        self.assertIsNone(self.lockout.locked_for("yoda"))
        self.lockout.stop()

    def test_succeeded_for_unknown_key(self) -> None:
        self.lockout.succeeded("nobody")
        self.assertIsNone(self.lockout.locked_for("nobody"))

    def test_failures_forgotten_duration_after_last(self) -> None:
        self.lockout.failed("yoda")
        self.clock.advance(40)
        self.lockout.failed("yoda")
        # The first failure's timer was pushed back: at START+60 nothing is forgotten.
        self.clock.advance(20)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        # 60 seconds after the second failure, both are forgotten.
        self.clock.advance(40)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(self.lockout.failed("yoda"))
        self.assertFalse(self.lockout.failed("yoda"))
        self.assertTrue(self.lockout.failed("yoda"))
        self.lockout.stop()

    def test_failures_remembered_until_duration(self) -> None:
        self.lockout.failed("yoda")
        self.clock.advance(40)
        self.lockout.failed("yoda")
        self.clock.advance(59)
        self.assertTrue(self.lockout.failed("yoda"))
        self.assertEqual(self.lockout.locked_for("yoda"), 60.0)
        self.lockout.stop()

    def test_failure_while_locked_does_not_extend(self) -> None:
        for _ in range(3):
            self.lockout.failed("yoda")
        self.clock.advance(30)
        self.assertFalse(self.lockout.failed("yoda"))
        self.assertFalse(self.lockout.failed("yoda"))
        self.assertEqual(self.lockout.locked_for("yoda"), 30.0)
        self.clock.advance(30)
        self.assertIsNone(self.lockout.locked_for("yoda"))

    def test_single_failure_limit(self) -> None:
        lockout = LoginLockout(self.clock, 1, 5)
        self.assertTrue(lockout.failed("yoda"))
        self.assertEqual(lockout.locked_for("yoda"), 5.0)
        self.clock.advance(5)
        self.assertIsNone(lockout.locked_for("yoda"))

    def test_stop_cancels_all_timers(self) -> None:
        for _ in range(3):
            self.lockout.failed("yoda")
        self.lockout.failed("hans")
        self.lockout.failed("luke")
        self.lockout.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        for key in ("yoda", "hans", "luke"):
            self.assertIsNone(self.lockout.locked_for(key))
        self.lockout.stop()
        self.assertFalse(self.lockout.failed("yoda"))
        self.lockout.stop()


@implementer(ICredentialsChecker)
class PendingChecker:
    """A password checker whose answers are fired by the test."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self) -> None:
        self.pending: list[defer.Deferred[str]] = []

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[str]:
        d: defer.Deferred[str] = defer.Deferred()
        self.pending.append(d)
        return d


class LockoutCheckerTests(ClockTestCase):
    """LockoutChecker counts wrong passwords and refuses locked accounts."""

    def setUp(self) -> None:
        super().setUp()
        accounts = memory_accounts(ACCOUNTS, self.clock)
        self.checker = LockoutChecker(CredentialsChecker(accounts), self.lockout)

    def check(self, username: str, password: str) -> defer.Deferred[str]:
        return self.checker.requestAvatarId(UsernamePassword(username, password))

    def test_interfaces(self) -> None:
        self.assertEqual(self.checker.credentialInterfaces, (IUsernamePassword,))
        self.assertTrue(ICredentialsChecker.providedBy(self.checker))

    def test_right_password(self) -> None:
        self.assertEqual(self.successResultOf(self.check("yoda", "wise")), "yoda")

    def test_wrong_passwords_lock(self) -> None:
        self.failureResultOf(self.check("yoda", "x"), WrongPassword)
        self.failureResultOf(self.check("yoda", "y"), WrongPassword)
        error = self.failureResultOf(self.check("yoda", "z"), AccountLocked).value
        self.assertEqual((error.retry_after, error.just_locked), (60.0, True))
        self.clock.advance(10)
        error = self.failureResultOf(self.check("yoda", "wise"), AccountLocked).value
        self.assertEqual((error.retry_after, error.just_locked), (50.0, False))
        self.clock.advance(50)
        self.assertEqual(self.successResultOf(self.check("yoda", "wise")), "yoda")

    def test_unknown_user_never_counts(self) -> None:
        for _ in range(5):
            self.failureResultOf(self.check("vader", "dark"), UnknownUser)
        self.assertIsNone(self.lockout.locked_for("vader"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_success_clears_failures(self) -> None:
        self.failureResultOf(self.check("yoda", "x"), WrongPassword)
        self.failureResultOf(self.check("yoda", "x"), WrongPassword)
        self.successResultOf(self.check("yoda", "wise"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(self.check("yoda", "x"), WrongPassword)
        self.failureResultOf(self.check("yoda", "x"), WrongPassword)
        self.assertIsNone(self.lockout.locked_for("yoda"))
        self.lockout.stop()

    def test_locked_while_checking(self) -> None:
        """A right password whose check ends after the account was locked is refused."""
        pending = PendingChecker()
        checker = LockoutChecker(pending, self.lockout)
        slow = checker.requestAvatarId(UsernamePassword("yoda", "wise"))
        for _ in range(3):
            self.lockout.failed("yoda")
        self.clock.advance(5)
        pending.pending[0].callback("yoda")
        error = self.failureResultOf(slow, AccountLocked).value
        self.assertEqual((error.retry_after, error.just_locked), (55.0, False))
        self.lockout.stop()

    def test_wrong_password_while_locked_elsewhere(self) -> None:
        """A wrong password whose check ends after the lock reports the lock, without extending it."""
        pending = PendingChecker()
        checker = LockoutChecker(pending, self.lockout)
        slow = checker.requestAvatarId(UsernamePassword("yoda", "bad"))
        for _ in range(3):
            self.lockout.failed("yoda")
        self.clock.advance(20)
        pending.pending[0].errback(WrongPassword("yoda"))
        error = self.failureResultOf(slow, AccountLocked).value
        self.assertEqual((error.retry_after, error.just_locked), (40.0, False))
        self.clock.advance(40)
        self.assertIsNone(self.lockout.locked_for("yoda"))


@implementer(ICredentialsChecker)
class BrokenChecker:
    """A password checker that fails in an unexpected way."""

    credentialInterfaces = (IUsernamePassword,)

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[str]:
        return defer.fail(RuntimeError("database on fire"))


class LoginGateTests(ClockTestCase):
    """LoginGate turns every login outcome into a session or a typed error, worded by login_rejection."""

    def setUp(self) -> None:
        super().setUp()
        self.accounts = memory_accounts(ACCOUNTS, self.clock)
        self.state = ChatState(
            LocalStore(MemoryStore()), self.accounts, self.clock, session_factory=Session
        )
        checker = LockoutChecker(CredentialsChecker(self.accounts), self.lockout)
        portal = Portal(ChatRealm(self.state), [checker])
        self.gate = LoginGate(portal, self.accounts, self.lockout)

    def rejection(
        self, username: str, password: str, host: str = "10.0.0.1"
    ) -> tuple[str, str, float | None]:
        """Log in expecting a refusal; return ``(reason, message, retry_after)``."""
        return refusal(self, self.gate.login(username, password, FakeClient(host)), username)

    def test_success(self) -> None:
        client = FakeClient()
        session, logout = self.successResultOf(self.gate.login("yoda", "wise", client))
        self.assertIsInstance(session, Session)
        self.assertEqual(session.username, "yoda")
        self.assertIs(session.client, client)
        self.assertIs(self.state.sessions["yoda"], session)
        logout()
        self.assertEqual(self.state.sessions, {})

    def test_wrong_password(self) -> None:
        self.assertEqual(
            self.rejection("yoda", "nope"), ("wrong_password", WRONG_PASSWORD, None)
        )
        self.assertEqual(self.state.sessions, {})
        self.lockout.stop()

    def test_failure_that_locks_then_blocked(self) -> None:
        self.rejection("yoda", "a")
        self.clock.advance(1)
        self.rejection("yoda", "b")
        self.assertEqual(self.rejection("yoda", "c"), ("locked", JUST_LOCKED, 60.0))
        self.clock.advance(25)
        self.assertEqual(self.rejection("yoda", "wise"), ("blocked", LOCKED, 35.0))
        self.assertEqual(self.rejection("yoda", "nope"), ("blocked", LOCKED, 35.0))
        error = self.assertRaises(AccountLocked, self.gate.check_username, "yoda", "10.0.0.1")
        blocked = login_rejection(error, "yoda")
        self.assertEqual(
            (blocked.reason, blocked.message, blocked.retry_after), ("blocked", LOCKED, 35.0)
        )
        self.assertEqual(self.state.sessions, {})
        # Other accounts are unaffected.
        self.successResultOf(self.gate.login("hans", "falcon", FakeClient()))
        self.clock.advance(35)
        self.assertIsNone(self.gate.check_username("yoda", "10.0.0.1"))
        session, _logout = self.successResultOf(self.gate.login("yoda", "wise", FakeClient()))
        self.assertEqual(session.username, "yoda")

    def test_a_lock_holds_for_the_address_that_failed_only(self) -> None:
        """Failures from one address lock the name there; its owner logs in from another."""
        for password in ("a", "b"):
            self.rejection("yoda", password, "203.0.113.5")
        self.assertEqual(self.rejection("yoda", "c", "203.0.113.5"), ("locked", JUST_LOCKED, 60.0))
        self.assertEqual(self.rejection("yoda", "wise", "203.0.113.5"), ("blocked", LOCKED, 60.0))
        self.assertIsNone(self.gate.check_username("yoda", "10.0.0.1"))
        session, _logout = self.successResultOf(
            self.gate.login("yoda", "wise", FakeClient("10.0.0.1"))
        )
        self.assertEqual(session.username, "yoda")
        # The owner's success does not lift the lock where the failures came from.
        self.assertEqual(self.rejection("yoda", "wise", "203.0.113.5")[0], "blocked")
        self.clock.advance(60)
        self.assertIsNone(self.gate.check_username("yoda", "203.0.113.5"))

    def test_unknown_user_never_counts(self) -> None:
        expected = ("unknown_user", "Error. Unknown user vader. Please try again.", None)
        for _ in range(5):
            self.assertEqual(self.rejection("vader", "dark"), expected)
        self.assertIsNone(self.lockout.locked_for("vader"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertRaises(UnknownUser, self.gate.check_username, "vader")

    def test_invalid_user_name(self) -> None:
        self.assertEqual(
            self.rejection("", "x"),
            ("invalid_username", "Error. Invalid user name: a user name cannot be empty.", None),
        )
        self.assertEqual(
            self.rejection("yo da", "x"),
            (
                "invalid_username",
                "Error. Invalid user name: a user name cannot contain spaces or control characters.",
                None,
            ),
        )

    def test_check_username_accepts(self) -> None:
        self.assertIsNone(self.gate.check_username("yoda"))

    def test_success_clears_failures(self) -> None:
        self.rejection("yoda", "a")
        self.rejection("yoda", "b")
        _session, logout = self.successResultOf(self.gate.login("yoda", "wise", FakeClient()))
        logout()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.rejection("yoda", "a")[0], "wrong_password")
        self.assertEqual(self.rejection("yoda", "b")[0], "wrong_password")
        self.assertEqual(self.rejection("yoda", "c")[0], "locked")
        self.lockout.stop()

    def test_already_logged_in(self) -> None:
        first, _logout = self.successResultOf(self.gate.login("yoda", "wise", FakeClient()))
        self.assertEqual(
            self.rejection("yoda", "wise"),
            ("already_logged_in", "Error. yoda is already logged in elsewhere.", None),
        )
        self.assertIs(self.state.sessions["yoda"], first)
        # Not a password failure: nothing counted toward a lock.
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unexpected_checker_error(self) -> None:
        portal = Portal(ChatRealm(self.state), [BrokenChecker()])
        gate = LoginGate(portal, self.accounts, self.lockout)
        self.assertEqual(
            refusal(self, gate.login("yoda", "wise", FakeClient()), "yoda"),
            ("unavailable", "Error. Logging in is not possible right now; please try again.", None),
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class AddressLockoutTests(ClockTestCase):
    """The per-address lock-out: wrong passwords from one address, whatever the user name."""

    def setUp(self) -> None:
        super().setUp()
        self.address_lockout = LoginLockout(self.clock, MAX_FAILURES, DURATION)
        self.accounts = memory_accounts(ACCOUNTS, self.clock)
        self.state = ChatState(
            LocalStore(MemoryStore()), self.accounts, self.clock, session_factory=Session
        )
        self.checker = LockoutChecker(
            CredentialsChecker(self.accounts), self.lockout, self.address_lockout
        )
        portal = Portal(ChatRealm(self.state), [self.checker])
        self.gate = LoginGate(portal, self.accounts, self.lockout, self.address_lockout)

    def stop(self) -> None:
        self.lockout.stop()
        self.address_lockout.stop()

    def rejection(self, username: str, password: str, host: str) -> tuple[str, str, float | None]:
        return refusal(self, self.gate.login(username, password, FakeClient(host)), username)

    def test_failures_across_users_lock_the_address(self) -> None:
        self.assertEqual(self.rejection("yoda", "x", "10.0.0.9")[0], "wrong_password")
        self.assertEqual(self.rejection("hans", "x", "10.0.0.9")[0], "wrong_password")
        self.assertEqual(
            self.rejection("luke", "x", "10.0.0.9"),
            ("address_locked", ADDRESS_JUST_LOCKED, 60.0),
        )
        self.clock.advance(10)
        # Right password, other user: still refused from that address.
        self.assertEqual(
            self.rejection("yoda", "wise", "10.0.0.9"), ("address_blocked", ADDRESS_LOCKED, 50.0)
        )
        error = self.assertRaises(AddressLocked, self.gate.check_username, "yoda", "10.0.0.9")
        self.assertEqual(login_rejection(error, "yoda").reason, "address_blocked")
        # Another address is not affected; no user name reached its limit.
        self.assertIsNone(self.gate.check_username("yoda", "10.0.0.10"))
        session, _logout = self.successResultOf(
            self.gate.login("yoda", "wise", FakeClient("10.0.0.10"))
        )
        self.assertEqual(session.username, "yoda")
        self.clock.advance(50)
        self.assertIsNone(self.gate.check_username("hans", "10.0.0.9"))
        self.stop()

    def test_user_lock_reported_before_address_lock(self) -> None:
        """When one failure reaches both limits, the user name's lock is reported."""
        for _ in range(2):
            self.rejection("yoda", "x", "10.0.0.9")
        self.assertEqual(self.rejection("yoda", "x", "10.0.0.9"), ("locked", JUST_LOCKED, 60.0))
        self.assertEqual(self.address_lockout.locked_for("10.0.0.9"), 60.0)
        self.stop()

    def test_checker_with_plain_credentials(self) -> None:
        """Credentials without an address are only counted per user name."""
        for _ in range(2):
            self.failureResultOf(
                self.checker.requestAvatarId(UsernamePassword("yoda", "x")), WrongPassword
            )
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.stop()

    def test_checker_address_locked_error(self) -> None:
        for name in ("yoda", "hans"):
            self.failureResultOf(
                self.checker.requestAvatarId(CredentialsFrom(name, "x", "10.0.0.9")),
                WrongPassword,
            )
        error = self.failureResultOf(
            self.checker.requestAvatarId(CredentialsFrom("luke", "x", "10.0.0.9")),
            AddressLocked,
        ).value
        self.assertEqual((error.retry_after, error.just_locked), (60.0, True))
        error = self.failureResultOf(
            self.checker.requestAvatarId(CredentialsFrom("luke", "jedi", "10.0.0.9")),
            AddressLocked,
        ).value
        self.assertEqual((error.retry_after, error.just_locked), (60.0, False))
        self.stop()

    def test_unknown_users_count_toward_the_address(self) -> None:
        """Trying names is guessing too: unknown names lock the address like wrong passwords."""
        self.assertEqual(self.rejection("vader", "x", "10.0.0.9")[0], "unknown_user")
        self.assertEqual(self.rejection("yoda", "x", "10.0.0.9")[0], "wrong_password")
        self.assertEqual(
            self.rejection("maul", "x", "10.0.0.9"), ("address_locked", ADDRESS_JUST_LOCKED, 60.0)
        )
        self.assertEqual(
            self.rejection("hans", "falcon", "10.0.0.9"), ("address_blocked", ADDRESS_LOCKED, 60.0)
        )
        # Another address is not affected.
        self.assertEqual(self.rejection("dooku", "x", "10.0.0.10")[0], "unknown_user")
        self.stop()

    def test_unknown_users_before_the_password_count(self) -> None:
        """An unknown name refused before a password (text, SCRAM) counts as well."""
        for name in ("vader", "maul"):
            self.assertEqual(
                refusal(self, self.gate.refuse_unknown(name, "10.0.0.9"), name)[0], "unknown_user"
            )
        self.assertEqual(
            refusal(self, self.gate.scram_keys("dooku", "10.0.0.9"), "dooku")[0], "address_locked"
        )
        self.assertEqual(
            refusal(self, self.gate.scram_keys("yoda", "10.0.0.9"), "yoda")[0], "address_blocked"
        )
        self.stop()
