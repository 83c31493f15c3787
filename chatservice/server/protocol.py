"""The stream adapter: bytes from a TCP or TLS transport in, lines to a :class:`ChatConnection` out.

:class:`ChatProtocol` is all that knows the connection arrives as a byte
stream.  It splits the bytes into lines (:class:`LineBuffer`) and lets its
:class:`~chatservice.server.connection.ChatConnection` read them; the
connection logs in, runs commands and writes replies, whatever carries it.

Over TLS (an ``ssl:`` endpoint), Twisted's
:class:`~twisted.protocols.tls.TLSMemoryBIOProtocol` calls
:meth:`ChatProtocol.connectionMade` when the TCP connection is accepted,
before the handshake; what is written meanwhile waits in the TLS layer, and a
``loseConnection`` waits for the handshake to finish before anything is sent
or closed, that is forever if the client never finishes it.  So the adapter
gives the handshake its own deadline (``policy.tls_handshake_deadline``, at
most the login deadline) and aborts the connection when it passes, and it
aborts at once a connection refused before its handshake (it cannot be told
why, and must not hold a slot meanwhile).  The connection still counts
towards the caps from the moment it is accepted, as a TCP connection does.

A person's connection may speak telnet: from the first ``IAC`` received, or
the first password prompt, a :class:`~chatservice.server.telnet.TelnetInput`
stands between the bytes and the lines (negotiation answered, Ctrl-C
cancelling the line, echo off at password prompts); once logged in and idle
it is dropped, until the next ``IAC`` or password prompt.  A JSON client
never gets one.
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from chatservice.auth.login import LoginGate
from chatservice.server.connection import ChatConnection
from chatservice.server.lines import LineBuffer
from chatservice.server.policy import ConnectionPolicy
from chatservice.server.registry import ConnectionRegistry
from chatservice.server.timers import cancel_pending
from chatservice.server.telnet import IAC, TelnetInput


@implementer(IHandshakeListener)
class ChatProtocol(Protocol):
    """One TCP or TLS connection of the chat server.

    :param gate: where its connection logs in.
    :param policy: the server's limits (the longest line among them).
    :param clock: the reactor, or a test ``Clock``.
    :param registry: the server's live connections.
    """

    connection_type: type[ChatConnection] = ChatConnection
    """What this adapter feeds its lines to."""

    __slots__ = (
        "transport", "connected", "connection", "_lines", "_gate", "_policy", "_clock",
        "_registry", "_handshake", "_telnet", "_offer_echo", "speaks_telnet",
    )

    def __init__(
        self,
        gate: LoginGate,
        policy: ConnectionPolicy,
        clock: IReactorTime,
        registry: ConnectionRegistry,
    ) -> None:
        self.transport = None
        self.connected = 0
        self.connection: ChatConnection | None = None
        self._lines = LineBuffer(policy.max_line_length)
        self._gate = gate
        self._policy = policy
        self._clock = clock
        self._registry = registry
        self._handshake: IDelayedCall | None = None
        """The TLS handshake's deadline, while it runs."""
        self._telnet: TelnetInput | None = None
        self._offer_echo = True
        """False once the client left ``WILL ECHO`` unanswered or refused it (kept when the telnet layer is dropped)."""
        self.speaks_telnet = False
        """Whether the client sent telnet commands (a ``telnet`` program; ``whois`` says so)."""

    def connectionMade(self) -> None:
        connection = self.connection = self.connection_type(
            self.transport, self._lines, self._gate, self._policy, self._clock, self._registry,
            terminal=self,
        )
        if isinstance(self.transport, TLSMemoryBIOProtocol):
            policy = self._policy
            self._handshake = self._clock.callLater(
                min(policy.tls_handshake_deadline, policy.login_deadline), self._abort
            )
        connection.start()
        if self._handshake is not None and connection.writer.closed:
            self._abort()  # refused before its handshake

    def handshakeCompleted(self) -> None:
        """The TLS handshake is over: its deadline no longer applies."""
        cancel_pending(self._handshake)
        self._handshake = None

    def _abort(self) -> None:
        """Drop a TLS connection whose handshake is not over (nothing can be sent to it)."""
        cancel_pending(self._handshake)
        self._handshake = None
        self.transport.abortConnection()

    def telnet(self, create: bool = True) -> TelnetInput | None:
        """This connection's telnet layer (made when first needed, if ``create``); ``None`` for a program."""
        connection = self.connection
        if connection is None or not connection.may_speak_telnet:
            return None
        if self._telnet is None and create:
            self._telnet = TelnetInput(
                self._lines, connection.writer.write, connection.interrupted, self._offer_echo
            )
        return self._telnet

    def dataReceived(self, data: bytes) -> None:
        connection = self.connection
        if connection is None or connection.writer.closed:
            self._lines.clear()  # closing: what still arrives is not read
            return
        telnet = self._telnet
        if telnet is None:
            if IAC in data:  # rare: a JSON client has no IAC, a person's line seldom
                self.speaks_telnet = True
                telnet = self.telnet()
        elif not connection.may_speak_telnet:
            telnet = None
        elif not self.speaks_telnet and IAC in data:
            self.speaks_telnet = True
        if telnet is not None:
            telnet.dataReceived(data)
            self.settle_telnet()
        else:
            self._lines.feed(data)
        connection.read()

    def settle_telnet(self) -> None:
        """Drop the telnet layer if logged in and nothing is under way: made again when needed
        (about 2 KiB less per idle connection)."""
        telnet, connection = self._telnet, self.connection
        if telnet is not None and connection is not None and connection.session is not None and telnet.idle:
            self._offer_echo = not telnet.ignores_echo
            self._telnet = None

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = 0
        cancel_pending(self._handshake)
        self._handshake = None
        if self.connection is not None:
            self.connection.connection_lost()
