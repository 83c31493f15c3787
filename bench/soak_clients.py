"""The soak benchmark's clients: a line connection, logging in, and the misbehaving clients' base.

:mod:`bench.soak` (well-behaved users and the misbehaving minority),
:mod:`bench.attackers` (the attacks of issue 15) and
:mod:`bench.read_amplifier` build on these.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import ssl
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable, Sequence

from bench.servers import HOST

CLIENTS_PER_ADDRESS = 8
"""Clients sharing one loopback source address (the server allows 20 per address;
a reconnecting client may briefly hold two)."""

MAX_CYCLES = 10_000
"""Upper bound on the connections one misbehaving client opens in a run."""

CLOSING_TYPES = (b'"disconnect"', b'"outdated_client"', b'"banned"', b'"shutdown"', b'"login"')
"""JSON lines a connection parses even when it parses nothing else: how it may end."""

Obj = dict[str, Any]
LineHandler = Callable[["Conn", bytes, "Obj | None"], None]


def source_address(index: int) -> str:
    """The loopback address client ``index`` connects from (127.0.0.2 upwards)."""
    slot = index // CLIENTS_PER_ADDRESS
    return f"127.0.{slot // 250}.{2 + slot % 250}"


def passwords(count: int) -> dict[str, str]:
    """The accounts of a run: ``user<i>`` with password ``pw<i>``."""
    return {f"user{i}": f"pw{i}" for i in range(count)}


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values (``None`` when empty)."""
    if not ordered:
        return None
    rank = min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def latency_summary(samples: Iterable[float]) -> Obj:
    """Count, p50, p99 and max of ``samples`` (seconds), in milliseconds."""
    ordered = sorted(samples)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    return {
        "count": len(ordered),
        "p50_ms": ms(percentile(ordered, 0.50)),
        "p99_ms": ms(percentile(ordered, 0.99)),
        "max_ms": ms(ordered[-1] if ordered else None),
    }

def mib(kib: int | None) -> float | None:
    """KiB to MiB, rounded (``None`` stays ``None``)."""
    return None if kib is None else round(kib / 1024, 1)

# A line connection ---------------------------------------------------------------------


class Conn(asyncio.Protocol):
    """One client connection: splits lines, parses JSON ones, records how it ended.

    :param on_line: called for every received line, with the parsed object
        for lines that are JSON objects (``None`` otherwise).
    :param parse: parse every JSON line; when false only ``disconnect`` lines
        (and lines someone waits for) are parsed, to save this process's CPU.
    """

    def __init__(self, on_line: LineHandler | None = None, parse: bool = True) -> None:
        self.on_line = on_line
        self.parse = parse
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.close_error: BaseException | None = None
        self.closed_by_us = False
        self.disconnect_reason: str | None = None
        self.login_refusal: str | None = None
        self.last_line = b""
        self.bytes_in = 0
        self.bytes_out = 0
        self._writable = asyncio.Event()
        self._writable.set()
        self._waiters: list[tuple[Callable[[bytes, Obj | None], bool], asyncio.Future[Obj | None]]] = []

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        buffer = self.buffer
        buffer += data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            self._line(bytes(buffer[start:end]))
            start = end + 1
        if start:
            del buffer[:start]
        if len(buffer) > 1 << 20:  # a line this long is not ours to keep
            del buffer[:]

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.close_error = exc
        self._writable.set()
        if not self.closed.done():
            self.closed.set_result(None)
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"connection closed ({self.end_reason()})"))
        self._waiters.clear()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # Lines

    def _line(self, line: bytes) -> None:
        obj: Obj | None = None
        if line.strip():
            self.last_line = line
        if line.startswith(b"{") and (
            self.parse or self._waiters or any(kind in line for kind in CLOSING_TYPES)
        ):
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                obj = parsed
                if obj.get("type") == "disconnect":
                    self.disconnect_reason = str(obj.get("reason"))
                elif obj.get("type") in ("outdated_client", "banned", "shutdown"):
                    self.disconnect_reason = str(obj.get("type"))
                elif obj.get("type") == "login" and obj.get("success") is False:
                    self.login_refusal = str(obj.get("reason"))
        if self._waiters:
            for entry in list(self._waiters):
                predicate, waiter = entry
                if not waiter.done() and predicate(line, obj):
                    waiter.set_result(obj)
                    self._waiters.remove(entry)
        if self.on_line is not None:
            self.on_line(self, line, obj)

    def expect(self, predicate: Callable[[bytes, Obj | None], bool]) -> asyncio.Future[Obj | None]:
        """A future for the next line satisfying ``predicate(line, obj)`` (its object)."""
        waiter: asyncio.Future[Obj | None] = asyncio.get_running_loop().create_future()
        if self.closed.done():
            waiter.set_exception(ConnectionError("connection closed"))
        else:
            self._waiters.append((predicate, waiter))
        return waiter

    # Writing and closing

    @property
    def is_closed(self) -> bool:
        return self.closed.done()

    def write(self, data: bytes) -> None:
        """Queue ``data`` (dropped silently once closed)."""
        if self.transport is not None and not self.closed.done() and not self.transport.is_closing():
            self.transport.write(data)
            self.bytes_out += len(data)

    def send_json(self, obj: Obj) -> None:
        self.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    async def drain(self, until: float) -> None:
        """Wait until the transport takes more data, the connection closes, or ``until``."""
        loop = asyncio.get_running_loop()
        while not self._writable.is_set() and not self.closed.done():
            remaining = until - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._writable.wait(), min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass

    def close(self) -> None:
        """Close normally (FIN after what is queued)."""
        self.closed_by_us = True
        if self.transport is not None:
            self.transport.close()

    def reset(self) -> None:
        """Close abruptly with a TCP reset (``SO_LINGER`` 0)."""
        self.closed_by_us = True
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.transport.abort()

    def end_reason(self) -> str:
        """Why the server ended this connection: its ``disconnect`` reason, else how."""
        if self.disconnect_reason is not None:
            return self.disconnect_reason
        if self.login_refusal is not None:
            return f"login refused: {self.login_refusal}"
        if self.last_line and not self.last_line.startswith(b"{"):
            # A text connection: the server's last words are its reason.
            text = self.last_line.decode("utf-8", "replace").strip()
            return f"text: {text[:60]}"
        if isinstance(self.close_error, ConnectionResetError):
            return "reset (no reason sent)"
        if self.close_error is not None:
            return f"{type(self.close_error).__name__} (no reason sent)"
        return "eof (no reason sent)"


async def open_conn(
    port: int,
    source: str,
    conn: Conn,
    rcvbuf: int | None = None,
    timeout: float = 10.0,
    tls: ssl.SSLContext | None = None,
) -> Conn:
    """Connect ``conn`` from ``source`` to the server (over TLS with the context ``tls``)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, (HOST, port)), timeout)
        if tls is None:
            await loop.create_connection(lambda: conn, sock=sock)
        else:
            await asyncio.wait_for(
                loop.create_connection(lambda: conn, sock=sock, ssl=tls, server_hostname="localhost"), timeout
            )
    except BaseException:
        sock.close()
        raise
    return conn


def _is_login_reply(line: bytes, obj: Obj | None) -> bool:
    return obj is not None and obj.get("type") == "login"


async def json_login(conn: Conn, user: str, password: str, timeout: float = 20.0) -> Obj:
    """Log in over JSON (the first line switches the connection); return the ``login`` reply."""
    reply = conn.expect(_is_login_reply)
    conn.send_json({"type": "login", "user": user, "password": password})
    obj = await asyncio.wait_for(reply, timeout)
    assert obj is not None
    return obj


async def text_login(conn: Conn, user: str, password: str, timeout: float = 20.0) -> bool:
    """Log in over text (both lines at once); whether the welcome came."""
    welcome = f"Welcome to chatservice, {user}!".encode()
    reply = conn.expect(lambda line, obj: welcome in line or b"Invalid Password" in line or b"Error." in line)
    conn.write(f"{user}\r\n{password}\r\n".encode())
    await asyncio.wait_for(reply, timeout)
    return True

@dataclass
class BadStats:
    """What one kind of misbehaving client did, and how its connections ended."""

    clients: int = 0
    connections: int = 0
    logins: int = 0
    login_refused: Counter[str] = field(default_factory=Counter)
    closed_by_server: Counter[str] = field(default_factory=Counter)
    closed_by_client: int = 0
    still_open_at_end: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    connect_failures: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    """What preceded a close by the server (garbage senders: the last garbage sent)."""
    kernel_queue_max: int = 0
    """Most bytes the kernel held unacknowledged for one of these connections (never-readers)."""

    def ended(self, conn: Conn) -> None:
        """Record how ``conn`` ended (call once, after it closed)."""
        self.bytes_sent += conn.bytes_out
        self.bytes_received += conn.bytes_in
        if conn.closed_by_us:
            self.closed_by_client += 1
        else:
            self.closed_by_server[conn.end_reason()] += 1

    def as_json(self) -> Obj:
        return {
            "clients": self.clients,
            "connections": self.connections,
            "logins": self.logins,
            "login_refused": dict(self.login_refused),
            "closed_by_server": dict(self.closed_by_server),
            "closed_by_client": self.closed_by_client,
            "still_open_at_end": self.still_open_at_end,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "connect_failures": dict(self.connect_failures),
            "kernel_send_queue_max_kib": round(self.kernel_queue_max / 1024, 1),
            "notes": dict(self.notes),
        }

class BadClient:
    """Base of the misbehaving clients: an account, an address, statistics."""

    kind = "bad"

    def __init__(
        self,
        index: int,
        port: int,
        password: str,
        stats: BadStats,
        rng: random.Random,
        name: str | None = None,
        source: str | None = None,
    ) -> None:
        """:param name: the account (default ``user<index>``).
        :param source: the address it connects from (default: by ``index``, :func:`source_address`).
        """
        self.index = index
        self.name = name or f"user{index}"
        self.source = source or source_address(index)
        self.port = port
        self.password = password
        self.stats = stats
        self.rng = rng
        self.conns: list[Conn] = []
        stats.clients += 1

    async def connect(self, conn: Conn, rcvbuf: int | None = None) -> Conn | None:
        """Open ``conn``; ``None`` (counted) if the connection fails."""
        try:
            await open_conn(self.port, self.source, conn, rcvbuf)
        except (OSError, asyncio.TimeoutError) as e:
            self.stats.connect_failures[type(e).__name__] += 1
            return None
        self.stats.connections += 1
        self.conns.append(conn)
        conn.closed.add_done_callback(lambda _: self.stats.ended(conn))
        return conn

    async def sessions(
        self, stop_at: float, protocol: Callable[[], Conn], rcvbuf: int | None = None, login: bool = True
    ) -> AsyncIterator[Conn]:
        """Connections one after another (each logged in, with ``login``) until ``stop_at`` (loop
        time), at most :data:`MAX_CYCLES`; after a connection or login that failed, 0.5 s."""
        loop = asyncio.get_running_loop()
        for _ in range(MAX_CYCLES):
            if loop.time() >= stop_at:
                return
            conn = await self.connect(protocol(), rcvbuf)
            if conn is None or (login and not await self.login(conn)):
                await asyncio.sleep(0.5)
                continue
            yield conn

    async def login(self, conn: Conn) -> bool:
        """JSON login; counts refusals (e.g. ``already_logged_in`` after a reset)."""
        try:
            reply = await json_login(conn, self.name, self.password)
        except (ConnectionError, asyncio.TimeoutError) as e:
            self.stats.login_refused[type(e).__name__] += 1
            return False
        if reply.get("success"):
            self.stats.logins += 1
            return True
        self.stats.login_refused[str(reply.get("reason"))] += 1
        return False

    async def run(self, stop_at: float) -> None:
        raise NotImplementedError

    def close_all(self) -> None:
        for conn in self.conns:
            if not conn.is_closed:
                conn.close()
