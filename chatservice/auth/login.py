"""Logging a connection in: lock-out and ``Portal.login``.

:class:`LockoutChecker` wraps the password checker so that failures count
toward the lock-out and a locked account is refused inside ``Portal.login``.
:class:`LoginGate` is what a connection calls.  Every way a login can fail
is a typed error from :mod:`chatservice.auth.errors` (or
:class:`~chatservice.state.AlreadyLoggedIn`); the connection words them.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnhandledCredentials
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatservice.auth.accounts import AccountError, AccountManager
from chatservice.auth.credentials import login_name_problem
from chatservice.auth.errors import (
    AccountLocked,
    AddressLocked,
    Banned,
    GuestsNotAllowed,
    InvalidUsername,
    LoginUnavailable,
    ScramUnavailable,
    UnknownUser,
    UsernameTaken,
    WrongPassword,
)
from chatservice.auth.guests import GuestCredentials
from chatservice.auth.lockout import LoginLockout, name_at
from chatservice.auth.scram import ScramCredentials, ScramKeys
from chatservice.auth.slowdown import LoginSlowdown
from chatservice.interfaces import AccountDirectory, ClientConnection, IChatSession
from chatservice.metrics import ChatMetrics
from chatservice.state import AlreadyLoggedIn

log = Logger()
_T = TypeVar("_T")

EXPECTED_ERRORS = (
    UnknownUser, WrongPassword, InvalidUsername, UsernameTaken, AccountLocked,
    GuestsNotAllowed, ScramUnavailable, AlreadyLoggedIn, LoginUnavailable, Banned,
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
    """Wraps a password checker with the lock-outs and the slowdown.

    A user name locked for the client's address, or a locked address, fails
    with :class:`AccountLocked` (or :class:`AddressLocked`) at once, without
    checking the password.  A login of a name with many failures from all
    addresses together is answered after a wait (:class:`LoginSlowdown`),
    whether the password is right or wrong; the password is checked and
    counted at once, so that logins waiting side by side cannot get past the
    lock-outs' limits.  A wrong password counts a failure for the
    name at that address, for the address, and for the name; the failure
    that reaches a lock-out's limit fails with ``just_locked=True``.  The
    address comes from :class:`CredentialsFrom` (or SCRAM credentials'
    ``host``); credentials without one are counted per user name alone.

    :param checker: the password checker.
    :param lockout: the per-name-and-address lock-out (keys :func:`name_at`).
    :param address_lockout: the per-address lock-out, if any.
    :param slowdown: the per-name slowdown, if any.
    """

    def __init__(
        self,
        checker: ICredentialsChecker,
        lockout: LoginLockout,
        address_lockout: LoginLockout | None = None,
        slowdown: LoginSlowdown | None = None,
    ) -> None:
        self.credentialInterfaces = checker.credentialInterfaces
        self.checker = checker
        self.lockout = lockout
        self.address_lockout = address_lockout
        self.slowdown = slowdown

    def _locks(self, credentials: IUsernamePassword) -> list[tuple[LoginLockout, str, type]]:
        host = getattr(credentials, "host", None) or ""
        locks = [(self.lockout, name_at(credentials.username, host), AccountLocked)]
        if self.address_lockout is not None and host:
            locks.append((self.address_lockout, host, AddressLocked))
        return locks

    def requestAvatarId(self, credentials: IUsernamePassword) -> defer.Deferred[str]:
        locks = self._locks(credentials)
        username = credentials.username

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
            if self.slowdown is not None:
                counts.append(
                    defer.maybeDeferred(self.slowdown.failed, username).addErrback(
                        _not_counted, username
                    )
                )
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
        waited = None if self.slowdown is None else self.slowdown.wait(username)
        d = defer.maybeDeferred(self.checker.requestAvatarId, credentials)
        d.addCallbacks(accepted, refused)
        if waited is None:
            return d
        # Checked and counted at once (so the lock-outs hold however many
        # logins wait), answered once the wait is over, right or wrong alike.
        both = defer.DeferredList([d, waited], consumeErrors=True)
        return both.addCallback(_after_wait)


class LoginGate:
    """Where connections log in.

    :param portal: the portal over :class:`LockoutChecker` and the chat realm.
    :param accounts: the accounts, to tell an unknown user before the password.
    :param lockout: the per-name-and-address lock-out the checker counts
        failures in (keys :func:`name_at`).
    :param address_lockout: the per-address one, if any: wrong passwords and
        unknown user names count toward it.
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

        Answers at once, from what this node knows: a name it does not know
        may have just been registered on another node, which
        :meth:`find_username` asks the store about.
        A refusal counts as a failed login (a name not known here only once
        the store does not know it either).

        :raises AddressLocked, InvalidUsername, UnknownUser, AccountLocked:
            why not; nothing when the name may go on to the password.
        """
        try:
            self._check_username(username, host)
        except UnknownUser:
            raise  # not final: the dialogue asks the store (find_username)
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
        problem = login_name_problem(username)
        if problem:
            raise InvalidUsername(problem)
        if not self.accounts.exists(username):
            raise UnknownUser(username)
        remaining = self.lockout.locked_for(name_at(username, host))
        if remaining is not None:
            raise AccountLocked(remaining)

    def refuse_unknown(self, username: str, host: str, counted: bool = True) -> defer.Deferred[None]:
        """Refuse a login to the unknown user name ``username``, counting it against ``host``.

        Unknown names count toward the address lock-out like wrong passwords
        (trying names is guessing too).  Fails with :class:`UnknownUser`, or
        with :class:`AddressLocked` (``just_locked``) when this failure
        locked the address.

        :param counted: count the refusal as a failed login (``False``: the
            login it ends counts it).
        """
        d = self._refuse_unknown(username, host)
        return d.addErrback(self._count) if counted else d

    def _refuse_unknown(self, username: str, host: str) -> defer.Deferred[None]:
        address_lockout = self.address_lockout
        if address_lockout is None or not host:
            return defer.fail(UnknownUser(username))

        def decided(just_locked: bool) -> None:
            if just_locked:
                raise AddressLocked(address_lockout.duration, just_locked=True)
            remaining = address_lockout.locked_for(host)
            if remaining is not None:
                raise AddressLocked(remaining)
            raise UnknownUser(username)

        d = defer.maybeDeferred(address_lockout.failed, host).addErrback(_not_counted, host)
        return d.addCallback(decided)

    def find_username(self, username: str, host: str = "", counted: bool = True) -> defer.Deferred[None]:
        """:meth:`check_username` for a name this node does not know: asks the store first.

        Fires when the name may go on to the password; fails with
        :class:`UnknownUser` when the store has no such account either (not
        counted: see :meth:`refuse_unknown`), or as :meth:`check_username` does.

        :param counted: count a refusal as a failed login (``False``: the
            login it is part of counts it).
        """

        def found(exists: bool) -> None:
            if not exists:
                raise UnknownUser(username)
            (self.check_username if counted else self._check_username)(username, host)

        return self.accounts.find(username).addCallback(found)

    def _when_known(
        self, username: str, host: str, then: Callable[[], defer.Deferred[_T]]
    ) -> defer.Deferred[_T]:
        """``then()`` once ``username`` passed :meth:`check_username` (or, not known here, :meth:`find_username`).

        ``then`` must return a Deferred, not raise.
        """
        try:
            self._check_username(username, host)
        except UnknownUser:
            d = self.find_username(username, host, counted=False)
            d.addErrback(self._unknown, username, host)
            return d.addCallback(lambda _: then())
        except EXPECTED_ERRORS as e:
            return defer.fail(e)
        return then()

    def _unknown(self, failure: Failure, username: str, host: str) -> defer.Deferred[None]:
        """No such account in the store either: refused, and counted against ``host``."""
        failure.trap(UnknownUser)
        return self.refuse_unknown(username, host, counted=False)

    def login(self, username: str, password: str, client: ClientConnection) -> defer.Deferred[LoginResult]:
        """Log ``client`` in as ``username``: fires with ``(session, logout)``, or a typed error."""

        def log_in() -> defer.Deferred[LoginResult]:
            credentials = CredentialsFrom(username, password, client.host)
            d = self.portal.login(credentials, client, IChatSession)
            d.addCallback(self._add_scram_keys, username, password)
            return d

        d = self._when_known(username, client.host, log_in)
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
        manager = self.manager

        def look_up() -> defer.Deferred[ScramKeys | None]:
            if manager is None:
                return defer.fail(ScramUnavailable(username))
            return manager.scram_keys(username)

        def found(keys: ScramKeys | None) -> ScramKeys:
            if keys is None:
                raise ScramUnavailable(username)
            return keys

        d = self._when_known(username, host, look_up).addCallback(found)
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
        """Whether ``username`` cannot be registered (an account, a guest, or being registered), as far as this node knows."""
        if self.manager is None:
            return self.accounts.exists(username)
        return self.manager.taken(username)

    def check_taken(self, username: str) -> defer.Deferred[bool]:
        """:meth:`username_taken`, asking the store when this node does not know the name."""
        if self.manager is not None:
            return self.manager.check_taken(username)
        return self.accounts.find(username)

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


def _after_wait(results: list[tuple[bool, Any]]) -> Any:
    """The checked login's outcome once its wait is over; unavailable if the wait was cancelled.

    The wait is only cancelled by the server stopping: nothing to log.
    """
    (_, outcome), (waited, _) = results
    if not waited:
        raise LoginUnavailable()
    return outcome


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
