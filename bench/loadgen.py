"""The load generator: one process, one core, many loopback connections.

:mod:`bench.run` starts it as ``python3 -m bench.loadgen`` pinned (``taskset``)
to the core the server does not have, writes the workload's specification as
one JSON line on its standard input, and reads JSON lines from its standard
output:

``{"mark": NAME, ...}``
    The load generator has reached a point where the server's figures should
    be read (``/proc``: CPU time, RSS, peak RSS).  It waits for one line on
    its standard input before going on, so the figures belong to that point.
``{"result": {...}}``
    The workload's figures; the last line.

It speaks each server's protocol (:class:`ChatWire` for chatservice's text
protocol, :class:`JsonWire` for its JSON lines, :class:`WebSocketWire` for the
same JSON over its WebSocket, :class:`IrcWire` for ``twistd words`` and
ngIRCd) over non-blocking sockets driven by one ``epoll`` loop: no asyncio, no
threads, so that one core can read millions of lines a second.  Only a sample
of the receivers (the *probes*) splits lines (or WebSocket frames), parses
JSON and measures latency; the others count the workload's marker with
``bytes.count``, or, in a fan-out over a protocol whose timed lines all have
one length (text, IRC), only count the bytes, which they read with
``MSG_TRUNC`` (the kernel drops them uncopied): see :meth:`FanOut.calibrate`.

Every timed message carries the time it was *scheduled* to be sent (from
``time.monotonic_ns``, the same clock for every connection of this process),
and latency is measured from that time, so a sender that falls behind its
schedule does not hide the delay (no coordinated omission).  A message a
probe has not received when the measurement ends counts as infinitely late.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import heapq
import json
import math
import os
import re
import resource
import select
import socket
import sys
import time
from typing import Any, Callable

from bench.procstat import run_queue_seconds

Obj = dict[str, Any]

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLL_READ = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
SOURCE_ADDRESSES = 50
"""Connections are spread over 127.0.0.2 .. 127.0.0.51 (all of 127/8 is loopback)."""
RECV_SIZE = 256 * 1024
_RECV_BUFFER = bytearray(RECV_SIZE)
_RECV_VIEW = memoryview(_RECV_BUFFER)
NEVER_READER_RCVBUF = 4096

BROADCAST_MARK = b"zqb "
TIMED_BROADCAST = b"zqb %04d %020d %010d %s"
"""A fan-out's timed message: step, scheduled time (ns), number, padding; fixed widths, so
that every one has the same length and a receiver can count them by their bytes."""
PING_MARK = b"zqp "
PONG_MARK = b"zqq "
PAD = "x" * 400
COALESCE = 0.003
FANOUT_COALESCE = COALESCE
COUNT_BATCH_SECONDS = 0.05
"""While a fan-out step sends, a counting receiver is woken once about this much of its traffic
waits (:meth:`FanOut.set_low_water`): its count then lags by at most that much, 1.25% of a
4 s step, and the drain catches it up."""
COUNT_BATCH_MAX = 16384
"""While measuring, sleep this long after each poll that found work: every read then takes
the messages of a few milliseconds at once (at most 3 ms more latency per delivery), so one
core can read over a million lines a second."""


def mono_ns() -> int:
    return time.monotonic_ns()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def kernel_seconds() -> float:
    """This process's CPU time in the kernel (its system calls: receiving, above all)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def log(message: str) -> None:
    print(f"[loadgen] {message}", file=sys.stderr, flush=True)


def source_address(index: int) -> str:
    return f"127.0.0.{2 + index % SOURCE_ADDRESSES}"


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted values (``inf`` stands for a lost message)."""
    if not ordered:
        return None
    rank = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def summary(samples: list[float], lost: int = 0) -> Obj:
    """p50/p99/max in milliseconds of latencies in seconds; ``lost`` count as infinite."""
    ordered = sorted(samples) + [math.inf] * lost

    def ms(value: float | None) -> float | str | None:
        if value is None:
            return None
        if math.isinf(value):
            return "inf"
        return round(value * 1000, 2)

    return {
        "count": len(samples),
        "lost": lost,
        "p50_ms": ms(percentile(ordered, 0.50)),
        "p99_ms": ms(percentile(ordered, 0.99)),
        "max_ms": ms(ordered[-1] if ordered else None),
    }


def p99_seconds(samples: list[float], lost: int) -> float:
    ordered = sorted(samples) + [math.inf] * lost
    value = percentile(ordered, 0.99)
    return math.inf if value is None else value


# Wire formats -----------------------------------------------------------------------


class LineWire:
    """A protocol of lines over plain TCP: what every wire offers the workloads.

    A wire builds what a client sends (:meth:`login`, :meth:`broadcast`,
    :meth:`direct`) and cuts what it receives into messages
    (:meth:`messages`), each of which :meth:`text` turns into the chat text
    the timed marks are looked for in.
    """

    name = "lines"
    fixed_length_lines = False
    """Whether every timed broadcast from one sender reaches a receiver as the same number
    of bytes (no time stamp or number of the server's own in it): then a fan-out may
    count deliveries by bytes (:meth:`FanOut.calibrate` checks it)."""
    ready_mark = b""
    fail_marks: tuple[bytes, ...] = ()
    presence_marks: tuple[bytes, ...] = ()

    def __init__(self, spec: Obj) -> None:
        self.spec = spec

    def login(self, name: str, password: str) -> bytes:
        raise NotImplementedError

    def broadcast(self, text: bytes) -> bytes:
        raise NotImplementedError

    def direct(self, to: bytes, text: bytes) -> bytes:
        raise NotImplementedError

    def login_notice(self, line: bytes) -> bytes | None:
        """The user name if ``line`` announces a login, else ``None``."""
        return None

    def failure(self, window: bytes) -> bool:
        """Whether ``window`` (the end of what a client logging in received) says the login failed."""
        return any(mark in window for mark in self.fail_marks)

    welcome_mark: bytes | None = None
    """A reply after which :meth:`after_welcome` is sent (``None``: the login is sent whole)."""

    def after_welcome(self) -> bytes:
        """The rest of the login, sent once :attr:`welcome_mark` arrived."""
        return b""

    def opening(self, client: Client) -> bytes:
        """What ``client`` sends once connected: its login."""
        return self.login(client.name, client.password)

    def messages(self, client: Client, data: bytes) -> list[bytes]:
        """The complete messages (here: lines) of ``client``'s stream so far."""
        return client.lines(data)

    def skip(self, client: Client, data: bytes) -> None:
        """``data`` holds nothing of interest: keep only what a later message needs (the partial line)."""
        parts = data.rsplit(b"\n", 1)
        client.buf = parts[-1] if len(parts) == 2 else client.buf + data

    def pending(self, client: Client) -> bytes:
        """The start of a message not yet complete."""
        return client.buf

    def text(self, message: bytes) -> bytes | None:
        """The chat text of one message, where a timed mark would be: the line itself."""
        return message

    def texts(self, messages: list[bytes]) -> list[bytes | None]:
        """:meth:`text` of each message."""
        return messages  # type: ignore[return-value]


class ChatWire(LineWire):
    """chatservice's text protocol (docs/protocol.rst)."""

    name = "chat"
    fixed_length_lines = True
    ready_mark = b"Welcome to chatservice, "
    fail_marks = (b"Invalid Password", b"Error. ", b"is blocked", b"timed out", b"logged in elsewhere")
    presence_marks = (b" logged in\r", b" logged out\r")

    def login(self, name: str, password: str) -> bytes:
        return f"{name}\n{password}\n".encode()

    def broadcast(self, text: bytes) -> bytes:
        return b"broadcast " + text + b"\n"

    def direct(self, to: bytes, text: bytes) -> bytes:
        return b"message " + to + b" " + text + b"\n"

    def login_notice(self, line: bytes) -> bytes | None:
        if line.endswith(b" logged in"):
            name = line[: -len(b" logged in")]
            if b" " not in name:
                return name
        return None


class IrcWire(LineWire):
    """IRC (RFC 2812) as ``twistd words`` and ngIRCd speak it; the room is a channel."""

    name = "irc"
    fixed_length_lines = True
    ready_mark = b" 366 "  # RPL_ENDOFNAMES: registered and joined
    fail_marks = (b"Login failed", b"ERROR :", b"No pod people")
    fail_numerics = re.compile(rb"(?m)^:\S+ (?:432|433|403|471) ")
    """Nick refused, no such channel, channel full: as the reply's numeric, never inside a text
    (``:server 255 nick :I have 433 clients`` is no error)."""

    def failure(self, window: bytes) -> bool:
        return super().failure(window) or self.fail_numerics.search(window) is not None
    presence_marks = (b" JOIN ", b" PART ", b" QUIT ")

    def __init__(self, spec: Obj) -> None:
        super().__init__(spec)
        self.channel = spec.get("channel", "#bench").encode()
        self.send_pass = bool(spec.get("irc_pass", False))
        if spec.get("irc_join_after_welcome"):
            # InspIRCd answers a JOIN that arrives before registration is complete with 451.
            self.welcome_mark = b" 001 "

    def login(self, name: str, password: str) -> bytes:
        lines = []
        if self.send_pass:
            lines.append(f"PASS {password}\r\n")
        lines.append(f"NICK {name}\r\nUSER {name} 0 * :{name}\r\n")
        text = "".join(lines).encode()
        return text if self.welcome_mark else text + self.after_welcome()

    def after_welcome(self) -> bytes:
        return b"JOIN " + self.channel + b"\r\n"

    def broadcast(self, text: bytes) -> bytes:
        return b"PRIVMSG " + self.channel + b" :" + text + b"\r\n"

    def direct(self, to: bytes, text: bytes) -> bytes:
        return b"PRIVMSG " + to + b" :" + text + b"\r\n"

    def login_notice(self, line: bytes) -> bytes | None:
        if line.startswith(b":") and b" JOIN " in line:
            return line[1:].split(b"!", 1)[0]
        return None


class JsonWire(LineWire):
    """chatservice's JSON lines (docs/protocol.rst, *JSON lines*) over plain TCP.

    The first line is JSON, so the server never greets in text.  A message's
    chat text is its ``"message"`` field: only the messages that carry a
    timed mark are parsed (probes); the others are counted with ``bytes.count``
    like the text protocol's, since the mark stands in the JSON text as sent.
    """

    name = "json"
    ready_mark = b'"type":"login","success":true'
    fail_marks = (b'"success":false', b'"type":"error"', b'"type":"disconnect"')

    def encode(self, obj: Obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode() + b"\n"

    def login(self, name: str, password: str) -> bytes:
        return self.encode({"type": "login", "user": name, "password": password})

    def broadcast(self, text: bytes) -> bytes:
        return self.encode({"type": "broadcast", "message": text.decode()})

    def direct(self, to: bytes, text: bytes) -> bytes:
        return self.encode({"type": "message", "to": to.decode(), "message": text.decode()})

    def text(self, message: bytes) -> bytes | None:
        try:
            obj = json.loads(message)
        except ValueError:
            return None
        return self._message(obj)

    def texts(self, messages: list[bytes]) -> list[bytes | None]:
        """The messages parsed as one JSON array: a third of the time of one ``json.loads`` each."""
        if not messages:
            return []
        try:
            objs = json.loads(b"[" + b",".join(messages) + b"]")
        except ValueError:
            return [self.text(message) for message in messages]
        return [self._message(obj) for obj in objs]

    @staticmethod
    def _message(obj: Any) -> bytes | None:
        text = obj.get("message") if isinstance(obj, dict) else None
        return text.encode() if isinstance(text, str) else None


class WebSocketWire(JsonWire):
    """The same JSON messages over a WebSocket (``twistd chat --web``, path ``/ws``): one object a message.

    The client sends the HTTP upgrade, waits for ``101`` (and checks
    ``Sec-WebSocket-Accept``), then logs in.  Everything it sends is one
    masked text frame (:func:`ws_client_frame`); what the server sends is
    unmasked text frames, cut into messages by the client's
    :class:`WebSocketReader`.  Counting receivers never deframe: the server's
    frames are unmasked and never fragmented (wsproto sends a message as one
    frame), so each message's mark stands whole in the byte stream, and a
    frame header (``0x81`` and the length) cannot contain one.
    """

    name = "websocket"
    path = "/ws"

    def encode(self, obj: Obj) -> bytes:
        return ws_client_frame(json.dumps(obj, separators=(",", ":")).encode())

    def opening(self, client: Client) -> bytes:
        key = base64.b64encode(os.urandom(16))
        client.accept = ws_accept(key)
        client.on_data = Client.upgrade_data
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.spec['port']}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        ).encode() + b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"

    def upgraded(self, client: Client, head: bytes) -> str | None:
        """Why the upgrade response ``head`` (up to the blank line) is not a success, or ``None``."""
        status = head.split(b"\r\n", 1)[0]
        if not status.startswith(b"HTTP/1.1 101"):
            return f"upgrade refused: {status.decode(errors='replace')}"
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept":
                if value.strip() == client.accept:
                    return None
                return "wrong Sec-WebSocket-Accept"
        return "no Sec-WebSocket-Accept"

    def messages(self, client: Client, data: bytes) -> list[bytes]:
        reader = client.reader
        assert reader is not None, "this client no longer deframes (a counting receiver)"
        messages = reader.feed(data)
        if reader.pings:
            for payload in reader.pings:
                client.send(ws_client_frame(payload, OP_PONG))
            reader.pings.clear()
        return messages

    def skip(self, client: Client, data: bytes) -> None:
        self.messages(client, data)

    def pending(self, client: Client) -> bytes:
        reader = client.reader
        return b"".join(reader.parts or ()) + reader.buf if reader is not None else b""


WIRES: dict[str, type[LineWire]] = {"chat": ChatWire, "irc": IrcWire, "json": JsonWire, "websocket": WebSocketWire}


def make_wire(spec: Obj) -> LineWire:
    return WIRES[spec["protocol"]](spec)


# WebSocket framing (RFC 6455) ---------------------------------------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketError(Exception):
    """The server broke RFC 6455 framing."""


def ws_accept(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def ws_mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR ``key`` (4 bytes) repeated: masking and unmasking alike (RFC 6455 5.3)."""
    size = len(payload)
    if not size:
        return b""
    keys = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")).to_bytes(size, "little")


def ws_client_frame(payload: bytes, opcode: int = OP_TEXT, key: bytes | None = None) -> bytes:
    """``payload`` as one final frame, masked as every client frame must be (a random key by default)."""
    if key is None:
        key = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + key + ws_mask(payload, key)


class WebSocketReader:
    """Server frames in, whole messages out: fragments joined, pings kept to be answered.

    :attr:`pings` holds the payloads of the pings received (the caller sends
    the pongs); :attr:`close` the payload of a close frame, once one came.
    """

    __slots__ = ("buf", "parts", "pings", "close")

    def __init__(self) -> None:
        self.buf = b""
        self.parts: list[bytes] | None = None
        """The fragments of a message under way, ``None`` between messages."""
        self.pings: list[bytes] = []
        self.close: bytes | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads of the text and binary messages completed by ``data``."""
        buf = self.buf + data if self.buf else data
        size = len(buf)
        pos = 0
        out: list[bytes] = []
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            if second & 0x80:
                raise WebSocketError("a masked frame from the server")
            if first & 0x70:
                raise WebSocketError("reserved bits set (no extension was negotiated)")
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[start : start + 8], "big")
                start += 8
            end = start + length
            if end > size:
                break
            payload = buf[start:end]
            pos = end
            opcode = first & 0x0F
            if opcode & 0x08:
                if not first & 0x80 or length > 125:
                    raise WebSocketError("a fragmented or long control frame")
                if opcode == OP_PING:
                    self.pings.append(payload)
                elif opcode == OP_CLOSE:
                    self.close = payload
                continue
            if opcode == OP_CONTINUATION:
                if self.parts is None:
                    raise WebSocketError("a continuation frame outside a message")
                self.parts.append(payload)
                if first & 0x80:
                    out.append(b"".join(self.parts))
                    self.parts = None
            elif self.parts is not None:
                raise WebSocketError("a new message inside a fragmented one")
            elif first & 0x80:
                out.append(payload)
            else:
                self.parts = [payload]
        self.buf = buf[pos:]
        return out


# The event loop ------------------------------------------------------------------------


class Loop:
    """A minimal level-triggered epoll loop with timers."""

    def __init__(self) -> None:
        self.ep = select.epoll()
        self.clients: dict[int, Client] = {}
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.last_rx = time.monotonic()
        self.rx_bytes = 0
        self.reads = 0
        """``recv`` calls that returned data (how finely the input arrived)."""
        self.coalesce = 0.0
        """Seconds to sleep when the loop is behind (input was waiting at two polls in
        a row), so each read takes several messages.  Input that comes while the loop
        waits for it, or a few messages that come together, are read at once: a sleep
        there only adds to the latency measured (3 ms a wake-up; and a cross-node
        direct message wakes its sender's client once more than on one node, for the
        reply that comes after the store's write)."""
        self._behind = 0
        """Polls in a row that found input waiting."""

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self.timers, (when, self._seq, fn))

    def run(self, until: float, done: Callable[[], bool] | None = None) -> None:
        """Run until monotonic time ``until`` or until ``done()`` is true."""
        poll = self.ep.poll
        clients = self.clients
        timers = self.timers
        monotonic = time.monotonic
        next_check = 0.0
        while True:
            now = monotonic()
            if now >= until:
                return
            if done is not None and now >= next_check:
                if done():
                    return
                next_check = now + 0.005
            while timers and timers[0][0] <= now:
                heapq.heappop(timers)[2]()
            timeout = until - now
            if timers:
                timeout = min(timeout, timers[0][0] - now)
            timeout = max(0.0, min(timeout, 0.02))
            events = poll(0, 8192) if self.coalesce else None
            if events:
                self._behind += 1
                if self._behind > 1:
                    time.sleep(self.coalesce)  # behind: let more arrive, read them together
            else:
                self._behind = 0
                events = poll(timeout, 8192)
            if events:
                self.last_rx = monotonic()
            for fd, mask in events:
                client = clients.get(fd)
                if client is None:
                    continue
                if mask & EPOLLOUT:
                    client.on_writable()
                if mask & EPOLL_READ and client.sock is not None:
                    client.on_readable()

    def settle(self, quiet: float, limit: float) -> bool:
        """Run until nothing was received for ``quiet`` seconds (at most ``limit`` s)."""
        deadline = time.monotonic() + limit
        self.last_rx = time.monotonic()
        while time.monotonic() < deadline:
            self.run(min(deadline, time.monotonic() + 0.1))
            if time.monotonic() - self.last_rx >= quiet:
                return True
        return False


class Client:
    """One connection: connects, logs in, then hands what it reads to ``on_data``."""

    __slots__ = (
        "loop", "wire", "index", "name", "password", "sock", "fd", "wbuf", "connecting",
        "ready", "failed", "closed_by_peer", "on_data", "buf", "tail", "count",
        "started", "ready_at", "on_ready", "on_fail", "listening", "rcvbuf", "reader", "accept",
        "welcomed", "rx", "bytes_only",
    )

    def __init__(self, loop: Loop, wire: LineWire, index: int, name: str, password: str) -> None:
        self.loop = loop
        self.wire = wire
        self.index = index
        self.name = name
        self.password = password
        self.sock: socket.socket | None = None
        self.fd = -1
        self.wbuf = bytearray()
        self.connecting = False
        self.ready = False
        self.failed: str | None = None
        self.closed_by_peer = False
        self.on_data: Callable[[Client, bytes], None] = Client.login_data
        self.buf = b""
        self.tail = b""
        self.count = 0
        self.started = 0.0
        self.ready_at = 0.0
        self.on_ready: Callable[[Client], None] | None = None
        self.on_fail: Callable[[Client], None] | None = None
        self.listening = True
        self.rcvbuf: int | None = None
        self.reader: WebSocketReader | None = None
        """A WebSocket client's deframer, from the upgrade on (``None``: not deframing)."""
        self.accept = b""
        self.welcomed = False
        """Whether the rest of the login went out after the wire's ``welcome_mark``."""
        self.rx = 0
        """Bytes received since a fan-out began counting them."""
        self.bytes_only = False
        """Only count what arrives (into :attr:`rx`), dropped by the kernel uncopied (``MSG_TRUNC``)."""

    # Connection ------------------------------------------------------------------

    def connect(self, port: int) -> None:
        self.started = time.monotonic()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:
            pass
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        try:
            sock.bind((source_address(self.index), 0))
        except OSError:
            pass
        err = sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.fail(f"connect: {os.strerror(err)}")
            return
        self.sock = sock
        self.fd = sock.fileno()
        self.connecting = True
        self.loop.clients[self.fd] = self
        self.loop.ep.register(self.fd, EPOLLIN | EPOLLOUT)
        self.wbuf += self.wire.opening(self)

    def fail(self, reason: str) -> None:
        """Record why the login did not succeed, close, and tell ``on_fail``."""
        if self.failed is None:
            self.failed = reason
        self.close()
        if self.on_fail is not None:
            on_fail, self.on_fail = self.on_fail, None
            on_fail(self)

    def close(self) -> None:
        sock = self.sock
        if sock is None:
            return
        self.sock = None
        self.loop.clients.pop(self.fd, None)
        try:
            if self.listening:
                self.loop.ep.unregister(self.fd)
        except OSError:
            pass
        sock.close()

    def stop_reading(self) -> None:
        """Never read again (the socket stays open; the kernel buffer fills up)."""
        if self.sock is not None and self.listening:
            self.listening = False
            self.loop.ep.unregister(self.fd)
            self.loop.clients.pop(self.fd, None)

    def peer_closed(self) -> bool:
        """Whether the server closed or reset this connection (without reading it)."""
        if self.sock is None:
            return self.closed_by_peer
        try:
            if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                return True
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        except OSError:
            return True
        return info[0] in (7, 8)  # TCP_CLOSE, TCP_CLOSE_WAIT

    def send(self, data: bytes) -> None:
        if self.sock is None:
            return
        if self.connecting or self.wbuf:
            self.wbuf += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.lost()
            return
        if sent < len(data):
            self.wbuf += data[sent:]
            self.loop.ep.modify(self.fd, EPOLLIN | EPOLLOUT)

    def on_writable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        if self.connecting:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.fail(f"connect: {os.strerror(err)}")
                return
            self.connecting = False
        if self.wbuf:
            try:
                sent = sock.send(self.wbuf)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.lost()
                return
            del self.wbuf[:sent]
        if not self.wbuf and self.listening:
            self.loop.ep.modify(self.fd, EPOLLIN)

    def on_readable(self) -> None:
        # recv_into one shared buffer: recv(256 KiB) would allocate (mmap) that much each time.
        # A receiver that only counts bytes reads with TCP's MSG_TRUNC: the kernel drops
        # them instead of copying them (tcp(7)).
        try:
            size = self.sock.recv_into(_RECV_BUFFER, RECV_SIZE, socket.MSG_TRUNC if self.bytes_only else 0)  # type: ignore[union-attr]
        except BlockingIOError:
            return
        except OSError:
            self.lost()
            return
        if not size:
            self.lost()
            return
        loop = self.loop
        loop.rx_bytes += size
        loop.reads += 1
        if self.bytes_only:
            self.rx += size
        else:
            self.on_data(self, _RECV_VIEW[:size].tobytes())

    def lost(self) -> None:
        self.closed_by_peer = True
        if not self.ready:
            self.fail("closed by server before login")
        else:
            self.close()

    # Data handlers -------------------------------------------------------------------

    def upgrade_data(self, data: bytes) -> None:
        """A WebSocket client's first bytes: the HTTP response to its upgrade; then it logs in."""
        window = self.buf + data
        end = window.find(b"\r\n\r\n")
        if end < 0:
            if len(window) > 16384:
                self.fail("no end to the upgrade response")
            else:
                self.buf = window
            return
        error = self.wire.upgraded(self, window[:end])  # type: ignore[attr-defined]
        if error is not None:
            self.fail(error)
            return
        self.buf = b""
        self.reader = WebSocketReader()
        self.on_data = Client.login_data
        self.send(self.wire.login(self.name, self.password))
        if len(window) > end + 4:
            self.login_data(window[end + 4 :])

    def login_data(self, data: bytes) -> None:
        if self.reader is not None:
            # Follow the frames, so that the reader is in step when messages matter.
            self.wire.skip(self, data)
        # Only the end of what came before can hold the start of a mark.
        window = self.buf + data
        welcome = self.wire.welcome_mark
        if welcome is not None and not self.welcomed and welcome in window:
            self.welcomed = True
            self.send(self.wire.after_welcome())
        if self.wire.ready_mark in window:
            self.ready = True
            self.ready_at = time.monotonic()
            self.buf = b""
            self.on_data = Client.discard
            if self.on_ready is not None:
                self.on_ready(self)
            return
        if self.wire.failure(window):
            self.fail(window[-300:].decode(errors="replace").strip())
            return
        self.buf = window[-300:]

    def discard(self, data: bytes) -> None:
        if self.reader is not None:
            self.wire.skip(self, data)

    def count_mark(self, data: bytes, mark: bytes) -> None:
        """Count ``mark`` in the stream, also across two reads."""
        edge = len(mark) - 1
        self.count += data.count(mark) + (self.tail + data[:edge]).count(mark)
        self.tail = data[-edge:]

    def lines(self, data: bytes) -> list[bytes]:
        """The complete lines of the stream so far (CR LF or LF)."""
        buf = self.buf + data
        parts = buf.split(b"\n")
        self.buf = parts.pop()
        return parts


# Shared steps ------------------------------------------------------------------------------


class Marker:
    """Tells :mod:`bench.run` where we are and waits until it has read ``/proc``."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, name: str, **info: Any) -> None:
        line = {"mark": name, "t": round(time.monotonic() - self.t0, 3), **info}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        sys.stdin.readline()


def log_in_all(
    loop: Loop,
    clients: list[Client],
    port: int | list[int],
    concurrency: int,
    limit: float,
) -> Obj:
    """Connect and log in ``clients``, at most ``concurrency`` at once, in at most ``limit`` s.

    :param port: the server's port, or the ports of several cluster nodes:
        client ``i`` then connects to ``port[i % len(port)]`` (so the two
        users of a ping-pong pair, ``2p`` and ``2p + 1``, are on different
        nodes of a two-node cluster).
    """
    ports = port if isinstance(port, list) else [port]
    pending = list(reversed(clients))
    in_flight = 0
    state = {"ready": 0, "failed": 0}

    def finished(client: Client) -> None:
        nonlocal in_flight
        in_flight -= 1
        state["ready"] += 1
        client.on_fail = None
        start_more()

    def failed(client: Client) -> None:
        nonlocal in_flight
        in_flight -= 1
        state["failed"] += 1
        start_more()

    def start_more() -> None:
        nonlocal in_flight
        while pending and in_flight < concurrency:
            client = pending.pop()
            client.on_ready = finished
            client.on_fail = failed
            in_flight += 1
            client.connect(ports[client.index % len(ports)])

    coalesce, loop.coalesce = loop.coalesce, 0.0  # a login waits for each reply: no added delay
    started = time.monotonic()
    start_more()
    deadline = started + limit
    loop.run(deadline, lambda: state["ready"] + state["failed"] >= len(clients))
    elapsed = time.monotonic() - started
    loop.coalesce = coalesce
    ready = [c for c in clients if c.ready]
    failures: dict[str, int] = {}
    for c in clients:
        if c.failed is not None:
            key = c.failed[:80]
            failures[key] = failures.get(key, 0) + 1
    login_latency = [c.ready_at - c.started for c in ready]
    if ready:
        last = max(c.ready_at for c in ready)
        elapsed = min(elapsed, last - started)
    return {
        "wanted": len(clients),
        "logged_in": len(ready),
        "failed": sum(failures.values()),
        "failures": failures,
        "seconds": round(elapsed, 3),
        "complete": len(ready) == len(clients),
        "logins_per_s": round(len(ready) / elapsed, 1) if elapsed > 0 else None,
        "login_latency": summary(login_latency),
    }


def names(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}{i}" for i in range(start, start + count)]


def make_clients(loop: Loop, wire: LineWire, spec: Obj, prefix: str, count: int, start: int = 0) -> list[Client]:
    """``count`` clients named ``prefix`` and their index (after ``spec``'s ``account_prefix``, if any)."""
    password = spec["password_format"]
    return [
        Client(loop, wire, start + i, name, password.format(name=name))
        for i, name in enumerate(names(spec.get("account_prefix", "") + prefix, count, start))
    ]


def probe_indices(count: int, probes: int) -> set[int]:
    """``probes`` receivers spread evenly, the first and the last included."""
    if count <= probes:
        return set(range(count))
    return {round(i * (count - 1) / (probes - 1)) for i in range(probes)}


class CpuWindow:
    """This process's CPU time over a window, as a share of one core; and its time kept off it."""

    def __init__(self) -> None:
        self.cpu = cpu_seconds()
        self.kernel = kernel_seconds()
        self.wall = time.monotonic()
        self.waited = run_queue_seconds()

    def percent(self) -> float:
        wall = time.monotonic() - self.wall
        return round(100 * (cpu_seconds() - self.cpu) / wall, 1) if wall > 0 else 0.0

    def kernel_percent(self) -> float:
        """The part of :meth:`percent` spent in the kernel."""
        wall = time.monotonic() - self.wall
        return round(100 * (kernel_seconds() - self.kernel) / wall, 1) if wall > 0 else 0.0

    def wait_percent(self) -> float | None:
        """Share of the window spent waiting for the core (taken by other work on the machine)."""
        wall = time.monotonic() - self.wall
        waited = run_queue_seconds()
        if waited is None or self.waited is None or wall <= 0:
            return None
        return round(100 * (waited - self.waited) / wall, 1)


# Broadcast fan-out (workloads 2, 3 background, 5) --------------------------------------------------


class FanOut:
    """Receivers in the room, senders broadcasting timed messages to it."""

    def __init__(self, loop: Loop, wire: LineWire, receivers: list[Client], senders: list[Client], probes: int, pad: int) -> None:
        self.loop = loop
        self.wire = wire
        self.receivers = receivers
        self.senders = senders
        self.pad = PAD[:pad].encode()
        self.step = 0
        self.latency: list[float] = []
        self.received_by_probe: dict[int, set[int]] = {}
        self.sent_seqs: list[int] = []
        self.seq = 0
        self.parsed = 0
        """Timed messages the probes parsed (of any step): must equal the marks they counted."""
        self.line_size: int | None = None
        """Bytes of one timed broadcast as every receiver gets it, once :meth:`calibrate` found
        them all alike (the counting receivers then count bytes)."""
        self.counting = "marks"
        chosen = probe_indices(len(receivers), probes)
        self.probes = [receivers[i] for i in sorted(chosen)]
        self.low_water = 1
        loop.coalesce = FANOUT_COALESCE
        for i, client in enumerate(receivers):
            client.count = 0
            client.rx = 0
            client.tail = b""
            client.buf = b""
            client.on_data = self.probe_data if i in chosen else FanOut.count_data
            if i not in chosen:
                client.reader = None  # counts marks from here on, never deframes
        for sender in senders:
            sender.on_data = Client.discard

    @staticmethod
    def count_data(client: Client, data: bytes) -> None:
        client.rx += len(data)
        client.count_mark(data, BROADCAST_MARK)

    def probe_data(self, client: Client, data: bytes) -> None:
        client.rx += len(data)
        client.count_mark(data, BROADCAST_MARK)
        wire = self.wire
        if BROADCAST_MARK not in data and BROADCAST_MARK not in wire.pending(client) + data[:3]:
            # Nothing of ours in it: keep only the last partial message.
            wire.skip(client, data)
            return
        now = mono_ns()
        step = self.step
        seen = self.received_by_probe.setdefault(client.index, set())
        for line in wire.texts([m for m in wire.messages(client, data) if BROADCAST_MARK in m]):
            at = -1 if line is None else line.find(BROADCAST_MARK)
            if at < 0:
                continue
            fields = line[at + 4 :].split(b" ", 3)
            try:
                msg_step, sched, seq = int(fields[0]), int(fields[1]), int(fields[2])
            except (ValueError, IndexError):
                continue
            self.parsed += 1
            if msg_step != step:
                continue
            seen.add(seq)
            self.latency.append((now - sched) / 1e9)

    def delivered(self) -> int:
        size = self.line_size
        return sum(c.rx // size if c.bytes_only else c.count for c in self.receivers)  # type: ignore[operator]

    def timed(self, step: int, sched: int, seq: int) -> bytes:
        """The wire form of a timed broadcast."""
        return self.wire.broadcast(TIMED_BROADCAST % (step, sched, seq, self.pad))

    def calibrate(self, limit: float = 10.0) -> str:
        """Let the counting receivers count bytes instead of marks, if every timed line is as long.

        Counting a mark in what a receiver reads (``bytes.count``) costs the load
        generator about 0.1 µs a line, about as much as everything else it does
        for a line; a count of bytes read with ``MSG_TRUNC`` costs nothing per
        line.  Each sender broadcasts one timed message (step 0, which no step
        measures); if every receiver then got the same number of bytes from
        each, and the senders' numbers are alike, that is the length of every
        timed line (fixed-width fields; the wire's lines carry nothing else
        that varies), and the counting receivers count ``bytes // length``.
        Every step checks it again on the probes, which count both.

        :return: ``"bytes"`` or ``"marks"`` (the wire's lines vary, or the
            receivers got other bytes meanwhile).
        """
        if not self.wire.fixed_length_lines or not self.probes:
            return self.counting
        sizes = set()
        loop = self.loop
        for sender in self.senders:
            before = [c.rx for c in self.receivers]
            marks = sum(c.count for c in self.probes)
            sender.send(self.timed(0, mono_ns(), 0))
            loop.run(time.monotonic() + limit, lambda: sum(c.count for c in self.probes) >= marks + len(self.probes))
            loop.settle(0.2, limit)
            got = {c.rx - b for c, b in zip(self.receivers, before)}
            if len(got) != 1:
                return self.counting
            sizes |= got
        if len(sizes) != 1 or min(sizes) <= 0:
            return self.counting
        (self.line_size,) = sizes
        probes = set(map(id, self.probes))
        for client in self.receivers:
            if id(client) not in probes:
                client.bytes_only = True
        self.counting = "bytes"
        return self.counting

    def set_low_water(self, size: int) -> None:
        """Have the kernel wake us for a counting receiver only once ``size`` bytes wait (``SO_RCVLOWAT``).

        Each wake-up costs a ``recv`` and a pass through the loop whatever it
        carries, so with many receivers the load generator's CPU goes to wake-ups
        of one or two messages each.  The probes are never held back (latency is
        theirs to measure), and the drain counts everything (``size`` 1)."""
        size = max(1, min(size, COUNT_BATCH_MAX))
        if size == self.low_water:
            return
        self.low_water = size
        probes = set(map(id, self.probes))
        for client in self.receivers:
            if client.sock is not None and id(client) not in probes:
                try:
                    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
                except OSError:
                    pass

    def run_step(self, rate: float, seconds: float, drain: float) -> Obj:
        """Send ``rate`` broadcasts a second for ``seconds``; wait at most ``drain`` s for them."""
        loop = self.loop
        self.step += 1
        step = self.step
        self.latency = []
        self.received_by_probe = {c.index: set() for c in self.probes}
        seqs: list[int] = []
        interval = 1.0 / rate
        start = time.monotonic() + 0.05
        start_ns = mono_ns() + 50_000_000
        total = max(1, int(rate * seconds))
        state = {"next": 0}
        senders = self.senders

        def tick() -> None:
            now = time.monotonic()
            due = min(total, int((now - start) / interval) + 1)
            while state["next"] < due:
                k = state["next"]
                sched = start_ns + int(k * interval * 1e9)
                self.seq += 1
                seqs.append(self.seq)
                senders[k % len(senders)].send(timed(step, sched, self.seq))
                state["next"] = k + 1
            if state["next"] < total:
                loop.call_at(start + state["next"] * interval, tick)

        timed = self.timed
        line_size = self.line_size or len(timed(step, start_ns, self.seq + 1)) + 40
        self.set_low_water(int(rate * line_size * COUNT_BATCH_SECONDS))
        cpu = CpuWindow()
        before = self.delivered()
        probes_before = sum(c.count for c in self.probes)
        probe_bytes_before = sum(c.rx for c in self.probes)
        parsed_before = self.parsed
        loop.call_at(start, tick)
        end = start + total * interval
        loop.run(end)
        self.set_low_water(1)
        window = time.monotonic() - start
        during = self.delivered() - before
        loadgen_cpu = cpu.percent()
        loadgen_wait = cpu.wait_percent()
        expected_each = len(seqs)
        wanted = expected_each * len(self.receivers)
        drain_end = time.monotonic() + drain
        loop.run(drain_end, lambda: self.delivered() - before >= wanted)
        lost = sum(expected_each - len(self.received_by_probe.get(c.index, ())) for c in self.probes)
        lost = max(0, lost)
        delivered_total = self.delivered() - before
        lat = summary(self.latency, lost)
        # What the probes parsed (lines or WebSocket frames, then JSON) must match what counting
        # found in the same bytes: a check of the framing that every other receiver trusts.
        probes_counted = sum(c.count for c in self.probes) - probes_before
        probes_parsed = self.parsed - parsed_before
        # The probes count marks and bytes: by bytes, the counting receivers' way, they must agree.
        probe_bytes = sum(c.rx for c in self.probes) - probe_bytes_before
        bytes_agree = self.line_size is None or probe_bytes == probes_counted * self.line_size
        return {
            "step": step,
            "offered_msgs_per_s": round(rate, 2),
            "offered_deliveries_per_s": round(rate * len(self.receivers), 1),
            "sent": expected_each,
            "delivered_per_s": round(during / window, 1) if window > 0 else None,
            "delivered_total": delivered_total,
            "deliveries_wanted": wanted,
            "latency": lat,
            "p99_s": p99_seconds(self.latency, lost),
            "loadgen_cpu_percent": loadgen_cpu,
            "loadgen_wait_percent": loadgen_wait,
            "probes_counted": probes_counted,
            "probes_parsed": probes_parsed,
            "counted_by": self.counting,
            "byte_counts_agree": bytes_agree,
            "seconds": round(window, 2),
        }


def open_room(loop: Loop, wire: LineWire, spec: Obj, receivers: int, senders: int, extra: list[Client] | None = None) -> tuple[list[Client], list[Client], Obj]:
    rx = make_clients(loop, wire, spec, "r", receivers)
    tx = make_clients(loop, wire, spec, "s", senders, start=receivers)
    everyone = rx + tx + (extra or [])
    login = log_in_all(loop, everyone, spec["port"], spec["concurrency"], spec["login_limit"])
    settled = loop.settle(spec.get("quiet", 1.0), spec["settle_limit"])
    login["settled"] = settled
    return rx, tx, login


# Workloads -------------------------------------------------------------------------------------


def w_login(spec: Obj, mark: Marker) -> Obj:
    """Workload 1: N idle clients connect and log in (IRC: register and join the room)."""
    loop = Loop()
    wire = make_wire(spec)
    clients = make_clients(loop, wire, spec, "u", spec["clients"])
    mark("before")
    cpu = CpuWindow()
    login = log_in_all(loop, clients, spec["port"], spec["concurrency"], spec["login_limit"])
    login["loadgen_cpu_percent"] = cpu.percent()
    mark("logged_in", logged_in=login["logged_in"])
    settled = loop.settle(spec.get("quiet", 1.0), spec["settle_limit"])
    login["settled"] = settled
    login["loadgen_cpu_percent_with_settle"] = cpu.percent()
    login["received_mib"] = round(loop.rx_bytes / 2**20, 1)
    mark("settled", logged_in=sum(1 for c in clients if c.ready and c.sock is not None))
    for c in clients:
        c.close()
    return login


def w_fanout(spec: Obj, mark: Marker) -> Obj:
    """Workload 2: broadcast fan-out to N receivers, the rate stepped up until p99 > 1 s."""
    loop = Loop()
    wire = make_wire(spec)
    rx, tx, login = open_room(loop, wire, spec, spec["receivers"], spec["senders"])
    result: Obj = {"login": login, "steps": []}
    if not login["complete"]:
        # Go on with the receivers that made it in time (reported), if the senders did.
        rx = [c for c in rx if c.ready and c.sock is not None]
        if len(rx) < len(tx) or not all(c.ready for c in tx) or len(rx) < spec["receivers"] // 2:
            result["error"] = "not every client logged in"
            return result
        result["receivers_actual"] = len(rx)
    fan = FanOut(loop, wire, rx, tx, spec["probes"], spec["pad"])
    result["counted_by"] = fan.calibrate()
    result["timed_line_bytes"] = fan.line_size
    rate = spec["start_rate"]
    deadline = time.monotonic() + spec["time_limit"]
    last_pass: float | None = None
    ceiling: float | None = None
    for _ in range(spec["max_steps"]):
        if time.monotonic() + spec["step_seconds"] + spec["drain"] > deadline:
            result["stopped"] = "time limit"
            break
        mark("step_start", rate=rate)
        step = fan.run_step(rate, spec["step_seconds"], spec["drain"])
        mark("step_end", rate=rate)
        result["steps"].append(step)
        log(f"{spec['server']} N={spec['receivers']} rate {rate:.1f}/s: delivered {step['delivered_per_s']}/s, p99 {step['latency']['p99_ms']} ms, loadgen {step['loadgen_cpu_percent']}%")
        if step["loadgen_cpu_percent"] > spec["loadgen_cpu_limit"]:
            result["stopped"] = "load generator CPU limit"
            break
        caught_up = loop.settle(0.5, 10.0)
        if step["p99_s"] > 1.0 or not caught_up:
            # Too fast: bisect (geometrically) between the last rate that held and this one.
            ceiling = rate if ceiling is None else min(ceiling, rate)
            if last_pass is not None and ceiling / last_pass > 1.15:
                rate = math.sqrt(last_pass * ceiling)
                if not caught_up and not loop.settle(0.5, 20.0):
                    result["stopped"] = "server did not catch up"
                    break
                continue
            if last_pass is None and len(result["steps"]) < 4:
                # Even the first rate (the same for every server) was too fast: go down.
                rate /= 4
                if not caught_up and not loop.settle(0.5, 20.0):
                    result["stopped"] = "server did not catch up"
                    break
                continue
            result["stopped"] = "p99 > 1 s"
            break
        last_pass = rate
        offered = step["offered_deliveries_per_s"]
        healthy = step["p99_s"] < 0.2 and step["delivered_per_s"] >= 0.95 * offered
        following = rate * (2.0 if healthy else 1.25)
        if ceiling is not None:
            if ceiling / rate <= 1.15:
                result["stopped"] = "converged below the rate where p99 > 1 s"
                break
            following = min(following, math.sqrt(rate * ceiling))
        rate = following
    else:
        result["stopped"] = "max steps"
    for step in result["steps"]:
        step["p99_s"] = None if math.isinf(step["p99_s"]) else round(step["p99_s"], 4)
    for c in rx + tx:
        c.close()
    return result


def w_direct(spec: Obj, mark: Marker) -> Obj:
    """Workload 3: direct-message ping-pong of pairs among N users, broadcasts in the background."""
    loop = Loop()
    wire = make_wire(spec)
    users = make_clients(loop, wire, spec, "u", spec["users"])
    senders = make_clients(loop, wire, spec, "s", 1, start=spec["users"])
    login = log_in_all(loop, users + senders, spec["port"], spec["concurrency"], spec["login_limit"])
    login["settled"] = loop.settle(spec.get("quiet", 1.0), spec["settle_limit"])
    result: Obj = {"login": login}
    if not login["complete"]:
        result["error"] = "not every client logged in"
        return result
    pairs = spec["pairs"]
    rtts: list[float] = []
    answered: set[tuple[int, int]] = set()
    name_bytes = [u.name.encode() for u in users]

    def data(client: Client, chunk: bytes) -> None:
        client.count_mark(chunk, BROADCAST_MARK)
        edge = wire.pending(client) + chunk[:3]
        if PING_MARK not in chunk and PONG_MARK not in chunk and PING_MARK not in edge and PONG_MARK not in edge:
            wire.skip(client, chunk)
            return
        now = mono_ns()
        marked = [m for m in wire.messages(client, chunk) if PING_MARK in m or PONG_MARK in m]
        for line in wire.texts(marked):
            if line is None:
                continue
            at = line.find(PING_MARK)
            if at >= 0:
                fields = line[at + 4 :].split(b" ", 3)
                # Answer at once, with the ping's own fields.
                partner = client.index ^ 1
                client.send(wire.direct(name_bytes[partner], b"zqq " + b" ".join(fields[:3])))
                continue
            at = line.find(PONG_MARK)
            if at >= 0:
                fields = line[at + 4 :].split(b" ", 3)
                try:
                    pair, seq, sched = int(fields[0]), int(fields[1]), int(fields[2])
                except (ValueError, IndexError):
                    continue
                if (pair, seq) not in answered:
                    answered.add((pair, seq))
                    rtts.append((now - sched) / 1e9)

    for u in users:
        u.on_data = data
        u.buf = b""
        u.count = 0
    for s in senders:
        s.on_data = Client.discard

    loop.coalesce = COALESCE
    seconds = spec["seconds"]
    interval = spec["ping_interval"]
    start = time.monotonic() + 0.1
    start_ns = mono_ns() + 100_000_000
    pings_sent = [0]
    pad = PAD[: spec["pad"]].encode()

    def pinger(pair: int, k: int) -> Callable[[], None]:
        def fire() -> None:
            offset = pair * interval / pairs + k * interval
            sched = start_ns + int(offset * 1e9)
            a = users[2 * pair]
            a.send(wire.direct(name_bytes[2 * pair + 1], b"zqp %d %d %d %s" % (pair, k, sched, pad)))
            pings_sent[0] += 1
            nxt = k + 1
            if (nxt + pair / pairs) * interval < seconds:
                loop.call_at(start + pair * interval / pairs + nxt * interval, pinger(pair, nxt))

        return fire

    for pair in range(pairs):
        loop.call_at(start + pair * interval / pairs, pinger(pair, 0))

    bg_rate = spec["background_rate"]
    bg_state = {"next": 0}
    bg_total = int(bg_rate * seconds)

    def background() -> None:
        if bg_total <= 0:
            return
        now = time.monotonic()
        bg_interval = 1.0 / bg_rate
        due = min(bg_total, int((now - start) / bg_interval) + 1)
        while bg_state["next"] < due:
            k = bg_state["next"]
            sched = start_ns + int(k * bg_interval * 1e9)
            senders[0].send(wire.broadcast(b"zqb 0 %d %d %s" % (sched, k, pad)))
            bg_state["next"] = k + 1
        if bg_state["next"] < bg_total:
            loop.call_at(start + bg_state["next"] * bg_interval, background)

    if bg_total > 0:
        loop.call_at(start, background)
    mark("run_start")
    cpu = CpuWindow()
    reads_before, bytes_before = loop.reads, loop.rx_bytes
    loop.run(start + seconds)
    loadgen_cpu = cpu.percent()
    loadgen_kernel = cpu.kernel_percent()
    reads, read_bytes = loop.reads - reads_before, loop.rx_bytes - bytes_before
    loadgen_wait = cpu.wait_percent()
    delivered = sum(u.count for u in users)
    loop.run(time.monotonic() + spec["drain"], lambda: len(answered) >= pings_sent[0])
    mark("run_end")
    lost = pings_sent[0] - len(answered)
    result.update({
        "pairs": pairs,
        "pings_sent": pings_sent[0],
        "pongs": len(answered),
        "rtt": summary(rtts, lost),
        "background_rate_msgs_per_s": bg_rate,
        "background_delivered_per_s": round(delivered / seconds, 1),
        "background_offered_per_s": round(bg_rate * len(users), 1),
        "loadgen_cpu_percent": loadgen_cpu,
        "loadgen_wait_percent": loadgen_wait,
        "loadgen_kernel_percent": loadgen_kernel,
        "reads_per_s": round(reads / seconds, 1),
        "bytes_per_read": round(read_bytes / reads, 1) if reads else 0,
        "seconds": seconds,
    })
    for c in users + senders:
        c.close()
    return result


def w_churn(spec: Obj, mark: Marker) -> Obj:
    """Workload 4: a share of N clients drop and reconnect (as another user) every second."""
    loop = Loop()
    wire = make_wire(spec)
    n = spec["clients"]
    spare = spec["spare"]
    accounts = make_clients(loop, wire, spec, "u", n + spare)
    online = accounts[:n]
    free = list(accounts[n:])
    login = log_in_all(loop, online, spec["port"], spec["concurrency"], spec["login_limit"])
    login["settled"] = loop.settle(spec.get("quiet", 1.0), spec["settle_limit"])
    result: Obj = {"login": login}
    if not login["complete"]:
        result["error"] = "not every client logged in"
        return result
    chosen = probe_indices(n, spec["probes"])
    probes = [online[i] for i in sorted(chosen)]
    churners = [c for i, c in enumerate(online) if i not in chosen]
    marks = wire.presence_marks
    scheduled: dict[bytes, int] = {}
    latency: list[float] = []
    seen: set[tuple[int, int]] = set()
    everyone: list[Client] = list(accounts)

    def count(client: Client, data: bytes) -> None:
        client.count += sum(data.count(m) for m in marks)

    def probe(client: Client, data: bytes) -> None:
        now = mono_ns()
        client.count += sum(data.count(m) for m in marks)
        for line in client.lines(data):
            who = wire.login_notice(line.rstrip(b"\r"))
            if who is None:
                continue
            sched = scheduled.get(who)
            if sched is not None and (client.index, sched) not in seen:
                seen.add((client.index, sched))
                latency.append((now - sched) / 1e9)

    for c in online:
        c.count = 0
        c.buf = b""
        c.on_data = probe if c.index in chosen else count
    for c in free:
        c.on_data = Client.login_data

    loop.coalesce = COALESCE
    per_second = spec["reconnects_per_s"]
    seconds = spec["seconds"]
    total = int(per_second * seconds)
    interval = 1.0 / per_second
    start = time.monotonic() + 0.1
    start_ns = mono_ns() + 100_000_000
    state = {"next": 0, "failed": 0, "logged_in": 0}
    queue = list(churners)
    retired: list[Client] = []

    def became_ready(client: Client) -> None:
        state["logged_in"] += 1
        client.on_data = count
        client.count = 0
        queue.append(client)

    def tick() -> None:
        now = time.monotonic()
        due = min(total, int((now - start) / interval) + 1)
        while state["next"] < due:
            k = state["next"]
            state["next"] = k + 1
            if not queue or not free:
                state["failed"] += 1
                continue
            leaving = queue.pop(0)
            leaving.close()
            retired.append(leaving)
            joining = free.pop(0)
            # The leaving account goes to the back of the free list, fresh.
            fresh = Client(loop, wire, leaving.index, leaving.name, leaving.password)
            fresh.on_data = Client.login_data
            free.append(fresh)
            everyone.append(fresh)
            scheduled[joining.name.encode()] = start_ns + int(k * interval * 1e9)
            joining.on_ready = became_ready
            joining.connect(spec["port"])
        if state["next"] < total:
            loop.call_at(start + state["next"] * interval, tick)

    loop.call_at(start, tick)
    mark("run_start")
    cpu = CpuWindow()
    loop.run(start + seconds)
    loadgen_cpu = cpu.percent()
    window = time.monotonic() - start
    notes = sum(c.count for c in everyone)
    loop.run(time.monotonic() + spec["drain"], lambda: len(latency) >= state["next"] * len(probes))
    mark("run_end")
    wanted = state["next"] * len(probes)
    lost = max(0, wanted - len(latency))
    failures: dict[str, int] = {}
    for c in everyone:
        if c.failed is not None:
            failures[c.failed[:80]] = failures.get(c.failed[:80], 0) + 1
    result.update({
        "clients": n,
        "reconnects": state["next"],
        "reconnects_logged_in": state["logged_in"],
        "reconnect_failures": failures,
        "notifications_per_s": round(notes / window, 1),
        "notifications_offered_per_s": round(2 * per_second * (n - 1), 1),
        "login_notice_latency": summary(latency, lost),
        "loadgen_cpu_percent": loadgen_cpu,
        "seconds": round(window, 2),
    })
    for c in list(loop.clients.values()):
        c.close()
    return result


def w_neverread(spec: Obj, mark: Marker) -> Obj:
    """Workload 5: workload 2 at a fixed rate with clients that never read."""
    loop = Loop()
    wire = make_wire(spec)
    readers = spec["never_readers"]
    stalled = make_clients(loop, wire, spec, "z", readers, start=spec["receivers"] + spec["senders"])
    for c in stalled:
        c.rcvbuf = NEVER_READER_RCVBUF
    rx, tx, login = open_room(loop, wire, spec, spec["receivers"], spec["senders"], extra=stalled)
    result: Obj = {"login": login}
    if not login["complete"]:
        result["error"] = "not every client logged in"
        return result
    for c in stalled:
        c.stop_reading()
    fan = FanOut(loop, wire, rx, tx, spec["probes"], spec["pad"])
    mark("run_start")
    step = fan.run_step(spec["rate"], spec["seconds"], spec["drain"])
    closed = sum(1 for c in stalled if c.peer_closed())
    mark("run_end")
    step["p99_s"] = None if math.isinf(step["p99_s"]) else round(step["p99_s"], 4)
    per_message = len(fan.timed(1, mono_ns(), 1)) + 30
    result.update({
        "run": step,
        "never_readers": readers,
        "never_readers_closed_by_server": closed,
        "bytes_sent_to_each_never_reader_approx": step["sent"] * per_message,
    })
    for c in rx + tx + stalled:
        c.close()
    return result


WORKLOADS = {
    "login": w_login,
    "fanout": w_fanout,
    "direct": w_direct,
    "churn": w_churn,
    "neverread": w_neverread,
}


def main() -> int:
    spec = json.loads(sys.stdin.readline())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    mark = Marker()
    wall = time.monotonic()
    cpu = cpu_seconds()
    result = WORKLOADS[spec["workload"]](spec, mark)
    wall = time.monotonic() - wall
    result["loadgen_total"] = {
        "cpu_s": round(cpu_seconds() - cpu, 2),
        "wall_s": round(wall, 2),
        "cpu_percent": round(100 * (cpu_seconds() - cpu) / wall, 1) if wall else None,
        "affinity": sorted(os.sched_getaffinity(0)),
    }
    sys.stdout.write(json.dumps({"result": result}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
