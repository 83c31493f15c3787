"""One client connection, whatever carries it: :class:`ChatConnection`.

A transport adapter (:class:`~chatservice.server.protocol.ChatProtocol` for
TCP and TLS) feeds it lines; it logs in through a login dialogue, hands
each command to the session, and writes what comes back through its
:class:`~chatservice.server.output.ConnectionWriter`.  The chat state sees it
as a :class:`~chatservice.interfaces.ClientConnection`: somewhere to ``deliver``
events.  Nothing here assumes a socket.

The first byte the client sends (white space aside) chooses the wire
format, once: ``{`` is a program, spoken to in JSON lines only; anything
else is a person, greeted (``Welcome ...``, ``Username:``) and spoken to in
text.  A connection silent for ``policy.greeting_delay`` seconds is greeted
as a person; if its first line then starts with ``{`` after all, it becomes
JSON (the prompt's line is ended first).

A person's connection over a byte stream has a *terminal*, its telnet
layer (:class:`~chatservice.server.telnet.TelnetInput`): the login and
``passwd`` dialogues have it hide what is typed at a password prompt, and it
tells the connection when the client cancelled a line (Ctrl-C).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ISSLTransport, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice import events
from chatservice.auth.login import LoginGate, LoginResult
from chatservice.commands import OPERATOR_COMMANDS, CommandError, Request, unavailable
from chatservice.interfaces import IChatSession
from chatservice.server.dialogue import JsonLogin, LoginDialogue, PasswordPrompts, TextLogin
from chatservice.server.flowcontrol import InputPacer
from chatservice.server.lines import TOO_LONG, LineSource
from chatservice.server.output import ConnectionWriter
from chatservice.server.policy import ConnectionPolicy
from chatservice.server.registry import ConnectionRegistry
from chatservice.server.timers import cancel_pending
from chatservice.wire import JSON, TEXT, WEBSOCKET, WireFormat
from chatservice.wire import text as text_wire

log = Logger()

DIALOGUES: dict[str, type[LoginDialogue]] = {
    TEXT.name: TextLogin,
    JSON.name: JsonLogin,
    WEBSOCKET.name: JsonLogin,
}
"""Each wire format's login dialogue."""


_MAX_WRAPPERS = 8
"""How deep :attr:`ChatConnection.secure` looks under a transport's wrappers."""


def _ignore(result: object) -> None:
    """Nothing to undo."""


def _after(result: Any, call: Callable[[], None]) -> Any:
    """``call()``, then ``result`` passed on (a Deferred's callback)."""
    call()
    return result


class Terminal(Protocol):
    """What a connection asks of a person's terminal (its telnet layer)."""

    def hide_input(self) -> None:
        """Have the client stop echoing what is typed."""

    def show_input(self) -> None:
        """Have the client echo again."""

    def line_ended(self) -> None:
        """An unechoed line was typed: end it on the screen."""


class TerminalSource(Protocol):
    """Where a connection finds its person's terminal (the stream adapter)."""

    speaks_telnet: bool
    """Whether the client sent telnet commands (it is a ``telnet`` program)."""

    def telnet(self, create: bool = True) -> Terminal | None:
        """The terminal (made when first needed, if ``create``), or ``None`` for a program."""

    def settle_telnet(self) -> None:
        """Drop the terminal if logged in and nothing is under way (made again when needed)."""


class ChatConnection:
    """A client connection: its login, its session, and what it is sent.

    :param transport: the transport the adapter reads from (paused and
        resumed here) and the writer writes to.
    :param lines: the adapter's received lines.
    :param gate: where to log in.
    :param policy: the server's limits.
    :param clock: the reactor, or a test ``Clock``.
    :param registry: the server's live connections (caps, bans, shutdown).
    :param wire: the format, when the transport fixes it (a WebSocket: JSON);
        else the client's first byte chooses.
    :param terminal: gives the person's terminal (the stream adapter); ``None``
        when there is none (a WebSocket).
    """

    # One per connection: slots, so an idle connection has no instance dict.
    __slots__ = (
        "host", "p2p_port", "udp_port", "session", "deliver", "writer", "wire",
        "_transport", "_lines", "_gate", "_policy", "_clock", "_registry", "_pacer",
        "_dialogue", "_logout", "_paused", "_reading", "_may_switch", "_checks",
        "_timer", "_greeting", "_ending", "_fixed_format", "_terminal",
    )

    def __init__(
        self,
        transport: ITransport,
        lines: LineSource,
        gate: LoginGate,
        policy: ConnectionPolicy,
        clock: IReactorTime,
        registry: ConnectionRegistry,
        wire: WireFormat | None = None,
        terminal: TerminalSource | None = None,
    ) -> None:
        self.host: str = getattr(transport.getPeer(), "host", "")
        self.p2p_port: int | None = None
        self.udp_port: int | None = None
        self.session: IChatSession | None = None
        # Until the client's first byte decides, JSON: a program is never sent
        # anything else, and a JSON line (a refusal, say) is readable by a person.
        self.wire: WireFormat = JSON if wire is None else wire
        self.writer = ConnectionWriter(
            transport, self.wire, policy, clock, registry.output_batcher, self
        )
        self.deliver: Callable[[events.Event], None] = self.writer.deliver
        """Send an unsolicited event (the chat state calls it for every fan-out)."""
        self._transport = transport
        self._lines = lines
        self._gate = gate
        self._policy = policy
        self._clock = clock
        self._registry = registry
        self._pacer = InputPacer(clock, policy, self)
        self._dialogue: LoginDialogue | PasswordPrompts | None = None
        self._logout: Callable[[], None] | None = None
        self._paused = False
        self._reading = False
        self._may_switch = False
        """Greeted in text before a byte came: a first line with ``{`` still makes it JSON."""
        self._checks = 0
        self._timer: IDelayedCall | None = None
        self._greeting: IDelayedCall | None = None
        self._ending: IDelayedCall | None = None
        self._fixed_format = wire
        self._terminal = terminal

    @property
    def congested(self) -> bool:
        """Whether this client has stopped reading past the soft limit."""
        return self.writer.congested

    @property
    def kind(self) -> str:
        """What the client is, as ``whois`` says: ``web`` (the browser page), ``json``,
        ``telnet`` (text, from a client that sent telnet commands) or ``text``."""
        if self.wire is WEBSOCKET:
            return "web"
        if self.wire is JSON:
            return "json"
        terminal = self._terminal
        return "telnet" if terminal is not None and terminal.speaks_telnet else "text"

    @property
    def secure(self) -> bool:
        """Whether the connection is encrypted (TLS, under any wrappers)."""
        transport: Any = self._transport
        for _ in range(_MAX_WRAPPERS):
            if transport is None:
                break
            if ISSLTransport.providedBy(transport):
                return True
            transport = getattr(transport, "stream", None) or getattr(transport, "transport", None)
        return False

    # Life --------------------------------------------------------------------------

    def start(self) -> None:
        """The connection is open: refuse it, or wait for its login."""
        refusal = self._registry.admit(self)
        if refusal is not None:
            self.disconnect(refusal)
            return
        policy = self._policy
        self._timer = self._clock.callLater(
            min(policy.timeout, policy.login_deadline), self._timed_out
        )
        if self._fixed_format is not None:
            self._use(self._fixed_format)
        elif policy.greeting_delay > 0:
            self._greeting = self._clock.callLater(policy.greeting_delay, self._greet)
        else:
            self._greet()

    def connection_lost(self) -> None:
        """The transport is gone: log out, stop every timer, leave the registry."""
        try:
            self._stop_timers()
            cancel_pending(self._ending)
            self._ending = None
            self.writer.connection_lost()
            self.end_session()
            self.session = None
            self._dialogue = None
        finally:
            # Last: the service's stop waits for this, then closes the store.
            self._registry.forget(self)

    def _stop_timers(self) -> None:
        cancel_pending(self._timer, self._greeting)
        self._timer = self._greeting = None
        self._pacer.stop()

    def send(self, event: events.Event, request_id: Any = None) -> None:
        """Write ``event``, a reply to ``request_id`` if given.

        A report on a fan-out (:attr:`~chatservice.events.Event.with_fanout`:
        a broadcast's, a room message's) leaves with that fan-out, at the
        next bulk flush; any other reply at the end of the turn.
        """
        self.writer.send(event, request_id, not event.with_fanout)

    def disconnect(
        self, event: events.Disconnected, request_id: Any = None, log_out: bool = True
    ) -> None:
        """Send ``event`` as the last line and close once it is written.

        :param log_out: end the session now (else the caller calls
            :meth:`end_session`, as a shutdown does once everyone is told).
        """
        if self.writer.closed:
            return
        self.send(event, request_id)
        self.writer.close()
        self._stop_timers()
        if log_out:
            self.end_session()

    def end_session(self) -> None:
        """Log out now, if logged in (idempotent)."""
        logout, self._logout = self._logout, None
        if logout is not None:
            if self.session is not None:
                log.info(
                    "Logout: {user} from {host}", user=self.session.username, host=self.host
                )
            logout()

    def _timed_out(self) -> None:
        self._timer = None
        policy = self._policy
        if self.session is not None:
            message = f"You have been logged out after {policy.timeout:g} seconds of inactivity."
            log.info(
                "Timeout: {user} from {host} after {seconds:g} seconds of inactivity",
                user=self.session.username, host=self.host, seconds=policy.timeout,
            )
        else:
            deadline = min(policy.timeout, policy.login_deadline)
            message = f"Login timed out after {deadline:g} seconds."
            log.info(
                "Timeout: no login from {host} in {seconds:g} seconds",
                host=self.host, seconds=deadline,
            )
        self.disconnect(events.Disconnected("timeout", message))

    # The person's terminal ---------------------------------------------------------------

    @property
    def may_speak_telnet(self) -> bool:
        """Whether this may be a person at ``telnet``: a stream not settled on JSON."""
        if self._fixed_format is not None:
            return False
        return self.wire is TEXT or (self._dialogue is None and self.session is None)

    def _text_terminal(self, create: bool = False) -> Terminal | None:
        if self.wire is not TEXT or self.writer.closed or self._terminal is None:
            return None
        return self._terminal.telnet(create)

    def hide_input(self) -> None:
        """A password prompt: the client should not echo what is typed (text only)."""
        terminal = self._text_terminal(create=True)
        if terminal is not None:
            terminal.hide_input()

    def show_input(self) -> None:
        """The password was typed: the client may echo again (text only).

        Logged in (or done with ``passwd``'s prompts), the terminal is let go
        as soon as nothing is under way: an idle connection keeps none.  The
        login may end after the last line arrived (a password checked in a
        thread), so this is not left to the next bytes received.
        """
        terminal = self._text_terminal()
        if terminal is not None:
            terminal.show_input()
            assert self._terminal is not None
            self._terminal.settle_telnet()

    def hidden_line_ended(self) -> None:
        """A password was typed unechoed: end its line on the screen (text only)."""
        terminal = self._text_terminal()
        if terminal is not None:
            terminal.line_ended()

    def interrupted(self) -> None:
        """The client cancelled the line it was typing (Ctrl-C): a new line; a dialogue asks again."""
        if self.wire is not TEXT or self.writer.closed:
            return
        self.writer.write(text_wire.EOL.encode("ascii"))
        if self._dialogue is not None and not self._checks:
            self._dialogue.interrupted()

    def output_drained(self) -> None:
        """The client caught up: it may get what was kept for it."""
        if self.session is not None:
            self.session.client_caught_up()

    def output_dropped(self) -> None:
        """An optional event was not sent to this slow reader: counted."""
        self._registry.metrics.dropped()

    def output_abandoned(self, backlog: int) -> None:
        """A slow reader was given up on (counted): log out at the end of this turn.

        Not at once: this may run inside a fan-out to the online sessions,
        which logging out would change under it.  Meanwhile the closed,
        congested connection gets nothing (direct messages are kept).
        """
        log.info(
            "Closing {user}@{host}: {backlog} bytes unread",
            user=self.session.username if self.session is not None else "-",
            host=self.host,
            backlog=backlog,
        )
        self._registry.metrics.abandoned()
        self._stop_timers()
        self._ending = self._clock.callLater(0, self._end_after_abort)

    def _end_after_abort(self) -> None:
        self._ending = None
        self.end_session()

    # Reading -------------------------------------------------------------------------

    def read(self) -> None:
        """Handle the lines waiting, as far as the pacer lets this connection go."""
        if self._reading:
            return  # a resume from inside a line: the loop below goes on
        self._reading = True
        try:
            if self._dialogue is None and self.session is None:
                self._sniff()
            self._pacer.new_turn()
            lines, writer = self._lines, self.writer
            while not self._paused and not writer.closed:
                line = lines.pop()
                if line is None:
                    break
                if line is TOO_LONG:
                    self._line_too_long()
                else:
                    self._line(line)
        finally:
            self._reading = False

    def _line_too_long(self) -> None:
        self.send(
            events.ErrorReply(
                "line_too_long",
                f"Error. Lines are limited to {self._policy.max_line_length}"
                " bytes; that one was discarded.",
            )
        )

    def pause_reading(self) -> None:
        """Stop reading (the pacer holds this connection back)."""
        self._paused = True
        self._transport.pauseProducing()

    def resume_reading(self) -> None:
        """Read again, starting with the lines that waited."""
        self._paused = False
        if not self.writer.closed:
            self._transport.resumeProducing()
            self.read()

    def _line(self, raw: bytes) -> None:
        if not self._pacer.admit(self._lines.has_line()):
            policy = self._policy
            self.disconnect(
                events.Disconnected(
                    "flood",
                    f"Disconnected: more than {policy.flood_rate:g} lines a second"
                    f" for over {policy.flood_limit:g} seconds.",
                )
            )
            return
        if self.session is not None:
            if self._dialogue is not None:
                self._dialogue.line(raw)  # passwd's prompts
            else:
                self._command(raw)
            return
        if self._may_switch:
            self._may_switch = False
            if raw.lstrip().startswith(b"{"):
                self.writer.write(b"\n")  # end the prompt's line
                self._use(JSON)
        if self._dialogue is None:
            self._use(TEXT)  # a blank first line: a person pressing Enter
        self._dialogue.line(raw)

    def _sniff(self) -> None:
        """The first bytes decide: ``{`` is a program (never greeted), anything else
        (telnet negotiation too) a person."""
        first = self._lines.first_byte()
        if first == b"{":
            self._use(JSON)
        elif first or (self._terminal is not None and self._terminal.telnet(False) is not None):
            self._use(TEXT)

    def _greet(self) -> None:
        """Silence so far: a person, most likely; greet them."""
        self._greeting = None
        if self._dialogue is None:
            self._use(TEXT)
            self._may_switch = True

    def _use(self, wire: WireFormat) -> None:
        """Settle on ``wire`` and start its login dialogue."""
        cancel_pending(self._greeting)
        self._greeting = None
        self.wire = wire
        self.writer.use_format(wire)
        self._dialogue = DIALOGUES[wire.name](self, self._gate, self._policy)
        self._dialogue.start()

    # Logged in ------------------------------------------------------------------------

    def logged_in(
        self, result: LoginResult, request_id: Any, server_final: str | None = None
    ) -> None:
        """The dialogue logged in: from now on, lines are commands of ``session``.

        :param server_final: the SCRAM server-final message, after a SCRAM login.
        """
        session, logout = result
        self.session, self._logout = session, logout
        log.info(
            "Login: {user}{guest} from {host} ({wire})",
            user=session.username, guest=" (guest)" if session.guest else "",
            host=self.host, wire=self.wire.name,
        )
        self._dialogue = None
        self.show_input()
        self._reset_timer()
        self.send(events.LoginSucceeded(session.username, session.guest, server_final), request_id)
        session.begin()

    def _reset_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.reset(self._policy.timeout)

    def _command(self, raw: bytes) -> None:
        session = self.session
        assert session is not None
        try:
            request = self.wire.parse_command(raw, session.username)
        except CommandError as e:
            self.send(events.ErrorReply(e.code, e.message), e.request_id)
            return
        if request is None:
            return
        if request.command in OPERATOR_COMMANDS:
            # Activity only once carried out: to anyone but an operator it is
            # an unknown command, which is no activity.
            self.run(request, on_success=self._reset_timer)
            return
        self._reset_timer()
        arguments = request.arguments
        if (
            request.command == "passwd"
            and self.wire is TEXT
            and arguments.get("old") is None
            and arguments.get("new") is None
        ):
            self._dialogue = PasswordPrompts(self)
            self._dialogue.start()
            return
        self.run(request)

    def end_dialogue(self) -> None:
        """The ``passwd`` prompts are over: lines are commands again."""
        self._dialogue = None

    def run(self, request: Request, on_success: Callable[[], None] | None = None) -> None:
        """Carry out ``request`` of the logged-in user and send the reply.

        :param on_success: called before the reply is sent, if it is no error.
        """
        session = self.session
        assert session is not None
        request_id = request.request_id
        try:
            reply = session.execute(request)
        except CommandError as e:
            self.send(events.ErrorReply(e.code, e.message), request_id)
            return
        if on_success is not None:
            if isinstance(reply, defer.Deferred):
                reply.addCallback(_after, on_success)
            else:
                on_success()
        if not isinstance(reply, defer.Deferred):
            self._reply(reply, request_id)
        elif reply.called and not reply.paused:
            # Answered already (a local store): no need to stop reading.
            reply.addBoth(self._answer, request_id)
        else:
            # Later lines of this client wait, in order, until it is answered.
            self.wait_for(
                reply,
                lambda event: self._reply(event, request_id),
                lambda failure: self._failed(failure, request_id),
            )

    def _answer(self, result: events.Event | Failure, request_id: Any) -> None:
        """A command's Deferred fired: send its reply or its error."""
        if isinstance(result, Failure):
            self._failed(result, request_id)
        else:
            self._reply(result, request_id)

    def _reply(self, event: events.Event, request_id: Any) -> None:
        if isinstance(event, events.Disconnected):
            self.disconnect(event, request_id)
        else:
            self.send(event, request_id)

    def _failed(self, failure: Failure, request_id: Any) -> None:
        """A command failed: its :class:`CommandError`, or ``unavailable`` (logged) for anything else."""
        if failure.check(CommandError):
            error: CommandError = failure.value
        else:
            log.failure("A command failed unexpectedly", failure)
            error = unavailable()
        self.send(events.ErrorReply(error.code, error.message), request_id)

    def wait_for(
        self,
        d: defer.Deferred[Any],
        done: Callable[[Any], None],
        failed: Callable[[Failure], None],
        abandon: Callable[[Any], None] = _ignore,
    ) -> None:
        """Stop reading until ``d`` fires, then call ``done(result)`` or ``failed(failure)``.

        Lines that arrive meanwhile wait and are handled in order once the
        slow step (a password check in a thread, a store that answers later)
        is over.  If the connection closes first, ``abandon(result)`` undoes
        a success.
        """
        self._checks += 1
        self._pacer.hold("checking")

        def finished(result: object) -> None:
            self._checks -= 1
            if self.writer.closed:
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
            if not self._checks and not self.writer.closed:
                self._pacer.release("checking")

        d.addBoth(finished)
