"""Creating accounts and changing passwords, hashed, off the reactor thread.

:class:`AccountManager` checks a request, reserves the user name (so two
connections registering one name at once cannot both win), hashes the
password in a thread, writes the credentials file atomically in a thread (one
write at a time), and only then makes the change visible in memory, so it
takes effect without a restart.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer

from chatservice.auth.credentials import (
    CredentialsFile,
    Runner,
    run_here,
    username_problem,
    write_entry,
)
from chatservice.auth.passwords import hash_password, verify_password

MIN_PASSWORD_LENGTH = 4
MAX_PASSWORD_LENGTH = 256


class AccountError(Exception):
    """A registration or password change that cannot be done.

    :param code: ``taken``, ``invalid_username``, ``invalid_password``,
        ``wrong_password``, ``unavailable``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be used, or ``None`` when it can."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        return (
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    if password != password.strip() or any(ord(c) < 32 for c in password):
        return "a password cannot start or end with spaces or contain control characters"
    return None


class AccountManager:
    """Registers accounts and changes passwords in a :class:`CredentialsFile`.

    :param accounts: the accounts, and the file they are written to.
    :param run_in_thread: runs hashing and file writes off the reactor thread.
    :param in_use: whether a name is taken by something other than an account
        (an online guest).
    """

    def __init__(
        self,
        accounts: CredentialsFile,
        run_in_thread: Runner = run_here,
        in_use: Callable[[str], bool] = lambda name: False,
    ) -> None:
        self.accounts = accounts
        self.run_in_thread = run_in_thread
        self.in_use = in_use
        self._reserved: set[str] = set()
        self._write_lock = defer.DeferredLock()

    def taken(self, username: str) -> bool:
        """Whether ``username`` is an account, being registered, or in use by a guest."""
        return (
            self.accounts.exists(username)
            or username in self._reserved
            or self.in_use(username)
        )

    def register(self, username: str, password: str) -> defer.Deferred[None]:
        """Create the account ``username``; fails with :class:`AccountError`."""
        problem = username_problem(username)
        if problem:
            return defer.fail(AccountError("invalid_username", f"Error. Invalid user name: {problem}."))
        problem = password_problem(password)
        if problem:
            return defer.fail(AccountError("invalid_password", f"Error. Invalid password: {problem}."))
        if self.taken(username):
            return defer.fail(AccountError("taken", f"Error. The user name {username} is taken."))
        self._reserved.add(username)
        d = self._store(username, password)
        d.addBoth(self._release, username)
        return d

    def change_password(
        self, username: str, old: str, new: str
    ) -> defer.Deferred[None]:
        """Change ``username``'s password after checking ``old``; :class:`AccountError` if not."""
        stored = self.accounts.secret(username)
        if stored is None:
            return defer.fail(AccountError("unavailable", "Error. Only accounts have passwords."))
        problem = password_problem(new)
        if problem:
            return defer.fail(AccountError("invalid_password", f"Error. Invalid password: {problem}."))
        d = self.run_in_thread(verify_password, old, stored)

        def checked(matches: bool) -> defer.Deferred[None]:
            if not matches:
                raise AccountError("wrong_password", "Error. Your current password is not that.")
            return self._store(username, new)

        return d.addCallback(checked)

    def _store(self, username: str, password: str) -> defer.Deferred[None]:
        """Hash ``password``, write the entry, then make it visible in memory."""
        d = self.run_in_thread(hash_password, password)

        def write(secret: str) -> defer.Deferred[None]:
            written = self._write_lock.run(
                self.run_in_thread, write_entry, self.accounts.path, username, secret
            )
            written.addCallback(lambda _: self.accounts.set_secret(username, secret))
            return written

        return d.addCallback(write)

    def _release(self, result: object, username: str) -> object:
        self._reserved.discard(username)
        return result
