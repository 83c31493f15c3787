"""The client application: logging in, typed commands, and what the server says.

:class:`ChatClient` sits between the console (lines typed), the server
connection (JSON requests and messages), the private chats and the file
transfers.  It decides what to print, and the exit status:

========  ===========================================================
status    when
========  ===========================================================
0         the user logged out (``logout``, or the end of the input)
1         the server could not be reached, the connection dropped or
          was closed for another reason (flood, banned, ...), the login
          locked the account, the server failed the SCRAM check of the
          server (the client closes), or the input ended before a login
3         the server logged the user out for inactivity
4         the server shut down
130       interrupted (Ctrl-C)
========  ===========================================================
"""

from __future__ import annotations

import chatservice

import enum
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer, threads
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice import events
from chatservice.auth.credentials import Runner
from chatservice.client.commands import CommandTable
from chatservice.client.console import Console, Output, TerminalEcho
from chatservice.client.filetransfer import TransferSettings
from chatservice.client.login import FALLBACK_LINES, OLD_SERVER, LoginAttempt, UntrustedServer
from chatservice.client.peer import MAX_MESSAGE_BYTES, Connector
from chatservice.client.private import PrivateChats
from chatservice.client.progress import TransferDisplay, format_size
from chatservice.client.render import error_line, lines, render
from chatservice.client.server_connection import ServerConnection, ServerError
from chatservice.client.transfers import FileTransfers, TransferError, file_size
from chatservice.commands import CommandError
from chatservice.wire import text
from chatservice.wire.json_events import decode_event

log = Logger()

EXIT_OK = 0
EXIT_LOST = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_SHUTDOWN = 4
EXIT_INTERRUPTED = 130

LOCKING_REASONS = ("locked", "address_locked")
"""Login failures after which the server closes the connection."""


EXIT_STATUSES = {"shutdown": EXIT_SHUTDOWN, "logout": EXIT_OK, "timeout": EXIT_TIMEOUT}
"""The exit status by the reason the server closed the connection; others are :data:`EXIT_LOST`."""


def exit_status(goodbye: dict[str, Any]) -> int:
    """The exit status for the server's last message before it closed the connection."""
    event = decode_event(goodbye)
    reason = event.reason if isinstance(event, events.Disconnected) else None
    return EXIT_STATUSES.get(reason, EXIT_LOST)

PROMPT = "> "
CLIENT_VERSION = chatservice.__version__
"""Sent to the server at connect; an incompatible server answers ``outdated_client``."""


class Phase(enum.Enum):
    CONNECTING = "connecting to the server"
    USERNAME = "waiting for the user name"
    PASSWORD = "waiting for the password"
    LOGGING_IN = "waiting for the server to check the login"
    ONLINE = "logged in"
    FINISHED = "finished"


class ChatClient:
    """One user's client.

    :param clock: the reactor, or a test ``Clock``.
    :param output: where lines for the user go.
    :param echo: turns off the terminal echo for the password.
    :param download_dir: where received files are saved.
    :param connect_peer: connects to another client's private chat port.
    :param password_login: log in with the password itself instead of
        SCRAM-SHA-256 (``--password-login``).
    :param run_in_thread: runs the SCRAM key derivation off the reactor thread.
    """

    def __init__(
        self,
        clock: IReactorTime,
        output: Output,
        echo: TerminalEcho,
        *,
        download_dir: Path,
        connect_peer: Connector,
        commands: CommandTable | None = None,
        transfer_settings: TransferSettings = TransferSettings(),
        progress_interval: float = 2.0,
        password_login: bool = False,
        run_in_thread: Runner = threads.deferToThread,
    ) -> None:
        self.clock = clock
        self.output = output
        self.echo = echo
        self.commands = commands if commands is not None else CommandTable()
        self.private = PrivateChats(clock, self, connect_peer)
        self.display = TransferDisplay(output, clock, interval=progress_interval)
        self.files = FileTransfers(clock, download_dir, self.display, transfer_settings)
        self.console: Console | None = None
        self.server: ServerConnection | None = None
        self.phase = Phase.CONNECTING
        self.username = ""
        self.p2p_port = 0
        self.udp_port = 0
        self.finished: defer.Deferred[int] = defer.Deferred()
        self.scram = not password_login
        """Whether logins use SCRAM-SHA-256: not with ``password_login``, nor once the server showed it has none."""
        self.run_in_thread = run_in_thread
        self._quitting = False
        self._locked_out = False

    # Start and end ---------------------------------------------------------------------

    def server_connected(self, connection: ServerConnection) -> None:
        self.server = connection
        d = connection.request({"type": "hello", "version": CLIENT_VERSION}, "hello")
        d.addCallbacks(self._hello_answered, lambda failure: None)
        d.addErrback(log.failure, "Handling the version check failed")

    def _hello_answered(self, reply: dict[str, Any]) -> None:
        """The server can serve this version: log in; else it said why and closes."""
        if isinstance(decode_event(reply), events.Greeting):
            self._ask_username()
        else:
            self._show_reply(reply)

    def give_up(self, message: str) -> None:
        """The client cannot start: say why, close the server connection, end with status 1."""
        self.output.line(message)
        if self.server is not None:
            self.server.close()
        self._finish(EXIT_LOST)

    def connect_failed(self, reason: Failure, where: str) -> None:
        """The server could not be reached."""
        self.output.line(f"Error. Could not connect to the server at {where}: {reason.getErrorMessage()}")
        self._finish(EXIT_LOST)

    def server_lost(self, reason: Failure, goodbye: dict[str, Any] | None) -> None:
        if self.phase is Phase.FINISHED:
            return
        self._close_peers("logged out" if goodbye else "lost the server")
        if goodbye is not None:
            status = exit_status(goodbye)
        else:
            status = EXIT_LOST
            if not self._quitting and not self._locked_out:
                if reason.check(ConnectionDone):
                    self.output.line("Error. The server closed the connection.")
                else:
                    self.output.line("Error. The connection to the server was lost.")
        self._finish(status)

    def input_ended(self) -> None:
        """Standard input ended: log out once file transfers are done."""
        if self.phase is Phase.FINISHED or self._quitting:
            return
        self._quitting = True
        if self.phase is not Phase.ONLINE:
            self.echo.restore()
            if self.server is not None:
                self.server.close()
            else:
                self._finish(EXIT_LOST)
            return
        active = self.files.active()
        if active:
            self.output.line(
                f"Waiting for {len(active)} file transfer{'s' if len(active) > 1 else ''}"
                " to finish before logging out."
            )
        self.files.when_idle().addCallback(lambda _: self._logout())

    def interrupt(self) -> None:
        """The program is being stopped (Ctrl-C): close everything now."""
        if self.phase is Phase.FINISHED:
            return
        self.output.line("Interrupted.")
        self._close_peers("quit")
        if self.server is not None:
            self.server.close()
        self._finish(EXIT_INTERRUPTED)

    def _logout(self) -> None:
        if self.phase is Phase.ONLINE and self.server is not None:
            self._request({"type": "logout"})

    def _close_peers(self, reason: str) -> None:
        for user in self.private.close_all():
            self.output.line(f"Private messaging with {user} closed.")
        self.files.close_all(reason)

    def _finish(self, status: int) -> None:
        if self.phase is Phase.FINISHED:
            return
        self.phase = Phase.FINISHED
        self.echo.restore()
        self.finished.callback(status)

    # Logging in ------------------------------------------------------------------------

    def _ask_username(self) -> None:
        self.phase = Phase.USERNAME
        self.output.prompt(text.render(events.Prompt(events.Prompt.USERNAME)))
        self._resume_input()

    def _ask_password(self) -> None:
        self.phase = Phase.PASSWORD
        self.echo.hide()
        self.output.prompt(text.render(events.Prompt(events.Prompt.PASSWORD)))
        self._resume_input()

    def _log_in(self, password: str) -> None:
        assert self.server is not None
        self.phase = Phase.LOGGING_IN
        self._pause_input()
        attempt = LoginAttempt(
            self.server,
            self.username,
            password,
            {"p2p_port": self.p2p_port, "udp_port": self.udp_port},
            self._login_falls_back,
            self.run_in_thread,
        )
        d = attempt.with_scram() if self.scram else attempt.with_password()
        d.addCallbacks(self._login_answered, self._login_failed)
        d.addErrback(log.failure, "Handling the login answer failed")

    def _login_falls_back(self, reason: str) -> None:
        """A SCRAM login goes on with the password: say so (and why)."""
        self.output.line(FALLBACK_LINES[reason])
        if reason == OLD_SERVER:
            self.scram = False

    def _login_answered(self, reply: dict[str, Any]) -> None:
        self._show_reply(reply)
        answer = decode_event(reply)
        reason = answer.reason if isinstance(answer, events.LoginRejected) else None
        if isinstance(answer, events.LoginSucceeded):
            self.username = answer.username or self.username
            self.private.username = self.username
            self.phase = Phase.ONLINE
            self.output.prompt(PROMPT)
            self._resume_input()
        elif reason in LOCKING_REASONS:
            # The server closes the connection; server_lost ends the client.
            self._locked_out = True
        elif reason == "wrong_password":
            self._ask_password()
        else:
            self._ask_username()

    def _login_failed(self, failure: Failure) -> None:
        if failure.check(ConnectionDone, ConnectionLost):
            return
        if failure.check(UntrustedServer):
            self._distrust(failure.value.message)
            return
        failure.trap(ServerError)
        self.output.line(error_line(failure.value.code, failure.value.message))
        self._ask_username()

    def _distrust(self, message: str) -> None:
        """The server failed the SCRAM check of the server: close, and end with status 1."""
        self.output.line(message)
        if self.server is not None:
            self.server.close()
        self._finish(EXIT_LOST)

    # Typed lines -----------------------------------------------------------------------

    def line_entered(self, line: str) -> None:
        self.output.input_taken()
        if self.phase is Phase.USERNAME:
            name = line.strip()
            if not name:
                self._ask_username()
                return
            self.username = name
            self._ask_password()
        elif self.phase is Phase.PASSWORD:
            self.echo.restore()
            self._log_in(line)
        elif self.phase is Phase.ONLINE:
            self._command(line)
            if self.phase is Phase.ONLINE:
                self.output.prompt(PROMPT)

    def _command(self, line: str) -> None:
        try:
            typed = self.commands.parse(line)
        except CommandError as e:
            self.output.line(e.message)
            return
        if typed is None:
            return
        if typed.command is None:
            assert typed.request is not None
            self._request(typed.request)
        else:
            getattr(self, typed.command.handler)(**typed.arguments)

    def _ask(
        self, request: dict[str, Any], handle: Callable[[dict[str, Any]], None]
    ) -> defer.Deferred[None]:
        """Send a request and ``handle`` its reply (errors are shown).

        Typed lines wait until the reply is handled, so what the user reads
        keeps the order of what they typed.
        """
        assert self.server is not None
        self._pause_input()
        d = self.server.request(request)
        d.addCallbacks(handle, self._show_error)
        d.addErrback(log.failure, "Handling a reply failed")

        def answered(_: None) -> None:
            if self.phase is Phase.ONLINE:
                self._resume_input()

        d.addCallback(answered)
        return d

    def _request(self, request: dict[str, Any]) -> defer.Deferred[None]:
        return self._ask(request, self._show_reply)

    def _show_reply(self, reply: dict[str, Any]) -> None:
        if reply.get("type") == "help":
            shown = self._help_lines(reply)
        else:
            shown = render(reply)
        for line in shown:
            self.output.line(line)

    def _help_lines(self, reply: dict[str, Any]) -> list[str]:
        """The server's command list, with the client's own commands in their words."""
        ours = {usage.split(" ", 1)[0].lower(): (usage, summary)
                for usage, summary in self.commands.client_help()}
        help_text = decode_event(reply)
        theirs = help_text.commands if isinstance(help_text, events.HelpText) else ()
        entries = [
            ours.pop(usage.split(" ", 1)[0].lower(), (usage, summary)) for usage, summary in theirs
        ]
        entries.extend(ours.values())
        return lines(events.HelpText(tuple(entries))) if entries else []

    def _show_error(self, failure: Failure) -> None:
        if failure.check(ConnectionDone, ConnectionLost):
            return None
        failure.trap(ServerError)
        self.output.line(error_line(failure.value.code, failure.value.message))
        return None

    # The client's own commands (named in commands.CLIENT_COMMANDS) ---------------------

    def start_private(self, target: str) -> None:
        if self.private.is_open(target):
            self.output.line(f"Error. Private messaging with {target} is already active.")
            return
        if self.private.is_starting(target):
            self.output.line(f"Error. Private messaging with {target} is already being set up.")
            return
        self._ask(
            {"type": "startprivate", "target": target},
            lambda reply: self._private_address(reply, target),
        )

    def _peer_address(
        self, reply: dict[str, Any], purpose: str, command: str
    ) -> events.PeerAddress | None:
        """The address in the reply to ``command``, else ``None`` once the reply is shown.

        :param purpose: the :attr:`~chatservice.events.PeerAddress.purpose` expected.
        """
        answer = decode_event(reply)
        if isinstance(answer, events.PeerAddress) and answer.purpose == purpose:
            return answer
        if answer is None:
            self.output.line(f"Error. The server's answer to {command} was incomplete.")
        else:
            self._show_reply(reply)
        return None

    def _private_address(self, reply: dict[str, Any], target: str) -> None:
        address = self._peer_address(reply, "private", "startprivate")
        if address is not None and not self.private.is_open(target):
            self.private.start(target, address.host, address.port, address.token)

    def send_private(self, to: str, message: str) -> None:
        if len(message.encode("utf-8")) >= MAX_MESSAGE_BYTES:
            self.output.line(
                f"Error. Private messages are limited to {MAX_MESSAGE_BYTES - 1} bytes."
            )
        elif not self.private.send(to, message):
            self.output.line(f"Error. Private messaging to {to} not enabled")

    def stop_private(self, target: str) -> None:
        if self.private.stop(target):
            self.output.line(f"Private messaging with {target} stopped.")
        else:
            self.output.line(f"Error. Private messaging with {target} is not active.")

    def send_file(self, to: str, path: str) -> None:
        source = Path(path).expanduser()
        try:
            size = file_size(source)
        except TransferError as e:
            self.output.line(f"Error. {e}")
            return
        self._ask(
            {"type": "sendfile", "to": to, "filename": source.name, "size": size},
            lambda reply: self._file_address(reply, to, source, size),
        )

    def _file_address(self, reply: dict[str, Any], to: str, source: Path, size: int) -> None:
        address = self._peer_address(reply, "file", "sendfile")
        if address is None:
            return
        try:
            self.files.send_file(
                to, source, source.name, size, address.host, address.port, address.token
            )
        except TransferError as e:
            self.output.line(f"Error. Sending {source.name} to {to} failed: {e}.")
            return
        self.output.line(f"Sending {source.name} ({format_size(size)}) to {to}.")

    # What the server says on its own ---------------------------------------------------

    def server_message(self, message: dict[str, Any]) -> None:
        event = decode_event(message)
        if isinstance(event, events.PrivateRequest):
            self.private.expect(event.sender, event.token)
        elif isinstance(event, events.FileIncoming):
            self._file_incoming(event)
        else:
            self._show_reply(message)

    def _file_incoming(self, announcement: events.FileIncoming) -> None:
        sender, filename = announcement.sender, announcement.filename
        size, token = announcement.size, announcement.token
        if size is None:
            log.warn("Ignored a file_incoming without a size: {event!r}", event=announcement)
            return
        try:
            self.files.expect(sender, filename, size, token)
        except TransferError as e:
            self.output.line(f"Error. Cannot receive {filename} from {sender}: {e}.")
            return
        self.output.line(f"{sender} is sending you {filename} ({format_size(size)}).")

    # Private chats (PrivateChatListener) -----------------------------------------------

    def private_started(self, user: str) -> None:
        self.output.line(f"Private messaging with {user} started.")

    def private_message(self, user: str, text: str) -> None:
        self.output.line(f"{user}(private): {text}")

    def private_ended(self, user: str, reason: str) -> None:
        if reason == "the connection closed":
            self.output.line(f"Private messaging with {user} ended.")
        else:
            self.output.line(f"Private messaging with {user} ended: {reason}.")

    def private_failed(self, user: str, reason: str) -> None:
        self.output.line(f"Error. Could not start private messaging with {user}: {reason}.")

    # Input flow ------------------------------------------------------------------------

    def _pause_input(self) -> None:
        if self.console is not None:
            self.console.pause()

    def _resume_input(self) -> None:
        if self.console is not None:
            self.console.resume()
