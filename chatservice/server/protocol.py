"""One connection: read lines, log in, turn lines into requests, write replies.

:class:`ChatProtocol` only parses, delegates and writes.  It logs in through
the :class:`~chatservice.auth.login.LoginGate` (``Portal.login``), hands
commands to its :class:`~chatservice.state.Session`, and renders every event
in the connection's wire format: text until the first line starts with ``{``,
then JSON lines for the rest of its life.
"""

from __future__ import annotations

import enum
import socket
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from chatservice import events
from chatservice.auth.accounts import AccountError
from chatservice.auth.login import LoginGate, LoginRefused
from chatservice.commands import COMMANDS, CommandError, Request
from chatservice.interfaces import IChatSession
from chatservice.server.flowcontrol import OutputMonitor, TokenBucket
from chatservice.server.output import OutputBatcher, write_now, writes_directly
from chatservice.server.policy import ConnectionPolicy
from chatservice.version import SERVER_VERSION, compatible
from chatservice.wire import encode_event, jsonlines, text

if TYPE_CHECKING:
    from chatservice.server.factory import ChatFactory

log = Logger()

HELP = events.HelpText(tuple((command.usage, command.summary) for command in COMMANDS))
BANNED = "Your address is banned from this server."
OPTIONAL_EVENTS = (
    events.BroadcastMessage,
    events.Presence,
    events.RoomMessage,
    events.RoomLeft,
    events.TypingNotice,
)
"""What a congested client does without: it can read broadcasts and rooms later."""
NOT_LOGGED_IN = (
    'Log in first: {"type": "login", "user": "NAME", "password": "PASSWORD"}.'
)


class Phase(enum.Enum):
    """Where a connection is in its life."""

    USERNAME = "waiting for a user name (JSON: for a login request)"
    PASSWORD = "waiting for the password (text only)"
    CREATE = "asking whether to create the account (text only)"
    NEW_PASSWORD = "waiting for a new account's password (text only)"
    REPEAT_PASSWORD = "waiting for the password again (text only)"
    CHECKING = "waiting for the login to be checked; reading is paused"
    ONLINE = "logged in"
    CLOSED = "closing or closed"


_CLOSED = Phase.CLOSED
_NO_PAUSES: frozenset[str] = frozenset()


class ChatProtocol(LineReceiver, TimeoutMixin):
    """A chat connection, in either wire format.

    :param gate: where to log in.
    :param clock: the reactor, or a test ``Clock``, for the inactivity timer.
    :param policy: the server's settings (timeout, line length, bans, sign-up).
    """

    delimiter = b"\n"
    factory: ChatFactory | None
    # One of these per connection: every field is a slot, so an idle
    # connection has no instance dict.  That includes the fields the Twisted
    # base classes set on instances (class defaults there), which __init__
    # sets to the same defaults.
    __slots__ = (
        "factory", "transport", "connected", "_buffer", "_busyReceiving", "paused",
        "timeOut", "_TimeoutMixin__timeoutCall",
        "MAX_LENGTH", "gate", "policy", "timeout", "wire", "phase", "host", "p2p_port", "udp_port",
        "session", "_logout", "_username", "_new_password", "_first_line", "_discarding",
        "_after_overflow", "_clock", "_pauses", "_bucket", "_throttled_since",
        "_unthrottle", "_output", "_slow_reader_deadline", "_dropped", "_batcher",
        "_batched", "_hurried", "_lines_this_turn", "_turn_started", "_next_turn",
    )

    def __init__(
        self, gate: LoginGate, clock: IReactorTime, policy: ConnectionPolicy
    ) -> None:
        # Protocol's, LineReceiver's and TimeoutMixin's class defaults.
        self.factory = None
        self.transport = None
        self.connected = 0
        self._buffer = b""
        self._busyReceiving = False
        self.paused = False
        self.timeOut = None
        self._TimeoutMixin__timeoutCall: IDelayedCall | None = None
        self.gate = gate
        self.policy = policy
        self.timeout = policy.timeout
        self.MAX_LENGTH = policy.max_line_length
        self.wire: ModuleType = text
        self.phase = Phase.USERNAME
        self.host = ""
        self.p2p_port: int | None = None
        self.udp_port: int | None = None
        self.session: IChatSession | None = None
        self._logout: Callable[[], None] | None = None
        self._username = ""
        self._new_password = ""
        self._first_line = True
        self._discarding = False
        self._after_overflow: bytes | None = None
        self._clock = clock
        self._pauses = _NO_PAUSES
        self._bucket = TokenBucket(clock, policy.flood_burst, policy.flood_rate)
        self._throttled_since: float | None = None
        self._unthrottle: IDelayedCall | None = None
        self._output = OutputMonitor(self._output_drained)
        self._slow_reader_deadline: IDelayedCall | None = None
        self._dropped = 0
        self._batcher: OutputBatcher | None = None
        self._batched: list[bytes] | None = None
        self._hurried = False
        self._lines_this_turn = 0
        self._turn_started = 0.0
        self._next_turn: IDelayedCall | None = None

    def callLater(self, delay: float, call: Callable[[], object]) -> IDelayedCall:
        """Schedule on this connection's clock (TimeoutMixin's timer uses it)."""
        return self._clock.callLater(delay, call)

    # Connection life -----------------------------------------------------------

    def connectionMade(self) -> None:
        self.host = getattr(self.transport.getPeer(), "host", "")
        self.transport.registerProducer(self._output, True)
        self._tune_socket()
        if self.factory is not None and writes_directly(self.transport):
            self._batcher = self.factory.output_batcher
        refusal = None
        if self.factory is not None:
            refusal = self.factory.connection_made(self)
        if refusal is None and self.policy.bans.banned(self.host):
            refusal = events.Disconnected("banned", BANNED)
        if refusal is not None:
            # The format is not known yet: a JSON line is also readable by a human.
            self.wire = jsonlines
            self.disconnect(refusal)
            return
        self.setTimeout(min(self.timeout, self.policy.login_deadline))
        self.send(events.Greeting(SERVER_VERSION))
        self.send(events.Prompt(events.Prompt.USERNAME))

    def connectionLost(self, reason: Failure = None) -> None:
        self.setTimeout(None)
        self.phase = Phase.CLOSED
        for call in (self._unthrottle, self._slow_reader_deadline, self._next_turn):
            if call is not None and call.active():
                call.cancel()
        self._unthrottle = self._slow_reader_deadline = self._next_turn = None
        self._batched = None
        self.end_session()
        self.session = None
        # Last: the service's stop waits for this, then closes the store.
        if self.factory is not None:
            self.factory.connection_lost(self)

    def timeoutConnection(self) -> None:
        if self.session is not None:
            message = (
                f"You have been logged out after {self.timeout:g} seconds"
                " of inactivity."
            )
        else:
            message = f"Login timed out after {self.timeOut:g} seconds."
        self.disconnect(events.Disconnected("timeout", message))

    # What the chat state calls (ChatClient) ----------------------------------------

    @property
    def congested(self) -> bool:
        """Whether this client has stopped reading past the soft limit."""
        return self._output.backlog > self.policy.output_soft_limit

    def deliver(self, event: events.Event) -> None:
        """Send an unsolicited event; optional ones are dropped while congested.

        This runs once per recipient of every broadcast: the common case (the
        client reads, the connection is open, a batch is waiting for the next
        flush) appends the event's cached bytes to this connection's batch.
        """
        if self._output.backed_up or self.phase is _CLOSED:
            self._deliver_carefully(event)
            return
        data = event.encoded.get(self.wire.NAME)
        if data is None:
            data = encode_event(self.wire, event)
        if not data:
            return
        batched = self._batched
        if batched is not None and event.bulk:
            batched.append(data)  # the common case under load
        else:
            self._write(data, not event.bulk)

    def _deliver_carefully(self, event: events.Event) -> None:
        """:meth:`deliver` for a closed connection or one whose client lags."""
        if self.phase is Phase.CLOSED:
            return
        if self.congested and isinstance(event, OPTIONAL_EVENTS):
            self._dropped += 1
            return
        self.send(event, urgent=not event.bulk)

    def disconnect(
        self, event: events.Disconnected, request_id: Any = None, log_out: bool = True
    ) -> None:
        """Send ``event`` as the last line and close once it is written.

        :param log_out: end the session now (else the caller calls
            :meth:`end_session`, as a shutdown does once everyone is told).
        """
        if self.phase is Phase.CLOSED:
            return
        self.send(event, request_id)
        self.phase = Phase.CLOSED
        if log_out:
            self.end_session()
        self.flush_output()
        # A registered producer would hold up a TLS transport's close.
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def end_session(self) -> None:
        """Log out now, if logged in (idempotent)."""
        logout, self._logout = self._logout, None
        if logout is not None:
            logout()

    def send(self, event: events.Event, request_id: Any = None, urgent: bool = True) -> None:
        """Render ``event`` in this connection's format and write it.

        A client whose unread output passes the hard limit is disconnected.

        :param urgent: leave at the end of this turn (else with the next bulk flush).
        """
        if self.phase is Phase.CLOSED:
            return
        data = encode_event(self.wire, event, request_id)
        if not data or self.transport is None:
            return
        self._write(data, urgent)
        self._output.wrote(len(data))
        if self._output.backlog > self.policy.output_hard_limit:
            self._drop_slow_reader()
        elif self.congested and self._slow_reader_deadline is None:
            self._slow_reader_deadline = self._clock.callLater(
                self.policy.slow_reader_grace, self._drop_slow_reader
            )

    def _drop_slow_reader(self) -> None:
        """Close a client that does not read what it is sent (it cannot be told)."""
        deadline, self._slow_reader_deadline = self._slow_reader_deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()
        if self.phase is Phase.CLOSED:
            return
        log.info(
            "Closing {user}@{host}: {backlog} bytes unread",
            user=self.session.username if self.session is not None else "-",
            host=self.host,
            backlog=self._output.backlog,
        )
        self.phase = Phase.CLOSED
        self._batched = None
        self.end_session()
        self.transport.unregisterProducer()
        self.transport.abortConnection()

    def _write(self, data: bytes, urgent: bool = True) -> None:
        """Write ``data`` after everything written before it.

        On a plain TCP connection the bytes wait for the batcher
        (:mod:`chatservice.server.output`): ``urgent`` ones till the end of
        this reactor turn, others till the next bulk flush, so under load
        many broadcasts leave in one ``send``.  Other transports are written
        to at once.
        """
        batched = self._batched
        if batched is not None:
            batched.append(data)
        elif self._batcher is not None:
            self._batched = [data]
            if not urgent:
                self._batcher.add(self)
        else:
            self.transport.write(data)
            return
        if urgent and not self._hurried:
            self._hurried = True
            self._batcher.hurry(self)

    def flush_output(self) -> None:
        """Write what was batched for this connection (the batcher calls it)."""
        batched, self._batched = self._batched, None
        self._hurried = False
        if batched and self.transport is not None and self.connected:
            write_now(self.transport, batched[0] if len(batched) == 1 else b"".join(batched))

    def _tune_socket(self) -> None:
        """Send small lines without delay; keep the kernel's send buffer small.

        ``TCP_NODELAY``: a chat line is small and should leave at once rather
        than wait for the client's delayed acknowledgement (Nagle's
        algorithm).  ``SO_SNDBUF`` pinned: a backlog shows up here, where it
        is counted, rather than hiding in the kernel.
        """
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass  # not TCP (a test transport, standard I/O)
        try:
            handle = self.transport.getHandle()
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.policy.send_buffer)
        except (AttributeError, OSError):
            pass  # not a socket (a test transport, standard I/O)

    def _output_drained(self) -> None:
        """The client caught up: say what was dropped, deliver what was kept."""
        if self._slow_reader_deadline is not None:
            self._slow_reader_deadline.cancel()
            self._slow_reader_deadline = None
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            self.send(
                events.ErrorReply(
                    "dropped",
                    f"{dropped} notice(s) or broadcast(s) were not shown because your"
                    " connection was too slow (see read for broadcasts and room messages).",
                )
            )
        if self.session is not None and self.phase is not Phase.CLOSED:
            self.session.client_caught_up()

    # Pausing -------------------------------------------------------------------

    def _pause(self, reason: str) -> None:
        """Stop reading (for ``reason``) until every reason is gone."""
        if not self._pauses:
            self.pauseProducing()
        self._pauses |= {reason}

    def _resume(self, reason: str) -> None:
        self._pauses = (self._pauses - {reason}) or _NO_PAUSES
        if not self._pauses and self.phase is not Phase.CLOSED:
            self.resumeProducing()

    def _throttle(self, wait: float) -> None:
        """Too many lines: stop reading for ``wait`` seconds; close a long flood."""
        now = self._clock.seconds()
        if self._throttled_since is None:
            self._throttled_since = now
        elif now - self._throttled_since > self.policy.flood_limit:
            self.disconnect(
                events.Disconnected(
                    "flood",
                    f"Disconnected: more than {self.policy.flood_rate:g} lines a second"
                    f" for over {self.policy.flood_limit:g} seconds.",
                )
            )
            return
        self._pause("flood")
        self._unthrottle = self._clock.callLater(wait, self._end_throttle)

    def _end_throttle(self) -> None:
        self._unthrottle = None
        self._resume("flood")

    def _yield_turn(self) -> None:
        """Leave the lines still buffered for the next reactor turn."""
        self._pause("turn")
        self._next_turn = self._clock.callLater(0, self._take_turn)

    def _take_turn(self) -> None:
        self._next_turn = None
        self._resume("turn")

    # Reading lines ---------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if not self._busyReceiving:
            # A new turn (not LineReceiver.resumeProducing re-entering from a line).
            self._lines_this_turn = 0
            self._turn_started = self._clock.seconds()
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
        self._lines_this_turn += 1
        if (
            self._lines_this_turn >= self.policy.lines_per_turn
            or self._clock.seconds() - self._turn_started >= self.policy.turn_budget
        ) and self.delimiter in self._buffer:
            self._yield_turn()
        wait = self._bucket.take()
        if wait:
            self._throttle(wait)
            if self.phase is Phase.CLOSED:
                return  # the flood was closed: its last line goes unanswered
        elif not self._buffer:
            self._throttled_since = None
        self._handle_line(line)

    def _handle_line(self, line: bytes) -> None:
        if self._first_line:
            self._first_line = False
            if line.lstrip().startswith(b"{"):
                self.wire = jsonlines
                # End the text prompt's line so a JSON client reads whole lines.
                self._write(b"\n")
        if self.wire is jsonlines:
            self._json_line(line)
        else:
            self._text_line(line)

    def _text_line(self, raw: bytes) -> None:
        try:
            line = text.decode_line(raw)
            if self.phase is Phase.ONLINE:
                request = text.parse_request(line)
                if request is not None:
                    self._command(request)
            else:
                self._text_login_line(line)
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

    def _wait_for(
        self,
        d: defer.Deferred[Any],
        done: Callable[[Any], None],
        failed: Callable[[Failure], None],
        abandon: Callable[[Any], None] = lambda result: None,
    ) -> None:
        """Stop reading until ``d`` fires, then call ``done(result)`` or ``failed(failure)``.

        Lines that arrive meanwhile stay buffered and are handled in order once
        the slow step (a password check in a thread) is over.  If the
        connection closes first, ``abandon(result)`` undoes a success.
        """
        self.phase = Phase.CHECKING
        self._pause("checking")

        def finished(result: object) -> None:
            if self.phase is Phase.CLOSED:
                if not isinstance(result, Failure):
                    abandon(result)
                return
            try:
                if isinstance(result, Failure):
                    failed(result)
                else:
                    done(result)
            except Exception:
                log.failure("Handling the end of a slow request failed")
            if self.phase not in (Phase.CLOSED, Phase.CHECKING):
                self._resume("checking")

        d.addBoth(finished)

    # Logging in: text -------------------------------------------------------------

    def _prompt(self, phase: Phase, field_name: str) -> None:
        self.phase = phase
        self.send(events.Prompt(field_name))

    def _text_login_line(self, line: str) -> None:
        if self.phase is Phase.USERNAME:
            self._username_entered(line.strip())
        elif self.phase is Phase.PASSWORD:
            self._login(self._username, line, None)
        elif self.phase is Phase.CREATE:
            answer = line.strip().lower()
            if answer in ("y", "yes"):
                self._prompt(Phase.NEW_PASSWORD, events.Prompt.NEW_PASSWORD)
            elif answer in ("n", "no"):
                self._prompt(Phase.USERNAME, events.Prompt.USERNAME)
            else:
                self.send(events.Prompt(events.Prompt.CREATE))
        elif self.phase is Phase.NEW_PASSWORD:
            self._new_password = line
            self._prompt(Phase.REPEAT_PASSWORD, events.Prompt.REPEAT_PASSWORD)
        elif self.phase is Phase.REPEAT_PASSWORD:
            if line != self._new_password:
                self.send(events.ErrorReply("mismatch", "Error. The passwords differ; try again."))
                self._prompt(Phase.NEW_PASSWORD, events.Prompt.NEW_PASSWORD)
            else:
                self._register(self._username, line, None, then_login=True)

    def _username_entered(self, username: str) -> None:
        if not username:
            self.send(events.Prompt(events.Prompt.USERNAME))
            return
        words = username.split()
        if len(words) == 2 and words[0].lower() == "guest" and self.policy.allow_guests:
            self._login_guest(words[1], None)
            return
        rejection = self.gate.check_username(username, self.host)
        self._username = username
        if (
            rejection is not None
            and rejection.reason == "unknown_user"
            and self.policy.allow_register
            and not self.gate.username_taken(username)
        ):
            self.send(events.ErrorReply("unknown_user", f"There is no account {username}."))
            self._prompt(Phase.CREATE, events.Prompt.CREATE)
        elif rejection is not None:
            self.send(rejection)
            self.send(events.Prompt(events.Prompt.USERNAME))
        else:
            self._prompt(Phase.PASSWORD, events.Prompt.PASSWORD)

    # Logging in: JSON -------------------------------------------------------------

    def _json_login(self, obj: dict[str, Any], request_id: Any) -> None:
        kind = obj["type"].lower()
        if kind == "login":
            username = jsonlines.field(obj, "user")
            password = jsonlines.field(obj, "password")
            self._take_ports(obj)
            self._login(username, password, request_id)
        elif kind == "guest":
            if not self.policy.allow_guests:
                raise CommandError("guests_disabled", "Error. Guests are not allowed here.")
            username = jsonlines.field(obj, "user")
            self._take_ports(obj)
            self._login_guest(username, request_id)
        elif kind == "register":
            self._json_register(obj, request_id)
        elif kind == "salt":
            raise CommandError(
                "salt_unsupported",
                "Error. Client-side salting is not supported (a stored hash would"
                " work as a password); send the password in login, over TLS.",
            )
        elif kind == "hello":
            self._hello(jsonlines.field(obj, "version"), request_id)
        elif kind in ("logout", "disconnect"):
            self.disconnect(events.Disconnected("logout", "Goodbye."), request_id)
        elif kind == "help":
            self.send(HELP, request_id)
        else:
            raise CommandError("not_logged_in", NOT_LOGGED_IN)

    def _take_ports(self, obj: dict[str, Any]) -> None:
        self.p2p_port = jsonlines.port(obj, "p2p_port")
        self.udp_port = jsonlines.port(obj, "udp_port")

    def _json_register(self, obj: dict[str, Any], request_id: Any) -> None:
        username = jsonlines.field(obj, "user")
        if not self.policy.allow_register:
            self.send(
                events.RegisterStatus(
                    False, username, "registration_disabled",
                    "Error. This server does not take new accounts.",
                ),
                request_id,
            )
        elif "password" not in obj:
            self.send(events.UsernameStatus(username, self.gate.username_taken(username)), request_id)
        else:
            self._register(username, jsonlines.field(obj, "password"), request_id, then_login=False)

    def _hello(self, client_version: str, request_id: Any) -> None:
        """Check a JSON client's version: answer ``hello``, or ``outdated_client`` and close."""
        if compatible(client_version):
            self.send(events.Greeting(SERVER_VERSION), request_id)
            return
        self.disconnect(
            events.Disconnected(
                "outdated_client",
                f"Client version {client_version} cannot use server version"
                f" {SERVER_VERSION}; please update the client.",
                SERVER_VERSION,
            ),
            request_id,
        )

    # Logging in: both formats ---------------------------------------------------------

    def _login(self, username: str, password: str, request_id: Any) -> None:
        self._wait_for_login(self.gate.login(username, password, self), request_id)

    def _login_guest(self, username: str, request_id: Any) -> None:
        self._wait_for_login(self.gate.login_guest(username, self), request_id)

    def _wait_for_login(
        self, d: defer.Deferred[tuple[IChatSession, Callable[[], None]]], request_id: Any
    ) -> None:
        self._wait_for(
            d,
            lambda result: self._logged_in(result, request_id),
            lambda failure: self._login_refused(failure, request_id),
            abandon=lambda result: result[1](),
        )

    def _register(self, username: str, password: str, request_id: Any, then_login: bool) -> None:
        def registered(_: object) -> None:
            self.send(events.RegisterStatus(True, username), request_id)
            if then_login:
                self._login(username, password, None)
            else:
                self.phase = Phase.USERNAME

        def refused(failure: Failure) -> None:
            failure.trap(AccountError)
            error: AccountError = failure.value
            self.send(events.RegisterStatus(False, username, error.code, error.message), request_id)
            if self.wire is text:
                self._prompt(Phase.USERNAME, events.Prompt.USERNAME)
            else:
                self.phase = Phase.USERNAME

        self._wait_for(self.gate.register(username, password), registered, refused)

    def _logged_in(
        self, result: tuple[IChatSession, Callable[[], None]], request_id: Any
    ) -> None:
        session, logout = result
        self.session, self._logout = session, logout
        self.phase = Phase.ONLINE
        self.setTimeout(self.timeout)
        self.send(events.LoginSucceeded(session.username, session.guest), request_id)
        session.begin()

    def _login_refused(self, failure: Failure, request_id: Any) -> None:
        failure.trap(LoginRefused)
        rejection: events.LoginRejected = failure.value.rejection
        if rejection.reason in ("locked", "address_locked"):
            self.disconnect(rejection, request_id)
            return
        self.send(rejection, request_id)
        if self.wire is text and rejection.reason == "wrong_password":
            self._prompt(Phase.PASSWORD, events.Prompt.PASSWORD)
        elif self.wire is text:
            self._prompt(Phase.USERNAME, events.Prompt.USERNAME)
        else:
            self.phase = Phase.USERNAME

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

    def _change_password(self, request: Request) -> None:
        assert self.session is not None

        def changed(_: object) -> None:
            self.phase = Phase.ONLINE
            self.send(events.PasswordChanged(), request.request_id)

        def refused(failure: Failure) -> None:
            self.phase = Phase.ONLINE
            failure.trap(AccountError)
            error: AccountError = failure.value
            self.send(events.ErrorReply(error.code, error.message), request.request_id)

        d = self.gate.change_password(
            self.session.username, request.arguments["old"], request.arguments["new"]
        )
        self._wait_for(d, changed, refused)

    def _command(self, request: Request) -> None:
        assert self.session is not None
        self.resetTimeout()
        message = request.arguments.get("message")
        if isinstance(message, str) and len(message) > self.policy.max_message_length:
            raise CommandError(
                "message_too_long",
                f"Error. Messages are limited to {self.policy.max_message_length} characters.",
            )
        if request.command == "logout":
            self.disconnect(
                events.Disconnected("logout", f"Goodbye, {self.session.username}!"),
                request.request_id,
            )
            return
        if request.command == "passwd":
            self._change_password(request)
            return
        if request.command == "help":
            reply: events.Event = HELP
        else:
            reply = self.session.execute(request)
        self.send(reply, request.request_id)
