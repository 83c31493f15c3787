"""Creating accounts and changing passwords, hashed, off the reactor thread.

:class:`AccountManager` checks a request, reserves the user name (so two
connections registering one name at once cannot both win), hashes the
password and derives its SCRAM keys in a thread, writes the credentials file
atomically in a thread (one write at a time), and only then makes the change
visible in memory, so it takes effect without a restart.

It is also where SCRAM logins find an account's keys
(:meth:`AccountManager.scram_keys`): the stored ones, or for a plain entry
keys derived once per process.
"""

from __future__ import annotations

import hmac
from typing import Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from chatservice.auth.credentials import (
    CredentialsFile,
    Runner,
    run_here,
    username_problem,
    write_entry,
)
from chatservice.auth.errors import UnknownUser
from chatservice.auth.passwords import hash_password, is_hashed, verify_password
from chatservice.auth.scram import ScramKeys

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


def hash_and_derive(password: str) -> tuple[str, ScramKeys]:
    """The scrypt hash of ``password`` and its SCRAM keys (slow: call it in a thread)."""
    return hash_password(password), ScramKeys.derive(password)


def _keys_if_matches(password: str, secret: str) -> ScramKeys | None:
    """The SCRAM keys of ``password`` if it matches ``secret`` (slow: call it in a thread)."""
    return ScramKeys.derive(password) if verify_password(password, secret) else None


class AccountManager:
    """Registers accounts and changes passwords in a :class:`CredentialsFile`.

    :param accounts: the accounts, and the file they are written to.
    :param run_in_thread: runs hashing and file writes off the reactor thread.
    :param in_use: whether a name is taken by something other than an account
        (an online guest).

    One per server: the SCRAM keys derived for plain entries live here, and a
    SCRAM login must be checked against the keys its server-first message
    was made from.
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
        # Plain entries: user name -> (the password the keys are of, the keys).
        self._derived: dict[str, tuple[str, ScramKeys]] = {}
        self._deriving: dict[tuple[str, str], list[defer.Deferred[ScramKeys]]] = {}

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

    def scram_keys(self, username: str) -> defer.Deferred[ScramKeys | None]:
        """The SCRAM keys to check ``username``'s SCRAM login against.

        A hashed entry's stored keys, or ``None`` when it has none (a hash
        from before SCRAM: the client must log in with its password).  A
        plain entry's keys are derived in ``run_in_thread`` the first time,
        with a random salt, and kept in memory for the life of the process
        (one derivation even when several logins ask at once).

        Fails with :class:`~chatservice.auth.errors.UnknownUser` when there is
        no such account.
        """
        secret = self.accounts.secret(username)
        if secret is None:
            return defer.fail(UnknownUser(username))
        if is_hashed(secret):
            return defer.succeed(self.accounts.scram_keys(username))
        cached = self._derived.get(username)
        if cached is not None and hmac.compare_digest(cached[0].encode(), secret.encode()):
            return defer.succeed(cached[1])
        d: defer.Deferred[ScramKeys] = defer.Deferred()
        key = (username, secret)
        waiting = self._deriving.get(key)
        if waiting is not None:
            waiting.append(d)
            return d
        self._deriving[key] = [d]
        self.run_in_thread(ScramKeys.derive, secret).addBoth(self._derived_keys, key)
        return d

    def _derived_keys(self, result: ScramKeys | Failure, key: tuple[str, str]) -> None:
        username, secret = key
        waiting = self._deriving.pop(key)
        if isinstance(result, ScramKeys) and self.accounts.secret(username) == secret:
            self._derived[username] = (secret, result)
        for d in waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    def add_scram_keys(self, username: str, password: str) -> defer.Deferred[bool]:
        """Add SCRAM keys to a hashed entry that has none, after a password login.

        Checks ``password`` against the hash again and derives the keys, in
        ``run_in_thread``; the entry is rewritten only if it has not changed
        meanwhile.  Fires with whether keys were added.
        """
        stored = self.accounts.secret(username)
        if stored is None or not is_hashed(stored) or self.accounts.scram_keys(username) is not None:
            return defer.succeed(False)

        def unchanged() -> bool:
            return self.accounts.secret(username) == stored and self.accounts.scram_keys(username) is None

        def write(keys: ScramKeys | None) -> defer.Deferred[bool] | bool:
            return False if keys is None else self._write(username, stored, keys, unchanged)

        return self.run_in_thread(_keys_if_matches, password, stored).addCallback(write)

    def _store(self, username: str, password: str) -> defer.Deferred[None]:
        """Hash ``password``, write the entry, then make it visible in memory."""
        d = self.run_in_thread(hash_and_derive, password)
        d.addCallback(lambda derived: self._write(username, *derived))
        return d.addCallback(lambda _: None)

    def _write(
        self,
        username: str,
        secret: str,
        keys: ScramKeys,
        still_wanted: Callable[[], bool] = lambda: True,
    ) -> defer.Deferred[bool]:
        """Write the entry (one write at a time) and then set it in memory.

        :param still_wanted: checked once it is this write's turn; if false,
            nothing is written.
        :returns: fires with whether it was written.
        """

        def locked() -> defer.Deferred[bool]:
            if not still_wanted():
                return defer.succeed(False)
            d = self.run_in_thread(write_entry, self.accounts.path, username, secret, keys)

            def written(_: object) -> bool:
                self.accounts.set_secret(username, secret, keys)
                self._derived.pop(username, None)
                return True

            return d.addCallback(written)

        return self._write_lock.run(locked)

    def _release(self, result: object, username: str) -> object:
        self._reserved.discard(username)
        return result
