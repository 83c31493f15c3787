"""JSON lines over a WebSocket: each event one unmasked text frame, framed once per event.

A server's WebSocket frames are not masked (RFC 6455, section 5.1), so the
frame carrying a broadcast is the same bytes for every recipient: this
format renders an event as its whole frame, and the render cache
(:meth:`~chatservice.wire.format.WireFormat.encode_shared`) frames it once
per fan-out, as the TCP formats render a line once.  What a client sends is
parsed exactly as JSON lines (one message, one request).  Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from chatservice import events
from chatservice.wire.jsonlines import JsonFormat, encode

TEXT_FRAME = 0x81
"""FIN and the text opcode: a whole text message in one frame."""


def text_frame(payload: bytes) -> bytes:
    """``payload`` (UTF-8) as one unmasked WebSocket text frame."""
    size = len(payload)
    if size < 126:
        header = bytes((TEXT_FRAME, size))
    elif size < 1 << 16:
        header = bytes((TEXT_FRAME, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((TEXT_FRAME, 127)) + size.to_bytes(8, "big")
    return header + payload


class WebSocketJsonFormat(JsonFormat):
    """The JSON-lines protocol with each line sent as one WebSocket text frame."""

    name = "websocket"

    def encode(self, event: events.Event, request_id: Any = None) -> bytes | None:
        line = encode(event, request_id)
        return None if line is None else text_frame(line[:-1])


WEBSOCKET = WebSocketJsonFormat()
"""JSON lines, framed for a WebSocket."""
