"""Logging in, one dialogue per wire format: :class:`TextLogin` and :class:`JsonLogin`.

A dialogue owns a connection from its first line until a session exists:
the prompts (text), the requests (JSON), registration, guests, and what a
refused login is answered with.  It reaches its connection only through
:class:`LoginHost`, and the auth layer only through the
:class:`~chatservice.auth.login.LoginGate`, whose typed errors become
replies in :func:`~chatservice.server.replies.login_rejection`.
"""

from __future__ import annotations

import base64
import enum
from typing import Any, Callable, Protocol

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice import events
from chatservice.auth.accounts import AccountError
from chatservice.auth.credentials import normalise_username
from chatservice.auth.errors import LoginUnavailable, UnknownUser, WrongPassword
from chatservice.auth.login import EXPECTED_ERRORS, LoginGate, LoginResult
from chatservice.auth.scram import ScramError, ScramKeys, ScramServerExchange
from chatservice.commands import HELP, CommandError, Request
from chatservice.server.policy import ConnectionPolicy
from chatservice.server.replies import UNAVAILABLE, closes_connection, login_rejection
from chatservice.version import SERVER_VERSION, compatible
from chatservice.wire import jsonlines, text

log = Logger()

NOT_LOGGED_IN = 'Log in first: {"type": "login", "user": "NAME", "password": "PASSWORD"}.'


_NAMELESS_REFUSALS = frozenset({"unknown_user", "invalid_username"})
"""Refusals logged without the name typed: it may be a password typed at the wrong prompt."""


def log_refusal(rejection: events.LoginRejected, username: str, host: str) -> None:
    """One log line for a refused login (a lock-out says so, with its time left).

    Never a password; not even the name typed, when it may be one (an
    unknown or invalid name).
    """
    if rejection.reason in ("locked", "address_locked"):
        log.info(
            "Lock-out: {what} locked for {seconds:.0f} seconds after failures from {host}",
            what=f"address {host}" if rejection.reason == "address_locked" else repr(username),
            seconds=rejection.retry_after or 0,
            host=host,
        )
        return
    user = "an unknown name" if rejection.reason in _NAMELESS_REFUSALS else repr(username)
    log.info(
        "Refused: {user} from {host} ({reason})", user=user, host=host, reason=rejection.reason
    )


class LoginHost(Protocol):
    """What a dialogue needs of its connection."""

    host: str
    p2p_port: int | None
    udp_port: int | None

    def send(self, event: events.Event, request_id: Any = None) -> None:
        """Write ``event`` (a reply to ``request_id``)."""

    def disconnect(self, event: events.Disconnected, request_id: Any = None) -> None:
        """Write ``event`` as the last line and close."""

    def wait_for(
        self,
        d: defer.Deferred[Any],
        done: Callable[[Any], None],
        failed: Callable[[Failure], None],
        abandon: Callable[[Any], None] = ...,
    ) -> None:
        """Stop reading until ``d`` fires, then call ``done`` or ``failed``."""

    def logged_in(
        self, result: LoginResult, request_id: Any, server_final: str | None = None
    ) -> None:
        """Take over the new session (``server_final``: after a SCRAM login)."""

    def hide_input(self) -> None:
        """A password prompt follows: a ``telnet`` client should not echo (text only)."""

    def show_input(self) -> None:
        """No password prompt follows: the client may echo again (text only)."""

    def hidden_line_ended(self) -> None:
        """A password was typed unechoed: end its line on the screen (text only)."""


class LoginDialogue:
    """What both formats share: logging in, and what a refusal is answered with.

    :param connection: the connection logging in.
    :param gate: where to log in.
    :param policy: whether registration and guests are allowed.
    """

    def __init__(self, connection: LoginHost, gate: LoginGate, policy: ConnectionPolicy) -> None:
        self.connection = connection
        self.gate = gate
        self.policy = policy

    def start(self) -> None:
        """The connection has chosen this format: say what comes first, if anything."""

    def line(self, raw: bytes) -> None:
        """Handle one received line."""
        raise NotImplementedError

    def interrupted(self) -> None:
        """The client cancelled the line it was typing (Ctrl-C at ``telnet``)."""

    def _log_in(self, d: defer.Deferred[LoginResult], username: str, request_id: Any) -> None:
        self.connection.wait_for(
            d,
            lambda result: self.connection.logged_in(result, request_id),
            lambda failure: self._refused(failure, username, request_id),
            abandon=lambda result: result[1](),
        )

    def login(self, username: str, password: str, request_id: Any = None) -> None:
        """Log in with a password (the name normalised to NFC first)."""
        username = normalise_username(username)
        self._log_in(self.gate.login(username, password, self.connection), username, request_id)

    def login_guest(self, username: str, request_id: Any = None) -> None:
        """Log in as a guest (the name normalised to NFC first)."""
        username = normalise_username(username)
        self._log_in(self.gate.login_guest(username, self.connection), username, request_id)

    def _refused(self, failure: Failure, username: str, request_id: Any) -> None:
        if not failure.check(*EXPECTED_ERRORS):
            log.failure("Login of {username} failed unexpectedly", failure, username=username)
        rejection = login_rejection(failure.value, username)
        log_refusal(rejection, username, self.connection.host)
        if closes_connection(failure.value):
            self.connection.disconnect(rejection, request_id)
            return
        self.connection.send(rejection, request_id)
        self.ask_again(failure.value)

    def ask_again(self, error: BaseException) -> None:
        """After a refusal: prompt for what comes next (text), or nothing (JSON)."""

    def register(self, username: str, password: str, request_id: Any = None) -> None:
        """Create an account; :meth:`registered` or a refusal follows."""
        username = normalise_username(username)

        def refused(failure: Failure) -> None:
            error = failure.value
            if not isinstance(error, AccountError):
                log.failure("Registering {username} failed unexpectedly", failure, username=username)
                error = AccountError("unavailable", UNAVAILABLE)
            self.connection.send(
                events.RegisterStatus(False, username, error.code, error.message), request_id
            )
            self.ask_again(error)

        def done(_: object) -> None:
            log.info("Registration: {user} from {host}", user=username, host=self.connection.host)
            self.connection.send(events.RegisterStatus(True, username), request_id)
            self.registered(username, password)

        self.connection.wait_for(self.gate.register(username, password), done, refused)

    def registered(self, username: str, password: str) -> None:
        """The account was created."""


class Step(enum.Enum):
    """What the text dialogue waits for."""

    USERNAME = events.Prompt.USERNAME
    PASSWORD = events.Prompt.PASSWORD
    CREATE = events.Prompt.CREATE
    NEW_PASSWORD = events.Prompt.NEW_PASSWORD
    REPEAT_PASSWORD = events.Prompt.REPEAT_PASSWORD


HIDDEN_STEPS = frozenset({Step.PASSWORD, Step.NEW_PASSWORD, Step.REPEAT_PASSWORD})
"""The prompts whose answer ``telnet`` is asked not to echo."""


class TextLogin(LoginDialogue):
    """A person at ``telnet``: a greeting, then prompts, one answer a line.

    ``guest NAME`` at the user name prompt logs in as a guest (when allowed);
    an unknown name is offered a new account (when registration is allowed).
    """

    def __init__(self, connection: LoginHost, gate: LoginGate, policy: ConnectionPolicy) -> None:
        super().__init__(connection, gate, policy)
        self.step = Step.USERNAME
        self.username = ""
        self._new_password = ""

    def start(self) -> None:
        self.connection.send(events.Greeting(SERVER_VERSION))
        self.prompt(Step.USERNAME)

    def prompt(self, step: Step) -> None:
        """Ask for ``step`` (a password unechoed)."""
        self.step = step
        if step in HIDDEN_STEPS:
            self.connection.hide_input()
        else:
            self.connection.show_input()
        self.connection.send(events.Prompt(step.value))

    def interrupted(self) -> None:
        """Ctrl-C: ask the same question again (both new passwords after the repeat)."""
        self.prompt(Step.NEW_PASSWORD if self.step is Step.REPEAT_PASSWORD else self.step)

    def line(self, raw: bytes) -> None:
        if self.step in HIDDEN_STEPS:
            self.connection.hidden_line_ended()
        try:
            answer = text.decode_line(raw)
        except CommandError as e:
            self.connection.send(events.ErrorReply(e.code, e.message))
            return
        if self.step is Step.USERNAME:
            self._username(answer.strip())
        elif self.step is Step.PASSWORD:
            self.login(self.username, answer)
        elif self.step is Step.CREATE:
            choice = answer.strip().lower()
            if choice in ("y", "yes"):
                self.prompt(Step.NEW_PASSWORD)
            elif choice in ("n", "no"):
                self.prompt(Step.USERNAME)
            else:
                self.prompt(Step.CREATE)
        elif self.step is Step.NEW_PASSWORD:
            self._new_password = answer
            self.prompt(Step.REPEAT_PASSWORD)
        elif answer != self._new_password:
            self.connection.send(
                events.ErrorReply("mismatch", "Error. The passwords differ; try again.")
            )
            self.prompt(Step.NEW_PASSWORD)
        else:
            self.register(self.username, answer)

    def _username(self, username: str) -> None:
        if not username:
            self.prompt(Step.USERNAME)
            return
        words = username.split()
        if len(words) == 2 and words[0].lower() == "guest" and self.policy.allow_guests:
            self.login_guest(words[1])
            return
        username = self.username = normalise_username(username)
        try:
            self.gate.check_username(username, self.connection.host)
        except UnknownUser:
            # Not known here: perhaps registered on another node a moment ago.
            self.connection.wait_for(
                self.gate.find_username(username, self.connection.host),
                lambda _: self.prompt(Step.PASSWORD),
                self._not_found,
            )
        except EXPECTED_ERRORS as e:
            self._refuse_name(e)
        else:
            self.prompt(Step.PASSWORD)

    def _not_found(self, failure: Failure) -> None:
        """The store does not know the name either (or refused it): offer an account, or refuse."""
        username = self.username
        if not failure.check(*EXPECTED_ERRORS):
            log.failure("Looking up {username} failed", failure, username=username)
            self._refuse_name(LoginUnavailable())
        elif (
            failure.check(UnknownUser)
            and self.policy.allow_register
            and not self.gate.username_taken(username)
        ):
            self.connection.send(
                events.ErrorReply("unknown_user", f"There is no account {username}.")
            )
            self.prompt(Step.CREATE)
        elif failure.check(UnknownUser):
            # Counted toward the address lock-out, like a wrong password.
            self.connection.wait_for(
                self.gate.refuse_unknown(username, self.connection.host),
                _ignore,
                lambda refusal: self._refused(refusal, username, None),
            )
        else:
            self._refuse_name(failure.value)

    def _refuse_name(self, error: BaseException) -> None:
        rejection = login_rejection(error, self.username)
        log_refusal(rejection, self.username, self.connection.host)
        self.connection.send(rejection)
        self.prompt(Step.USERNAME)

    def ask_again(self, error: BaseException) -> None:
        self.prompt(Step.PASSWORD if isinstance(error, WrongPassword) else Step.USERNAME)

    def registered(self, username: str, password: str) -> None:
        self.login(username, password)


class JsonLogin(LoginDialogue):
    """A program: JSON requests, each answered with its ``id``; nothing before it asks.

    Besides ``login`` with a password, a program may log in with
    SCRAM-SHA-256 (RFC 5802, RFC 7677), so the password never crosses the
    wire: ``salt`` with the client-first message, answered with the
    server-first message (salt, iterations, nonce); then ``login`` with
    ``mechanism`` and the client-final message (the proof), answered like a
    password login plus the server-final message the client checks.
    """

    def __init__(self, connection: LoginHost, gate: LoginGate, policy: ConnectionPolicy) -> None:
        super().__init__(connection, gate, policy)
        self._scram: ScramServerExchange | None = None

    def line(self, raw: bytes) -> None:
        if not raw.strip():
            return  # a blank line says nothing
        request_id = None
        try:
            obj = jsonlines.decode_line(raw)
            request_id = jsonlines.request_id(obj)
            self._request(obj["type"].lower(), obj, request_id)
        except CommandError as e:
            self.connection.send(events.ErrorReply(e.code, e.message), request_id)

    def _request(self, kind: str, obj: dict[str, Any], request_id: Any) -> None:
        if kind == "login" and "mechanism" in obj:
            self._take_ports(obj)
            self._scram_finish(obj, request_id)
        elif kind == "login":
            username = jsonlines.field(obj, "user")
            password = jsonlines.field(obj, "password")
            self._take_ports(obj)
            self.login(username, password, request_id)
        elif kind == "guest":
            if not self.policy.allow_guests:
                raise CommandError("guests_disabled", "Error. Guests are not allowed here.")
            username = jsonlines.field(obj, "user")
            self._take_ports(obj)
            self.login_guest(username, request_id)
        elif kind == "register":
            self._register(obj, request_id)
        elif kind == "salt":
            self._scram_start(obj, request_id)
        elif kind == "hello":
            self._hello(jsonlines.field(obj, "version"), request_id)
        elif kind in ("logout", "disconnect"):
            self.connection.disconnect(events.Disconnected("logout", "Goodbye."), request_id)
        elif kind == "help":
            self.connection.send(HELP, request_id)
        else:
            raise CommandError("not_logged_in", NOT_LOGGED_IN)

    def _scram_start(self, obj: dict[str, Any], request_id: Any) -> None:
        """The client-first message: answer with the salt, iterations and nonce."""
        self._mechanism(obj)
        if not isinstance(obj.get("message"), str):
            raise CommandError(
                "missing_field",
                '"salt" needs a string field "message": the SCRAM-SHA-256 client-first'
                " message (see docs/protocol.rst).",
            )
        try:
            exchange = ScramServerExchange(obj["message"])
        except ScramError as e:
            raise CommandError("scram_failed", f"Error. SCRAM: {e}.") from None
        self._scram = None
        username = exchange.username

        def challenge(keys: ScramKeys) -> None:
            self._scram = exchange
            message = exchange.server_first(keys)
            salt = base64.b64encode(keys.salt).decode("ascii")
            self.connection.send(events.ScramChallenge(message, salt, keys.iterations), request_id)

        self.connection.wait_for(
            self.gate.scram_keys(username, self.connection.host),
            challenge,
            lambda failure: self._refused(failure, username, request_id),
        )

    def _scram_finish(self, obj: dict[str, Any], request_id: Any) -> None:
        """The client-final message: check the proof through ``Portal.login``."""
        self._mechanism(obj)
        exchange, self._scram = self._scram, None
        if exchange is None:
            raise CommandError(
                "scram_failed", 'Error. SCRAM: send "salt" with the client-first message first.'
            )
        try:
            credentials = exchange.credentials(jsonlines.field(obj, "message"), self.connection.host)
        except ScramError as e:
            raise CommandError("scram_failed", f"Error. SCRAM: {e}.") from None
        username = credentials.username
        self.connection.wait_for(
            self.gate.login_scram(credentials, self.connection),
            lambda result: self.connection.logged_in(result, request_id, credentials.server_final),
            lambda failure: self._refused(failure, username, request_id),
            abandon=lambda result: result[1](),
        )

    @staticmethod
    def _mechanism(obj: dict[str, Any]) -> None:
        mechanism = obj.get("mechanism", jsonlines.SCRAM_SHA_256)
        if mechanism != jsonlines.SCRAM_SHA_256:
            raise CommandError(
                "unsupported_mechanism",
                f"Error. The login mechanisms are password and {jsonlines.SCRAM_SHA_256}.",
            )

    def _take_ports(self, obj: dict[str, Any]) -> None:
        self.connection.p2p_port = jsonlines.port(obj, "p2p_port")
        self.connection.udp_port = jsonlines.port(obj, "udp_port")

    def _register(self, obj: dict[str, Any], request_id: Any) -> None:
        username = normalise_username(jsonlines.field(obj, "user"))
        if not self.policy.allow_register:
            self.connection.send(
                events.RegisterStatus(
                    False, username, "registration_disabled",
                    "Error. This server does not take new accounts.",
                ),
                request_id,
            )
        elif "password" not in obj:
            self.connection.wait_for(
                self.gate.check_taken(username),
                lambda taken: self.connection.send(
                    events.UsernameStatus(username, taken), request_id
                ),
                lambda failure: self._unavailable(failure, username, request_id),
            )
        else:
            self.register(username, jsonlines.field(obj, "password"), request_id)

    def _unavailable(self, failure: Failure, username: str, request_id: Any) -> None:
        """The store could not say whether ``username`` is taken: logged, and said."""
        log.failure("Looking up {username} failed", failure, username=username)
        self.connection.send(events.ErrorReply("unavailable", UNAVAILABLE), request_id)

    def _hello(self, client_version: str, request_id: Any) -> None:
        """Check a client's version: answer ``hello``, or ``outdated_client`` and close."""
        if compatible(client_version):
            self.connection.send(events.Greeting(SERVER_VERSION), request_id)
            return
        self.connection.disconnect(
            events.Disconnected(
                "outdated_client",
                f"Client version {client_version} cannot use server version"
                f" {SERVER_VERSION}; please update the client.",
                SERVER_VERSION,
            ),
            request_id,
        )


class PasswordHost(Protocol):
    """What :class:`PasswordPrompts` needs of its (logged-in, text) connection."""

    def send(self, event: events.Event, request_id: Any = None) -> None:
        """Write ``event``."""

    def hide_input(self) -> None:
        """A password prompt follows."""

    def show_input(self) -> None:
        """No password prompt follows."""

    def hidden_line_ended(self) -> None:
        """A password was typed unechoed."""

    def end_dialogue(self) -> None:
        """Lines are commands again."""

    def run(self, request: Request) -> None:
        """Carry out ``request`` as if typed, and send its reply."""


class PasswordPrompts:
    """``passwd`` alone at ``telnet``: the old password, the new one twice, each unechoed.

    Then the ``passwd`` command runs with both, as if typed on one line (but
    never shown on the screen); Ctrl-C cancels it.

    :param connection: the logged-in text connection.
    """

    def __init__(self, connection: PasswordHost) -> None:
        self.connection = connection
        self.step = events.Prompt.OLD_PASSWORD
        self._old = self._new = ""

    def start(self) -> None:
        """Ask for the old password."""
        self._prompt(events.Prompt.OLD_PASSWORD)

    def _prompt(self, step: str) -> None:
        self.step = step
        self.connection.hide_input()
        self.connection.send(events.Prompt(step))

    def line(self, raw: bytes) -> None:
        """One answer."""
        self.connection.hidden_line_ended()
        try:
            answer = text.decode_line(raw)
        except CommandError as e:
            self.connection.send(events.ErrorReply(e.code, e.message))
            self._prompt(self.step)
            return
        if self.step == events.Prompt.OLD_PASSWORD:
            self._old = answer
            self._prompt(events.Prompt.NEW_PASSWORD)
        elif self.step == events.Prompt.NEW_PASSWORD:
            self._new = answer
            self._prompt(events.Prompt.REPEAT_PASSWORD)
        elif answer != self._new:
            self.connection.send(
                events.ErrorReply("mismatch", "Error. The passwords differ; try again.")
            )
            self._prompt(events.Prompt.NEW_PASSWORD)
        else:
            self._end()
            self.connection.run(Request("passwd", {"old": self._old, "new": self._new}))

    def interrupted(self) -> None:
        """Ctrl-C: nothing is changed."""
        self._end()
        self.connection.send(
            events.ErrorReply("cancelled", "Cancelled; your password was not changed.")
        )

    def _end(self) -> None:
        self.connection.end_dialogue()
        self.connection.show_input()


def _ignore(_: object) -> None:
    """Nothing to do (a refusal that cannot succeed)."""
