"""SCRAM-SHA-256 logins (RFC 5802, RFC 7677): the password never crosses the wire.

Pure protocol code: no I/O and no reactor.  Deriving keys from a password
(PBKDF2-HMAC-SHA-256, ``iterations`` rounds) is slow by design, so
:meth:`ScramKeys.derive` and :meth:`ScramClientExchange.final` belong in a
thread; every other step is a few hashes and runs anywhere.

The server, for one login::

    exchange = ScramServerExchange(client_first)  # MalformedMessage, ChannelBindingUnsupported
    keys = ...  # the stored keys of exchange.username
    send(exchange.server_first(keys))
    credentials = exchange.credentials(client_final, host)  # MalformedMessage, NonceMismatch
    portal.login(credentials, ...)  # ScramChecker calls credentials.check(keys)
    send(credentials.server_final)  # "v=...", set by a successful check

(or, without ``twisted.cred``: ``exchange.verify_client_final(client_final,
keys)`` returns the server-final message or raises :class:`InvalidProof`).

The client::

    client = ScramClientExchange(username, password)
    send(client.first())
    send(client.final(server_first))  # PBKDF2: in a thread
    client.verify_server(server_final)  # InvalidServerSignature, ServerRejected

Text preparation: a password is prepared with SASLprep (RFC 4013, Unicode 3.2
tables from :mod:`stringprep`); a password SASLprep refuses (a prohibited or
unassigned character) is used as its plain UTF-8 bytes instead, as PostgreSQL
does, so every password this server accepts can log in with SCRAM.  A user
name is not prepared: it must match the accounts file exactly, as with a
password login; it is only saslname-escaped (``,`` as ``=2C``, ``=`` as
``=3D``).  Channel binding is not offered: ``n,,`` and ``y,,`` are accepted,
``p=`` is refused, and an authorization identity (``a=``) must be the user
name itself.

Keys are stored in PostgreSQL's text form, see :meth:`ScramKeys.format`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials
from twisted.internet import defer
from zope.interface import Attribute, implementer

from chatservice.auth.errors import ScramUnavailable, WrongPassword

MECHANISM = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096
MIN_ITERATIONS, MAX_ITERATIONS = 4096, 1_000_000
SALT_BYTES, NONCE_BYTES = 16, 18
MAX_SALT_BYTES = 256
KEY_BYTES = 32  # SHA-256

_STORED = re.compile(
    r"SCRAM-SHA-256\$([0-9]{1,7}):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)",
    re.ASCII,
)


class ScramError(Exception):
    """A SCRAM exchange failed.

    :param message: what went wrong, for logs.
    :param error: the RFC 5802 ``server-error`` value to tell the peer
        (``e=...``); each subclass has a default.
    """

    error = "other-error"

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        if error is not None:
            self.error = error


class MalformedMessage(ScramError):
    """A message does not follow the SCRAM grammar (or uses what is not supported)."""

    error = "invalid-encoding"


class ChannelBindingUnsupported(ScramError):
    """The client asked for channel binding (``p=``), which this server does not offer."""

    error = "channel-binding-not-supported"


class NonceMismatch(ScramError):
    """The nonce in a message is not the one of this exchange."""


class InvalidProof(ScramError):
    """The client's proof does not match the stored keys: the wrong password."""

    error = "invalid-proof"


class InvalidServerSignature(ScramError):
    """The server's signature is wrong: it does not know the password's keys."""


class ServerRejected(ScramError):
    """The server ended the exchange with ``e=...``; ``error`` is its value."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedMessage(f"{what} is not base64") from None


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def saslprep(text: str) -> str:
    """``text`` prepared by SASLprep (RFC 4013) as a stored string.

    :raises ValueError: a prohibited or unassigned character, or bad bidi text.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c
        for c in text
        if not stringprep.in_table_b1(c)
    )
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_a1, stringprep.in_table_c12, stringprep.in_table_c21_c22,
        stringprep.in_table_c3, stringprep.in_table_c4, stringprep.in_table_c5,
        stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    if any(table(c) for c in prepared for table in prohibited):
        raise ValueError("a prohibited character")
    if any(stringprep.in_table_d1(c) for c in prepared):
        if any(stringprep.in_table_d2(c) for c in prepared) or not (
            stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])
        ):
            raise ValueError("bad bidirectional text")
    return prepared


def prepare_password(password: str) -> bytes:
    """The bytes SCRAM derives keys from: SASLprep'd, or as is when SASLprep refuses it."""
    try:
        password = saslprep(password)
    except ValueError:
        pass
    return password.encode("utf-8")


def derive_salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """``SaltedPassword = Hi(Normalize(password), salt, i)`` (slow: call it in a thread)."""
    return hashlib.pbkdf2_hmac("sha256", prepare_password(password), salt, iterations)


def _check_iterations(iterations: int) -> None:
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ValueError(
            f"SCRAM iterations must be {MIN_ITERATIONS} to {MAX_ITERATIONS}"
        )


@dataclass(frozen=True)
class ScramKeys:
    """What a server stores to check SCRAM logins: never the password itself.

    :param salt: the random salt.
    :param iterations: PBKDF2 rounds, :data:`MIN_ITERATIONS` to :data:`MAX_ITERATIONS`.
    :param stored_key: ``H(HMAC(SaltedPassword, "Client Key"))``.
    :param server_key: ``HMAC(SaltedPassword, "Server Key")``.
    :raises ValueError: a parameter out of range.
    """

    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_iterations(self.iterations)
        if not 1 <= len(self.salt) <= MAX_SALT_BYTES:
            raise ValueError(f"a SCRAM salt has 1 to {MAX_SALT_BYTES} bytes")
        if len(self.stored_key) != KEY_BYTES or len(self.server_key) != KEY_BYTES:
            raise ValueError(f"SCRAM-SHA-256 keys have {KEY_BYTES} bytes")

    @classmethod
    def derive(
        cls, password: str, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
    ) -> ScramKeys:
        """The keys of ``password``, with a new random salt unless one is given.

        Slow by design: call it in a thread.
        """
        _check_iterations(iterations)
        salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
        return cls.from_salted_password(
            derive_salted_password(password, salt, iterations), salt, iterations
        )

    @classmethod
    def from_salted_password(cls, salted: bytes, salt: bytes, iterations: int) -> ScramKeys:
        """The keys from an already derived ``SaltedPassword`` (fast)."""
        stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
        return cls(salt, iterations, stored_key, _hmac(salted, b"Server Key"))

    def format(self) -> str:
        """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64), as PostgreSQL."""
        return (
            f"{MECHANISM}${self.iterations}:{_b64(self.salt)}"
            f"${_b64(self.stored_key)}:{_b64(self.server_key)}"
        )

    @classmethod
    def parse(cls, text: str) -> ScramKeys:
        """The keys in the text :meth:`format` writes.

        :raises ValueError: malformed text, or parameters out of range.
        """
        match = _STORED.fullmatch(text)
        if match is None:
            raise ValueError("malformed SCRAM keys")
        iterations, salt, stored_key, server_key = match.groups()
        try:
            return cls(
                _unb64(salt, "salt"), int(iterations), _unb64(stored_key, "StoredKey"),
                _unb64(server_key, "ServerKey"),
            )
        except MalformedMessage:
            raise ValueError("malformed SCRAM keys") from None
        except ValueError as e:
            raise ValueError(f"malformed SCRAM keys: {e}") from None


def new_nonce() -> str:
    """A random nonce: base64 of :data:`NONCE_BYTES` random bytes (printable, no comma)."""
    return _b64(secrets.token_bytes(NONCE_BYTES))


def escape_username(username: str) -> str:
    """``username`` as a saslname: ``=`` as ``=3D``, ``,`` as ``=2C``."""
    return username.replace("=", "=3D").replace(",", "=2C")


def unescape_username(saslname: str) -> str:
    """The user name in a saslname.

    :raises MalformedMessage: empty, a NUL, or an ``=`` not in ``=2C``/``=3D``.
    """
    if not saslname or "\0" in saslname or re.search("=(?!2C|3D)", saslname):
        raise MalformedMessage("bad user name", "invalid-username-encoding")
    return saslname.replace("=2C", ",").replace("=3D", "=")


def _check_nonce(nonce: str) -> None:
    if not nonce or any(not "\x21" <= c <= "\x7e" or c == "," for c in nonce):
        raise MalformedMessage("a nonce is printable ASCII without commas")


def _attributes(message: str, what: str) -> list[tuple[str, str]]:
    """The ``letter=value`` pairs of a comma-separated SCRAM message."""
    pairs = []
    for item in message.split(","):
        if len(item) < 2 or item[1] != "=" or not (item[0].isascii() and item[0].isalpha()):
            raise MalformedMessage(f"malformed {what}")
        pairs.append((item[0], item[2:]))
    return pairs


def _expect(pairs: list[tuple[str, str]], letters: str, what: str) -> list[str]:
    """The values of the first ``len(letters)`` pairs, which must have those letters."""
    if pairs and pairs[0][0] == "m":
        raise MalformedMessage(f"{what}: mandatory extension", "extensions-not-supported")
    if len(pairs) < len(letters) or "".join(k for k, _ in pairs[: len(letters)]) != letters:
        raise MalformedMessage(f"malformed {what}")
    return [value for _, value in pairs[: len(letters)]]


class ClientFirst(NamedTuple):
    """A parsed client-first message."""

    username: str
    client_nonce: str
    gs2_header: str
    bare: str


def parse_client_first(message: str) -> ClientFirst:
    """Parse a client-first message (``n,,n=user,r=nonce``).

    :raises ChannelBindingUnsupported: ``p=`` (channel binding requested).
    :raises MalformedMessage: anything else that is not a plain client-first
        message, an authorization identity other than the user name, or a
        mandatory extension (``m=``).
    """
    parts = message.split(",", 2)
    if len(parts) != 3:
        raise MalformedMessage("malformed client-first message")
    flag, authzid, bare = parts
    if flag.startswith("p="):
        raise ChannelBindingUnsupported("channel binding is not supported")
    if flag not in ("n", "y"):
        raise MalformedMessage("malformed GS2 header")
    saslname, nonce = _expect(_attributes(bare, "client-first message"), "nr", "client-first message")
    username = unescape_username(saslname)
    _check_nonce(nonce)
    if authzid:
        if not authzid.startswith("a=") or unescape_username(authzid[2:]) != username:
            raise MalformedMessage("the authorization identity must be the user name", "other-error")
    return ClientFirst(username, nonce, f"{flag},{authzid},", bare)


def _server_first(nonce: str, keys: ScramKeys) -> str:
    return f"r={nonce},s={_b64(keys.salt)},i={keys.iterations}"


class ServerFirst(NamedTuple):
    """A parsed server-first message."""

    nonce: str
    salt: bytes
    iterations: int


def parse_server_first(message: str, client_nonce: str) -> ServerFirst:
    """Parse a server-first message (``r=nonce,s=salt,i=iterations``).

    :raises NonceMismatch: the nonce does not extend ``client_nonce``.
    :raises MalformedMessage: anything else wrong, including a salt or an
        iteration count out of range.
    """
    nonce, salt, iterations = _expect(_attributes(message, "server-first message"), "rsi", "server-first message")
    _check_nonce(nonce)
    if not nonce.startswith(client_nonce) or len(nonce) == len(client_nonce):
        raise NonceMismatch("the server's nonce does not extend the client's")
    salt_bytes = _unb64(salt, "salt")
    if not iterations.isascii() or not iterations.isdigit() or len(iterations) > 7:
        raise MalformedMessage("malformed iteration count")
    try:
        _check_iterations(int(iterations))
    except ValueError as e:
        raise MalformedMessage(str(e)) from None
    if not 1 <= len(salt_bytes) <= MAX_SALT_BYTES:
        raise MalformedMessage("salt length out of range")
    return ServerFirst(nonce, salt_bytes, int(iterations))


class ClientFinal(NamedTuple):
    """A parsed client-final message."""

    without_proof: str
    proof: bytes


class ScramServerExchange:
    """The server's side of one SCRAM-SHA-256 login.

    :param client_first: the client's first message.
    :raises ChannelBindingUnsupported: channel binding requested.
    :raises MalformedMessage: not a valid client-first message.
    """

    def __init__(self, client_first: str) -> None:
        self.client_first = parse_client_first(client_first)
        self.username = self.client_first.username
        self.nonce: str | None = None
        self._server_first: str | None = None

    def server_first(self, keys: ScramKeys, server_nonce: str | None = None) -> str:
        """The server-first message for the account's ``keys``.

        :param server_nonce: this server's part of the nonce (default: random;
            a test vector gives its own).
        """
        server_nonce = server_nonce or new_nonce()
        _check_nonce(server_nonce)
        self.nonce = self.client_first.client_nonce + server_nonce
        self._server_first = _server_first(self.nonce, keys)
        return self._server_first

    def parse_client_final(self, message: str) -> ClientFinal:
        """Check the client-final message's form, channel binding and nonce.

        :raises MalformedMessage: not a client-final message of this exchange.
        :raises NonceMismatch: the nonce is not this exchange's.
        """
        if self.nonce is None:
            raise ScramError("client-final message before server-first")
        pairs = _attributes(message, "client-final message")
        binding, nonce = _expect(pairs, "cr", "client-final message")
        if pairs[-1][0] != "p" or len(pairs) < 3:
            raise MalformedMessage("the client-final message has no proof")
        if _unb64(binding, "channel binding") != self.client_first.gs2_header.encode("utf-8"):
            raise MalformedMessage("the channel binding differs", "channel-bindings-dont-match")
        if not hmac.compare_digest(nonce.encode("utf-8"), self.nonce.encode("ascii")):
            raise NonceMismatch("the nonce is not this exchange's")
        proof = _unb64(pairs[-1][1], "proof")
        if len(proof) != KEY_BYTES:
            raise MalformedMessage("the proof has the wrong length")
        return ClientFinal(message[: message.rindex(",p=")], proof)

    def verify_client_final(self, message: str | ClientFinal, keys: ScramKeys) -> str:
        """Check the client's proof against ``keys`` (in constant time).

        :returns: the server-final message (``v=<ServerSignature>``).
        :raises InvalidProof: the proof does not match: the wrong password.
        :raises MalformedMessage, NonceMismatch: as :meth:`parse_client_final`.
        """
        if self._server_first is None:
            raise ScramError("client-final message before server-first")
        final = self.parse_client_final(message) if isinstance(message, str) else message
        auth_message = ",".join(
            (self.client_first.bare, self._server_first, final.without_proof)
        ).encode("utf-8")
        signature = _hmac(keys.stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(final.proof, signature))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), keys.stored_key):
            raise InvalidProof("the proof does not match")
        return "v=" + _b64(_hmac(keys.server_key, auth_message))

    def credentials(self, client_final: str, host: str = "") -> ScramCredentials:
        """Credentials for ``Portal.login`` from the client-final message.

        :raises MalformedMessage, NonceMismatch: as :meth:`parse_client_final`
            (before any login attempt is counted).
        """
        return ScramCredentials(self, self.parse_client_final(client_final), host)


class ScramClientExchange:
    """The client's side of one SCRAM-SHA-256 login.

    After :meth:`final`, ``salt``, ``iterations`` and ``salted_password`` hold
    what was derived, so a caller may keep ``salted_password`` for the next
    login with the same salt and iteration count.

    :param username: the account.
    :param password: its password.
    :param client_nonce: this side's nonce (default: random; a test vector
        gives its own).
    """

    def __init__(self, username: str, password: str, client_nonce: str | None = None) -> None:
        self.username = username
        self.password = password
        self.client_nonce = client_nonce or new_nonce()
        _check_nonce(self.client_nonce)
        self.salt: bytes | None = None
        self.iterations: int | None = None
        self.salted_password: bytes | None = None
        self._bare = f"n={escape_username(username)},r={self.client_nonce}"
        self._server_signature: bytes | None = None

    def first(self) -> str:
        """The client-first message (no channel binding, no authorization identity)."""
        return "n,," + self._bare

    def final(self, server_first: str, salted_password: bytes | None = None) -> str:
        """The client-final message (with the proof) answering ``server_first``.

        Derives the ``SaltedPassword`` (slow: call it in a thread) unless
        ``salted_password`` is given for this salt and iteration count.

        :raises NonceMismatch: the server's nonce does not extend ours.
        :raises MalformedMessage: not a usable server-first message.
        """
        nonce, salt, iterations = parse_server_first(server_first, self.client_nonce)
        if salted_password is None:
            salted_password = derive_salted_password(self.password, salt, iterations)
        self.salt, self.iterations, self.salted_password = salt, iterations, salted_password
        without_proof = f"c={_b64(b'n,,')},r={nonce}"
        auth_message = f"{self._bare},{server_first},{without_proof}".encode("utf-8")
        client_key = _hmac(salted_password, b"Client Key")
        signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self._server_signature = _hmac(_hmac(salted_password, b"Server Key"), auth_message)
        return f"{without_proof},p={_b64(proof)}"

    def verify_server(self, server_final: str) -> None:
        """Check the server-final message: the server knew this password's keys.

        :raises ServerRejected: the server answered ``e=...``.
        :raises InvalidServerSignature: a wrong signature (not the real server).
        :raises MalformedMessage: not a server-final message.
        """
        if self._server_signature is None:
            raise ScramError("server-final message before client-final")
        pairs = _attributes(server_final, "server-final message")
        letter, value = pairs[0]
        if letter == "e":
            raise ServerRejected(f"the server refused: {value}", value)
        if letter != "v":
            raise MalformedMessage("malformed server-final message")
        if not hmac.compare_digest(_unb64(value, "signature"), self._server_signature):
            raise InvalidServerSignature("the server's signature is wrong")


class IScramCredentials(ICredentials):
    """A SCRAM login waiting for its proof to be checked against stored keys."""

    username = Attribute("The account (str).")

    def check(keys: ScramKeys) -> bool:
        """Whether the client's proof matches ``keys``; on success, sets ``server_final``."""


@implementer(IScramCredentials)
class ScramCredentials:
    """The client-final message of a :class:`ScramServerExchange`, for ``Portal.login``.

    Made by :meth:`ScramServerExchange.credentials`.

    :param exchange: the exchange.
    :param final: its parsed client-final message.
    :param host: the client's address (for the per-address lock-out).
    """

    def __init__(self, exchange: ScramServerExchange, final: ClientFinal, host: str = "") -> None:
        self.exchange = exchange
        self.final = final
        self.username = exchange.username
        self.host = host
        self.server_final: str | None = None

    def check(self, keys: ScramKeys) -> bool:
        try:
            self.server_final = self.exchange.verify_client_final(self.final, keys)
        except InvalidProof:
            return False
        return True


class ScramKeyLookup(Protocol):
    """Where :class:`ScramChecker` finds an account's keys."""

    def scram_keys(self, username: str) -> defer.Deferred[ScramKeys | None]:
        """The keys, ``None`` when the account has none; fails with ``UnknownUser``."""


@implementer(ICredentialsChecker)
class ScramChecker:
    """Checks SCRAM proofs against the accounts' keys, inside ``Portal.login``.

    Fails with ``UnknownUser`` (from the lookup), :class:`ScramUnavailable`
    (the account has no keys: log in with a password) or ``WrongPassword``
    (the proof does not match), all ``UnauthorizedLogin``.

    :param accounts: finds the keys, e.g. an
        :class:`~chatservice.auth.accounts.AccountManager`; it must be the one
        the server took the keys for its server-first message from.
    """

    credentialInterfaces = (IScramCredentials,)

    def __init__(self, accounts: ScramKeyLookup) -> None:
        self.accounts = accounts

    def requestAvatarId(self, credentials: IScramCredentials) -> defer.Deferred[str]:
        username = credentials.username

        def decided(keys: ScramKeys | None) -> str:
            if keys is None:
                raise ScramUnavailable(username)
            if not credentials.check(keys):
                raise WrongPassword(username)
            return username

        return defer.maybeDeferred(self.accounts.scram_keys, username).addCallback(decided)
