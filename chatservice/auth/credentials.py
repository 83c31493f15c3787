"""The accounts file and the ``twisted.cred`` checker over it.

The file has one account a line, ``username secret``, where the secret is a
plain password or a salted scrypt hash (:mod:`chatservice.auth.passwords`);
blank lines and lines starting with ``#`` are ignored.  User names are
case-sensitive and contain no whitespace or control characters.

:func:`write_entry` adds or changes one line atomically: the new file is
written beside the old one, flushed to disk, then renamed over it, so a crash
leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import os
import tempfile
import unicodedata
from pathlib import Path
from typing import Any, Callable

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet import defer
from zope.interface import implementer

from chatservice.auth.errors import UnknownUser, WrongPassword
from chatservice.auth.passwords import check_hash_format, is_hashed, verify_password

MAX_USERNAME_LENGTH = 32


class CredentialsError(Exception):
    """The credentials file cannot be used; the message names the file and line."""


def username_problem(username: str) -> str | None:
    """Why ``username`` cannot be a user name, or ``None`` when it can."""
    if not username:
        return "a user name cannot be empty"
    if len(username) > MAX_USERNAME_LENGTH:
        return f"a user name has at most {MAX_USERNAME_LENGTH} characters"
    if any(c.isspace() or unicodedata.category(c).startswith("C") for c in username):
        return "a user name cannot contain spaces or control characters"
    return None


class CredentialsFile:
    """The accounts read from a credentials file.

    :param path: where the accounts were read from.
    :param secrets: user name to stored password.
    """

    def __init__(self, path: Path, secrets: dict[str, str]) -> None:
        self.path = path
        self._secrets = secrets

    @classmethod
    def load(cls, path: Path | str) -> CredentialsFile:
        """Read and check ``path``.

        :raises CredentialsError: unreadable file, bad line, or duplicate user.
        """
        path = Path(path)
        try:
            content = path.read_bytes().decode("utf-8-sig")
        except OSError as e:
            raise CredentialsError(f"{path}: cannot read: {e.strerror}") from None
        except UnicodeDecodeError:
            raise CredentialsError(f"{path}: not valid UTF-8") from None
        secrets: dict[str, str] = {}
        for number, line in enumerate(content.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split(None, 1)
            if len(fields) != 2:
                raise CredentialsError(
                    f"{path}:{number}: expected 'username password'"
                )
            username, secret = fields
            problem = username_problem(username)
            if problem:
                raise CredentialsError(f"{path}:{number}: {problem}")
            if username in secrets:
                raise CredentialsError(f"{path}:{number}: {username} is listed twice")
            if is_hashed(secret) and check_hash_format(secret):
                raise CredentialsError(
                    f"{path}:{number}: {check_hash_format(secret)} for {username}"
                )
            secrets[username] = secret
        return cls(path, secrets)

    def exists(self, username: str) -> bool:
        """Whether ``username`` has an account."""
        return username in self._secrets

    def usernames(self) -> list[str]:
        """Every account's user name, sorted."""
        return sorted(self._secrets)

    def secret(self, username: str) -> str | None:
        """The stored password of ``username``, or ``None`` for no such account."""
        return self._secrets.get(username)

    def set_secret(self, username: str, secret: str) -> None:
        """Add or change an account in memory (after :func:`write_entry` succeeded)."""
        self._secrets[username] = secret


def write_entry(path: Path, username: str, secret: str) -> None:
    """Add ``username secret`` to the file at ``path``, or replace that user's line.

    Atomic: a temporary file in the same directory is written, flushed to
    disk and renamed over ``path``.  Blocking file I/O: call it in a thread.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    entry = f"{username} {secret}"
    for index, line in enumerate(lines):
        fields = line.split(None, 1)
        if fields and fields[0] == username and not line.lstrip().startswith("#"):
            lines[index] = entry
            break
    else:
        lines.append(entry)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


Runner = Callable[..., "defer.Deferred[Any]"]
"""Runs ``f(*args)`` off the reactor thread and fires with its result."""


def run_here(f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
    """A :data:`Runner` that runs ``f`` at once, on this thread (for tests)."""
    return defer.maybeDeferred(f, *args)


@implementer(ICredentialsChecker)
class CredentialsChecker:
    """Checks a user name and password against a :class:`CredentialsFile`.

    Fails with :class:`UnknownUser` or :class:`WrongPassword`, both
    ``UnauthorizedLogin``.  Plain entries are compared in constant time on
    the spot; hashed entries are verified by ``run_in_thread`` (slow KDF).

    :param accounts: the accounts.
    :param run_in_thread: runs the hash verification off the reactor thread.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, accounts: CredentialsFile, run_in_thread: Runner = run_here) -> None:
        self.accounts = accounts
        self.run_in_thread = run_in_thread

    def requestAvatarId(self, credentials: IUsernamePassword) -> defer.Deferred[str]:
        username = credentials.username
        stored = self.accounts.secret(username)
        if stored is None:
            return defer.fail(UnknownUser(username))
        if is_hashed(stored):
            d = self.run_in_thread(verify_password, credentials.password, stored)
        else:
            d = defer.succeed(verify_password(credentials.password, stored))

        def decided(matches: bool) -> str:
            if matches:
                return username
            raise WrongPassword(username)

        return d.addCallback(decided)
