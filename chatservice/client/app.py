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
          locked the account, or the input ended before a login
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

from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice.client.commands import CommandTable
from chatservice.client.console import Console, Output, TerminalEcho
from chatservice.client.filetransfer import TransferSettings
from chatservice.client.peer import MAX_MESSAGE_BYTES, Connector
from chatservice.client.private import PrivateChats
from chatservice.client.progress import TransferDisplay
from chatservice.client.render import format_size, help_lines, render
from chatservice.client.server_connection import ServerConnection, ServerError
from chatservice.client.transfers import FileTransfers, TransferError, file_size
from chatservice.commands import CommandError

log = Logger()

EXIT_OK = 0
EXIT_LOST = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_SHUTDOWN = 4
EXIT_INTERRUPTED = 130

LOCKING_REASONS = ("locked", "address_locked")
"""Login failures after which the server closes the connection."""


def exit_status(goodbye: dict[str, Any]) -> int:
    """The exit status for the server's last message before it closed the connection."""
    kind, reason = goodbye.get("type"), goodbye.get("reason")
    if kind == "shutdown" or reason == "shutdown":
        return EXIT_SHUTDOWN
    if kind == "disconnect" and reason == "logout":
        return EXIT_OK
    if kind == "disconnect" and reason == "timeout":
        return EXIT_TIMEOUT
    return EXIT_LOST

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
        if reply.get("type") == "hello":
            self._ask_username()
        else:
            for line in render(reply):
                self.output.line(line)

    def give_up(self, message: str) -> None:
        """The client cannot start: say why and end with status 1."""
        self.output.line(message)
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
        self.output.prompt("Username: ")
        self._resume_input()

    def _ask_password(self) -> None:
        self.phase = Phase.PASSWORD
        self.echo.hide()
        self.output.prompt("Password: ")
        self._resume_input()

    def _log_in(self, password: str) -> None:
        assert self.server is not None
        self.phase = Phase.LOGGING_IN
        self._pause_input()
        d = self.server.request(
            {
                "type": "login",
                "user": self.username,
                "password": password,
                "p2p_port": self.p2p_port,
                "udp_port": self.udp_port,
            }
        )
        d.addCallbacks(self._login_answered, self._login_failed)
        d.addErrback(log.failure, "Handling the login answer failed")

    def _login_answered(self, reply: dict[str, Any]) -> None:
        for line in render(reply):
            self.output.line(line)
        if reply.get("type") == "login" and reply.get("success"):
            user = reply.get("user")
            self.username = user if isinstance(user, str) and user else self.username
            self.private.username = self.username
            self.phase = Phase.ONLINE
            self.output.prompt(PROMPT)
            self._resume_input()
        elif reply.get("reason") in LOCKING_REASONS:
            # The server closes the connection; server_lost ends the client.
            self._locked_out = True
        elif reply.get("reason") == "wrong_password":
            self._ask_password()
        else:
            self._ask_username()

    def _login_failed(self, failure: Failure) -> None:
        if failure.check(ConnectionDone, ConnectionLost):
            return
        failure.trap(ServerError)
        self.output.line(failure.value.message)
        self._ask_username()

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
            lines = self._help_lines(reply)
        else:
            lines = render(reply)
        for line in lines:
            self.output.line(line)

    def _help_lines(self, reply: dict[str, Any]) -> list[str]:
        """The server's command list, with the client's own commands in their words."""
        ours = {usage.split(" ", 1)[0].lower(): (usage, summary)
                for usage, summary in self.commands.client_help()}
        entries = []
        for entry in reply.get("commands") or []:
            if isinstance(entry, dict):
                usage, summary = str(entry.get("usage", "")), str(entry.get("summary", ""))
                entries.append(ours.pop(usage.split(" ", 1)[0].lower(), (usage, summary)))
        entries.extend(ours.values())
        return help_lines(entries)

    def _show_error(self, failure: Failure) -> None:
        if failure.check(ConnectionDone, ConnectionLost):
            return None
        failure.trap(ServerError)
        self.output.line(failure.value.message or f"Error. {failure.value.code}")
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

    def _private_address(self, reply: dict[str, Any], target: str) -> None:
        host, port, token = reply.get("host"), reply.get("port"), reply.get("token")
        if reply.get("type") != "private_address":
            self._show_reply(reply)
        elif not (isinstance(host, str) and _is_port(port) and isinstance(token, str)):
            self.output.line("Error. The server's answer to startprivate was incomplete.")
        elif not self.private.is_open(target):
            self.private.start(target, host, port, token)

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
        host, port, token = reply.get("host"), reply.get("port"), reply.get("token")
        if reply.get("type") != "file_address":
            self._show_reply(reply)
            return
        if not (isinstance(host, str) and _is_port(port) and isinstance(token, str)):
            self.output.line("Error. The server's answer to sendfile was incomplete.")
            return
        try:
            self.files.send_file(to, source, source.name, size, host, port, token)
        except TransferError as e:
            self.output.line(f"Error. Sending {source.name} to {to} failed: {e}.")
            return
        self.output.line(f"Sending {source.name} ({format_size(size)}) to {to}.")

    # What the server says on its own ---------------------------------------------------

    def server_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "private_request":
            initiator, token = message.get("from"), message.get("token")
            if isinstance(initiator, str) and isinstance(token, str):
                self.private.expect(initiator, token)
        elif kind == "file_incoming":
            self._file_incoming(message)
        else:
            for line in render(message):
                self.output.line(line)

    def _file_incoming(self, message: dict[str, Any]) -> None:
        sender, filename = message.get("from"), message.get("filename")
        size, token = message.get("size"), message.get("token")
        if not (
            isinstance(sender, str)
            and isinstance(filename, str)
            and isinstance(size, int)
            and not isinstance(size, bool)
            and isinstance(token, str)
        ):
            log.warn("Ignored an incomplete file_incoming: {message!r}", message=message)
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


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
