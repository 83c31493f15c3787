"""The load generator's WebSocket framing (``bench.loadgen``), checked against wsproto.

A wrong framer would make every WebSocket figure of ``bench.web``
meaningless, so each direction is checked against an independent
implementation: wsproto as the server reads the load generator's client
frames, and writes the server frames the load generator's reader cuts up.
"""

from __future__ import annotations

import random

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, Ping, TextMessage
from wsproto.frame_protocol import Opcode

from bench.loadgen import (
    OP_PONG,
    OP_TEXT,
    JsonWire,
    WebSocketError,
    WebSocketReader,
    WebSocketWire,
    ws_accept,
    ws_client_frame,
    ws_mask,
)

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


def server_reads(frames: bytes) -> list[object]:
    """What a wsproto server makes of ``frames`` from a client."""
    server = Connection(ConnectionType.SERVER)
    server.receive_data(frames)
    return list(server.events())


def text_of(size: int) -> str:
    return "".join(chr(ord("a") + i % 26) for i in range(size))


def chunks(data: bytes, rng: random.Random) -> list[bytes]:
    """``data`` cut at random places, as reads from a socket would be."""
    out, pos = [], 0
    while pos < len(data):
        step = rng.choice([1, 2, 3, 7, 100, 4096, 70000])
        out.append(data[pos : pos + step])
        pos += step
    return out


def test_the_accept_key_is_the_rfc_example() -> None:
    assert ws_accept(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 4099])
def test_masking_is_a_byte_by_byte_xor_and_undoes_itself(size: int) -> None:
    payload = bytes(random.Random(size).randrange(256) for _ in range(size))
    key = b"\x01\x80\xfe\x37"
    masked = ws_mask(payload, key)
    assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert ws_mask(masked, key) == payload


@pytest.mark.parametrize("size", SIZES)
def test_client_frames_are_masked_and_read_by_a_server(size: int) -> None:
    text = text_of(size)
    frame = ws_client_frame(text.encode(), key=b"\x0f\xf0\xaa\x55")
    assert frame[0] == 0x80 | OP_TEXT  # final text frame
    assert frame[1] & 0x80, "the mask bit must be set"
    length = frame[1] & 0x7F
    assert length == (size if size < 126 else 126 if size < 65536 else 127)
    header = 2 + {126: 2, 127: 8}.get(length, 0)
    assert frame[header : header + 4] == b"\x0f\xf0\xaa\x55"
    assert len(frame) == header + 4 + size
    if size:
        assert frame[header + 4 :] != text.encode()
    events = server_reads(frame)
    assert len(events) == 1 and isinstance(events[0], TextMessage)
    assert events[0].data == text and events[0].message_finished


def test_every_frame_gets_its_own_random_key() -> None:
    first, second = ws_client_frame(b"hello"), ws_client_frame(b"hello")
    assert first[2:6] != second[2:6]
    events = server_reads(first + second + ws_client_frame(b"x" * 200))
    assert [e.data for e in events] == ["hello", "hello", "x" * 200]


def test_a_pong_is_a_masked_control_frame() -> None:
    frame = ws_client_frame(b"ping-data", OP_PONG)
    assert frame[0] == 0x80 | OP_PONG and frame[1] & 0x80
    events = server_reads(frame)
    assert events[0].payload == b"ping-data"


def server_frames(messages: list[tuple[str, bool]]) -> bytes:
    """What a wsproto server sends for these (text, finished) pieces."""
    server = Connection(ConnectionType.SERVER)
    return b"".join(server.send(TextMessage(data=text, message_finished=done)) for text, done in messages)


@pytest.mark.parametrize("size", SIZES)
def test_server_frames_of_every_length_are_read_whole_from_any_cut(size: int) -> None:
    text = text_of(size)
    stream = server_frames([(text, True), ("after", True)])
    for seed in range(3):
        reader = WebSocketReader()
        got: list[bytes] = []
        for piece in chunks(stream, random.Random(seed)):
            got += reader.feed(piece)
        assert got == [text.encode(), b"after"]
        assert reader.buf == b"" and reader.parts is None


def test_fragmented_server_messages_are_joined_around_a_ping() -> None:
    server = Connection(ConnectionType.SERVER)
    stream = (
        server.send(TextMessage(data="zqb 1 ", message_finished=False))
        + server.send(TextMessage(data="x" * 130, message_finished=False))
        + server.send(Ping(payload=b"are you there"))
        + server.send(TextMessage(data="y" * 70000, message_finished=False))
        + server.send(TextMessage(data=" end", message_finished=True))
        + server.send(BytesMessage(data=b"\x00\x01"))
    )
    assert stream[0] == Opcode.TEXT  # the first fragment is not final
    reader = WebSocketReader()
    got: list[bytes] = []
    for piece in chunks(stream, random.Random(7)):
        got += reader.feed(piece)
    assert got == [("zqb 1 " + "x" * 130 + "y" * 70000 + " end").encode(), b"\x00\x01"]
    assert reader.pings == [b"are you there"]


def test_framing_errors_are_loud() -> None:
    with pytest.raises(WebSocketError, match="masked"):
        WebSocketReader().feed(ws_client_frame(b"from a client"))
    with pytest.raises(WebSocketError, match="continuation"):
        WebSocketReader().feed(b"\x80\x01x")
    with pytest.raises(WebSocketError, match="inside a fragmented"):
        WebSocketReader().feed(b"\x01\x01x\x81\x01y")


def test_the_upgrade_is_checked_and_the_marks_are_found_in_the_json() -> None:
    wire = WebSocketWire({"port": 1234})

    class Stub:
        accept = b""
        on_data = None

    client = Stub()
    request = wire.opening(client)  # type: ignore[arg-type]
    assert request.startswith(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:1234\r\n")
    key = request.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0]
    good = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " + ws_accept(key)
    assert wire.upgraded(client, good) is None  # type: ignore[arg-type]
    assert "wrong" in wire.upgraded(client, good[:-2] + b"xx")  # type: ignore[arg-type, operator]
    assert "refused" in wire.upgraded(client, b"HTTP/1.1 403 Forbidden")  # type: ignore[arg-type, operator]
    login = server_reads(wire.login("r0", "pw-r0"))[0]
    assert login.data == '{"type":"login","user":"r0","password":"pw-r0"}'
    assert JsonWire.ready_mark in b'{"type":"login","success":true,"user":"r0","guest":false}'
    assert wire.text(b'{"type":"broadcast","from":"s1","message":"zqb 1 2 3 xx","seq":4}') == b"zqb 1 2 3 xx"


def test_json_texts_are_parsed_together_and_one_by_one_when_one_is_bad() -> None:
    wire = JsonWire({})
    good = [b'{"type":"message","from":"u1","message":"zqp 1 2 3"}', b'{"type":"broadcast","message":"zqb 4"}']
    assert wire.texts(good) == [b"zqp 1 2 3", b"zqb 4"]
    assert wire.texts([good[0], b"{not json", b'{"type":"ok"}', good[1]]) == [b"zqp 1 2 3", None, None, b"zqb 4"]
    assert wire.texts([]) == []
