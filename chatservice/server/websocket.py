"""The WebSocket adapter: each text message in is a line for a :class:`ChatConnection`, each line out a message.

:class:`ChatWebSocket` is the browser's counterpart of
:class:`~chatservice.server.protocol.ChatProtocol`: a
:class:`twisted.web.websocket.WebSocketProtocol` that feeds the same
connection core, which speaks JSON lines from the first message (a browser
is never greeted in text).  Every limit, flow control and slow-reader rule
of TCP applies, since the core and its writer are the same:

- :class:`MessageQueue` holds the messages received while the connection is
  held back (flood control, a password check), and marks one over
  ``max_line_length`` bytes as too long, as a line would be.
- :class:`MessageTransport` is what the core writes to and pauses: events
  come already framed (:data:`~chatservice.wire.WEBSOCKET`, one frame per
  event for all its recipients) and go through the output batcher as TCP's
  lines do; pausing stops reading the TCP (or TLS) connection under the
  WebSocket, whose socket the writer tunes as TCP's (``TCP_NODELAY``, a
  pinned send buffer).
- :class:`InputGuard` wraps every web connection's TCP protocol and closes a
  connection that sends more than ``input_limit`` bytes without completing a
  message: Twisted's WebSocket layer would otherwise gather a fragmented
  message of any size in memory.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.interfaces import IAddress, IPushProducer, IReactorTime, ITransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.server import Request
from twisted.web.websocket import WebSocketTransport

from chatservice.auth.login import LoginGate
from chatservice.server.connection import ChatConnection
from chatservice.server.lines import TOO_LONG
from chatservice.server.policy import ConnectionPolicy
from chatservice.server.registry import ConnectionRegistry
from chatservice.wire import WEBSOCKET


class MessageQueue:
    """The messages waiting to be read, each one line (a :class:`~chatservice.server.lines.LineSource`).

    :param max_length: longest message, in bytes of UTF-8.
    """

    __slots__ = ("max_length", "_messages")

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._messages: deque[bytes] = deque()

    def add(self, message: bytes) -> None:
        """Queue one received message."""
        self._messages.append(TOO_LONG if len(message) > self.max_length else message)

    def clear(self) -> None:
        """Forget the messages not yet taken."""
        self._messages.clear()

    def pop(self) -> bytes | None:
        return self._messages.popleft() if self._messages else None

    def has_line(self) -> bool:
        return bool(self._messages)

    def first_byte(self) -> bytes:
        return b"{"  # never asked: the format is JSON from the start


class MessageTransport:
    """The WebSocket as the connection core sees a transport: frames out, reading paused and resumed.

    The connection renders its events in the
    :data:`~chatservice.wire.WEBSOCKET` format, already framed (a
    broadcast's frame is made once, for every recipient), so they are
    written to the stream as they are; on a plain TCP socket they go through
    the :class:`~chatservice.server.output.OutputBatcher` like TCP lines
    (:attr:`underlying`).  Closing goes through the WebSocket (a close frame
    first).

    :param websocket: the WebSocket, for its close frame and producer.
    :param stream: the byte stream under it (TCP or TLS, possibly wrapped by
        an :class:`InputGuard`), paused and resumed to stop and start
        reading, and aborted to drop a client at once.
    :param peer: the client's address (the HTTP request's).
    """

    def __init__(self, websocket: WebSocketTransport, stream: ITransport, peer: IAddress) -> None:
        self.websocket = websocket
        self.stream = stream
        self.peer = peer

    @property
    def underlying(self) -> ITransport:
        """The transport under the stream's wrappers (the TCP connection)."""
        transport = self.stream
        while isinstance(transport, ProtocolWrapper):
            transport = transport.transport
        return transport

    def write(self, data: bytes) -> None:
        """Write WebSocket frames (events rendered in the WebSocket format)."""
        self.stream.write(data)

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        self.websocket.attachProducer(producer)

    def unregisterProducer(self) -> None:
        self.websocket.detachProducer()

    def loseConnection(self) -> None:
        self.websocket.loseConnection()

    def abortConnection(self) -> None:
        self.stream.abortConnection()

    def pauseProducing(self) -> None:
        self.stream.pauseProducing()

    def resumeProducing(self) -> None:
        self.stream.resumeProducing()

    def getPeer(self) -> IAddress:
        return self.peer

    def setTcpNoDelay(self, enabled: bool) -> None:
        """The stream's: the writer sends a WebSocket's small messages without delay, as TCP's lines."""
        self.stream.setTcpNoDelay(enabled)  # type: ignore[attr-defined]

    def getHandle(self) -> Any:
        """The stream's socket: the writer pins its send buffer, as for TCP."""
        return self.stream.getHandle()  # type: ignore[attr-defined]


class ChatWebSocket:
    """One browser's WebSocket: a :class:`ChatConnection` speaking JSON, one message a line.

    :param request: the HTTP request that was upgraded.
    :param gate: where to log in.
    :param policy: the server's limits.
    :param clock: the reactor, or a test ``Clock``.
    :param registry: the server's live connections (TCP and WebSocket alike).
    """

    def __init__(
        self,
        request: Request,
        gate: LoginGate,
        policy: ConnectionPolicy,
        clock: IReactorTime,
        registry: ConnectionRegistry,
    ) -> None:
        self.connection: ChatConnection | None = None
        self._request = request
        self._gate = gate
        self._policy = policy
        self._clock = clock
        self._registry = registry
        self._messages = MessageQueue(policy.max_line_length)
        self._websocket: WebSocketTransport | None = None
        stream = request.channel.transport
        self._guard = stream if isinstance(stream, InputGuard) else None

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self._websocket = transport
        if self._guard is not None:
            self._guard.arm()

    def negotiationFinished(self) -> None:
        """The handshake is done: the connection starts, in JSON."""
        assert self._websocket is not None
        channel = self._request.channel
        stream = channel.transport
        # The HTTP channel no longer reads this connection: its idle timer
        # would close it, and it is still the stream's registered producer,
        # which the connection's writer must become.
        channel.setTimeout(None)
        stream.unregisterProducer()
        transport = MessageTransport(self._websocket, stream, self._request.getClientAddress())
        self.connection = ChatConnection(
            transport, self._messages, self._gate, self._policy, self._clock, self._registry,
            wire=WEBSOCKET,
        )
        self.connection.start()

    def textMessageReceived(self, message: str) -> None:
        self._received(message.encode("utf-8"))

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        """A binary message is taken as its UTF-8 text (the JSON parser says if it is not)."""
        self._received(bytes(data))

    def _received(self, message: bytes) -> None:
        if self._guard is not None:
            self._guard.message_complete()
        connection = self.connection
        if connection is None or connection.writer.closed:
            self._messages.clear()
            return
        self._messages.add(message)
        connection.read()

    def pongReceived(self, payload: bytes) -> None:
        """Pongs measure nothing here."""

    def connectionLost(self, reason: Failure) -> None:
        if self.connection is not None:
            self.connection.connection_lost()


class ChatWebSocketFactory:
    """Builds a :class:`ChatWebSocket` per upgraded request (a ``WebSocketServerFactory``).

    :param gate: where connections log in.
    :param clock: the reactor, or a test ``Clock``.
    :param registry: the live connections, shared with the TCP listeners, and
        the limits every new connection reads (``registry.policy``).
    """

    def __init__(self, gate: LoginGate, clock: IReactorTime, registry: ConnectionRegistry) -> None:
        self.gate = gate
        self.clock = clock
        self.registry = registry

    @property
    def policy(self) -> ConnectionPolicy:
        """The limits new connections get: the registry's (a reload swaps them there)."""
        return self.registry.policy

    def buildProtocol(self, request: Request) -> ChatWebSocket:
        return ChatWebSocket(request, self.gate, self.registry.policy, self.clock, self.registry)


class InputGuard(ProtocolWrapper):
    """Closes a WebSocket that sends over ``factory.input_limit`` bytes without completing a message.

    It sits under the HTTP channel of every web connection.  A
    :class:`ChatWebSocket` arms it once upgraded and calls
    :meth:`message_complete` for each message it gets; plain HTTP requests
    (the page) are bounded by Twisted's own limits and never counted.

    One read can hold many whole messages (a client that sent several while
    the server was busy, or paused it): such a read is passed on in pieces
    no longer than what is left of the limit, so every message completed in
    a piece counts afresh and a client is closed only for an unfinished
    message, never for sending many finished ones at once.  What follows the
    last message completed in a piece is not counted, so an unfinished
    message is closed by ``2 * input_limit`` bytes at the latest.
    """

    def __init__(self, factory: InputGuardFactory, wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)
        self.armed = False
        self.received = 0

    def arm(self) -> None:
        """The connection is a WebSocket now: count what arrives between messages."""
        self.armed = True
        self.received = 0

    def message_complete(self) -> None:
        """A whole message arrived: count afresh."""
        self.received = 0

    def dataReceived(self, data: bytes) -> None:
        if not self.armed:
            super().dataReceived(data)
            return
        limit = self.factory.input_limit
        while data and not self.disconnecting:
            room = limit - self.received
            if room <= 0:
                self.abortConnection()
                return
            piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            self.received += len(piece)
            super().dataReceived(piece)

    def abortConnection(self) -> None:
        """Drop the connection at once; nothing more that was read is passed on."""
        self.disconnecting = 1
        self.transport.abortConnection()


class InputGuardFactory(WrappingFactory):
    """Wraps a web site's factory so that each of its connections has an :class:`InputGuard`.

    :param site: the ``twisted.web`` site.
    :param input_limit: bytes a client may send without completing a message.
    """

    protocol = InputGuard

    def __init__(self, site: Any, input_limit: int) -> None:
        super().__init__(site)
        self.input_limit = input_limit
