"""Creating accounts and changing passwords, hashed, off the reactor thread.

:class:`AccountManager` checks a request, reserves the user name (so two
connections of this node registering one name at once cannot both win),
hashes the password and derives its SCRAM keys in a thread, then writes the
account to the chat store (:class:`~chatservice.auth.directory.StoredAccounts`),
where it takes effect at once, on every node sharing the store.  The store
adds an account atomically, so of two nodes registering one name at once one
is told the name is taken.  Nothing is written anywhere else: the credentials
file is only read at start.

It is also where SCRAM logins find an account's keys
(:meth:`AccountManager.scram_keys`): the stored ones, or for a plain secret
keys derived once per process.
"""

from __future__ import annotations

import hmac
from typing import Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from chatservice.auth.credentials import (
    Runner,
    normalise_username,
    run_here,
    username_problem,
    username_skeleton,
)
from chatservice.auth.directory import Account, StoredAccounts
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
    """Registers accounts and changes passwords in the store.

    :param accounts: the accounts (in the chat store).
    :param run_in_thread: runs hashing off the reactor thread.
    :param in_use: whether a name is taken by something other than an account
        (an online guest).

    One per server: the SCRAM keys derived for plain secrets live here, and a
    SCRAM login must be checked against the keys its server-first message
    was made from.
    """

    def __init__(
        self,
        accounts: StoredAccounts,
        run_in_thread: Runner = run_here,
        in_use: Callable[[str], bool] = lambda name: False,
    ) -> None:
        self.accounts = accounts
        self.run_in_thread = run_in_thread
        self.in_use = in_use
        self._reserved: set[str] = set()
        self._reserved_skeletons: set[str] = set()
        # Plain secrets: user name -> (the password the keys are of, the keys).
        self._derived: dict[str, tuple[str, ScramKeys]] = {}
        self._deriving: dict[tuple[str, str], list[defer.Deferred[ScramKeys]]] = {}

    def taken(self, username: str) -> bool:
        """Whether ``username`` is an account (as far as this node knows), being registered, or in use by a guest.

        Or looks like one of those (:func:`~chatservice.auth.credentials.username_skeleton`):
        ``in_use`` is asked about look-alike guests too.
        """
        return (
            self.accounts.exists(username)
            or username in self._reserved
            or self.in_use(username)
            or self.resembles(username)
        )

    def resembles(self, username: str) -> bool:
        """Whether ``username`` looks like another account or a name being registered."""
        return (
            self.accounts.resembling(username) is not None
            or username_skeleton(username) in self._reserved_skeletons
        )

    def check_taken(self, username: str) -> defer.Deferred[bool]:
        """:meth:`taken`, asking the store when this node does not know the name."""
        if self.taken(username):
            return defer.succeed(True)
        return self.accounts.find(username)

    def register(self, username: str, password: str) -> defer.Deferred[None]:
        """Create the account ``username`` (normalised to NFC); fails with :class:`AccountError`.

        Refused (``taken``) when the name, or one that looks like it
        (:func:`~chatservice.auth.credentials.username_skeleton`), is an
        account, an online guest's or being registered.
        """
        username = normalise_username(username)
        problem = username_problem(username)
        if problem:
            return defer.fail(AccountError("invalid_username", f"Error. Invalid user name: {problem}."))
        problem = password_problem(password)
        if problem:
            return defer.fail(AccountError("invalid_password", f"Error. Invalid password: {problem}."))
        other = self.accounts.resembling(username)
        if other is not None:
            return defer.fail(
                AccountError(
                    "taken",
                    f"Error. The user name {username} is taken: it looks too like {other}.",
                )
            )
        if self.taken(username):
            return defer.fail(_taken(username))
        self._reserved.add(username)
        self._reserved_skeletons.add(username_skeleton(username))
        d = self.run_in_thread(hash_and_derive, password)
        d.addCallback(lambda derived: self.accounts.add(username, *derived))
        d.addCallback(self._created, username)
        d.addBoth(self._release, username)
        return d

    def _created(self, created: bool, username: str) -> None:
        if not created:
            raise _taken(username)  # by another node, meanwhile

    def change_password(
        self, username: str, old: str, new: str
    ) -> defer.Deferred[None]:
        """Change ``username``'s password after checking ``old``; :class:`AccountError` if not."""

        def found(account: Account | None) -> defer.Deferred[bool]:
            if account is None:
                raise AccountError("unavailable", "Error. Only accounts have passwords.")
            problem = password_problem(new)
            if problem:
                raise AccountError("invalid_password", f"Error. Invalid password: {problem}.")
            return self.run_in_thread(verify_password, old, account.secret)

        def checked(matches: bool) -> defer.Deferred[bool]:
            if not matches:
                raise AccountError("wrong_password", "Error. Your current password is not that.")
            d = self.run_in_thread(hash_and_derive, new)
            return d.addCallback(lambda derived: self.accounts.set_secret(username, *derived))

        d = self.accounts.account(username).addCallback(found).addCallback(checked)
        return d.addCallback(lambda _: None)

    def scram_keys(self, username: str) -> defer.Deferred[ScramKeys | None]:
        """The SCRAM keys to check ``username``'s SCRAM login against.

        A hashed secret's stored keys, or ``None`` when it has none (a hash
        from before SCRAM: the client must log in with its password).  A
        plain secret's keys are derived in ``run_in_thread`` the first time,
        with a random salt, and kept in memory for the life of the process
        (one derivation even when several logins ask at once; derived again
        if the secret changes).

        Fails with :class:`~chatservice.auth.errors.UnknownUser` when there is
        no such account.
        """
        return self.accounts.account(username).addCallback(self._keys_of, username)

    def _keys_of(
        self, account: Account | None, username: str
    ) -> ScramKeys | None | defer.Deferred[ScramKeys]:
        if account is None:
            raise UnknownUser(username)
        secret = account.secret
        if is_hashed(secret):
            return account.scram
        cached = self._derived.get(username)
        if cached is not None and hmac.compare_digest(cached[0].encode(), secret.encode()):
            return cached[1]
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
        if isinstance(result, ScramKeys):
            # Kept with the secret it is of: a lookup uses it only while the
            # account's secret is still that one.
            self._derived[username] = (secret, result)
        for d in waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    def add_scram_keys(self, username: str, password: str) -> defer.Deferred[bool]:
        """Add SCRAM keys to a hashed secret that has none, after a password login.

        Checks ``password`` against the hash again and derives the keys, in
        ``run_in_thread``; the store adds them only if the account has not
        changed meanwhile (on any node).  Fires with whether keys were added.
        """

        if not self.accounts.may_lack_keys(username):
            return defer.succeed(False)  # as the password check just read it

        def found(account: Account | None) -> bool | defer.Deferred[bool]:
            if account is None or account.scram is not None or not is_hashed(account.secret):
                return False
            d = self.run_in_thread(_keys_if_matches, password, account.secret)
            return d.addCallback(write, account.secret)

        def write(keys: ScramKeys | None, secret: str) -> bool | defer.Deferred[bool]:
            return False if keys is None else self.accounts.add_scram_keys(username, secret, keys)

        return self.accounts.account(username).addCallback(found)

    def _release(self, result: object, username: str) -> object:
        self._reserved.discard(username)
        self._reserved_skeletons.discard(username_skeleton(username))
        return result


def _taken(username: str) -> AccountError:
    return AccountError("taken", f"Error. The user name {username} is taken.")
