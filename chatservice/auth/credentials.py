"""The credentials file: accounts a server imports at start, and ``chatservice-passwd`` edits.

A running server keeps its accounts in the chat store
(:mod:`chatservice.auth.directory`); the file named by ``--credentials`` is
read when it starts, and its accounts that the store lacks are added to
it; a reload (``SIGHUP``) reads it again (:mod:`chatservice.reload`).  The
server never writes to the file.

The file has one account a line, ``username secret``, where the secret is a
plain password or a salted scrypt hash (:mod:`chatservice.auth.passwords`);
blank lines and lines starting with ``#`` are ignored.  User names follow
:func:`username_problem` (which is why no name starts with ``#``); a line
whose name breaks those rules is reported in :attr:`CredentialsFile.problems`
and not imported (an account the store has already keeps logging in).  A hashed
entry may carry the account's SCRAM-SHA-256 keys after the hash, for logins
that never send the password (:mod:`chatservice.auth.scram`)::

    yoda $scrypt$ln=14,r=8,p=1$<salt>$<hash> SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>

A plain entry never has keys in the file: all after the user name is its
password.

:func:`write_entry` (used by ``chatservice-passwd FILE USER`` only) adds or
changes one line atomically: the new file is written beside the old one,
flushed to disk, then renamed over it, so a crash leaves either the old file
or the new one, never a mix.
"""

from __future__ import annotations

import os
import tempfile
import unicodedata
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer

from chatservice.auth.passwords import check_hash_format, is_hashed
from chatservice.auth.scram import ScramKeys

MAX_USERNAME_LENGTH = 32


class CredentialsError(Exception):
    """The credentials file cannot be used; the message names the file and line."""


SEPARATORS = frozenset("_-.")
"""Characters a user name may have between letters and digits (not first or last, not two in a row)."""

RESERVED_USERNAMES = frozenset(
    {
        "guest", "server", "system", "admin", "administrator", "root", "operator",
        "moderator", "broadcast", "all", "everyone", "nobody", "anonymous", "chatservice",
    }
)
"""Names (compared by :func:`username_skeleton`) no new account or guest may take.

``guest`` is the keyword of a guest login (``guest NAME``); ``server``,
``system``, ``broadcast``, ``all`` and ``everyone`` read as the server
speaking or a message to everyone; the others as the people running it.
"""

# Latin look-alikes of Cyrillic and Greek letters (after NFKC and casefold, so
# lower case only; an upper-case look-alike casefolds to one of these).  Not
# Unicode's whole confusables table: the common homoglyphs of those scripts.
_CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "а": "a", "в": "b", "е": "e", "ё": "ë", "һ": "h", "н": "h", "і": "i",
        "ї": "ï", "ј": "j", "к": "k", "ӏ": "l", "м": "m", "о": "o", "р": "p",
        "ԛ": "q", "г": "r", "ѕ": "s", "т": "t", "у": "y", "ү": "y", "х": "x",
        "с": "c", "ԁ": "d", "ԝ": "w", "ѡ": "w", "ѵ": "v", "ь": "b", "ɡ": "g",
        # Greek
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v",
        "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ϲ": "c",
        "ϳ": "j", "ζ": "z", "μ": "u", "ω": "w",
    }
)


def normalise_username(username: str) -> str:
    """``username`` in Unicode normal form C, as names are stored and looked up."""
    return unicodedata.normalize("NFC", username)


def username_skeleton(username: str) -> str:
    """What ``username`` looks like: two names with one skeleton cannot both be taken.

    NFKC (``ｙｏｄａ`` is ``yoda``), case-folded (``Yoda`` is ``yoda``), and
    common Cyrillic and Greek look-alikes of Latin letters mapped to them
    (``yоda`` with a Cyrillic ``о`` is ``yoda``).
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())
    return unicodedata.normalize("NFC", folded.translate(_CONFUSABLES))


def login_name_problem(username: str) -> str | None:
    """Why ``username`` cannot be an account's name at all: what a login is checked against.

    Looser than :func:`username_problem`: an account imported or registered
    under older rules keeps logging in.
    """
    if not username:
        return "a user name cannot be empty"
    if len(username) > MAX_USERNAME_LENGTH:
        return f"a user name has at most {MAX_USERNAME_LENGTH} characters"
    if any(c.isspace() or unicodedata.category(c).startswith("C") for c in username):
        return "a user name cannot contain spaces or control characters"
    return None


def username_problem(username: str) -> str | None:
    """Why ``username`` cannot be a new name (registration, guest, imported line), or ``None``.

    A new name is in NFC (callers normalise first: :func:`normalise_username`)
    and has at most :data:`MAX_USERNAME_LENGTH` characters: letters and digits
    of any script (with their combining marks), and ``_``, ``-``, ``.``
    between them (not first or last, not two in a row); it is not one of
    :data:`RESERVED_USERNAMES`.  Whether it collides with a name already
    taken is the caller's check (:func:`username_skeleton`).
    """
    problem = login_name_problem(username)
    if problem:
        return problem
    if username != normalise_username(username):
        return "a user name must be in Unicode normal form C"
    previous = ""
    for position, c in enumerate(username):
        category = unicodedata.category(c)
        if c in SEPARATORS:
            if position == 0 or position == len(username) - 1 or previous in SEPARATORS:
                return (
                    "'_', '-' and '.' may only stand between letters or digits"
                    " (not first or last, not two in a row)"
                )
        elif category.startswith("M"):
            if position == 0:
                return "a user name must start with a letter or a digit"
        elif not (category.startswith("L") or category == "Nd"):
            return (
                "a user name has only letters, digits, and '_', '-' or '.'"
                f" between them (not {c!r})"
            )
        previous = c
    if username_skeleton(username) in RESERVED_USERNAMES:
        return f"{username} is reserved"
    return None


class CredentialsFile:
    """The accounts read from a credentials file.

    :param path: where the accounts were read from.
    :param secrets: user name to stored password.
    :param scram: user name to SCRAM keys, for hashed entries that have them.
    :param lines: user name to the number of its line.
    :param problems: user name to why it breaks the rules for new names
        (:func:`username_problem`): such a line is not imported into a store
        that lacks it, but an account the store has keeps logging in.
    """

    def __init__(
        self,
        path: Path,
        secrets: dict[str, str],
        scram: dict[str, ScramKeys] | None = None,
        lines: dict[str, int] | None = None,
        problems: dict[str, str] | None = None,
    ) -> None:
        self.path = path
        self._secrets = secrets
        self._scram = {} if scram is None else scram
        self._lines = {} if lines is None else lines
        self.problems: dict[str, str] = {} if problems is None else problems

    def line_of(self, username: str) -> int | None:
        """The number of ``username``'s line, or ``None`` when unknown."""
        return self._lines.get(username)

    @classmethod
    def load(cls, path: Path | str) -> CredentialsFile:
        """Read and check ``path``.

        A name that is no user name at all (:func:`login_name_problem`) is
        an error; one that only breaks the rules for new names is noted in
        :attr:`problems`.

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
        scram: dict[str, ScramKeys] = {}
        lines: dict[str, int] = {}
        problems: dict[str, str] = {}
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
            problem = login_name_problem(username)
            if problem:
                raise CredentialsError(f"{path}:{number}: {problem}")
            problem = username_problem(username)
            if problem:
                problems[username] = problem
            lines[username] = number
            if username in secrets:
                raise CredentialsError(f"{path}:{number}: {username} is listed twice")
            if is_hashed(secret):
                try:
                    secret, keys = _hashed_entry(secret)
                except ValueError as e:
                    raise CredentialsError(f"{path}:{number}: {e} for {username}") from None
                if keys is not None:
                    scram[username] = keys
            secrets[username] = secret
        return cls(path, secrets, scram, lines, problems)

    def exists(self, username: str) -> bool:
        """Whether ``username`` has an account."""
        return username in self._secrets

    def usernames(self) -> list[str]:
        """Every account's user name, sorted."""
        return sorted(self._secrets)

    def secret(self, username: str) -> str | None:
        """The stored password of ``username``, or ``None`` for no such account."""
        return self._secrets.get(username)

    def scram_keys(self, username: str) -> ScramKeys | None:
        """The SCRAM keys stored for ``username``, or ``None`` (none stored, or no account).

        Plain entries have none here: see
        :meth:`~chatservice.auth.accounts.AccountManager.scram_keys`.
        """
        return self._scram.get(username)

    def entries(self) -> list[tuple[str, str, ScramKeys | None]]:
        """Every account as ``(username, secret, SCRAM keys or None)``, sorted by name."""
        return [(name, self._secrets[name], self._scram.get(name)) for name in self.usernames()]


def _hashed_entry(text: str) -> tuple[str, ScramKeys | None]:
    """The hash and the SCRAM keys (if any) of a hashed entry.

    :raises ValueError: a malformed hash or keys, or more fields.
    """
    fields = text.split()
    problem = check_hash_format(fields[0])
    if problem:
        raise ValueError(problem)
    if len(fields) == 1:
        return fields[0], None
    if len(fields) > 2:
        raise ValueError("expected a hash and SCRAM keys")
    return fields[0], ScramKeys.parse(fields[1])


def write_entry(
    path: Path, username: str, secret: str, scram: ScramKeys | None = None
) -> None:
    """Add ``username secret [keys]`` to the file at ``path``, or replace that user's line.

    Atomic: a temporary file in the same directory is written, flushed to
    disk and renamed over ``path``.  Blocking file I/O: call it in a thread.

    :param scram: the SCRAM keys, only with a hashed ``secret``.
    :raises ValueError: SCRAM keys with a plain password.
    """
    if scram is not None and not is_hashed(secret):
        raise ValueError("SCRAM keys are stored only next to a hash")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    entry = f"{username} {secret}" if scram is None else f"{username} {secret} {scram.format()}"
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
