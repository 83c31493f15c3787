"""Soak benchmark: well-behaved users chatting while a misbehaving minority attacks.

Run: ``python3 -m bench.soak [--clients N] [--seconds T] [--bad-fraction F]``
(defaults: 60 clients, 30 s, 0.2).  It starts the real ``twistd -n chat``
(:func:`bench.servers.start_chatservice`) on 127.0.0.1 with accounts
``user0`` .. ``user<N-1>`` (plain passwords), then drives it from this one
process with :mod:`asyncio`, loopback only.  The clients are spread over
several loopback source addresses (127.0.0.2, 127.0.0.3, ...; Linux routes all
of 127/8 to ``lo``), :data:`CLIENTS_PER_ADDRESS` per address, so the
per-address connection cap (20) is not what is measured.

Well-behaved clients (JSON) each send direct messages to random well-behaved
peers (about one a ``--dm-interval``) and broadcasts (about one a
``--broadcast-interval``), well under the flood limit of 5 lines a second.
Every text carries a unique id and its send time.  The misbehaving minority is
split evenly between four kinds:

``never_reader``
    Logs in (small ``SO_RCVBUF``), then stops reading and keeps the socket
    open.  Half of them are passive (send nothing); the other half keep asking
    (a ``read`` of the whole broadcast history four times a second) without
    ever reading the answers.
``flooder``
    Logs in and writes lines as fast as the socket takes them (mostly
    ``whoelse`` and invalid commands, every tenth a broadcast); it reads and
    discards what comes back.  Reconnects when closed.
``garbage``
    Random bytes, invalid UTF-8, telnet ``IAC`` sequences, NUL and erase
    characters, over-long lines, malformed or hostile JSON; before logging
    in, or after logging in over text or JSON.  Reads and discards replies;
    a new connection every few seconds.
``disconnecter``
    Connects, logs in, starts a line and resets (RST) or closes the
    connection mid-line (sometimes before the login reply), reconnects,
    repeats.

Everything is bounded: the run lasts ``--seconds``, then at most
``--drain-seconds`` for messages still in flight, and every loop has a count
limit.  At the end it prints a table and writes the same figures as JSON to
``--output`` (default ``bench/results/soak.json``):

- the server's peak RSS (``VmHWM`` in ``/proc/<pid>/status``, and the highest
  ``VmRSS`` sampled every 0.5 s) and CPU time (``/proc/<pid>/stat``);
- messages lost among well-behaved clients: every direct message the server
  acknowledged (``message_status``) must arrive exactly once at its
  recipient, and every acknowledged broadcast of a well-behaved sender at
  every other well-behaved client (all of them are online for the whole run);
- well-behaved delivery latency p50/p99/max (send to receipt, both ends in
  this process, so one clock);
- how many misbehaving connections the server closed, and why (the
  ``disconnect`` reason it sent, or ``reset``/``eof`` when it sent none);
- this load generator's own CPU time and event-loop lag, to show it was not
  the bottleneck (lag adds to the measured latency), and the host's load;
- the server log's tracebacks and hard-limit closes (the log is kept beside
  the JSON, ``.log``), and the most the kernel held unsent for a never-reader
  (``tx_queue`` in ``/proc/net/tcp``).

The exit status is 1 when a well-behaved message was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import socket
import struct
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Sequence

from bench.procstat import cpu_seconds, send_queues, status_kib
from bench.servers import HOST, RunningServer, start_chatservice

CLIENTS_PER_ADDRESS = 8
"""Clients sharing one loopback source address (the server allows 20 per address;
a reconnecting client may briefly hold two)."""
CONNECT_CONCURRENCY = 16
"""Connections opened at once during the login phase (the listen backlog is 50)."""
LOGIN_PHASE_LIMIT = 60.0
"""Seconds the well-behaved clients have to log in before the run is abandoned."""
SAMPLE_INTERVAL = 0.5
"""Seconds between RSS samples."""
NEVER_READER_RCVBUF = 4096
"""``SO_RCVBUF`` of a never-reading client (the kernel doubles it)."""
MAX_CYCLES = 10_000
"""Upper bound on the connections one misbehaving client opens in a run."""
FLOOD_BYTES_LIMIT = 256 * 1024 * 1024
"""Upper bound on what one flooder writes in a run."""

CLOSING_TYPES = (b'"disconnect"', b'"outdated_client"', b'"banned"', b'"shutdown"', b'"login"')
"""JSON lines a connection parses even when it parses nothing else: how it may end."""

Obj = dict[str, Any]
LineHandler = Callable[["Conn", bytes, "Obj | None"], None]


def source_address(index: int) -> str:
    """The loopback address client ``index`` connects from (127.0.0.2 upwards)."""
    slot = index // CLIENTS_PER_ADDRESS
    return f"127.0.{slot // 250}.{2 + slot % 250}"


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


# Server process figures ---------------------------------------------------------------


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


async def open_conn(port: int, source: str, conn: Conn, rcvbuf: int | None = None, timeout: float = 10.0) -> Conn:
    """Connect ``conn`` from ``source`` to the server."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, (HOST, port)), timeout)
        await loop.create_connection(lambda: conn, sock=sock)
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


# Bookkeeping -----------------------------------------------------------------------------


@dataclass
class Ledger:
    """What well-behaved clients sent, what the server acknowledged, what arrived."""

    dm_sent: dict[tuple[int, int], tuple[int, float]] = field(default_factory=dict)
    dm_acked: dict[tuple[int, int], bool] = field(default_factory=dict)
    dm_received: Counter[tuple[int, int]] = field(default_factory=Counter)
    dm_wrong_recipient: int = 0
    dm_offline_deliveries: int = 0
    dm_out_of_order: int = 0
    dm_last_seq: dict[tuple[int, int], int] = field(default_factory=dict)
    bc_sent: dict[tuple[int, int], float] = field(default_factory=dict)
    bc_acked: set[tuple[int, int]] = field(default_factory=set)
    bc_received: dict[int, set[tuple[int, int]]] = field(default_factory=lambda: defaultdict(set))
    bc_duplicates: int = 0
    dm_latency: list[float] = field(default_factory=list)
    bc_latency: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    dropped_notices: int = 0
    disconnected: Counter[str] = field(default_factory=Counter)
    foreign_lines: int = 0

    def complete(self, receivers: Iterable[int]) -> bool:
        """Whether everything acknowledged has arrived (and every request was answered)."""
        if len(self.dm_acked) < len(self.dm_sent) or len(self.bc_acked) < len(self.bc_sent):
            return False
        if any(self.dm_received[key] < 1 for key in self.dm_acked):
            return False
        for receiver in receivers:
            got = self.bc_received[receiver]
            if any(key not in got for key in self.bc_acked if key[0] != receiver):
                return False
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


# Well-behaved clients --------------------------------------------------------------------


class GoodClient:
    """A JSON user sending direct messages and broadcasts at a modest rate."""

    def __init__(self, index: int, ledger: Ledger, peers: list[int], rng: random.Random) -> None:
        self.index = index
        self.name = f"user{index}"
        self.ledger = ledger
        self.peers = [peer for peer in peers if peer != index]
        self.rng = rng
        self.conn: Conn | None = None
        self.dm_seq = 0
        self.bc_seq = 0

    async def connect(self, port: int, password: str) -> None:
        self.conn = await open_conn(port, source_address(self.index), Conn(self.on_line))
        reply = await json_login(self.conn, self.name, password)
        if not reply.get("success"):
            raise RuntimeError(f"{self.name} could not log in: {reply}")

    def on_line(self, conn: Conn, line: bytes, obj: Obj | None) -> None:
        if obj is None:
            return
        kind = obj.get("type")
        ledger = self.ledger
        if kind == "message":
            now = time.monotonic()
            parts = str(obj.get("message", "")).split(" ")
            if len(parts) != 5 or parts[0] != "soak-dm":
                ledger.foreign_lines += 1
                return
            sender, seq, to, sent_at = int(parts[1]), int(parts[2]), int(parts[3]), float(parts[4])
            key = (sender, seq)
            ledger.dm_received[key] += 1
            if to != self.index or obj.get("from") != f"user{sender}":
                ledger.dm_wrong_recipient += 1
            if obj.get("offline"):
                ledger.dm_offline_deliveries += 1
            pair = (sender, self.index)
            if ledger.dm_last_seq.get(pair, -1) > seq:
                ledger.dm_out_of_order += 1
            ledger.dm_last_seq[pair] = max(seq, ledger.dm_last_seq.get(pair, -1))
            if ledger.dm_received[key] == 1:
                ledger.dm_latency.append(now - sent_at)
        elif kind == "broadcast":
            now = time.monotonic()
            parts = str(obj.get("message", "")).split(" ")
            if len(parts) != 4 or parts[0] != "soak-bc":
                ledger.foreign_lines += 1
                return
            key = (int(parts[1]), int(parts[2]))
            got = ledger.bc_received[self.index]
            if key in got:
                ledger.bc_duplicates += 1
            else:
                got.add(key)
                ledger.bc_latency.append(now - float(parts[3]))
        elif kind == "message_status":
            request = str(obj.get("id", ""))
            if request.startswith("d:"):
                _, sender, seq = request.split(":")
                ledger.dm_acked[(int(sender), int(seq))] = bool(obj.get("stored"))
        elif kind == "broadcast_status":
            request = str(obj.get("id", ""))
            if request.startswith("b:"):
                _, sender, seq = request.split(":")
                ledger.bc_acked.add((int(sender), int(seq)))
        elif kind == "error":
            code = str(obj.get("code"))
            if code == "dropped":
                ledger.dropped_notices += 1
            else:
                ledger.errors[code] += 1
        elif kind == "disconnect":
            ledger.disconnected[str(obj.get("reason"))] += 1

    def send_dm(self) -> None:
        assert self.conn is not None
        if not self.peers:
            return
        to = self.rng.choice(self.peers)
        seq = self.dm_seq
        self.dm_seq += 1
        now = time.monotonic()
        self.ledger.dm_sent[(self.index, seq)] = (to, now)
        self.conn.send_json(
            {
                "type": "message",
                "to": f"user{to}",
                "message": f"soak-dm {self.index} {seq} {to} {now:.6f}",
                "id": f"d:{self.index}:{seq}",
            }
        )

    def send_broadcast(self) -> None:
        assert self.conn is not None
        seq = self.bc_seq
        self.bc_seq += 1
        now = time.monotonic()
        self.ledger.bc_sent[(self.index, seq)] = now
        self.conn.send_json(
            {
                "type": "broadcast",
                "message": f"soak-bc {self.index} {seq} {now:.6f}",
                "id": f"b:{self.index}:{seq}",
            }
        )

    async def run(self, stop_at: float, dm_interval: float, bc_interval: float) -> None:
        """Send until ``stop_at`` (loop time), with jittered intervals."""
        loop = asyncio.get_running_loop()
        rng = self.rng
        next_dm = loop.time() + rng.uniform(0, dm_interval)
        next_bc = loop.time() + rng.uniform(0, bc_interval)
        while True:
            due = min(next_dm, next_bc)
            if due >= stop_at:
                return
            await asyncio.sleep(max(0.0, due - loop.time()))
            if self.conn is None or self.conn.is_closed:
                return
            now = loop.time()
            if now >= next_dm:
                self.send_dm()
                next_dm = now + dm_interval * rng.uniform(0.5, 1.5)
            if now >= next_bc:
                self.send_broadcast()
                next_bc = now + bc_interval * rng.uniform(0.5, 1.5)


# Misbehaving clients ----------------------------------------------------------------------


class BadClient:
    """Base of the misbehaving clients: an account, an address, statistics."""

    kind = "bad"

    def __init__(self, index: int, port: int, password: str, stats: BadStats, rng: random.Random) -> None:
        self.index = index
        self.name = f"user{index}"
        self.port = port
        self.password = password
        self.stats = stats
        self.rng = rng
        self.conns: list[Conn] = []
        stats.clients += 1

    async def connect(self, conn: Conn, rcvbuf: int | None = None) -> Conn | None:
        """Open ``conn``; ``None`` (counted) if the connection fails."""
        try:
            await open_conn(self.port, source_address(self.index), conn, rcvbuf)
        except (OSError, asyncio.TimeoutError) as e:
            self.stats.connect_failures[type(e).__name__] += 1
            return None
        self.stats.connections += 1
        self.conns.append(conn)
        conn.closed.add_done_callback(lambda _: self.stats.ended(conn))
        return conn

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


class NeverReader(BadClient):
    """Logs in, then never reads again; optionally keeps asking for big replies."""

    kind = "never_reader"

    def __init__(self, *args: Any, asking: bool = False, sampler: Sampler | None = None) -> None:
        super().__init__(*args)
        self.asking = asking
        self.sampler = sampler
        self.peer: tuple[str, int] | None = None
        self.conn: Conn | None = None
        self.requests = 0

    async def run(self, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        conn = await self.connect(Conn(parse=False), rcvbuf=NEVER_READER_RCVBUF)
        if conn is None or not await self.login(conn):
            return
        self.conn = conn
        assert conn.transport is not None
        conn.transport.pause_reading()
        self.peer = tuple(conn.transport.get_extra_info("sockname")[:2])
        if self.sampler is not None:
            self.sampler.watched.add(self.peer)
        while loop.time() < stop_at and not conn.is_closed:
            if self.asking and self.requests < MAX_CYCLES:
                # The whole broadcast history, never read: each reply is big.
                conn.write(b'{"type":"read","since":0}\n')
                self.requests += 1
                await asyncio.sleep(0.25)
            else:
                await asyncio.wait([conn.closed], timeout=max(0.0, stop_at - loop.time()))

    async def inspect(self, quiet: float = 2.0, limit: float = 8.0) -> None:
        """Read at last: did the server close the connection?  (Counted in stats.)"""
        conn = self.conn
        if conn is None or conn.is_closed or conn.transport is None:
            return
        loop = asyncio.get_running_loop()
        conn.transport.resume_reading()
        deadline = loop.time() + limit
        last = -1
        last_change = loop.time()
        while not conn.is_closed and loop.time() < deadline:
            await asyncio.wait([conn.closed], timeout=0.2)
            if conn.bytes_in != last:
                last, last_change = conn.bytes_in, loop.time()
            elif loop.time() - last_change > quiet:
                break
        if not conn.is_closed:
            self.stats.still_open_at_end += 1


class Flooder(BadClient):
    """Writes lines as fast as the connection takes them; reconnects when closed."""

    kind = "flooder"

    def block(self, counter: int) -> bytes:
        """A chunk of about a hundred request lines."""
        lines = []
        for i in range(100):
            n = counter * 100 + i
            if n % 10 == 0:
                lines.append(b'{"type":"broadcast","message":"flood %d"}\n' % n)
            elif n % 3 == 0:
                lines.append(b'{"type":"whoelse"}\n')
            elif n % 3 == 1:
                lines.append(b'{"type":"no_such_command","id":%d}\n' % n)
            else:
                lines.append(b'{"type":"message","to":"%s","message":"me"}\n' % self.name.encode())
        return b"".join(lines)

    async def run(self, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        written = 0
        cycles = 0
        while loop.time() < stop_at and cycles < MAX_CYCLES and written < FLOOD_BYTES_LIMIT:
            cycles += 1
            conn = await self.connect(Conn(parse=False))
            if conn is None or not await self.login(conn):
                await asyncio.sleep(0.5)
                continue
            counter = 0
            while not conn.is_closed and loop.time() < stop_at and written < FLOOD_BYTES_LIMIT:
                chunk = self.block(counter)
                counter += 1
                conn.write(chunk)
                written += len(chunk)
                await conn.drain(stop_at)
                await asyncio.sleep(0)
            if conn.is_closed:
                await asyncio.sleep(0.5)


GARBAGE_SAMPLES: list[bytes] = [
    b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc\n",  # invalid UTF-8
    b"\xed\xa0\x80\xed\xbf\xbf surrogates\n",  # encoded surrogates
    b"\xc0\xaf\xe0\x80\xaf overlong\n",  # overlong encodings
    b"\xff\xfb\x01\xff\xfd\x03\xff\xfa\x18\x01\xff\xf0whoelse\xff\xf4\r\n",  # telnet IAC
    b"\xff\xfa\x18 never ended sub-option\n",  # IAC SB without SE
    b"whoelse\xff\n",  # lone IAC at the end
    b"\xff\xff\xff\xff\xff\xff\xff\n",
    b"\x00\x00help\x00\r\n",  # NULs
    b"abc\x08\x08\x08\x08\x08\x7f\x7fbroadcast \x1b[2J\x07bell\r\n",  # erase, escapes
    b"\r\r\r\r\n\n\n",
    b'{"type":\n',
    b'{"type": 5}\n',
    b"[1, 2, 3]\n",
    b"null\n",
    b'{"type":"x","a":' + b"[" * 4000 + b"]" * 4000 + b"}\n",  # deep nesting
    b'{"type":"broadcast","message":"\\ud800 lone surrogate"}\n',
    b'{"type":"whoelsesince","seconds":1e999}\n',
    b'{"type":"whoelsesince","seconds":-1}\n',
    b'{"type":"last","minutes":NaN}\n',
    b'{"type":"read","since":"99 Foo 99999 99:99:99"}\n',
    b'{"type":"read","since":1e308}\n',
    b'{"type":"room_send","room":99999999999999999999999,"message":"x"}\n',
    b'{"type":"room_create","members":"not a list"}\n',
    b'{"type":"send","to":[1,2,{"a":null}],"message":"x"}\n',
    b'{"type":"message","to":"user0","message":' + b'"' + b"x" * 8300 + b'"}\n',  # over-long line
    b'{"type":"typing","status":"maybe"}\n',
    b'{"type":"login","user":"user0"}\n',  # no password (a wrong one would lock user0 out)
    b'{"type":"hello","version":"\\u0000\\u0000"}\n',
    b'{"type":"passwd","old":"' + b"a" * 4000 + b'","new":""}\n',
    b'{"type":"busy","message":' + b'"' + b"y" * 8100 + b'"}\n',
    b'{"type":"whoelse","id":[1,2,3]}\n',
    b'{"type":"whoelse","id":1e999}\n',
    b'{"type":"whoelse","user":"somebody else"}\n',
]


class GarbageSender(BadClient):
    """Sends malformed, hostile or random input, before or after logging in."""

    kind = "garbage"

    def garbage(self) -> tuple[str, bytes]:
        """Some garbage, and a short label for it."""
        rng = self.rng
        choice = rng.random()
        if choice < 0.3:
            return "random bytes", rng.randbytes(rng.randint(1, 2000))
        if choice < 0.4:
            # Over-long, possibly without a newline until much later.
            size = rng.randint(8193, 100_000)
            return "over-long line", b"L" * size + (b"\n" if rng.random() < 0.5 else b"")
        sample = rng.choice(GARBAGE_SAMPLES)
        return repr(sample[:40])[2:-1], sample

    async def run(self, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        cycles = 0
        while loop.time() < stop_at and cycles < MAX_CYCLES:
            cycles += 1
            conn = await self.connect(Conn(parse=False))
            if conn is None:
                await asyncio.sleep(0.5)
                continue
            mode = cycles % 3
            try:
                if mode == 1:
                    ok = await self.login(conn)
                elif mode == 2:
                    ok = await text_login(conn, self.name, self.password)
                    self.stats.logins += 1
                else:
                    ok = True  # garbage before logging in, in the text format
            except (ConnectionError, asyncio.TimeoutError) as e:
                self.stats.login_refused[type(e).__name__] += 1
                ok = False
            if not ok:
                conn.close()
                await asyncio.sleep(0.5)
                continue
            label = ""
            for _ in range(self.rng.randint(5, 40)):
                if conn.is_closed or loop.time() >= stop_at:
                    break
                label, data = self.garbage()
                conn.write(data)
                await conn.drain(stop_at)
                await asyncio.sleep(self.rng.uniform(0.2, 0.6))
            if conn.is_closed and not conn.closed_by_us:
                mode_name = ("text before login", "JSON, logged in", "text, logged in")[mode]
                self.stats.notes[f"closed after {label} ({mode_name})"] += 1
            if not conn.is_closed:
                conn.close()
            await asyncio.sleep(0.1)


class Disconnecter(BadClient):
    """Logs in, starts a line, and vanishes (reset or close); again and again."""

    kind = "disconnecter"

    async def run(self, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        cycles = 0
        rng = self.rng
        while loop.time() < stop_at and cycles < MAX_CYCLES:
            cycles += 1
            conn = await self.connect(Conn(parse=False))
            if conn is None:
                await asyncio.sleep(0.5)
                continue
            if cycles % 4 == 0:
                # Vanish while the login is being checked.
                conn.send_json({"type": "login", "user": self.name, "password": self.password})
                await asyncio.sleep(rng.uniform(0, 0.005))
                conn.reset()
                await asyncio.sleep(rng.uniform(0.1, 0.3))
                continue
            if not await self.login(conn):
                conn.reset()
                await asyncio.sleep(rng.uniform(0.05, 0.2))
                continue
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            conn.write(b'{"type":"broadcast","message":"half a li')
            await asyncio.sleep(rng.uniform(0, 0.05))
            if cycles % 2:
                conn.reset()
            else:
                conn.close()
            await asyncio.sleep(rng.uniform(0.1, 0.5))


# The run -----------------------------------------------------------------------------------


class Sampler:
    """Samples the server's RSS every :data:`SAMPLE_INTERVAL` s, and this loop's lag."""

    def __init__(self, pid: int, port: int) -> None:
        self.pid = pid
        self.port = port
        self.watched: set[tuple[str, int]] = set()
        """Client addresses whose kernel send queue (server side) is sampled."""
        self.max_queue: dict[tuple[str, int], int] = {}
        self.rss_kib: list[tuple[float, int]] = []
        self.lag: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            rss = status_kib(self.pid, "VmRSS")
            if rss is not None:
                self.rss_kib.append((round(loop.time() - started, 2), rss))
            if self.watched:
                for peer, queued in send_queues(self.port).items():
                    if peer in self.watched:
                        self.max_queue[peer] = max(queued, self.max_queue.get(peer, 0))
            before = loop.time()
            await asyncio.sleep(SAMPLE_INTERVAL)
            self.lag.append(max(0.0, loop.time() - before - SAMPLE_INTERVAL))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


async def gather_bounded(coroutines: Iterable[Awaitable[None]], limit: int) -> list[BaseException | None]:
    """Run ``coroutines`` with at most ``limit`` at once; return their exceptions."""
    semaphore = asyncio.Semaphore(limit)

    async def one(coroutine: Awaitable[None]) -> None:
        async with semaphore:
            await coroutine

    results = await asyncio.gather(*(one(c) for c in coroutines), return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results]


def passwords(count: int) -> dict[str, str]:
    """The accounts of a run: ``user<i>`` with password ``pw<i>``."""
    return {f"user{i}": f"pw{i}" for i in range(count)}


async def soak(server: RunningServer, args: argparse.Namespace) -> Obj:
    """Drive ``server`` as ``args`` say; return the figures."""
    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed)
    accounts = passwords(args.clients)
    n_bad = min(args.clients - 2, max(0, round(args.clients * args.bad_fraction)))
    n_good = args.clients - n_bad
    good_ids = list(range(n_good))
    ledger = Ledger()
    sampler = Sampler(server.pid, server.port)
    sampler.start()
    loadavg_start = os.getloadavg()
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu_start = cpu_seconds(server.pid) or 0.0
    rss_start = status_kib(server.pid, "VmRSS")

    # Log the well-behaved clients in.
    good = [GoodClient(i, ledger, good_ids, random.Random(rng.random())) for i in good_ids]
    login_started = loop.time()
    failures = await asyncio.wait_for(
        gather_bounded((g.connect(server.port, accounts[g.name]) for g in good), CONNECT_CONCURRENCY),
        LOGIN_PHASE_LIMIT,
    )
    failed = [f for f in failures if f is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} well-behaved logins failed, e.g. {failed[0]!r}")
    login_seconds = loop.time() - login_started
    await asyncio.sleep(1.0)  # let the login presence storm settle
    rss_after_login = status_kib(server.pid, "VmRSS")

    # The misbehaving minority.
    kinds = ["never_reader", "flooder", "garbage", "disconnecter"]
    stats = {kind: BadStats() for kind in kinds}
    stats["never_reader (asking)"] = BadStats()
    bad: list[BadClient] = []
    for j, index in enumerate(range(n_good, args.clients)):
        kind = kinds[j % len(kinds)]
        sub_rng = random.Random(rng.random())
        password = accounts[f"user{index}"]
        if kind == "never_reader":
            asking = (j // len(kinds)) % 2 == 1
            key = "never_reader (asking)" if asking else "never_reader"
            bad.append(
                NeverReader(index, server.port, password, stats[key], sub_rng, asking=asking, sampler=sampler)
            )
        elif kind == "flooder":
            bad.append(Flooder(index, server.port, password, stats[kind], sub_rng))
        elif kind == "garbage":
            bad.append(GarbageSender(index, server.port, password, stats[kind], sub_rng))
        else:
            bad.append(Disconnecter(index, server.port, password, stats[kind], sub_rng))

    run_started = loop.time()
    stop_at = run_started + args.seconds
    tasks = [loop.create_task(g.run(stop_at, args.dm_interval, args.broadcast_interval)) for g in good]
    tasks += [loop.create_task(b.run(stop_at)) for b in bad]
    done, pending = await asyncio.wait(tasks, timeout=args.seconds + 15)
    for task in pending:
        task.cancel()
    bad_client_errors = Counter(
        type(t.exception()).__name__ for t in done if not t.cancelled() and t.exception() is not None
    )
    for b in bad:
        if not isinstance(b, NeverReader):
            b.close_all()
    run_seconds = loop.time() - run_started

    # Wait for what is still in flight.
    drain_started = loop.time()
    online_good = [g.index for g in good if g.conn is not None and not g.conn.is_closed]
    while loop.time() - drain_started < args.drain_seconds and not ledger.complete(online_good):
        await asyncio.sleep(0.25)
    drain_seconds = loop.time() - drain_started

    # Did the server close the never-readers?
    never_readers = [b for b in bad if isinstance(b, NeverReader)]
    await asyncio.gather(*(n.inspect() for n in never_readers))

    for n in never_readers:
        if n.peer is not None:
            n.stats.kernel_queue_max = max(n.stats.kernel_queue_max, sampler.max_queue.get(n.peer, 0))

    # Server figures, before it is stopped.
    server_cpu = (cpu_seconds(server.pid) or 0.0) - server_cpu_start
    hwm = status_kib(server.pid, "VmHWM")
    rss_end = status_kib(server.pid, "VmRSS")
    await sampler.stop()
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    wall = loop.time() - login_started

    for g in good:
        if g.conn is not None and not g.conn.is_closed:
            g.conn.close()
    for b in bad:
        b.close_all()
    await asyncio.sleep(0.2)

    # Losses among well-behaved clients.
    dm_lost = sum(1 for key in ledger.dm_acked if ledger.dm_received[key] == 0)
    dm_dup = sum(1 for key in ledger.dm_acked if ledger.dm_received[key] > 1)
    dm_unacked_sent = [key for key in ledger.dm_sent if key not in ledger.dm_acked]
    bc_expected = bc_delivered = 0
    online = set(online_good)
    for key in ledger.bc_acked:
        if key[0] not in online:
            continue
        for receiver in online:
            if receiver == key[0]:
                continue
            bc_expected += 1
            if key in ledger.bc_received[receiver]:
                bc_delivered += 1
    all_latency = ledger.dm_latency + ledger.bc_latency
    rss_samples = [rss for _, rss in sampler.rss_kib]
    log_text = Path(server.workdir.name, "server.log").read_text(errors="replace")
    log_copy: Path = args.server_log or args.output.with_suffix(".log")
    log_copy.parent.mkdir(parents=True, exist_ok=True)
    log_copy.write_text(log_text, encoding="utf-8")
    loadgen_cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    lag = sorted(sampler.lag)

    return {
        "config": {
            "clients": args.clients,
            "well_behaved": n_good,
            "misbehaving": n_bad,
            "seconds": args.seconds,
            "bad_fraction": args.bad_fraction,
            "dm_interval_s": args.dm_interval,
            "broadcast_interval_s": args.broadcast_interval,
            "source_addresses": len({source_address(i) for i in range(args.clients)}),
            "seed": args.seed,
            "cpus": os.cpu_count(),
            "loadavg_1min_start_end": [round(loadavg_start[0], 2), round(os.getloadavg()[0], 2)],
            "python": sys.version.split()[0],
        },
        "timing": {
            "login_phase_s": round(login_seconds, 2),
            "run_s": round(run_seconds, 2),
            "drain_s": round(drain_seconds, 2),
        },
        "server": {
            "pid": server.pid,
            "rss_start_mib": mib(rss_start),
            "rss_after_login_mib": mib(rss_after_login),
            "rss_max_sampled_mib": mib(max(rss_samples) if rss_samples else None),
            "peak_rss_vmhwm_mib": mib(hwm),
            "rss_end_mib": mib(rss_end),
            "rss_samples": len(rss_samples),
            "cpu_s": round(server_cpu, 2),
            "cpu_percent_of_wall": round(100 * server_cpu / wall, 1) if wall else None,
            "log": str(log_copy),
            "log_tracebacks": log_text.count("Traceback"),
            "log_unhandled_errors": len(re.findall(r"Unhandled (?:Error|error)", log_text)),
            "log_hard_limit_closes": len(re.findall(r"Closing \S+: \d+ bytes unread", log_text)),
        },
        "loadgen": {
            "cpu_s": round(loadgen_cpu, 2),
            "cpu_percent_of_wall": round(100 * loadgen_cpu / wall, 1) if wall else None,
            "loop_lag_p99_ms": None if not lag else round(1000 * (percentile(lag, 0.99) or 0), 1),
            "loop_lag_max_ms": None if not lag else round(1000 * lag[-1], 1),
            "task_errors": dict(bad_client_errors),
        },
        "well_behaved": {
            "clients_online_whole_run": len(online),
            "dms_sent": len(ledger.dm_sent),
            "dms_acked": len(ledger.dm_acked),
            "dms_acked_stored": sum(1 for stored in ledger.dm_acked.values() if stored),
            "dms_unanswered": len(dm_unacked_sent),
            "dms_lost": dm_lost,
            "dms_duplicated": dm_dup,
            "dms_wrong_recipient": ledger.dm_wrong_recipient,
            "dms_out_of_order": ledger.dm_out_of_order,
            "dms_delivered_as_offline": ledger.dm_offline_deliveries,
            "broadcasts_sent": len(ledger.bc_sent),
            "broadcasts_acked": len(ledger.bc_acked),
            "broadcast_deliveries_expected": bc_expected,
            "broadcast_deliveries_lost": bc_expected - bc_delivered,
            "broadcast_duplicates": ledger.bc_duplicates,
            "messages_lost": dm_lost + (bc_expected - bc_delivered),
            "errors": dict(ledger.errors),
            "dropped_notices": ledger.dropped_notices,
            "disconnected_by_server": dict(ledger.disconnected),
            "other_users_lines": ledger.foreign_lines,
        },
        "latency": {
            "direct": latency_summary(ledger.dm_latency),
            "broadcast": latency_summary(ledger.bc_latency),
            "all": latency_summary(all_latency),
        },
        "misbehaving": {kind: s.as_json() for kind, s in stats.items() if s.clients},
        "rss_timeline_mib": [[t, round(rss / 1024, 1)] for t, rss in sampler.rss_kib],
    }


def table(results: Obj) -> str:
    """The figures as a plain-text table."""
    rows: list[tuple[str, str]] = []

    def add(name: str, value: Any) -> None:
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        rows.append((name, str(value)))

    config = results["config"]
    add("clients (well-behaved / misbehaving)", f"{config['clients']} ({config['well_behaved']} / {config['misbehaving']})")
    add("run / drain seconds", f"{results['timing']['run_s']} / {results['timing']['drain_s']}")
    add("source addresses", config["source_addresses"])
    add("host CPUs / load average (1 min) at start, end", f"{config['cpus']} / {config['loadavg_1min_start_end']}")
    server = results["server"]
    add("server RSS start / after login (MiB)", f"{server['rss_start_mib']} / {server['rss_after_login_mib']}")
    add("server peak RSS VmHWM (MiB)", server["peak_rss_vmhwm_mib"])
    add("server max sampled VmRSS (MiB)", server["rss_max_sampled_mib"])
    add("server RSS at end (MiB)", server["rss_end_mib"])
    add("server CPU s (% of wall)", f"{server['cpu_s']} ({server['cpu_percent_of_wall']}%)")
    add("server log tracebacks / hard-limit closes", f"{server['log_tracebacks']} / {server['log_hard_limit_closes']}")
    loadgen = results["loadgen"]
    add("load generator CPU s (% of wall)", f"{loadgen['cpu_s']} ({loadgen['cpu_percent_of_wall']}%)")
    add("load generator loop lag p99 / max (ms)", f"{loadgen['loop_lag_p99_ms']} / {loadgen['loop_lag_max_ms']}")
    wb = results["well_behaved"]
    add("DMs sent / acked (stored)", f"{wb['dms_sent']} / {wb['dms_acked']} ({wb['dms_acked_stored']})")
    add("DMs lost / duplicated / out of order", f"{wb['dms_lost']} / {wb['dms_duplicated']} / {wb['dms_out_of_order']}")
    add("broadcasts sent / acked", f"{wb['broadcasts_sent']} / {wb['broadcasts_acked']}")
    add("broadcast deliveries expected / lost / dup", f"{wb['broadcast_deliveries_expected']} / {wb['broadcast_deliveries_lost']} / {wb['broadcast_duplicates']}")
    add("MESSAGES LOST (well-behaved)", wb["messages_lost"])
    add("well-behaved errors", wb["errors"])
    add("well-behaved dropped notices / disconnects", f"{wb['dropped_notices']} / {wb['disconnected_by_server'] or 0}")
    for kind in ("direct", "broadcast", "all"):
        lat = results["latency"][kind]
        add(f"latency {kind} p50 / p99 / max (ms)", f"{lat['p50_ms']} / {lat['p99_ms']} / {lat['max_ms']}  (n={lat['count']})")
    for kind, s in results["misbehaving"].items():
        add(f"{kind}: clients / connections", f"{s['clients']} / {s['connections']}")
        add(f"{kind}: closed by server", s["closed_by_server"])
        if s["still_open_at_end"]:
            add(f"{kind}: still open at end", s["still_open_at_end"])
        if kind.startswith("never_reader"):
            add(f"{kind}: max kernel send queue (KiB)", s["kernel_send_queue_max_kib"])
        for note, count in s["notes"].items():
            add(f"{kind}: {note}", count)
        if s["login_refused"]:
            add(f"{kind}: login refused", s["login_refused"])
        if s["connect_failures"]:
            add(f"{kind}: connect failures", s["connect_failures"])
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=60, help="clients in all (default 60)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the run (default 30)")
    parser.add_argument("--bad-fraction", type=float, default=0.2, help="share of misbehaving clients (default 0.2)")
    parser.add_argument("--dm-interval", type=float, default=1.0, help="seconds between a client's direct messages")
    parser.add_argument("--broadcast-interval", type=float, default=5.0, help="seconds between a client's broadcasts")
    parser.add_argument("--drain-seconds", type=float, default=15.0, help="longest wait for messages in flight")
    parser.add_argument("--seed", type=int, default=6, help="seed of the random choices")
    parser.add_argument(
        "--output", type=Path, default=Path("bench/results/soak.json"), help="where to write the JSON"
    )
    parser.add_argument(
        "--server-log", type=Path, default=None,
        help="where to keep the server's log (default: beside --output, .log)",
    )
    args = parser.parse_args(argv)
    if args.clients < 3 or args.clients > 2000:
        parser.error("--clients must be from 3 to 2000")
    if not 0 <= args.bad_fraction < 1:
        parser.error("--bad-fraction must be in [0, 1)")
    if not 0 < args.seconds <= 3600:
        parser.error("--seconds must be in (0, 3600]")
    if min(args.dm_interval, args.broadcast_interval) < 0.5:
        parser.error("intervals below 0.5 s would trip the flood limit")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * args.clients + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * args.clients + 1000), hard))

    server = start_chatservice(passwords(args.clients))
    try:
        results = asyncio.run(soak(server, args))
    except BaseException:
        log = Path(server.workdir.name, "server.log")
        if log.exists():
            print("server log (end):\n" + log.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        server.stop()
    text = table(results)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.output}")
    return 0 if results["well_behaved"]["messages_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
