"""One connection: read lines, log in, turn lines into requests, write replies.

:class:`ChatProtocol` only parses, delegates and writes.  It logs in through
the :class:`~chatservice.auth.login.LoginGate` (``Portal.login``), hands
commands to its :class:`~chatservice.state.Session`, and renders every event
in the connection's wire format: text until the first line starts with ``{``,
then JSON lines for the rest of its life.
"""

from __future__ import annotations

import enum
from types import ModuleType
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

import chatservice
from chatservice import events
from chatservice.auth.login import LoginGate, LoginRefused
from chatservice.commands import COMMANDS, CommandError, Request
from chatservice.interfaces import IChatSession
from chatservice.wire import encode_event, jsonlines, text

log = Logger()

HELP = events.HelpText(tuple((command.usage, command.summary) for command in COMMANDS))
NOT_LOGGED_IN = (
    'Log in first: {"type": "login", "user": "NAME", "password": "PASSWORD"}.'
)


class Phase(enum.Enum):
    """Where a connection is in its life."""

    USERNAME = "waiting for a user name (JSON: for a login request)"
    PASSWORD = "waiting for the password (text only)"
    CHECKING = "waiting for the login to be checked; reading is paused"
    ONLINE = "logged in"
    CLOSED = "closing or closed"


class ChatProtocol(LineReceiver, TimeoutMixin):
    """A chat connection, in either wire format.

    :param gate: where to log in.
    :param clock: the reactor, or a test ``Clock``, for the inactivity timer.
    :param timeout: seconds without a valid command before the connection is closed.
    :param max_line_length: longest accepted line, in bytes.
    """

    delimiter = b"\n"

    def __init__(
        self,
        gate: LoginGate,
        clock: IReactorTime,
        timeout: float,
        max_line_length: int = 8192,
    ) -> None:
        self.gate = gate
        self.callLater = clock.callLater
        self.timeout = timeout
        self.MAX_LENGTH = max_line_length
        self.wire: ModuleType = text
        self.phase = Phase.USERNAME
        self.host = ""
        self.p2p_port: int | None = None
        self.udp_port: int | None = None
        self.session: IChatSession | None = None
        self._logout: Callable[[], None] | None = None
        self._username = ""
        self._first_line = True
        self._discarding = False
        self._after_overflow: bytes | None = None

    # Connection life -----------------------------------------------------------

    def connectionMade(self) -> None:
        self.host = getattr(self.transport.getPeer(), "host", "")
        self.setTimeout(self.timeout)
        self.send(events.Greeting(chatservice.__version__))
        self.send(events.Prompt(events.Prompt.USERNAME))

    def connectionLost(self, reason: Failure = None) -> None:
        self.setTimeout(None)
        self.phase = Phase.CLOSED
        logout, self._logout = self._logout, None
        self.session = None
        if logout is not None:
            logout()

    def timeoutConnection(self) -> None:
        if self.session is not None:
            message = (
                f"You have been logged out after {self.timeout:g} seconds"
                " of inactivity."
            )
        else:
            message = f"Login timed out after {self.timeout:g} seconds."
        self.disconnect(events.Disconnected("timeout", message))

    # What the chat state calls (ChatClient) ----------------------------------------

    def deliver(self, event: events.Event) -> None:
        """Send an unsolicited event (a message, a notice)."""
        self.send(event)

    def disconnect(self, event: events.Disconnected, request_id: Any = None) -> None:
        """Send ``event`` and close the connection once it is written."""
        if self.phase is Phase.CLOSED:
            return
        self.send(event, request_id)
        self.phase = Phase.CLOSED
        self.transport.loseConnection()

    def send(self, event: events.Event, request_id: Any = None) -> None:
        """Render ``event`` in this connection's format and write it."""
        data = encode_event(self.wire, event, request_id)
        if data:
            self.transport.write(data)

    # Reading lines ---------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._discarding:
            end = data.find(self.delimiter)
            if end < 0:
                return
            self._discarding = False
            data = data[end + 1 :]
        super().dataReceived(data)
        while self._after_overflow is not None:
            rest, self._after_overflow = self._after_overflow, None
            super().dataReceived(rest)

    def lineLengthExceeded(self, line: bytes) -> None:
        """Discard the over-long line, say so, and go on with what follows it."""
        self.send(
            events.ErrorReply(
                "line_too_long",
                f"Error. Lines are limited to {self.MAX_LENGTH} bytes;"
                " that one was discarded.",
            )
        )
        end = line.find(self.delimiter)
        if end < 0:
            self._discarding = True
        else:
            self._after_overflow = line[end + 1 :]

    def lineReceived(self, line: bytes) -> None:
        if self.phase is Phase.CLOSED:
            return
        if self._first_line:
            self._first_line = False
            if line.lstrip().startswith(b"{"):
                self.wire = jsonlines
                # End the text prompt's line so a JSON client reads whole lines.
                self.transport.write(b"\n")
        if self.wire is jsonlines:
            self._json_line(line)
        else:
            self._text_line(line)

    def _text_line(self, raw: bytes) -> None:
        try:
            line = text.decode_line(raw)
            if self.phase is Phase.USERNAME:
                self._username_entered(line.strip())
            elif self.phase is Phase.PASSWORD:
                self._login(self._username, line, None)
            elif self.phase is Phase.ONLINE:
                request = text.parse_request(line)
                if request is not None:
                    self._command(request)
        except CommandError as e:
            self.send(events.ErrorReply(e.code, e.message))

    def _json_line(self, raw: bytes) -> None:
        request_id = None
        try:
            obj = jsonlines.decode_line(raw)
            request_id = jsonlines.request_id(obj)
            if self.phase is Phase.ONLINE:
                self._json_command(obj)
            else:
                self._json_login(obj, request_id)
        except CommandError as e:
            self.send(events.ErrorReply(e.code, e.message), request_id)

    # Logging in ------------------------------------------------------------------

    def _username_entered(self, username: str) -> None:
        self.resetTimeout()
        if not username:
            self.send(events.Prompt(events.Prompt.USERNAME))
            return
        rejection = self.gate.check_username(username, self.host)
        if rejection is not None:
            self.send(rejection)
            self.send(events.Prompt(events.Prompt.USERNAME))
            return
        self._username = username
        self.phase = Phase.PASSWORD
        self.send(events.Prompt(events.Prompt.PASSWORD))

    def _json_login(self, obj: dict[str, Any], request_id: Any) -> None:
        kind = obj["type"].lower()
        if kind == "login":
            self.resetTimeout()
            username = jsonlines.field(obj, "user")
            password = jsonlines.field(obj, "password")
            self.p2p_port = jsonlines.port(obj, "p2p_port")
            self.udp_port = jsonlines.port(obj, "udp_port")
            self._login(username, password, request_id)
        elif kind in ("logout", "disconnect"):
            self.disconnect(events.Disconnected("logout", "Goodbye."), request_id)
        elif kind == "help":
            self.send(HELP, request_id)
        else:
            raise CommandError("not_logged_in", NOT_LOGGED_IN)

    def _login(self, username: str, password: str, request_id: Any) -> None:
        self.phase = Phase.CHECKING
        self.pauseProducing()
        d = self.gate.login(username, password, self)
        d.addCallbacks(
            self._logged_in,
            self._login_refused,
            callbackArgs=(request_id,),
            errbackArgs=(request_id,),
        )
        d.addErrback(lambda f: log.failure("Login handling failed", f))
        d.addBoth(lambda _: self._resume_reading())

    def _logged_in(
        self, result: tuple[IChatSession, Callable[[], None]], request_id: Any
    ) -> None:
        session, logout = result
        if self.phase is Phase.CLOSED:
            # The connection went away while the password was checked.
            logout()
            return
        self.session, self._logout = session, logout
        self.phase = Phase.ONLINE
        self.send(events.LoginSucceeded(session.username), request_id)
        session.begin()

    def _login_refused(self, failure: Failure, request_id: Any) -> None:
        failure.trap(LoginRefused)
        if self.phase is Phase.CLOSED:
            return
        rejection: events.LoginRejected = failure.value.rejection
        if rejection.reason in ("locked", "address_locked"):
            self.disconnect(rejection, request_id)
            return
        self.send(rejection, request_id)
        if self.wire is text and rejection.reason == "wrong_password":
            self.phase = Phase.PASSWORD
            self.send(events.Prompt(events.Prompt.PASSWORD))
        else:
            self.phase = Phase.USERNAME
            self.send(events.Prompt(events.Prompt.USERNAME))

    def _resume_reading(self) -> None:
        if self.phase is not Phase.CLOSED:
            self.resumeProducing()

    # Commands ----------------------------------------------------------------------

    def _json_command(self, obj: dict[str, Any]) -> None:
        assert self.session is not None
        if obj["type"].lower() == "login":
            raise CommandError("already_logged_in", "You are already logged in.")
        claimed = obj.get("user")
        if claimed is not None and claimed != self.session.username:
            raise CommandError(
                "user_mismatch",
                f'The "user" field must be your own user name ({self.session.username}).',
            )
        self._command(jsonlines.parse_request(obj))

    def _command(self, request: Request) -> None:
        assert self.session is not None
        self.resetTimeout()
        if request.command == "logout":
            self.disconnect(
                events.Disconnected("logout", f"Goodbye, {self.session.username}!"),
                request.request_id,
            )
            return
        if request.command == "help":
            reply: events.Event = HELP
        else:
            reply = self.session.execute(request)
        self.send(reply, request.request_id)
