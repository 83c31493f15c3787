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
from twisted.cred.error import UnhandledCredentials
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatservice import events
from chatservice.auth.accounts import AccountError, AccountManager
from chatservice.auth.credentials import username_problem
from chatservice.auth.guests import GuestCredentials, InvalidGuestName, UsernameTaken
from chatservice.auth.errors import AccountLocked, AddressLocked, UnknownUser, WrongPassword
from chatservice.auth.lockout import LoginLockout
from chatservice.interfaces import AccountDirectory, ChatClient, IChatSession
from chatservice.state import AlreadyLoggedIn

log = Logger()

WRONG_PASSWORD = "Invalid Password. Please try again"
JUST_LOCKED = (
    "Invalid Password. Your account has been blocked after too many failures."
    " Please try again later"
)
LOCKED = (
    "Your account is blocked due to multiple login failures. Please try again later"
)
ADDRESS_JUST_LOCKED = (
    "Invalid Password. Your address has been blocked after too many failures."
    " Please try again later"
)
ADDRESS_LOCKED = (
    "Your address is blocked due to multiple login failures. Please try again later"
)


class CredentialsFrom(UsernamePassword):
    """A user name and password, and the address they came from."""

    def __init__(self, username: str, password: str, host: str) -> None:
        super().__init__(username, password)
        self.host = host


class LoginRefused(Exception):
    """A login failed; ``rejection`` is the reply for the client."""

    def __init__(self, rejection: events.LoginRejected) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


@implementer(ICredentialsChecker)
class LockoutChecker:
    """Wraps a password checker with lock-outs per user name and per address.

    A locked user name or address fails with :class:`AccountLocked` (or
    :class:`AddressLocked`) without checking the password.  A wrong password
    counts a failure for both; the failure that reaches a limit fails with
    ``just_locked=True``.  The address comes from :class:`CredentialsFrom`;
    other credentials are only checked per user name.

    :param checker: the password checker.
    :param lockout: the per-user-name lock-out.
    :param address_lockout: the per-address lock-out, if any.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        checker: ICredentialsChecker,
        lockout: LoginLockout,
        address_lockout: LoginLockout | None = None,
    ) -> None:
        self.checker = checker
        self.lockout = lockout
        self.address_lockout = address_lockout

    def _locks(self, credentials: IUsernamePassword) -> list[tuple[LoginLockout, str, type]]:
        locks = [(self.lockout, credentials.username, AccountLocked)]
        host = getattr(credentials, "host", None)
        if self.address_lockout is not None and host:
            locks.append((self.address_lockout, host, AddressLocked))
        return locks

    def requestAvatarId(self, credentials: IUsernamePassword) -> defer.Deferred[str]:
        locks = self._locks(credentials)

        def check_locks() -> None:
            for lockout, key, error in locks:
                remaining = lockout.locked_for(key)
                if remaining is not None:
                    raise error(remaining)

        def accepted(avatar_id: str) -> str:
            # A lock may have started while this password was checked.
            check_locks()
            for lockout, key, _ in locks:
                lockout.succeeded(key)
            return avatar_id

        def refused(failure: Failure) -> Failure:
            failure.trap(WrongPassword)
            newly_locked = [(lockout, error) for lockout, key, error in locks if lockout.failed(key)]
            if newly_locked:
                lockout, error = newly_locked[0]
                raise error(lockout.duration, just_locked=True)
            check_locks()
            return failure

        try:
            check_locks()
        except AccountLocked:
            return defer.fail()
        d = defer.maybeDeferred(self.checker.requestAvatarId, credentials)
        d.addCallbacks(accepted, refused)
        return d


class LoginGate:
    """Where connections log in.

    :param portal: the portal over :class:`LockoutChecker` and the chat realm.
    :param accounts: the accounts, to tell an unknown user before the password.
    :param lockout: the per-user-name lock-out the checker counts failures in.
    :param address_lockout: the per-address one, if any.
    :param manager: creates accounts and changes passwords (``None``: neither
        is possible).
    """

    def __init__(
        self,
        portal: Portal,
        accounts: AccountDirectory,
        lockout: LoginLockout,
        address_lockout: LoginLockout | None = None,
        manager: AccountManager | None = None,
    ) -> None:
        self.portal = portal
        self.accounts = accounts
        self.lockout = lockout
        self.address_lockout = address_lockout
        self.manager = manager

    def check_username(self, username: str, host: str = "") -> events.LoginRejected | None:
        """Refuse a user name (or the address) before the password, or return ``None``."""
        if self.address_lockout is not None and host:
            remaining = self.address_lockout.locked_for(host)
            if remaining is not None:
                return events.LoginRejected("address_blocked", ADDRESS_LOCKED, remaining)
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
        rejection = self.check_username(username, client.host)
        if rejection is not None:
            return defer.fail(LoginRefused(rejection))
        credentials = CredentialsFrom(username, password, client.host)
        d = self.portal.login(credentials, client, IChatSession)
        d.addCallbacks(_session, _refusal, errbackArgs=(username, False))
        return d

    def login_guest(
        self, username: str, client: ChatClient
    ) -> defer.Deferred[tuple[IChatSession, Callable[[], None]]]:
        """Log ``client`` in as the guest ``username`` (no password)."""
        d = self.portal.login(GuestCredentials(username, client.host), client, IChatSession)
        d.addCallbacks(_session, _refusal, errbackArgs=(username, True))
        return d

    def username_taken(self, username: str) -> bool:
        """Whether ``username`` cannot be registered (an account, a guest, or being registered)."""
        if self.manager is None:
            return self.accounts.exists(username)
        return self.manager.taken(username)

    def register(self, username: str, password: str) -> defer.Deferred[None]:
        """Create an account; fails with :class:`AccountError`."""
        if self.manager is None:
            return defer.fail(AccountError("unavailable", "Error. Registration is not possible here."))
        return self.manager.register(username, password)

    def change_password(self, username: str, old: str, new: str) -> defer.Deferred[None]:
        """Change a password after checking the old one; fails with :class:`AccountError`."""
        if self.manager is None:
            return defer.fail(AccountError("unavailable", "Error. Passwords cannot be changed here."))
        return self.manager.change_password(username, old, new)


def _session(
    result: tuple[object, IChatSession, Callable[[], None]]
) -> tuple[IChatSession, Callable[[], None]]:
    return result[1], result[2]


def _unknown(username: str) -> events.LoginRejected:
    return events.LoginRejected(
        "unknown_user", f"Error. Unknown user {username}. Please try again."
    )


def _refusal(failure: Failure, username: str, guest: bool) -> None:
    """Turn a failed ``Portal.login`` into :class:`LoginRefused`."""
    error = failure.value
    if isinstance(error, UsernameTaken) or (guest and isinstance(error, AlreadyLoggedIn)):
        rejection = events.LoginRejected(
            "username_taken", f"Error. The name {username} is taken; choose another."
        )
    elif isinstance(error, InvalidGuestName):
        rejection = events.LoginRejected(
            "invalid_username", f"Error. Invalid user name: {error.args[0]}."
        )
    elif isinstance(error, UnhandledCredentials):
        rejection = events.LoginRejected("unavailable", "Error. Guests are not allowed here.")
    elif isinstance(error, AddressLocked):
        if error.just_locked:
            rejection = events.LoginRejected(
                "address_locked", ADDRESS_JUST_LOCKED, error.retry_after
            )
        else:
            rejection = events.LoginRejected(
                "address_blocked", ADDRESS_LOCKED, error.retry_after
            )
    elif isinstance(error, AccountLocked):
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
