"""Logging in to the server: SCRAM-SHA-256 by default, the password itself as a fallback.

A SCRAM-SHA-256 login (``docs/protocol.rst``, "SCRAM-SHA-256 login") never
sends the password, and proves that the server holds the password's keys::

    > {"type":"salt","mechanism":"SCRAM-SHA-256","message":CLIENT_FIRST}
    {"type":"salt","message":SERVER_FIRST,...}
    > {"type":"login","mechanism":"SCRAM-SHA-256","message":CLIENT_FINAL,"p2p_port":P,"udp_port":U}
    {"type":"login","success":true,...,"server_final":"v=SIGNATURE"}

The ``salt`` request needs only the user name, so the client sends it as soon
as the name is typed (:meth:`LoginAttempt.challenge`) and asks for the
password once challenged (:meth:`LoginAttempt.prove`), as telnet does: an
unknown name is offered an account, and a locked one refused, before any
password is typed.  The key derivation behind ``CLIENT_FINAL`` (PBKDF2) is
slow by design, so it runs in a thread.  A success whose ``server_final`` is missing or wrong fails
with :class:`UntrustedServer`: the client must close the connection.

Only when the server answers the ``salt`` request with a ``scram_unavailable``
login failure (an account hashed before SCRAM existed) or with an error of a
code in :data:`OLD_SERVER_ERRORS` (a server without SCRAM) does the login fall
back to ``{"type":"login","user":U,"password":P}`` on the same connection.
Every other answer is the login's answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet import defer, threads
from twisted.python.failure import Failure

from chatservice import events
from chatservice.auth.credentials import Runner
from chatservice.auth.scram import MECHANISM, InvalidServerSignature, ScramClientExchange, ScramError
from chatservice.client.server_connection import ServerConnection, ServerError
from chatservice.wire.json_events import decode_event

NO_KEYS = "scram_unavailable"
"""The login failure of an account that has no SCRAM keys yet (also a fallback reason)."""

OLD_SERVER = "old_server"
"""The fallback reason when the server has no SCRAM."""

CHALLENGED = "challenged"
"""What :meth:`LoginAttempt.challenge` fires with when the server sent its challenge."""

OLD_SERVER_ERRORS = frozenset({"unsupported_mechanism", "invalid_command", "not_logged_in"})
"""Error codes with which a server that does not know SCRAM answers ``salt``."""

FALLBACK_LINES = {
    NO_KEYS: "This account has no SCRAM-SHA-256 keys yet: logging in with the password instead.",
    OLD_SERVER: "The server does not offer SCRAM-SHA-256: logging in with the password instead.",
}
"""The line shown when a login falls back to the password, by reason (see :class:`LoginAttempt`)."""

IMPOSTOR = (
    "Error. The server could not prove that it knows your password: it may be an"
    " impostor. Closing the connection."
)


class UntrustedServer(Exception):
    """The server failed SCRAM's check of the server: the client must close the connection.

    :param message: what to tell the user.
    """

    def __init__(self, message: str = IMPOSTOR) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class LoginAttempt:
    """One login on ``server``: :meth:`with_scram` or :meth:`with_password`.

    Both return a Deferred that fires with the server's ``login`` answer (a
    success, or a :class:`~chatservice.events.LoginRejected` to show as it
    is), or fails with :class:`ServerError` (an ``error`` reply), the
    connection's loss, or :class:`UntrustedServer`.

    :param server: the connection to the server.
    :param username: the account.
    :param password: the password: sent only by :meth:`with_password`.
    :param ports: sent along in the ``login`` request (``p2p_port``, ``udp_port``).
    :param fallback: told, before a SCRAM login falls back to :meth:`with_password`,
        why: :data:`NO_KEYS` (this account has no keys) or
        :data:`OLD_SERVER` (the server has no SCRAM).
    :param run_in_thread: runs the key derivation off the reactor thread.
    """

    server: ServerConnection
    username: str
    password: str = field(repr=False)
    ports: dict[str, int]
    fallback: Callable[[str], None]
    run_in_thread: Runner = threads.deferToThread
    challenged: bool = False
    """Whether :meth:`challenge` got the server's challenge (:meth:`prove` may follow)."""
    _exchange: ScramClientExchange | None = field(default=None, repr=False)
    _server_first: str = field(default="", repr=False)

    def challenge(self) -> defer.Deferred[Any]:
        """Step one of a SCRAM-SHA-256 login, before the password is known: send ``salt``.

        Fires with :data:`CHALLENGED` (go on with :meth:`prove`), with
        :data:`NO_KEYS` or :data:`OLD_SERVER` when the login must fall back to
        :meth:`with_password` (``fallback`` was told), or with the server's
        refusal (a ``login`` reply to show); fails as :class:`LoginAttempt` says.
        """
        self._exchange = ScramClientExchange(self.username, self.password)
        d = self.server.request(
            {"type": "salt", "mechanism": MECHANISM, "message": self._exchange.first()}
        )
        d.addCallbacks(self._first_answer, self._first_refused)
        return d

    def _first_refused(self, failure: Failure) -> str | Failure:
        if failure.check(ServerError) and failure.value.code in OLD_SERVER_ERRORS:
            self.fallback(OLD_SERVER)
            return OLD_SERVER
        return failure

    def _first_answer(self, reply: dict[str, Any]) -> str | dict[str, Any]:
        answer = decode_event(reply)
        if isinstance(answer, events.LoginRejected):
            if answer.reason == NO_KEYS:
                self.fallback(NO_KEYS)
                return NO_KEYS
            return reply
        if not isinstance(answer, events.ScramChallenge):
            raise UntrustedServer(
                f"Error. The server answered the SCRAM-SHA-256 login with"
                f" {reply.get('type')!r}, not a challenge. Closing the connection."
            )
        self.challenged = True
        self._server_first = answer.message
        return CHALLENGED

    def prove(self, password: str) -> defer.Deferred[dict[str, Any]]:
        """Step two, after :meth:`challenge` fired with :data:`CHALLENGED`: derive, prove, check the server."""
        exchange = self._exchange
        assert exchange is not None and self.challenged
        exchange.password = password
        d = self.run_in_thread(exchange.final, self._server_first)
        d.addCallbacks(self._prove, self._unusable_challenge)
        d.addCallback(self._check_server, exchange)
        return d

    def with_password(self) -> defer.Deferred[dict[str, Any]]:
        """Log in with the password itself (an older server, or ``--password-login``)."""
        return self.server.request(
            dict({"type": "login", "user": self.username, "password": self.password}, **self.ports)
        )

    def with_scram(self) -> defer.Deferred[dict[str, Any]]:
        """Log in with SCRAM-SHA-256, falling back to :meth:`with_password` only as the module says."""
        exchange = ScramClientExchange(self.username, self.password)
        d = self.server.request({"type": "salt", "mechanism": MECHANISM, "message": exchange.first()})
        d.addCallbacks(self._challenged, self._salt_refused, callbackArgs=(exchange,))
        return d

    def _salt_refused(self, failure: Failure) -> defer.Deferred[dict[str, Any]] | Failure:
        """An ``error`` reply to ``salt``: an older server falls back, the rest fail."""
        if failure.check(ServerError) and failure.value.code in OLD_SERVER_ERRORS:
            return self._fall_back(OLD_SERVER)
        return failure

    def _fall_back(self, reason: str) -> defer.Deferred[dict[str, Any]]:
        self.fallback(reason)
        return self.with_password()

    def _challenged(
        self, reply: dict[str, Any], exchange: ScramClientExchange
    ) -> defer.Deferred[dict[str, Any]] | dict[str, Any]:
        """The answer to ``salt``: the server-first message, or a refusal."""
        answer = decode_event(reply)
        if isinstance(answer, events.LoginRejected):
            return self._fall_back(NO_KEYS) if answer.reason == NO_KEYS else reply
        if not isinstance(answer, events.ScramChallenge):
            raise UntrustedServer(
                f"Error. The server answered the SCRAM-SHA-256 login with"
                f" {reply.get('type')!r}, not a challenge. Closing the connection."
            )
        d = self.run_in_thread(exchange.final, answer.message)
        d.addCallbacks(self._prove, self._unusable_challenge)
        d.addCallback(self._check_server, exchange)
        return d

    @staticmethod
    def _unusable_challenge(failure: Failure) -> Failure:
        failure.trap(ScramError)
        raise UntrustedServer(
            f"Error. The server's SCRAM-SHA-256 challenge is not valid"
            f" ({failure.getErrorMessage()}). Closing the connection."
        )

    def _prove(self, client_final: str) -> defer.Deferred[dict[str, Any]]:
        return self.server.request(
            dict({"type": "login", "mechanism": MECHANISM, "message": client_final}, **self.ports)
        )

    @staticmethod
    def _check_server(reply: dict[str, Any], exchange: ScramClientExchange) -> dict[str, Any]:
        """A refusal is the answer; anything else needs the server's proof that it holds the keys."""
        if isinstance(decode_event(reply), events.LoginRejected):
            return reply
        server_final = reply.get("server_final")
        try:
            if not isinstance(server_final, str):
                raise InvalidServerSignature("no server-final message")
            exchange.verify_server(server_final)
        except ScramError:
            raise UntrustedServer() from None
        return reply
