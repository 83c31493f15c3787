"""``chat-client HOST PORT``: the options, and wiring the client to the real world.

:func:`run` is the console script (also ``python -m chatservice.client``):
it parses the options and runs :func:`main` with ``task.react``.  :func:`main`
connects to the server, opens the peer ports (TCP for private chats, UDP for
files) on the address it reaches the server from (:func:`peer_interface`),
hands standard input and output to the client, and cleans up.
"""

from __future__ import annotations

import getopt
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from twisted.internet import defer, endpoints, ssl, task
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint, ITransport
from twisted.conch.insults.insults import ServerProtocol
from twisted.internet.stdio import StandardIO
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python import usage
from twisted.python.failure import Failure

from chatservice.client import app, udpwire
from chatservice.client.app import ChatClient
from chatservice.client.console import Console, Output, TerminalEcho
from chatservice.client.inputline import InputLine, RawTerminal, TerminalOutput
from chatservice.client.jsonlog import JsonTranscript
from chatservice.client.lossy import LossyWriter
from chatservice.client.peer import PeerFactory, tcp_connector
from chatservice.client.server_connection import ServerConnection
from chatservice.client.style import Style, colours_wanted
from chatservice.client.transfers import TransferSocket

log = Logger()

CONNECT_TIMEOUT = 10
FLUSH_TIMEOUT = 5.0


def _port_number(value: str, name: str, allow_zero: bool) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise usage.UsageError(f"{name} must be a port number, not {value!r}") from None
    if not (0 if allow_zero else 1) <= number <= 65535:
        raise usage.UsageError(f"{name} must be between {0 if allow_zero else 1} and 65535, not {number}")
    return number


class Options(usage.Options):
    """Options of ``chat-client``."""

    synopsis = "Usage: chat-client HOST PORT [options]"
    longdesc = (
        "Log in to the chatservice server at HOST PORT and chat. Every server command"
        " works with the same words (type help); the client adds private chats"
        " straight between two clients (startprivate <user>, private <user> <text>,"
        " stopprivate <user>) and file transfers over UDP (sendfile <user> <path>,"
        " also UPD <user> <path>). Standard input may be a terminal or a script, one"
        " command a line; at its end the client logs out once its file transfers"
        " are done. Exit status: 0 after logging out, 1 when the server could not be"
        " reached, the connection dropped, or the server could not prove that it"
        " knows the password (SCRAM-SHA-256), 2 for bad options, 3 when logged out for"
        " inactivity, 4 when the server shut down, 130 when interrupted."
    )
    optFlags = [
        ["tls", None, "Connect with TLS (the server listens with --listen ssl:...)"],
        [
            "password-login",
            None,
            "Log in by sending the password, not with SCRAM-SHA-256 (the default, which"
            " never sends it, and falls back to this only when the server or the"
            " account has no SCRAM)",
        ],
        ["no-color", None, "No colours (also when the NO_COLOR variable is set, or output is no terminal)"],
        [
            "line-mode",
            None,
            "Read plain lines even on a terminal (no line editor: no history, no Tab)",
        ],
    ]
    optParameters = [
        [
            "p2p-port",
            None,
            "0",
            "TCP port on which other clients open private chats with you (0: any"
            " free port); file transfers use the UDP port of the same number when"
            " it is free, else any",
        ],
        [
            "p2p-interface",
            None,
            None,
            "Address to listen on for other clients (0.0.0.0: every interface)"
            " [default: the address this client reaches the server from, the one"
            " the server gives other clients]",
        ],
        ["download-dir", None, ".", "Where received files are saved (created if missing)"],
        ["json-log", None, None, "Append every JSON line exchanged with the server to FILE"],
        ["log-file", None, None, "Write the client's diagnostic log to FILE"],
        [
            "ca",
            None,
            None,
            "With --tls: trust only this CA certificate (PEM) [default: the system's]",
        ],
        [
            "udp-loss",
            None,
            "0",
            "For testing: drop, duplicate and delay this fraction (0 to 0.5) of the"
            " file-transfer datagrams this client sends",
        ],
    ]
    # Room for --tls and --ca FILE: server_endpoint() is where they would apply.

    def parseArgs(self, host: str, port: str) -> None:
        self["host"] = host
        self["port"] = _port_number(port, "PORT", allow_zero=False)

    def postOptions(self) -> None:
        self["p2p-port"] = _port_number(self["p2p-port"], "--p2p-port", allow_zero=True)
        try:
            loss = float(self["udp-loss"])
        except ValueError:
            raise usage.UsageError(f"--udp-loss must be a number, not {self['udp-loss']!r}") from None
        if not 0 <= loss <= 0.5:
            raise usage.UsageError(f"--udp-loss must be between 0 and 0.5, not {loss}")
        self["udp-loss"] = loss
        directory = Path(self["download-dir"]).expanduser()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise usage.UsageError(f"--download-dir {directory}: {e.strerror or e}") from None
        if not os.access(directory, os.W_OK):
            raise usage.UsageError(f"--download-dir {directory} is not writable")
        self["download-dir"] = directory
        if self["ca"] is not None:
            if not self["tls"]:
                raise usage.UsageError("--ca goes with --tls")
            try:
                ssl.Certificate.loadPEM(Path(self["ca"]).read_bytes())
            except (OSError, ValueError, ssl.SSL.Error) as e:
                raise usage.UsageError(f"--ca {self['ca']}: not a readable PEM certificate ({e})") from None


def server_endpoint(reactor: Any, options: Options) -> IStreamClientEndpoint:
    """The endpoint of the server: TCP, or TLS with ``--tls``.

    TLS checks the server's certificate against ``--ca`` (else the system's
    trusted authorities) and that it names HOST (a name or an IP address).
    """
    tcp = endpoints.HostnameEndpoint(
        reactor, options["host"], options["port"], timeout=CONNECT_TIMEOUT
    )
    if not options["tls"]:
        return tcp
    trust = ssl.platformTrust()
    if options["ca"] is not None:
        trust = ssl.Certificate.loadPEM(Path(options["ca"]).read_bytes())
    tls_options = ssl.optionsForClientTLS(options["host"], trustRoot=trust)
    return endpoints.wrapClientTLS(tls_options, tcp)


def options_first(options: usage.Options, argv: Sequence[str]) -> list[str]:
    """``argv`` with its options moved before HOST PORT (``chat-client HOST PORT --opt x``).

    :raises usage.UsageError: for an unknown option or a missing value.
    """
    try:
        found, positional = getopt.gnu_getopt(list(argv), options.shortOpt, options.longOpt)
    except getopt.GetoptError as e:
        raise usage.UsageError(str(e)) from None
    flags: list[str] = []
    for flag, value in found:
        takes_value = flag.startswith("--") and f"{flag[2:]}=" in options.longOpt
        flags.extend([flag, value] if takes_value else [flag])
    return flags + ["--"] + positional


def parse_options(argv: Sequence[str]) -> Options:
    """Parse ``argv``; print the error and exit with status 2 when it is bad."""
    options = Options()
    try:
        options.parseOptions(options_first(options, argv))
    except usage.UsageError as e:
        sys.stderr.write(f"chat-client: {e}\nRun 'chat-client --help' for the options.\n")
        raise SystemExit(app.EXIT_USAGE)
    return options


async def main(reactor: Any, options: Options) -> None:
    """Run one client until it finishes; fails with ``SystemExit(status)`` for a non-zero status."""
    stdin_tty, stdout_tty = os.isatty(0), os.isatty(1)
    style = Style(colours_wanted(os.environ, options["no-color"], stdout_tty))
    holder: dict[str, ChatClient] = {}
    raw: RawTerminal | None = None
    console: Console | InputLine
    output: Output | TerminalOutput
    if stdin_tty and stdout_tty and not options["line-mode"]:
        raw = RawTerminal(0)
        raw.start()
        console = InputLine(
            lambda line: holder["client"].line_entered(line),
            lambda: holder["client"].input_ended(),
            lambda: holder["client"].interrupt(),
            style=style,
        )
        line_editor = console
        StandardIO(ServerProtocol(lambda: line_editor), reactor=reactor)
        resized = signal.signal(
            signal.SIGWINCH, lambda *_: reactor.callFromThread(line_editor.resized)
        )
        console.pause()
        output = TerminalOutput(console, style)
        echo = TerminalEcho(0, False)
    else:
        console = Console(
            lambda line: holder["client"].line_entered(line),
            lambda: holder["client"].input_ended(),
        )
        stdio = StandardIO(console, reactor=reactor)
        console.pause()
        output = Output(stdio.write, terminal=stdout_tty, interactive=stdin_tty, style=style)
        echo = TerminalEcho(0, stdin_tty)
    client = holder["client"] = ChatClient(
        reactor,
        output,
        echo,
        download_dir=options["download-dir"],
        connect_peer=tcp_connector(reactor),
        password_login=options["password-login"],
    )
    client.console = console
    if isinstance(console, InputLine):
        console.complete = client.complete
    transcript = None
    if options["json-log"]:
        transcript = JsonTranscript(open(options["json-log"], "a", encoding="utf-8"), reactor)
    lossy: list[LossyWriter] = []
    ports: list[IListeningPort] = []
    cleaned: defer.Deferred[None] = defer.Deferred()
    stopping: list[bool] = []

    def shutting_down() -> defer.Deferred[None]:
        stopping.append(True)
        client.interrupt()
        return cleaned

    trigger = reactor.addSystemEventTrigger("before", "shutdown", shutting_down)
    try:
        connection = ServerConnection(client, transcript)
        where = f"{options['host']}:{options['port']}"
        try:
            await endpoints.connectProtocol(server_endpoint(reactor, options), connection)
        except Exception:
            client.connect_failed(Failure(), where)
        else:
            # Still in the turn that connected: the login (which carries the
            # ports) waits for the server's answer to hello and for the user.
            interface = peer_interface(options, connection.transport)
            try:
                ports.extend(listen_for_peers(reactor, options, client, lossy, interface))
            except CannotListenError as e:
                client.give_up(f"Error. Could not listen for other clients on {interface}: {e.socketError}.")
            else:
                client.p2p_port = ports[0].getHost().port
                client.udp_port = ports[1].getHost().port
        status = await client.finished
    finally:
        client.private.close_all()
        client.files.close_all("quit")
        for writer in lossy:
            writer.stop()
        for port in ports:
            await port.stopListening()
        if transcript is not None:
            transcript.close()
        echo.restore()
        output.finish()
        await _flush(reactor, console)
        if raw is not None:
            signal.signal(signal.SIGWINCH, resized)
            raw.restore()
        if not stopping:
            reactor.removeSystemEventTrigger(trigger)
        cleaned.callback(None)
    if status:
        raise SystemExit(status)


def lossy_wrapper(
    reactor: Any, loss: float, keep: list[LossyWriter]
) -> Callable[[Any], Any] | None:
    """For ``--udp-loss``: wraps the UDP port's write in a :class:`LossyWriter` (kept in ``keep``)."""
    if not loss:
        return None

    def wrap(write: Any) -> LossyWriter:
        writer = LossyWriter(write, reactor, random.Random(), loss, loss, loss)
        keep.append(writer)
        return writer

    return wrap


def peer_interface(options: Options, server: ITransport) -> str:
    """The address to listen on for other clients: ``--p2p-interface``, else the local
    address of the connection to the server.

    The server gives other clients the address it sees this client connect
    from, so that is where they come; every other interface (another
    network, a VPN, a public address) stays closed.

    :param server: the transport of the connection to the server.
    """
    if options["p2p-interface"]:
        return options["p2p-interface"]
    return getattr(server.getHost(), "host", "") or "127.0.0.1"


def listen_for_peers(
    reactor: Any, options: Options, client: ChatClient, lossy: list[LossyWriter], interface: str
) -> list[IListeningPort]:
    """Open the TCP port for private chats, then the UDP port for files (the same number if free).

    :param interface: the address to listen on (:func:`peer_interface`).
    :raises CannotListenError: when either cannot be opened (neither stays open).
    """
    tcp = reactor.listenTCP(
        options["p2p-port"], PeerFactory(client.private, reactor), interface=interface
    )
    protocol = TransferSocket(client.files, lossy_wrapper(reactor, options["udp-loss"], lossy))
    try:
        try:
            udp = reactor.listenUDP(
                tcp.getHost().port,
                protocol,
                interface=interface,
                maxPacketSize=udpwire.MAX_DATAGRAM,
            )
        except CannotListenError:
            udp = reactor.listenUDP(
                0, protocol, interface=interface, maxPacketSize=udpwire.MAX_DATAGRAM
            )
    except CannotListenError:
        tcp.stopListening()
        raise
    return [tcp, udp]


async def _flush(reactor: Any, console: Console | InputLine) -> None:
    """Wait until standard output is written (not forever: the reader may be stuck)."""
    closed = console.close()
    timer = reactor.callLater(FLUSH_TIMEOUT, closed.cancel)
    try:
        await closed
    except defer.CancelledError:
        pass
    finally:
        if timer.active():
            timer.cancel()


def _start_logging(path: str | None) -> None:
    if path:
        observer = textFileLogObserver(open(path, "a", encoding="utf-8"))
        globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    else:
        globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)


def _report_crash(failure: Failure) -> Failure:
    """Show a bug on standard error (the log may go nowhere) and exit with status 1."""
    if failure.check(SystemExit):
        return failure
    sys.stderr.write(f"chat-client: internal error\n{failure.getTraceback()}")
    raise SystemExit(app.EXIT_LOST)


def run(argv: Sequence[str] | None = None) -> None:
    """The ``chat-client`` console script."""
    options = parse_options(sys.argv[1:] if argv is None else argv)
    _start_logging(options["log-file"])
    task.react(
        lambda reactor: defer.ensureDeferred(main(reactor, options)).addErrback(_report_crash)
    )
