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
from chatservice.client.console import Console, Screen, TerminalEcho
from chatservice.client.filetransfer import DECLINED, NOT_ANSWERED, TransferSettings
from chatservice.client.inputline import InputLine
from chatservice.client.login import (
    CHALLENGED,
    FALLBACK_LINES,
    NO_KEYS,
    OLD_SERVER,
    LoginAttempt,
    UntrustedServer,
)
from chatservice.client.offers import ACCEPT, TIMEOUT, Offers
from chatservice.client.peer import MAX_MESSAGE_BYTES, Connector
from chatservice.client.private import PrivateChats
from chatservice.client.progress import TransferDisplay, format_size
from chatservice.client.render import error_line, lines, render
from chatservice.client.server_connection import ServerConnection, ServerError
from chatservice.client.style import timestamp
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
MISMATCH = "Error. The passwords differ; try again."
"""What the server's text login says when the repeated password differs (the same here)."""
STAMPED = (events.DirectMessage, events.BroadcastMessage, events.RoomMessage)
"""Chat messages, shown after the time they arrived."""
CLIENT_VERSION = chatservice.__version__
"""Sent to the server at connect; an incompatible server answers ``outdated_client``."""


class Phase(enum.Enum):
    CONNECTING = "connecting to the server"
    USERNAME = "waiting for the user name"
    CHECKING_NAME = "waiting for the server to say whether the name has an account"
    CREATE = "waiting for yes or no to a new account"
    NEW_PASSWORD = "waiting for the new account's password"
    REPEAT_PASSWORD = "waiting for the new account's password again"
    PASSWORD = "waiting for the password"
    LOGGING_IN = "waiting for the server to check the login"
    ONLINE = "logged in"
    CHANGE_OLD = "logged in, waiting for the old password (passwd alone)"
    CHANGE_NEW = "logged in, waiting for the new password (passwd alone)"
    CHANGE_REPEAT = "logged in, waiting for the new password again (passwd alone)"
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
        output: Screen,
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
        self.console: Console | InputLine | None = None
        self.server: ServerConnection | None = None
        self.phase = Phase.CONNECTING
        self.username = ""
        self.p2p_port = 0
        self.udp_port = 0
        self.finished: defer.Deferred[int] = defer.Deferred()
        self.scram = not password_login
        """Whether logins use SCRAM-SHA-256: not with ``password_login``, nor once the server showed it has none."""
        self.run_in_thread = run_in_thread
        self.offers = Offers(clock, self.output.line)
        self.known_users: set[str] = set()
        """Names seen online, for Tab completion."""
        self._new_password = ""
        self._old_password = ""
        """The old password typed at ``passwd`` alone, until the new one is repeated."""
        self._scram_attempt: LoginAttempt | None = None
        self._guest = False
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
            self.output.line(f"Private messaging with {user} ended.")
        self.files.close_all(reason)

    def _finish(self, status: int) -> None:
        if self.phase is Phase.FINISHED:
            return
        self.phase = Phase.FINISHED
        self.echo.restore()
        self.offers.close_all()
        self.finished.callback(status)

    # Logging in ------------------------------------------------------------------------

    def _ask(self, phase: Phase, field: str, secret: bool = False) -> None:
        """Prompt for a login ``field`` (:class:`~chatservice.events.Prompt`) as telnet does."""
        self.phase = phase
        if secret:
            self.echo.hide()
        self.output.prompt(text.render(events.Prompt(field)), secret)
        self._resume_input()

    def _ask_username(self) -> None:
        self._ask(Phase.USERNAME, events.Prompt.USERNAME)

    def _ask_password(self) -> None:
        self._ask(Phase.PASSWORD, events.Prompt.PASSWORD, secret=True)

    def _username_entered(self, line: str) -> None:
        """``guest NAME`` logs in as a guest (when the server allows it); else the password."""
        name = line.strip()
        if not name:
            self._ask_username()
            return
        words = name.split()
        if len(words) == 2 and words[0].lower() == "guest":
            self._log_in_as_guest(words[1])
            return
        self.username = name
        self._guest = False
        if self.scram:
            self._challenge()
        else:
            self._ask_password()

    def _offer_account(self, refusal: dict[str, Any]) -> None:
        """The server knows no such user: offer a new account if it takes new ones (as telnet
        does), else show its refusal."""
        assert self.server is not None
        self.phase = Phase.CHECKING_NAME
        d = self.server.request({"type": "register", "user": self.username})
        d.addCallbacks(self._name_checked, lambda failure: self._name_refused(refusal),
                       callbackArgs=(refusal,))
        d.addErrback(log.failure, "Checking the user name failed")

    def _name_checked(self, reply: dict[str, Any], refusal: dict[str, Any]) -> None:
        answer = decode_event(reply)
        if isinstance(answer, events.UsernameStatus) and not answer.taken:
            self.output.line(f"There is no account {self.username}.")
            self._ask(Phase.CREATE, events.Prompt.CREATE)
        else:
            self._name_refused(refusal)

    def _name_refused(self, refusal: dict[str, Any]) -> None:
        self._show_reply(refusal)
        self._ask_username()

    def _create_answered(self, line: str) -> None:
        choice = line.strip().lower()
        if choice in ("y", "yes"):
            self._ask(Phase.NEW_PASSWORD, events.Prompt.NEW_PASSWORD, secret=True)
        elif choice in ("n", "no"):
            self._ask_username()
        else:
            self._ask(Phase.CREATE, events.Prompt.CREATE)

    def _register(self, password: str) -> None:
        assert self.server is not None
        self.phase = Phase.LOGGING_IN
        self._pause_input()
        d = self.server.request({"type": "register", "user": self.username, "password": password})
        d.addCallbacks(self._registered, self._login_failed, callbackArgs=(password,))
        d.addErrback(log.failure, "Handling the registration answer failed")

    def _registered(self, reply: dict[str, Any], password: str) -> None:
        self._show_reply(reply)
        answer = decode_event(reply)
        if isinstance(answer, events.RegisterStatus) and answer.success:
            self._log_in(password)
        else:
            self._ask_username()

    def _log_in_as_guest(self, name: str) -> None:
        assert self.server is not None
        self.username = name
        self.phase = Phase.LOGGING_IN
        self._guest = True
        self._pause_input()
        d = self.server.request(
            {"type": "guest", "user": name, "p2p_port": self.p2p_port, "udp_port": self.udp_port}
        )
        d.addCallbacks(self._login_answered, self._login_failed)
        d.addErrback(log.failure, "Handling the guest login answer failed")

    def _attempt(self, password: str = "") -> LoginAttempt:
        assert self.server is not None
        return LoginAttempt(
            self.server,
            self.username,
            password,
            {"p2p_port": self.p2p_port, "udp_port": self.udp_port},
            self._login_falls_back,
            self.run_in_thread,
        )

    def _challenge(self) -> None:
        """SCRAM: send ``salt`` with the user name; the password is asked once challenged."""
        self.phase = Phase.LOGGING_IN
        self._pause_input()
        self._scram_attempt = self._attempt()
        d = self._scram_attempt.challenge()
        d.addCallbacks(self._challenge_answered, self._login_failed)
        d.addErrback(log.failure, "Handling the answer to salt failed")

    def _challenge_answered(self, answer: Any) -> None:
        if answer in (CHALLENGED, NO_KEYS, OLD_SERVER):
            self._ask_password()
        else:
            self._scram_attempt = None
            self._login_answered(answer)

    def _log_in(self, password: str) -> None:
        """Log in with ``password``: the SCRAM proof once challenged, else the whole login."""
        self.phase = Phase.LOGGING_IN
        self._pause_input()
        attempt, self._scram_attempt = self._scram_attempt, None
        if attempt is not None and attempt.challenged:
            d = attempt.prove(password)
        elif attempt is None and self.scram:
            d = self._attempt(password).with_scram()
        else:
            d = self._attempt(password).with_password()
        d.addCallbacks(self._login_answered, self._login_failed)
        d.addErrback(log.failure, "Handling the login answer failed")

    def _login_falls_back(self, reason: str) -> None:
        """A SCRAM login goes on with the password: say so (and why)."""
        self.output.line(FALLBACK_LINES[reason])
        if reason == OLD_SERVER:
            self.scram = False

    def _login_answered(self, reply: dict[str, Any]) -> None:
        answer = decode_event(reply)
        reason = answer.reason if isinstance(answer, events.LoginRejected) else None
        if reason == "unknown_user" and not self._guest:
            self._offer_account(reply)
            return
        self._show_reply(reply)
        if isinstance(answer, events.LoginSucceeded):
            self.username = answer.username or self.username
            self.private.username = self.username
            self.phase = Phase.ONLINE
            self.output.prompt(PROMPT)
            self._learn_who_is_online()
            self._resume_input()
        elif reason in LOCKING_REASONS:
            # The server closes the connection; server_lost ends the client.
            self._locked_out = True
        elif reason == "wrong_password":
            if self.scram:
                self._challenge()
            else:
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
            self._username_entered(line)
        elif self.phase is Phase.CREATE:
            self._create_answered(line)
        elif self.phase is Phase.NEW_PASSWORD:
            self.echo.restore()
            self._new_password = line
            self._ask(Phase.REPEAT_PASSWORD, events.Prompt.REPEAT_PASSWORD, secret=True)
        elif self.phase is Phase.REPEAT_PASSWORD:
            self.echo.restore()
            password, self._new_password = self._new_password, ""
            if line != password:
                self.output.line(MISMATCH)
                self._ask(Phase.NEW_PASSWORD, events.Prompt.NEW_PASSWORD, secret=True)
            else:
                self._register(line)
        elif self.phase is Phase.PASSWORD:
            self.echo.restore()
            self._log_in(line)
        elif self.phase in (Phase.CHANGE_OLD, Phase.CHANGE_NEW, Phase.CHANGE_REPEAT):
            self._change_password_answered(line)
        elif self.phase is Phase.ONLINE:
            if line.strip().lower().lstrip("/") == "passwd":
                # Alone: asked for as telnet asks (unechoed), as the server's prompts are.
                self._old_password = ""
                self._ask(Phase.CHANGE_OLD, events.Prompt.OLD_PASSWORD, secret=True)
                return
            self._command(line)
            if self.phase is Phase.ONLINE:
                self.output.prompt(PROMPT)

    def _change_password_answered(self, line: str) -> None:
        """One answer of ``passwd`` alone: old, new, new again; then the request."""
        self.echo.restore()
        if self.phase is Phase.CHANGE_OLD:
            self._old_password = line
            self._ask(Phase.CHANGE_NEW, events.Prompt.NEW_PASSWORD, secret=True)
        elif self.phase is Phase.CHANGE_NEW:
            self._new_password = line
            self._ask(Phase.CHANGE_REPEAT, events.Prompt.REPEAT_PASSWORD, secret=True)
        elif line != self._new_password:
            self.output.line(MISMATCH)
            self._ask(Phase.CHANGE_NEW, events.Prompt.NEW_PASSWORD, secret=True)
        else:
            old, self._old_password, self._new_password = self._old_password, "", ""
            self.phase = Phase.ONLINE
            self._request({"type": "passwd", "old": old, "new": line})
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

    def _send_and(
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
        return self._send_and(request, self._show_reply)

    def _show_reply(self, reply: dict[str, Any]) -> None:
        if reply.get("type") == "help":
            shown = self._help_lines(reply)
        else:
            shown = render(reply)
        event = decode_event(reply)
        if isinstance(event, STAMPED) and not getattr(event, "offline", False):
            stamp = timestamp(self.clock.seconds())
            for line in shown:
                self.output.message(stamp, event.sender, line)
            return
        for line in shown:
            self.output.line(line)

    def _learn_who_is_online(self) -> None:
        """Ask (quietly) who is online, for Tab completion; presence notices keep it up to date."""
        assert self.server is not None
        d = self.server.request({"type": "whoelse"})
        d.addCallbacks(self._online_learnt, lambda failure: None)
        d.addErrback(log.failure, "Reading who is online failed")

    def _online_learnt(self, reply: dict[str, Any]) -> None:
        answer = decode_event(reply)
        if isinstance(answer, events.UserList):
            self.known_users.update(answer.users)

    def complete(self, word: str, first: bool) -> list[str]:
        """Tab: the command words (first word) or user names that start with ``word``."""
        if self.phase is not Phase.ONLINE:
            return []
        if first:
            slash = word.startswith("/")
            words = self.commands.words()
            bare = word[1:] if slash else word
            return [("/" if slash else "") + w for w in words if w.startswith(bare.lower())]
        return [name for name in self.known_users if name.lower().startswith(word.lower())]

    def _help_lines(self, reply: dict[str, Any]) -> list[str]:
        """The server's command list, with the client's own commands in their words."""
        ours = {usage.split(" ", 1)[0].lower(): (usage, summary)
                for usage, summary in self.commands.client_help()}
        help_text = decode_event(reply)
        if not isinstance(help_text, events.HelpText):
            return []
        entries = [
            ours.pop(usage.split(" ", 1)[0].lower(), (usage, summary))
            for usage, summary in help_text.commands
        ]
        if help_text.topic is None:
            entries.extend(ours.values())  # (help COMMAND: the server's answer as it is)
        if not entries:
            return []
        return lines(events.HelpText(tuple(entries), help_text.aliases, help_text.topic))

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
        self._send_and(
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
        self._send_and(
            {"type": "sendfile", "to": to, "filename": source.name, "size": size},
            lambda reply: self._file_address(reply, to, source, size),
        )

    def accept_offer(self, user: str | None) -> None:
        self._answer_offer(user, True)

    def decline_offer(self, user: str | None) -> None:
        self._answer_offer(user, False)

    def _answer_offer(self, user: str | None, accept: bool) -> None:
        offer = self.offers.find(user)
        if offer is None:
            if user is None:
                self.output.line("Error. Nobody is waiting for your answer.")
            else:
                self.output.line(f"Error. {user} is not waiting for your answer.")
            return
        verb = "Accepted" if accept else "Declined"
        self.output.line(f"{verb} {offer.what} from {offer.user}.")
        self.offers.answer(offer, accept)

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
        if isinstance(event, events.Presence):
            if event.online:
                self.known_users.add(event.username)
            else:
                self.known_users.discard(event.username)
        elif isinstance(event, STAMPED):
            self.known_users.add(event.sender)
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
            transfer = self.files.expect(sender, filename, size, token, ask=True)
        except TransferError as e:
            self.output.line(f"Error. Cannot receive {filename} from {sender}: {e}.")
            return
        self.output.question(
            f"{sender} is sending you {filename} ({format_size(size)}): type accept or"
            f" decline (within {self.offers.timeout:g} s)."
        )

        def answered(answer: str) -> None:
            if answer == ACCEPT:
                transfer.accept()
            else:
                transfer.decline(NOT_ANSWERED if answer == TIMEOUT else DECLINED)

        self.offers.ask(sender, filename).addCallback(answered)

    # Private chats (PrivateChatListener) -----------------------------------------------

    def private_offered(self, user: str) -> defer.Deferred[bool]:
        self.output.question(
            f"{user} wants to chat privately with you: type accept or decline"
            f" (within {self.offers.timeout:g} s)."
        )
        return self.offers.ask(user, "a private chat").addCallback(lambda answer: answer == ACCEPT)

    def private_waiting(self, user: str) -> None:
        self.output.line(f"Waiting for {user} to accept the private chat.")

    def private_started(self, user: str) -> None:
        self.output.line(f"Private messaging with {user} started.")

    def private_message(self, user: str, text: str) -> None:
        self.output.message(timestamp(self.clock.seconds()), user, f"{user}(private): {text}")

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
