"""Logging a connection in: lock-out and ``Portal.login``.

:class:`LockoutChecker` wraps the password checker so that failures count
toward the lock-out and a locked account is refused inside ``Portal.login``.
:class:`LoginGate` is what a connection calls.  Every way a login can fail
is a typed error from :mod:`chatservice.auth.errors` (or
:class:`~chatservice.state.AlreadyLoggedIn`); the connection words them.
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

from chatservice.auth.accounts import AccountError, AccountManager
from chatservice.auth.credentials import username_problem
from chatservice.auth.errors import (
    AccountLocked,
    AddressLocked,
    GuestsNotAllowed,
    InvalidUsername,
    LoginUnavailable,
    ScramUnavailable,
    UnknownUser,
    UsernameTaken,
    WrongPassword,
)
from chatservice.auth.guests import GuestCredentials
from chatservice.auth.lockout import LoginLockout
from chatservice.auth.scram import ScramCredentials, ScramKeys
from chatservice.interfaces import AccountDirectory, ClientConnection, IChatSession
from chatservice.metrics import ChatMetrics
from chatservice.state import AlreadyLoggedIn

log = Logger()

EXPECTED_ERRORS = (
    UnknownUser, WrongPassword, InvalidUsername, UsernameTaken, AccountLocked,
    GuestsNotAllowed, ScramUnavailable, AlreadyLoggedIn, LoginUnavailable,
)
"""How a login may fail; anything else is logged and becomes :class:`LoginUnavailable`."""

LoginResult = tuple[IChatSession, Callable[[], None]]
"""A logged-in session and the callable that logs it out."""


class CredentialsFrom(UsernamePassword):
    """A user name and password, and the address they came from."""

    def __init__(self, username: str, password: str, host: str) -> None:
        super().__init__(username, password)
        self.host = host


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

    def __init__(
        self,
        checker: ICredentialsChecker,
        lockout: LoginLockout,
        address_lockout: LoginLockout | None = None,
    ) -> None:
        self.credentialInterfaces = checker.credentialInterfaces
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

        def refused(failure: Failure) -> Failure | defer.Deferred[Failure]:
            failure.trap(WrongPassword)
            counts = [
                defer.maybeDeferred(lockout.failed, key).addErrback(_not_counted, key)
                for lockout, key, _ in locks
            ]
            d = defer.gatherResults(counts, consumeErrors=True)
            return d.addCallback(decided, failure)

        def decided(just_locked: list[bool], failure: Failure) -> Failure:
            for (lockout, _key, error), locked in zip(locks, just_locked):
                if locked:
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
    :param metrics: where logins are counted, by outcome (default: a
        registry of its own).

    Every login that ends here is counted: a success, or a failure by its
    reason, including a name refused before the password (by
    :meth:`check_username`) and a SCRAM login refused at its first step.
    """

    def __init__(
        self,
        portal: Portal,
        accounts: AccountDirectory,
        lockout: LoginLockout,
        address_lockout: LoginLockout | None = None,
        manager: AccountManager | None = None,
        metrics: ChatMetrics | None = None,
    ) -> None:
        self.portal = portal
        self.accounts = accounts
        self.lockout = lockout
        self.address_lockout = address_lockout
        self.manager = manager
        self.metrics = ChatMetrics() if metrics is None else metrics

    def check_username(self, username: str, host: str = "") -> None:
        """Refuse a user name (or the address) before the password is asked for.

        A refusal counts as a failed login.

        :raises AddressLocked, InvalidUsername, UnknownUser, AccountLocked:
            why not; nothing when the name may go on to the password.
        """
        try:
            self._check_username(username, host)
        except EXPECTED_ERRORS as e:
            self.metrics.login_failed(e)
            raise

    def _count(self, result: LoginResult | Failure) -> LoginResult | Failure:
        """Count the end of a login (passed on as it is)."""
        if isinstance(result, Failure):
            self.metrics.login_failed(result.value)
        else:
            self.metrics.login_succeeded()
        return result

    def _check_username(self, username: str, host: str) -> None:
        """:meth:`check_username`, not counted (the login it is part of is)."""
        if self.address_lockout is not None and host:
            remaining = self.address_lockout.locked_for(host)
            if remaining is not None:
                raise AddressLocked(remaining)
        problem = username_problem(username)
        if problem:
            raise InvalidUsername(problem)
        if not self.accounts.exists(username):
            raise UnknownUser(username)
        remaining = self.lockout.locked_for(username)
        if remaining is not None:
            raise AccountLocked(remaining)

    def login(self, username: str, password: str, client: ClientConnection) -> defer.Deferred[LoginResult]:
        """Log ``client`` in as ``username``: fires with ``(session, logout)``, or a typed error."""
        try:
            self._check_username(username, client.host)
        except EXPECTED_ERRORS as e:
            return defer.fail(e).addErrback(self._count)
        credentials = CredentialsFrom(username, password, client.host)
        d = self.portal.login(credentials, client, IChatSession)
        d.addCallback(self._add_scram_keys, username, password)
        d.addCallbacks(_session, _expected, errbackArgs=(username, False))
        return d.addBoth(self._count)

    def _add_scram_keys(self, result: object, username: str, password: str) -> object:
        """After a password login, give an account hashed before SCRAM its SCRAM keys (in the background)."""
        if self.manager is not None:
            d = self.manager.add_scram_keys(username, password)
            d.addErrback(lambda failure: log.failure("Adding SCRAM keys for {username} failed", failure, username=username))
        return result

    def scram_keys(self, username: str, host: str = "") -> defer.Deferred[ScramKeys]:
        """The SCRAM keys a SCRAM login of ``username`` is checked against.

        Fails as :meth:`check_username` does, and with
        :class:`ScramUnavailable` when the account has none.
        """
        try:
            self._check_username(username, host)
        except EXPECTED_ERRORS as e:
            return defer.fail(e).addErrback(self._count)
        if self.manager is None:
            return defer.fail(ScramUnavailable(username)).addErrback(self._count)

        def found(keys: ScramKeys | None) -> ScramKeys:
            if keys is None:
                raise ScramUnavailable(username)
            return keys

        d = self.manager.scram_keys(username).addCallback(found)
        return d.addErrback(_expected, username, False).addErrback(self._count)

    def login_scram(self, credentials: ScramCredentials, client: ClientConnection) -> defer.Deferred[LoginResult]:
        """Log ``client`` in with a SCRAM proof; fails as :meth:`login` does."""
        d = self.portal.login(credentials, client, IChatSession)
        d.addCallbacks(_session, _expected, errbackArgs=(credentials.username, False))
        return d.addBoth(self._count)

    def login_guest(self, username: str, client: ClientConnection) -> defer.Deferred[LoginResult]:
        """Log ``client`` in as the guest ``username`` (no password)."""
        d = self.portal.login(GuestCredentials(username, client.host), client, IChatSession)
        d.addCallbacks(_session, _expected, errbackArgs=(username, True))
        return d.addBoth(self._count)

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


def _not_counted(failure: Failure, key: str) -> bool:
    """A failure the cluster could not count (Redis unreachable): logged, and no lock."""
    log.failure("Counting a login failure for {key} failed", failure, key=key)
    return False


def _session(result: tuple[object, IChatSession, Callable[[], None]]) -> LoginResult:
    return result[1], result[2]


def _expected(failure: Failure, username: str, guest: bool) -> Failure:
    """Pass a typed login error on; log anything else and fail with :class:`LoginUnavailable`."""
    if guest and failure.check(AlreadyLoggedIn):
        raise UsernameTaken(username)
    if failure.check(UnhandledCredentials):
        raise GuestsNotAllowed()
    if failure.check(*EXPECTED_ERRORS):
        return failure
    log.failure("Login of {username} failed unexpectedly", failure, username=username)
    raise LoginUnavailable()
