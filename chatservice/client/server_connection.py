"""The client's connection to the chat server, in JSON lines.

The server greets every connection in its text format first (a greeting line
and a ``Username: `` prompt); it switches to JSON lines when the client's
first line starts with ``{``.  So until the first JSON reply this protocol
skips every line that does not start with ``{`` (and reads a reply glued to
the end of the prompt, should the server not end the prompt's line).

:meth:`ServerConnection.request` sends one request with a fresh ``id`` and
returns a Deferred that fires with the reply carrying that ``id`` (or fails
with :class:`ServerError` for an ``error`` reply).  Everything the server
sends on its own (messages, presence, announcements) goes to the listener's
``server_message``.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from chatservice import events
from chatservice.wire.json_events import decode_event

log = Logger()

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class ServerError(Exception):
    """The server answered a request with ``{"type": "error", ...}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ServerListener(Protocol):
    """What the client application hears from its server connection."""

    def server_connected(self, connection: ServerConnection) -> None: ...

    def server_message(self, message: dict[str, Any]) -> None: ...

    def server_lost(self, reason: Failure, goodbye: dict[str, Any] | None) -> None: ...


class Transcript(Protocol):
    """Where ``--json-log`` records the JSON lines."""

    def sent(self, message: dict[str, Any]) -> None: ...

    def received(self, message: dict[str, Any]) -> None: ...


class ServerConnection(LineReceiver):
    """One connection to the server.

    :param listener: told about unsolicited messages and the end of the connection.
    :param transcript: optionally records every JSON object sent and received.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, listener: ServerListener, transcript: Transcript | None = None) -> None:
        self.listener = listener
        self.transcript = transcript
        self.speaking_json = False
        self.goodbye: dict[str, Any] | None = None
        """The last message before the server closed (one that reads as
        :class:`~chatservice.events.Disconnected`: ``disconnect``, ``shutdown``, ...)."""
        self._pending: dict[int, defer.Deferred[dict[str, Any]]] = {}
        self._next_id = 1
        self._lost = False

    def connectionMade(self) -> None:
        self.listener.server_connected(self)

    def lineReceived(self, line: bytes) -> None:
        line = line.rstrip(b"\r").lstrip()
        if not line.startswith(b"{"):
            start = line.find(b"{")
            if not self.speaking_json and start > 0:
                # A prompt the server did not end before its first JSON reply.
                line = line[start:]
            else:
                if self.speaking_json and line:
                    log.warn("Skipped a line from the server that is not JSON: {line!r}", line=line)
                return
        try:
            message = json.loads(line)
        except (UnicodeDecodeError, ValueError, RecursionError):
            log.warn("Skipped a malformed JSON line from the server: {line!r}", line=line)
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            log.warn("Skipped a JSON line without a type: {line!r}", line=line)
            return
        self.speaking_json = True
        if self.transcript is not None:
            self.transcript.received(message)
        event = decode_event(message)
        if isinstance(event, events.Disconnected):
            self.goodbye = message
        waiting = self._pending.pop(message.get("id"), None) if _hashable(message.get("id")) else None
        if waiting is None:
            self.listener.server_message(message)
        elif isinstance(event, events.ErrorReply):
            waiting.errback(ServerError(event.code, event.message))
        else:
            waiting.callback(message)

    def lineLengthExceeded(self, line: bytes) -> None:
        log.warn("The server sent a line longer than {limit} bytes; closing", limit=self.MAX_LENGTH)
        self.transport.loseConnection()

    def request(
        self, message: dict[str, Any], request_id: str | None = None
    ) -> defer.Deferred[dict[str, Any]]:
        """Send ``message`` with a new ``id`` (or ``request_id``); the Deferred
        fires with the reply."""
        if self._lost:
            return defer.fail(ConnectionDone("not connected to the server"))
        if request_id is None:
            request_id = self._next_id
            self._next_id += 1
        message = dict(message, id=request_id)
        waiting: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self._pending[request_id] = waiting
        if self.transcript is not None:
            self.transcript.sent(message)
        self.transport.write(_encoder.encode(message).encode("utf-8") + b"\n")
        return waiting

    def close(self) -> None:
        """Close the connection (without logging out)."""
        if not self._lost and self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:
        self._lost = True
        pending, self._pending = self._pending, {}
        for waiting in pending.values():
            waiting.errback(reason if reason is not None else Failure(ConnectionDone()))
        self.listener.server_lost(
            reason if reason is not None else Failure(ConnectionDone()), self.goodbye
        )


def _hashable(value: object) -> bool:
    return isinstance(value, (int, str, float)) and not isinstance(value, bool)
