"""Logging a connection in: lock-out, ``Portal.login``, and the reply for each outcome.

:class:`LockoutChecker` wraps the password checker so that failures count
toward the lock-out and a locked account is refused inside ``Portal.login``.
:class:`LoginGate` is what a connection calls: it turns every way a login can
fail into a :class:`~chatservice.events.LoginRejected` reply.
"""

from __future__ import annotations

from typing import Callable

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatservice import events
from chatservice.auth.credentials import username_problem
from chatservice.auth.errors import AccountLocked, UnknownUser, WrongPassword
from chatservice.auth.lockout import LoginLockout
from chatservice.state import AccountDirectory, AlreadyLoggedIn, ChatClient, IChatSession

log = Logger()

WRONG_PASSWORD = "Invalid Password. Please try again"
JUST_LOCKED = (
    "Invalid Password. Your account has been blocked after too many failures."
    " Please try again later"
)
LOCKED = (
    "Your account is blocked due to multiple login failures. Please try again later"
)


class LoginRefused(Exception):
    """A login failed; ``rejection`` is the reply for the client."""

    def __init__(self, rejection: events.LoginRejected) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


@implementer(ICredentialsChecker)
class LockoutChecker:
    """Wraps a password checker with a per-user-name :class:`LoginLockout`.

    A locked account fails with :class:`AccountLocked` without checking the
    password; a wrong password counts a failure, and the failure that reaches
    the limit fails with ``AccountLocked(just_locked=True)``.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, checker: ICredentialsChecker, lockout: LoginLockout) -> None:
        self.checker = checker
        self.lockout = lockout

    def requestAvatarId(self, credentials: IUsernamePassword) -> defer.Deferred[str]:
        key = credentials.username
        remaining = self.lockout.locked_for(key)
        if remaining is not None:
            return defer.fail(AccountLocked(remaining))

        def accepted(avatar_id: str) -> str:
            # The account may have been locked while this password was checked.
            remaining = self.lockout.locked_for(key)
            if remaining is not None:
                raise AccountLocked(remaining)
            self.lockout.succeeded(key)
            return avatar_id

        def refused(failure: Failure) -> Failure:
            failure.trap(WrongPassword)
            if self.lockout.failed(key):
                raise AccountLocked(self.lockout.duration, just_locked=True)
            remaining = self.lockout.locked_for(key)
            if remaining is not None:
                raise AccountLocked(remaining)
            return failure

        d = defer.maybeDeferred(self.checker.requestAvatarId, credentials)
        d.addCallbacks(accepted, refused)
        return d


class LoginGate:
    """Where connections log in.

    :param portal: the portal over :class:`LockoutChecker` and the chat realm.
    :param accounts: the accounts, to tell an unknown user before the password.
    :param lockout: the lock-out the checker counts failures in.
    """

    def __init__(
        self, portal: Portal, accounts: AccountDirectory, lockout: LoginLockout
    ) -> None:
        self.portal = portal
        self.accounts = accounts
        self.lockout = lockout

    def check_username(self, username: str) -> events.LoginRejected | None:
        """Refuse a user name before asking for a password, or return ``None``."""
        problem = username_problem(username)
        if problem:
            return events.LoginRejected("invalid_username", f"Error. Invalid user name: {problem}.")
        if not self.accounts.exists(username):
            return _unknown(username)
        remaining = self.lockout.locked_for(username)
        if remaining is not None:
            return events.LoginRejected("blocked", LOCKED, remaining)
        return None

    def login(
        self, username: str, password: str, client: ChatClient
    ) -> defer.Deferred[tuple[IChatSession, Callable[[], None]]]:
        """Log ``client`` in as ``username``.

        Fires with ``(session, logout)``, or fails with :class:`LoginRefused`.
        """
        rejection = self.check_username(username)
        if rejection is not None:
            return defer.fail(LoginRefused(rejection))
        d = self.portal.login(UsernamePassword(username, password), client, IChatSession)
        d.addCallbacks(lambda result: (result[1], result[2]), _refusal, errbackArgs=(username,))
        return d


def _unknown(username: str) -> events.LoginRejected:
    return events.LoginRejected(
        "unknown_user", f"Error. Unknown user {username}. Please try again."
    )


def _refusal(failure: Failure, username: str) -> None:
    """Turn a failed ``Portal.login`` into :class:`LoginRefused`."""
    error = failure.value
    if isinstance(error, AccountLocked):
        if error.just_locked:
            rejection = events.LoginRejected("locked", JUST_LOCKED, error.retry_after)
        else:
            rejection = events.LoginRejected("blocked", LOCKED, error.retry_after)
    elif isinstance(error, WrongPassword):
        rejection = events.LoginRejected("wrong_password", WRONG_PASSWORD)
    elif isinstance(error, UnknownUser):
        rejection = _unknown(username)
    elif isinstance(error, AlreadyLoggedIn):
        rejection = events.LoginRejected(
            "already_logged_in", f"Error. {username} is already logged in elsewhere."
        )
    else:
        log.failure("Login of {username} failed unexpectedly", failure, username=username)
        rejection = events.LoginRejected(
            "unavailable", "Error. Logging in is not possible right now; please try again."
        )
    raise LoginRefused(rejection)
