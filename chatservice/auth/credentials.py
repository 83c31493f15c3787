"""The accounts file and the ``twisted.cred`` checker over it.

The file has one account a line, ``username password``; blank lines and lines
starting with ``#`` are ignored.  User names are case-sensitive and contain no
whitespace or control characters.
"""

from __future__ import annotations

import hmac
import unicodedata
from pathlib import Path

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet import defer
from zope.interface import implementer

from chatservice.auth.errors import UnknownUser, WrongPassword

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
            content = path.read_bytes().decode("utf-8")
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


@implementer(ICredentialsChecker)
class CredentialsChecker:
    """Checks a user name and password against a :class:`CredentialsFile`.

    Fails with :class:`UnknownUser` or :class:`WrongPassword`, both
    ``UnauthorizedLogin``; passwords are compared in constant time.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, accounts: CredentialsFile) -> None:
        self.accounts = accounts

    def requestAvatarId(self, credentials: IUsernamePassword) -> defer.Deferred[str]:
        username = credentials.username
        stored = self.accounts.secret(username)
        if stored is None:
            return defer.fail(UnknownUser(username))
        if hmac.compare_digest(
            stored.encode("utf-8"), credentials.password.encode("utf-8")
        ):
            return defer.succeed(username)
        return defer.fail(WrongPassword(username))
