"""A blocking WebSocket test client (wsproto over a plain socket), with deadlines everywhere."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

READ_TIMEOUT = 10.0


class WebSocketRejected(Exception):
    """The server answered the upgrade with an HTTP error (``status``)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.body = body


class WebSocketClient:
    """One WebSocket to ``ws://127.0.0.1:port/ws``: send and read JSON messages.

    :param port: the web listener's port on 127.0.0.1.
    :param origin: the ``Origin`` header to send (``None``: none, as a program).
    :raises WebSocketRejected: when the upgrade is refused.
    """

    def __init__(
        self, port: int, origin: str | None = None, path: str = "/ws", timeout: float = READ_TIMEOUT
    ) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.messages: list[str | bytes] = []
        self.closed: CloseConnection | None = None
        self.eof = False
        headers = [] if origin is None else [(b"Origin", origin.encode())]
        self.sock.sendall(self.ws.send(Request(host=f"127.0.0.1:{port}", target=path, extra_headers=headers)))
        deadline = time.monotonic() + timeout
        status, body = 0, b""
        while True:
            for event in self._events(deadline):
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise WebSocketRejected(status, b"")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise WebSocketRejected(status, body)
            if self.eof:
                raise WebSocketRejected(status, body)

    def _events(self, deadline: float) -> list[Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("nothing from the server in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("nothing from the server in time") from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            self.ws.receive_data(None)
        else:
            self.ws.receive_data(data)
        return list(self.ws.events())

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.ws.send(TextMessage(text)))

    def send_json(self, obj: Any) -> None:
        self.send_text(json.dumps(obj))

    def read_message(self, timeout: float | None = None) -> str | bytes:
        """The next whole message."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        text: list[str] = []
        while not self.messages:
            if self.eof or self.closed is not None:
                raise EOFError("the WebSocket closed")
            for event in self._events(deadline):
                if isinstance(event, TextMessage):
                    text.append(event.data)
                    if event.message_finished:
                        self.messages.append("".join(text))
                        text = []
                elif isinstance(event, BytesMessage):
                    self.messages.append(bytes(event.data))
                elif isinstance(event, Ping):
                    self.sock.sendall(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.closed = event
        return self.messages.pop(0)

    def read_json(self, timeout: float | None = None) -> dict[str, Any]:
        message = self.read_message(timeout)
        assert isinstance(message, str), message
        return json.loads(message)

    def wait_closed(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Read until the server closes; the JSON messages that came first."""
        rest = []
        try:
            while True:
                rest.append(self.read_json(timeout))
        except EOFError:
            return rest

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WebSocketClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def server_frames(data: bytes) -> list[str]:
    """The text messages in ``data``: whole unmasked server frames (FIN set), as a server sends them."""
    messages = []
    while data:
        assert data[0] == 0x81, f"not a final text frame: {data[:2]!r}"
        size, start = data[1], 2
        assert not size & 0x80, "a server frame is not masked"
        if size == 126:
            size, start = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, start = int.from_bytes(data[2:10], "big"), 10
        messages.append(data[start : start + size].decode("utf-8"))
        data = data[start + size :]
    return messages
