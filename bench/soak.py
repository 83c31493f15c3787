"""Soak benchmark: well-behaved users chatting while a misbehaving minority, and attackers, strike.

Run: ``python3 -m bench.soak [--quick] [--attackers] [--clients N] [--seconds T]
[--bad-fraction F]`` (defaults: 60 clients, 30 s, 0.2; ``--quick``: 24
clients, 15 s).  It starts the real ``twistd -n chat``
(:func:`bench.servers.start_chatservice`, with ``--metrics``) on 127.0.0.1
with accounts ``user0`` .. ``user<N-1>`` and a few more (plain passwords),
then drives it from this one process with :mod:`asyncio`, loopback only.  The
clients are spread over several loopback source addresses (127.0.0.2,
127.0.0.3, ...; Linux routes all of 127/8 to ``lo``),
:data:`~bench.soak_clients.CLIENTS_PER_ADDRESS` per address, so the
per-address connection cap (20) is not what is measured.

Well-behaved clients (JSON) each send direct messages to random well-behaved
peers (about one a ``--dm-interval``), broadcasts (about one a
``--broadcast-interval``) and posts to their room (every client is in a room
of :data:`ROOM_SIZE`, about one a ``--room-interval``), well under the flood
limit of 5 lines a second.  A share of their direct messages goes to
``--absent`` users who stay offline (``absent<i>``: kept in their mailboxes,
about :data:`OFFLINE_PER_ABSENT` each); the absent users log in at the end
and collect them.  One client in :data:`TLS_EVERY` connects over TLS when the
server has an ``ssl:`` port.  One more ordinary user, the *prober*, logs in
and out once a second all along (login latency, refusals).  Every text
carries a unique id and its send time.  The misbehaving minority is split
evenly between four kinds:

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

``--attackers`` (issue 15) runs twice, each time on a fresh server with an
``ssl:`` listener and a database holding ``--history-mb`` of history (a
copy of one filled by :func:`bench.read_amplifier.fill_history`): first the
ordinary users alone, then the same ordinary users doing the same with the
misbehaving minority and the attackers of :mod:`bench.attackers` (idle TLS
sockets, ``read`` amplifiers, pagers, a mailbox flooder, a lock-out
guesser, a telnet flooder) at the same time; after the attackers are gone
and the server has settled (``--settle``), a second wave of them
(``--second-wave`` seconds) and the RSS once more.  ``--pairs N`` does it N
times, alternating.  It prints both tables and the two side by side.

Everything is bounded: the run lasts ``--seconds``, then at most
``--drain-seconds`` for messages still in flight, and every loop has a count
limit; every server it starts is stopped.  At the end it prints a table and
writes the same figures as JSON to ``--output`` (default
``bench/results/soak.json``):

- the server's peak RSS (``VmHWM`` in ``/proc/<pid>/status``, and the highest
  ``VmRSS`` sampled every 0.5 s), its RSS right after the ordinary users
  logged in and once the misbehaving clients are gone and the server has
  settled, its CPU time (``/proc/<pid>/stat``), how long it waited for a
  CPU (``schedstat``: other work on the machine) and how often its reactor
  ran a timer late (``chat_reactor_lag_seconds`` of ``/metrics``);
- messages lost among well-behaved clients: every direct message the server
  acknowledged (``message_status``) must arrive exactly once at its
  recipient (online, or in an absent user's mailbox when it said it kept
  it), and every acknowledged broadcast and room post of a well-behaved
  sender at every other well-behaved client (of its room), all of them
  online for the whole run;
- well-behaved delivery latency p50/p99/max (send to receipt, both ends in
  this process, so one clock), and the largest latency of each second;
- how many misbehaving connections the server closed, and why (the
  ``disconnect`` reason it sent, or ``reset``/``eof`` when it sent none),
  and what it refused each kind of attacker;
- this load generator's own CPU time (over :data:`~bench.harness.LOADGEN_CPU_LIMIT`
  per cent of the wall time it may have been the limit) and event-loop lag
  (lag adds to the measured latency), and the host's load;
- the server log's tracebacks and hard-limit closes (the log is kept beside
  the JSON, ``.log``; ``-quiet.log`` for the phase without attackers), and the
  most the kernel held unsent for a never-reader (``tx_queue`` in
  ``/proc/net/tcp``).

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
import shutil
import ssl
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Iterable, Sequence

from bench.attackers import (
    ATTACK_KINDS,
    IdleTls,
    LockoutGuesser,
    MailboxFlooder,
    ReadAmplifier,
    TelnetFlooder,
    attacker_source,
)
from bench.harness import LOADGEN_CPU_LIMIT, code_version
from bench.procstat import cpu_seconds, run_queue_seconds, send_queues, status_kib
from bench.read_amplifier import fill_history
from bench.servers import HOST, ROOT, RunningServer, start_chatservice
from bench.soak_clients import (
    CLIENTS_PER_ADDRESS,
    MAX_CYCLES,
    BadClient,
    BadStats,
    Conn,
    Obj,
    json_login,
    latency_summary,
    mib,
    open_conn,
    passwords,
    percentile,
    source_address,
    text_login,
)
from tests.certs import client_hello, make_certificates

CONNECT_CONCURRENCY = 16
"""Connections opened at once during the login phase (the listen backlog is 50)."""
LOGIN_PHASE_LIMIT = 60.0
"""Seconds the well-behaved clients have to log in before the run is abandoned."""
SAMPLE_INTERVAL = 0.5
"""Seconds between RSS samples."""
NEVER_READER_RCVBUF = 4096
"""``SO_RCVBUF`` of a never-reading client (the kernel doubles it)."""
FLOOD_BYTES_LIMIT = 256 * 1024 * 1024
"""Upper bound on what one flooder writes in a run."""
BROADCAST_TAG = "soak-bc"
"""First word of a well-behaved broadcast: ``soak-bc <sender> <seq> <sent at>``."""
ROOM_TAG = "soak-rm"
"""First word of a well-behaved room post, as :data:`BROADCAST_TAG`."""
ROOM_SIZE = 4
"""Well-behaved clients in one room (each is in one)."""
TLS_EVERY = 8
"""One well-behaved client in this many connects over TLS (when the server has an ``ssl:`` port)."""
PROBER = "prober"
"""The ordinary user who logs in and out all along (and whose password the lock-out attacker guesses)."""
PROBE_INTERVAL = 1.0
"""Seconds between the prober's logins."""
OFFLINE_PER_ABSENT = 40
"""Direct messages ordinary users send each offline user in a run, about (the mailbox holds 100)."""
IDLE_TLS_ADDRESSES = 2
"""Addresses the idle TLS sockets come from (``--idle-tls`` of them in all: more than 20 each)."""


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
    room_members: dict[int, list[int]] = field(default_factory=dict)
    """The members of each room (by room number)."""
    rm_sent: dict[tuple[int, int], int] = field(default_factory=dict)
    """Room posts by ``(sender, seq)``: their room."""
    rm_acked: set[tuple[int, int]] = field(default_factory=set)
    rm_received: dict[int, set[tuple[int, int]]] = field(default_factory=lambda: defaultdict(set))
    duplicates: Counter[str] = field(default_factory=Counter)
    """Broadcasts and room posts received twice, by tag (:data:`BROADCAST_TAG`, :data:`ROOM_TAG`)."""
    off_sent: dict[tuple[int, int], str] = field(default_factory=dict)
    """Direct messages to offline users by ``(sender, seq)``: their recipient."""
    off_acked: dict[tuple[int, int], bool] = field(default_factory=dict)
    """Those the server answered ``message_status``: whether it said it kept them."""
    off_refused: Counter[str] = field(default_factory=Counter)
    """Those the server refused, by error code (``mailbox_full``...)."""
    off_refused_keys: set[tuple[int, int]] = field(default_factory=set)
    dm_latency: list[float] = field(default_factory=list)
    bc_latency: list[float] = field(default_factory=list)
    rm_latency: list[float] = field(default_factory=list)
    timeline: list[tuple[float, float]] = field(default_factory=list)
    """Every first delivery as ``(sent at, latency)``, monotonic seconds."""
    errors: Counter[str] = field(default_factory=Counter)
    dropped_notices: int = 0
    disconnected: Counter[str] = field(default_factory=Counter)
    foreign_lines: int = 0

    def complete(self, receivers: Iterable[int]) -> bool:
        """Whether everything acknowledged has arrived (and every request was answered)."""
        if len(self.dm_acked) < len(self.dm_sent) or len(self.bc_acked) < len(self.bc_sent):
            return False
        if len(self.rm_acked) < len(self.rm_sent) or len(self.off_acked) + len(self.off_refused_keys) < len(self.off_sent):
            return False
        if any(self.dm_received[key] < 1 for key in self.dm_acked):
            return False
        receivers = list(receivers)
        for receiver in receivers:
            got = self.bc_received[receiver]
            if any(key not in got for key in self.bc_acked if key[0] != receiver):
                return False
        return self.room_deliveries(receivers)[0] == self.room_deliveries(receivers)[1]

    def channel_delivery(self, receiver: int, text: str, tag: str) -> None:
        """Record the broadcast (:data:`BROADCAST_TAG`) or room post (:data:`ROOM_TAG`) ``text`` at ``receiver``."""
        now = time.monotonic()
        parts = text.split(" ")
        if len(parts) != 4 or parts[0] != tag:
            self.foreign_lines += 1
            return
        key = (int(parts[1]), int(parts[2]))
        got = (self.bc_received if tag == BROADCAST_TAG else self.rm_received)[receiver]
        if key in got:
            self.duplicates[tag] += 1
            return
        got.add(key)
        sent_at = float(parts[3])
        (self.bc_latency if tag == BROADCAST_TAG else self.rm_latency).append(now - sent_at)
        self.timeline.append((sent_at, now - sent_at))

    def room_deliveries(self, online: Iterable[int]) -> tuple[int, int]:
        """Room deliveries ``(expected, made)`` among the ``online`` clients: every acknowledged
        post of an online member at each other online member of its room."""
        present = set(online)
        expected = made = 0
        for key in self.rm_acked:
            if key[0] not in present:
                continue
            for member in self.room_members[self.rm_sent[key]]:
                if member != key[0] and member in present:
                    expected += 1
                    made += key in self.rm_received[member]
        return expected, made


# Well-behaved clients --------------------------------------------------------------------


class GoodClient:
    """A JSON user sending direct messages, broadcasts and room posts at a modest rate.

    :param absent: accounts that stay offline: a share (``offline_share``) of
        the direct messages goes to them, to be kept in their mailboxes.
    :param tls: connect over TLS with this context (to the server's ``ssl:`` port).
    """

    def __init__(
        self,
        index: int,
        ledger: Ledger,
        peers: list[int],
        rng: random.Random,
        absent: Sequence[str] = (),
        offline_share: float = 0.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.index = index
        self.name = f"user{index}"
        self.ledger = ledger
        self.peers = [peer for peer in peers if peer != index]
        self.rng = rng
        self.absent = list(absent)
        self.offline_share = offline_share if absent else 0.0
        self.tls = tls
        self.conn: Conn | None = None
        self.room: int | None = None
        self.dm_seq = 0
        self.bc_seq = 0
        self.rm_seq = 0

    async def connect(self, port: int, password: str) -> None:
        """Log in (over TLS to ``port`` when this client has a context)."""
        self.conn = await open_conn(port, source_address(self.index), Conn(self.on_line), tls=self.tls)
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
                ledger.timeline.append((sent_at, now - sent_at))
        elif kind == "broadcast":
            ledger.channel_delivery(self.index, str(obj.get("message", "")), BROADCAST_TAG)
        elif kind == "room_message":
            ledger.channel_delivery(self.index, str(obj.get("message", "")), ROOM_TAG)
        elif kind == "room_posted":
            request = str(obj.get("id", ""))
            if request.startswith("r:"):
                _, sender, seq = request.split(":")
                ledger.rm_acked.add((int(sender), int(seq)))
        elif kind == "message_status":
            request = str(obj.get("id", ""))
            if request.startswith("d:"):
                _, sender, seq = request.split(":")
                ledger.dm_acked[(int(sender), int(seq))] = bool(obj.get("stored"))
            elif request.startswith("o:"):
                _, sender, seq = request.split(":")
                ledger.off_acked[(int(sender), int(seq))] = bool(obj.get("stored"))
        elif kind == "broadcast_status":
            request = str(obj.get("id", ""))
            if request.startswith("b:"):
                _, sender, seq = request.split(":")
                ledger.bc_acked.add((int(sender), int(seq)))
        elif kind == "error":
            code = str(obj.get("code"))
            request = str(obj.get("id", ""))
            if request.startswith("o:"):
                _, sender, seq = request.split(":")
                ledger.off_refused[code] += 1
                ledger.off_refused_keys.add((int(sender), int(seq)))
            elif code == "dropped":
                ledger.dropped_notices += 1
            else:
                ledger.errors[code] += 1
        elif kind == "disconnect":
            ledger.disconnected[str(obj.get("reason"))] += 1

    def send_dm(self) -> None:
        assert self.conn is not None
        if self.rng.random() < self.offline_share:
            self.send_offline_dm()
            return
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

    def send_offline_dm(self) -> None:
        """A direct message to an offline user (kept in their mailbox)."""
        assert self.conn is not None
        to = self.rng.choice(self.absent)
        seq = self.dm_seq
        self.dm_seq += 1
        self.ledger.off_sent[(self.index, seq)] = to
        self.conn.send_json(
            {
                "type": "message",
                "to": to,
                "message": f"soak-off {self.index} {seq} {to} {time.monotonic():.6f}",
                "id": f"o:{self.index}:{seq}",
            }
        )

    def send_room_post(self) -> None:
        assert self.conn is not None and self.room is not None
        seq = self.rm_seq
        self.rm_seq += 1
        now = time.monotonic()
        self.ledger.rm_sent[(self.index, seq)] = self.room
        self.conn.send_json(
            {
                "type": "room_send",
                "room": self.room,
                "message": f"{ROOM_TAG} {self.index} {seq} {now:.6f}",
                "id": f"r:{self.index}:{seq}",
            }
        )

    async def create_room(self, members: Sequence["GoodClient"]) -> None:
        """Create a room with ``members`` (this client among them); tell them its number."""
        assert self.conn is not None
        reply = self.conn.expect(lambda line, obj: obj is not None and obj.get("type") in ("room_created", "error"))
        self.conn.send_json({"type": "room_create", "members": [m.name for m in members if m is not self]})
        obj = await asyncio.wait_for(reply, 20)
        if obj is None or obj.get("type") != "room_created":
            raise RuntimeError(f"{self.name} could not create a room: {obj}")
        room = int(obj["room"])
        self.ledger.room_members[room] = [m.index for m in members]
        for member in members:
            member.room = room

    def send_broadcast(self) -> None:
        assert self.conn is not None
        seq = self.bc_seq
        self.bc_seq += 1
        now = time.monotonic()
        self.ledger.bc_sent[(self.index, seq)] = now
        self.conn.send_json(
            {
                "type": "broadcast",
                "message": f"{BROADCAST_TAG} {self.index} {seq} {now:.6f}",
                "id": f"b:{self.index}:{seq}",
            }
        )

    async def run(self, stop_at: float, dm_interval: float, bc_interval: float, room_interval: float = 0.0) -> None:
        """Send until ``stop_at`` (loop time), with jittered intervals (no room posts when ``room_interval`` is 0)."""
        loop = asyncio.get_running_loop()
        rng = self.rng
        next_dm = loop.time() + rng.uniform(0, dm_interval)
        next_bc = loop.time() + rng.uniform(0, bc_interval)
        posting = room_interval > 0 and self.room is not None
        next_rm = loop.time() + rng.uniform(0, room_interval) if posting else float("inf")
        while True:
            due = min(next_dm, next_bc, next_rm)
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
            if now >= next_rm:
                self.send_room_post()
                next_rm = now + room_interval * rng.uniform(0.5, 1.5)


class LoginProber:
    """An ordinary user who logs in and out again and again: how long a login takes, and refusals.

    The lock-out attacker guesses this user's password from another address;
    the owner must still get in.
    """

    def __init__(self, name: str, password: str, port: int, source: str) -> None:
        self.name = name
        self.password = password
        self.port = port
        self.source = source
        self.latencies: list[float] = []
        self.refused: Counter[str] = Counter()

    async def run(self, stop_at: float, interval: float) -> None:
        """Log in, log out, wait ``interval``; until ``stop_at`` (loop time)."""
        loop = asyncio.get_running_loop()
        cycles = 0
        while loop.time() < stop_at and cycles < MAX_CYCLES:
            cycles += 1
            started = loop.time()
            conn = Conn()
            try:
                await open_conn(self.port, self.source, conn)
                reply = await json_login(conn, self.name, self.password)
            except (OSError, ConnectionError, asyncio.TimeoutError) as e:
                self.refused[type(e).__name__] += 1
            else:
                if reply.get("success"):
                    self.latencies.append(loop.time() - started)
                    conn.send_json({"type": "logout"})
                    # Gone before the next login, or that one is "already logged in".
                    await asyncio.wait([conn.closed], timeout=5.0)
                else:
                    self.refused[str(reply.get("reason"))] += 1
            conn.close()
            await asyncio.sleep(interval)

    def figures(self) -> Obj:
        return {"logins": len(self.latencies), "refused": dict(self.refused), **latency_summary(self.latencies)}


async def collect_mailbox(port: int, name: str, password: str, source: str, quiet: float = 1.5, limit: float = 20.0) -> list[Obj]:
    """Log ``name`` in and gather the direct messages kept for it, until none came for ``quiet`` seconds."""
    loop = asyncio.get_running_loop()
    messages: list[Obj] = []

    def on_line(conn: Conn, line: bytes, obj: Obj | None) -> None:
        if obj is not None and obj.get("type") == "message":
            messages.append(obj)

    conn = await open_conn(port, source, Conn(on_line))
    try:
        reply = await json_login(conn, name, password)
        if not reply.get("success"):
            raise RuntimeError(f"{name} could not log in to read its mailbox: {reply}")
        deadline = loop.time() + limit
        seen, last_change = -1, loop.time()
        while loop.time() < deadline and not conn.is_closed:
            await asyncio.sleep(0.1)
            if len(messages) != seen:
                seen, last_change = len(messages), loop.time()
            elif loop.time() - last_change > quiet:
                break
    finally:
        conn.close()
    return messages


# Misbehaving clients ----------------------------------------------------------------------


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
    b"\xff\xfa\x18" + b"s" * 5000 + b"\r\n",  # past Twisted's 4096-byte cap on one
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


def soak_accounts(args: argparse.Namespace) -> dict[str, str]:
    """Every account of a run: ``user<i>``, the offline ``absent<i>``, the prober, the attackers'."""
    accounts = passwords(args.clients)
    accounts.update({name: f"pw-{name}" for name in absent_names(args)})
    accounts[PROBER] = f"pw-{PROBER}"
    accounts.update({name: f"pw-{name}" for name in attacker_names(args)})
    return accounts


def absent_names(args: argparse.Namespace) -> list[str]:
    """The users who stay offline while others write to them."""
    return [f"absent{i}" for i in range(args.absent)]


def attacker_names(args: argparse.Namespace) -> list[str]:
    """The accounts the attackers of :mod:`bench.attackers` log in with."""
    return (
        [f"amp{i}" for i in range(args.amplifiers)]
        + [f"pager{i}" for i in range(args.amplifiers)]
        + ["mbflood0"]
    )


def offline_share(args: argparse.Namespace, n_good: int) -> float:
    """The share of direct messages sent to offline users: about :data:`OFFLINE_PER_ABSENT`
    for each in the run, so that ordinary senders alone never fill a mailbox."""
    if not args.absent:
        return 0.0
    expected = n_good * args.seconds / args.dm_interval
    return min(0.2, OFFLINE_PER_ABSENT * args.absent / expected)


def make_attackers(server: RunningServer, args: argparse.Namespace, accounts: dict[str, str], rng: random.Random,
                   hello: bytes) -> tuple[dict[str, BadStats], list[Any]]:
    """The attackers of issue 15 (:mod:`bench.attackers`) against ``server``, and their statistics by kind."""
    kinds = set(args.attack_kinds)
    stats = {kind: BadStats() for kind in ATTACK_KINDS}
    made: list[Any] = []
    if server.tls_port and args.idle_tls and "idle_tls" in kinds:
        sources = [attacker_source("idle_tls", n) for n in range(IDLE_TLS_ADDRESSES)]
        made.append(IdleTls(server.tls_port, args.idle_tls, sources, hello, stats["idle_tls"]))
    for i in range(args.amplifiers):
        for kind, name in (("read_amplifier", f"amp{i}"), ("pager", f"pager{i}")):
            if kind not in kinds:
                continue
            made.append(
                ReadAmplifier(i, server.port, accounts[name], stats[kind], random.Random(rng.random()),
                              name=name, source=attacker_source(kind, i), pager=kind == "pager")
            )
    if "mailbox_flooder" in kinds:
        made.append(
            MailboxFlooder(0, server.port, accounts["mbflood0"], stats["mailbox_flooder"], random.Random(rng.random()),
                           name="mbflood0", source=attacker_source("mailbox_flooder", 0), victims=absent_names(args))
        )
    if "lockout" in kinds:
        # The prober's name, guessed from another address (a password is never needed).
        made.append(
            LockoutGuesser(0, server.port, "", stats["lockout"], random.Random(rng.random()),
                           name=PROBER, source=attacker_source("lockout", 0))
        )
    if "telnet_flood" in kinds:
        made.append(
            TelnetFlooder(0, server.port, "", stats["telnet_flood"], random.Random(rng.random()),
                          name="nobody", source=attacker_source("telnet_flood", 0))
        )
    return stats, made


async def soak(server: RunningServer, args: argparse.Namespace, hostile: bool = True, tls: ssl.SSLContext | None = None) -> Obj:
    """Drive ``server`` as ``args`` say; return the figures.

    :param hostile: mix in the misbehaving minority (``--bad-fraction``), and
        with ``--attackers`` the attackers of :mod:`bench.attackers`; without,
        only the ordinary users run (the same ones, doing the same).
    :param tls: the context of the ordinary users who connect over TLS (one
        in :data:`TLS_EVERY`, when the server has an ``ssl:`` port).
    """
    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed)
    accounts = soak_accounts(args)
    n_bad = min(args.clients - 2, max(0, round(args.clients * args.bad_fraction)))
    n_good = args.clients - n_bad
    if not hostile:
        n_bad = 0
    good_ids = list(range(n_good))
    ledger = Ledger()
    sampler = Sampler(server.pid, server.port)
    sampler.start()
    loadavg_start = os.getloadavg()
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu_start = cpu_seconds(server.pid) or 0.0
    rss_start = status_kib(server.pid, "VmRSS")

    # Log the well-behaved clients in, and make their rooms.
    share = offline_share(args, n_good)
    good = [
        GoodClient(
            i, ledger, good_ids, random.Random(rng.random()), absent_names(args), share,
            tls=tls if server.tls_port and i % TLS_EVERY == TLS_EVERY - 1 else None,
        )
        for i in good_ids
    ]
    login_started = loop.time()
    failures = await asyncio.wait_for(
        gather_bounded(
            (g.connect(server.tls_port if g.tls else server.port, accounts[g.name]) for g in good),
            CONNECT_CONCURRENCY,
        ),
        LOGIN_PHASE_LIMIT,
    )
    failed = [f for f in failures if f is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} well-behaved logins failed, e.g. {failed[0]!r}")
    login_seconds = loop.time() - login_started
    if args.room_interval > 0:
        groups = [good[i:i + ROOM_SIZE] for i in range(0, len(good) - 1, ROOM_SIZE)]
        await asyncio.gather(*(group[0].create_room(group) for group in groups if len(group) > 1))
    await asyncio.sleep(1.0)  # let the login presence storm settle
    rss_after_login = status_kib(server.pid, "VmRSS")

    lag_before = await reactor_lag_buckets(server.metrics_port) if server.metrics_port else {}
    waited_before = run_queue_seconds(server.pid) or 0.0

    # The misbehaving minority.
    kinds = ["never_reader", "flooder", "garbage", "disconnecter"]
    stats = {kind: BadStats() for kind in kinds}
    stats["never_reader (asking)"] = BadStats()
    bad: list[BadClient] = []
    for j, index in enumerate(range(n_good, n_good + n_bad)):
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
    attack_stats: dict[str, BadStats] = {}
    attackers: list[Any] = []
    if hostile and args.attackers:
        attack_stats, attackers = make_attackers(server, args, accounts, rng, client_hello())

    prober = LoginProber(PROBER, accounts[PROBER], server.port, source_address(args.clients + CLIENTS_PER_ADDRESS))
    run_started = loop.time()
    stop_at = run_started + args.seconds
    tasks = [
        loop.create_task(g.run(stop_at, args.dm_interval, args.broadcast_interval, args.room_interval)) for g in good
    ]
    tasks += [loop.create_task(prober.run(stop_at, PROBE_INTERVAL))]
    tasks += [loop.create_task(b.run(stop_at)) for b in [*bad, *attackers]]
    done, pending = await asyncio.wait(tasks, timeout=args.seconds + 15)
    for task in pending:
        task.cancel()
    bad_client_errors = Counter(
        type(t.exception()).__name__ for t in done if not t.cancelled() and t.exception() is not None
    )
    for b in [*bad, *attackers]:
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

    # Server figures, before it is stopped; then once every attacker is gone
    # and the server has settled (the ordinary users still logged in).
    hwm = status_kib(server.pid, "VmHWM")
    rss_end = status_kib(server.pid, "VmRSS")
    server_cpu = (cpu_seconds(server.pid) or 0.0) - server_cpu_start
    server_waited = (run_queue_seconds(server.pid) or 0.0) - waited_before
    lag_after = await reactor_lag_buckets(server.metrics_port) if server.metrics_port else {}
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    wall = loop.time() - login_started
    for b in [*bad, *attackers]:
        b.close_all()
    await asyncio.sleep(args.settle)
    rss_settled = status_kib(server.pid, "VmRSS")
    second_wave: Obj | None = None
    if attackers and args.second_wave > 0:
        second_wave = await attack_again(server, args, accounts, rng, rss_settled)
    await sampler.stop()

    for g in good:
        if g.conn is not None and not g.conn.is_closed:
            g.conn.close()
    await asyncio.sleep(0.2)

    # The offline users come back for their mailboxes.
    mailboxes = await asyncio.gather(
        *(collect_mailbox(server.port, name, accounts[name], source_address(args.clients + CLIENTS_PER_ADDRESS))
          for name in absent_names(args))
    )

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
    rm_expected, rm_delivered = ledger.room_deliveries(online)
    offline = mailbox_figures(ledger, absent_names(args), mailboxes)
    all_latency = ledger.dm_latency + ledger.bc_latency + ledger.rm_latency
    rss_samples = [rss for _, rss in sampler.rss_kib]
    log_text = Path(server.workdir.name, "server.log").read_text(errors="replace")
    log_copy: Path = args.server_log or args.output.with_suffix(".log")
    if not hostile:
        log_copy = log_copy.with_name(log_copy.stem + "-quiet" + log_copy.suffix)
    log_copy.parent.mkdir(parents=True, exist_ok=True)
    log_copy.write_text(log_text, encoding="utf-8")
    loadgen_cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    lag = sorted(sampler.lag)
    messages_lost = dm_lost + (bc_expected - bc_delivered) + (rm_expected - rm_delivered) + offline["lost"]

    attack_figures: Obj = {}
    for attacker in attackers:
        if hasattr(attacker, "figures"):
            attack_figures.setdefault(attacker.kind, {}).update(attacker.figures())

    return {
        "config": {
            "clients": args.clients,
            "well_behaved": n_good,
            "misbehaving": n_bad,
            "attackers": {kind: s.clients for kind, s in attack_stats.items()},
            "tls_users": sum(1 for g in good if g.tls is not None),
            "rooms": len(ledger.room_members),
            "absent_users": args.absent,
            "offline_share": round(share, 3),
            "seconds": args.seconds,
            "bad_fraction": args.bad_fraction if hostile else 0.0,
            "dm_interval_s": args.dm_interval,
            "broadcast_interval_s": args.broadcast_interval,
            "room_interval_s": args.room_interval,
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
            "settle_s": args.settle,
        },
        "server": {
            "pid": server.pid,
            "rss_start_mib": mib(rss_start),
            "rss_after_login_mib": mib(rss_after_login),
            "rss_max_sampled_mib": mib(max(rss_samples) if rss_samples else None),
            "peak_rss_vmhwm_mib": mib(hwm),
            "rss_end_mib": mib(rss_end),
            "rss_settled_mib": mib(rss_settled),
            "rss_settled_minus_after_login_mib": mib((rss_settled or 0) - (rss_after_login or 0)),
            "second_wave": second_wave,
            "rss_samples": len(rss_samples),
            "cpu_s": round(server_cpu, 2),
            "cpu_percent_of_wall": round(100 * server_cpu / wall, 1) if wall else None,
            "waited_for_cpu_s": round(server_waited, 2),
            "reactor_lag": reactor_lag(lag_before, lag_after) if lag_after else None,
            "log": str(log_copy),
            "log_tracebacks": log_text.count("Traceback"),
            "log_unhandled_errors": len(re.findall(r"Unhandled (?:Error|error)", log_text)),
            "log_hard_limit_closes": len(re.findall(r"Closing \S+: \d+ bytes unread", log_text)),
        },
        "loadgen": {
            "cpu_s": round(loadgen_cpu, 2),
            "cpu_percent_of_wall": round(100 * loadgen_cpu / wall, 1) if wall else None,
            "under_limit": bool(wall) and 100 * loadgen_cpu / wall < LOADGEN_CPU_LIMIT,
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
            "broadcast_duplicates": ledger.duplicates[BROADCAST_TAG],
            "room_posts_sent": len(ledger.rm_sent),
            "room_posts_acked": len(ledger.rm_acked),
            "room_deliveries_expected": rm_expected,
            "room_deliveries_lost": rm_expected - rm_delivered,
            "room_duplicates": ledger.duplicates[ROOM_TAG],
            "offline": offline,
            "messages_lost": messages_lost,
            "errors": dict(ledger.errors),
            "dropped_notices": ledger.dropped_notices,
            "disconnected_by_server": dict(ledger.disconnected),
            "other_users_lines": ledger.foreign_lines,
            "login_prober": prober.figures(),
        },
        "latency": {
            "direct": latency_summary(ledger.dm_latency),
            "broadcast": latency_summary(ledger.bc_latency),
            "room": latency_summary(ledger.rm_latency),
            "all": latency_summary(all_latency),
        },
        "misbehaving": {kind: s.as_json() for kind, s in stats.items() if s.clients},
        "attackers": {
            kind: {**s.as_json(), **attack_figures.get(kind, {})} for kind, s in attack_stats.items() if s.clients
        },
        "rss_timeline_mib": [[t, round(rss / 1024, 1)] for t, rss in sampler.rss_kib],
        "latency_timeline": latency_timeline(ledger.timeline, run_started),
    }


async def reactor_lag_buckets(port: int) -> dict[str, float]:
    """The server's ``chat_reactor_lag_seconds`` histogram from ``/metrics``: observations at or under each bound."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
    try:
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        body = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    return {
        match.group(1).decode(): float(match.group(2))
        for match in re.finditer(rb'^chat_reactor_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', body, re.M)
    }


def reactor_lag(before: dict[str, float], after: dict[str, float]) -> Obj:
    """How often the server's reactor ran its once-a-second timer late between two histograms, by lateness."""
    total = after.get("+Inf", 0) - before.get("+Inf", 0)
    figures: Obj = {"measurements": int(total)}
    for bound in ("0.05", "0.1", "0.25", "0.5", "1.0"):
        figures[f"later_than_{bound}_s"] = int(total - (after.get(bound, 0) - before.get(bound, 0)))
    return figures


def latency_timeline(timeline: Sequence[tuple[float, float]], start: float) -> list[list[float]]:
    """``[second of the run, deliveries sent then, their largest latency in ms]`` for each second."""
    worst: dict[int, float] = {}
    count: Counter[int] = Counter()
    for sent_at, latency in timeline:
        second = int(sent_at - start)
        count[second] += 1
        worst[second] = max(worst.get(second, 0.0), latency)
    return [[second, count[second], round(1000 * worst[second], 1)] for second in sorted(worst)]


async def attack_again(
    server: RunningServer, args: argparse.Namespace, accounts: dict[str, str], rng: random.Random, rss_before: int | None
) -> Obj:
    """The same attackers once more, for ``--second-wave`` seconds (the ordinary users idle), then
    the RSS once they are gone: memory the allocator keeps from the first wave's peak is used
    again; memory that leaks grows with every wave."""
    loop = asyncio.get_running_loop()
    stats, attackers = make_attackers(server, args, accounts, rng, client_hello())
    stop_at = loop.time() + args.second_wave
    await asyncio.wait([loop.create_task(a.run(stop_at)) for a in attackers], timeout=args.second_wave + 15)
    for attacker in attackers:
        attacker.close_all()
    await asyncio.sleep(args.settle)
    rss_after = status_kib(server.pid, "VmRSS")
    return {
        "seconds": args.second_wave,
        "connections": {kind: s.connections for kind, s in stats.items() if s.clients},
        "rss_before_mib": mib(rss_before),
        "rss_after_mib": mib(rss_after),
        "rss_growth_mib": mib((rss_after or 0) - (rss_before or 0)),
    }


def mailbox_figures(ledger: Ledger, absent: Sequence[str], mailboxes: Sequence[list[Obj]]) -> Obj:
    """What the offline users found in their mailboxes against what the ordinary senders were told was kept."""
    found: Counter[tuple[int, int]] = Counter()
    wrong = 0
    by_sender: Counter[tuple[str, str]] = Counter()
    for name, messages in zip(absent, mailboxes):
        for obj in messages:
            by_sender[(name, str(obj.get("from")))] += 1
            parts = str(obj.get("message", "")).split(" ")
            if len(parts) == 5 and parts[0] == "soak-off":
                key = (int(parts[1]), int(parts[2]))
                found[key] += 1
                if parts[3] != name or obj.get("from") != f"user{parts[1]}":
                    wrong += 1
    kept = [key for key, stored in ledger.off_acked.items() if stored]
    return {
        "sent": len(ledger.off_sent),
        "acked_kept": len(kept),
        "acked_delivered": sum(1 for stored in ledger.off_acked.values() if not stored),
        "refused": dict(ledger.off_refused),
        "unanswered": len(ledger.off_sent) - len(ledger.off_acked) - len(ledger.off_refused_keys),
        "found_in_mailboxes": sum(found.values()),
        "lost": sum(1 for key in kept if found[key] == 0),
        "duplicated": sum(1 for key in kept if found[key] > 1),
        "wrong_recipient": wrong,
        "most_from_one_sender": max(by_sender.values(), default=0),
        "flooder_kept": sum(count for (_, sender), count in by_sender.items() if sender == "mbflood0"),
        "flooder_most_in_one_mailbox": max(
            (count for (_, sender), count in by_sender.items() if sender == "mbflood0"), default=0
        ),
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
    add("server RSS once the misbehaving are gone, settled (MiB)", server["rss_settled_mib"])
    add("server CPU s (% of wall) / waited for a CPU s", f"{server['cpu_s']} ({server['cpu_percent_of_wall']}%) / {server['waited_for_cpu_s']}")
    if server["reactor_lag"]:
        lag_figures = server["reactor_lag"]
        add("server reactor late > 0.1 / 0.25 / 0.5 s (of n)", f"{lag_figures['later_than_0.1_s']} / {lag_figures['later_than_0.25_s']}"
            f" / {lag_figures['later_than_0.5_s']} (of {lag_figures['measurements']})")
    add("server log tracebacks / hard-limit closes", f"{server['log_tracebacks']} / {server['log_hard_limit_closes']}")
    loadgen = results["loadgen"]
    add("load generator CPU s (% of wall)", f"{loadgen['cpu_s']} ({loadgen['cpu_percent_of_wall']}%)"
        + ("" if loadgen["under_limit"] else f"  (!) over {LOADGEN_CPU_LIMIT:g}%: it may have been the limit"))
    add("load generator loop lag p99 / max (ms)", f"{loadgen['loop_lag_p99_ms']} / {loadgen['loop_lag_max_ms']}")
    wb = results["well_behaved"]
    add("DMs sent / acked (stored)", f"{wb['dms_sent']} / {wb['dms_acked']} ({wb['dms_acked_stored']})")
    add("DMs lost / duplicated / out of order", f"{wb['dms_lost']} / {wb['dms_duplicated']} / {wb['dms_out_of_order']}")
    add("broadcasts sent / acked", f"{wb['broadcasts_sent']} / {wb['broadcasts_acked']}")
    add("broadcast deliveries expected / lost / dup", f"{wb['broadcast_deliveries_expected']} / {wb['broadcast_deliveries_lost']} / {wb['broadcast_duplicates']}")
    add("room posts sent / acked", f"{wb['room_posts_sent']} / {wb['room_posts_acked']}")
    add("room deliveries expected / lost / dup", f"{wb['room_deliveries_expected']} / {wb['room_deliveries_lost']} / {wb['room_duplicates']}")
    off = wb["offline"]
    add("DMs to offline users sent / kept / refused", f"{off['sent']} / {off['acked_kept']} / {off['refused'] or 0}")
    add("  kept: found in mailboxes / lost / dup", f"{off['found_in_mailboxes']} / {off['lost']} / {off['duplicated']}")
    add("  mailbox flooder's in all / most in one", f"{off['flooder_kept']} / {off['flooder_most_in_one_mailbox']}")
    add("MESSAGES LOST (well-behaved)", wb["messages_lost"])
    add("well-behaved errors", wb["errors"])
    add("well-behaved dropped notices / disconnects", f"{wb['dropped_notices']} / {wb['disconnected_by_server'] or 0}")
    probe = wb["login_prober"]
    add("login prober: logins / refused", f"{probe['logins']} / {probe['refused'] or 0}")
    add("login prober p50 / p99 / max (ms)", f"{probe['p50_ms']} / {probe['p99_ms']} / {probe['max_ms']}")
    for kind in ("direct", "broadcast", "room", "all"):
        lat = results["latency"][kind]
        add(f"latency {kind} p50 / p99 / max (ms)", f"{lat['p50_ms']} / {lat['p99_ms']} / {lat['max_ms']}  (n={lat['count']})")
    for kind, s in [*results["misbehaving"].items(), *results.get("attackers", {}).items()]:
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
        for name in ("lifetime_s_median", "lifetime_s_max", "sent", "kept", "kept_most_for_one_victim", "refused"):
            if name in s:
                add(f"{kind}: {name.replace('_', ' ')}", s[name])
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


QUICK = {"clients": 24, "seconds": 15.0, "drain_seconds": 10.0, "settle": 4.0, "history_mb": 3.0,
         "idle_tls": 44, "amplifiers": 2}
"""``--quick``: the sizes of a run of both phases in under two minutes."""
FULL = {"clients": 60, "seconds": 30.0, "drain_seconds": 15.0, "settle": 8.0, "history_mb": 10.0,
        "idle_tls": 48, "amplifiers": 3}
"""The sizes without ``--quick``."""
HISTORY_MESSAGE_CHARS = 1000
"""Characters of each message of the history the read amplifiers ask for."""


def run_phase(args: argparse.Namespace, hostile: bool, extra: Sequence[str] = (),
              tls_files: dict[str, Path] | None = None, history: Path | None = None) -> Obj:
    """One soak against a fresh server; its figures.

    :param tls_files: the certificates of :func:`tests.certs.make_certificates`:
        the server also listens with TLS, and some ordinary users use it.
    :param history: a data directory to copy for the server (history already in it).
    """
    options = [*args.server_option, *extra]
    with tempfile.TemporaryDirectory(prefix="chat-soak-") as directory:
        if history is not None:
            data = Path(directory) / "data"
            shutil.copytree(history, data)
            options += ["--data-dir", str(data)]
        server = start_chatservice(
            soak_accounts(args), extra=options, root=args.root.resolve(),
            tls=(tls_files["key"], tls_files["cert"]) if tls_files else None,
            metrics=True,
        )
        context = None
        if tls_files:
            context = ssl.create_default_context(cafile=str(tls_files["ca"]))
        try:
            return asyncio.run(soak(server, args, hostile=hostile, tls=context))
        except BaseException:
            log = Path(server.workdir.name, "server.log")
            if log.exists():
                print("server log (end):\n" + log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            server.stop()


def with_and_without(args: argparse.Namespace) -> Obj:
    """``--attackers``: the same ordinary users on a fresh server without, then with, every attacker;
    ``--pairs`` times, alternating (a machine shared with other work moves a single p99 a lot)."""
    with tempfile.TemporaryDirectory(prefix="chat-soak-setup-") as directory:
        work = Path(directory)
        tls_files = make_certificates(work)
        count = max(1, int(args.history_mb * 1_000_000 / HISTORY_MESSAGE_CHARS))
        fill_seconds = fill_history(args.root.resolve(), work / "history", count, HISTORY_MESSAGE_CHARS)
        pairs = []
        for number in range(args.pairs):
            phases = {}
            for name, hostile in (("without_attackers", False), ("with_attackers", True)):
                print(f"== pair {number + 1}/{args.pairs}: {name.replace('_', ' ')}", file=sys.stderr, flush=True)
                phases[name] = run_phase(args, hostile, tls_files=tls_files, history=work / "history")
            phases["comparison"] = compare(phases["without_attackers"], phases["with_attackers"], args.tolerance_mib)
            pairs.append(phases)
    return {
        "mode": "quick" if args.quick else "full",
        "code": code_version(),
        "root": str(args.root),
        "history": {"messages": count, "mb": args.history_mb, "fill_s": round(fill_seconds, 1)},
        **pairs[0],
        "pairs": pairs[1:],
        "summary": summarise(pairs),
    }


def summarise(pairs: Sequence[Obj]) -> Obj:
    """Every pair's p99 ratios and their median, losses, memory and load generator verdicts in one."""
    ratios: Obj = {}
    for kind in pairs[0]["comparison"]["p99"]:
        values = [pair["comparison"]["p99"][kind]["ratio"] for pair in pairs]
        known = sorted(value for value in values if value is not None)
        ratios[kind] = {"ratios": values, "median": known[len(known) // 2] if known else None}
    return {
        "pairs": len(pairs),
        "p99_ratio": ratios,
        "messages_lost": sum(
            pair[phase]["well_behaved"]["messages_lost"] for pair in pairs for phase in ("without_attackers", "with_attackers")
        ),
        "memory_returned": all(pair["comparison"]["memory_returned"] for pair in pairs),
        "second_wave_rss_growth_mib": [pair["comparison"]["second_wave_rss_growth_mib"] for pair in pairs],
        "loadgen_under_limit": all(pair["comparison"]["loadgen_under_limit"] for pair in pairs),
    }


def compare(quiet: Obj, attacked: Obj, tolerance_mib: float) -> Obj:
    """The attacked phase against the quiet one: latency ratios, memory, losses, the load generator."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else round(a / b, 2)

    latency = {}
    for kind in ("direct", "broadcast", "room", "all"):
        before, after = quiet["latency"][kind]["p99_ms"], attacked["latency"][kind]["p99_ms"]
        latency[kind] = {"p99_ms_without": before, "p99_ms_with": after, "ratio": ratio(after, before)}
    probe_before = quiet["well_behaved"]["login_prober"]["p99_ms"]
    probe_after = attacked["well_behaved"]["login_prober"]["p99_ms"]
    latency["login (prober)"] = {"p99_ms_without": probe_before, "p99_ms_with": probe_after,
                                 "ratio": ratio(probe_after, probe_before)}
    growth_quiet = quiet["server"]["rss_settled_minus_after_login_mib"]
    growth_attacked = attacked["server"]["rss_settled_minus_after_login_mib"]
    left = round(growth_attacked - growth_quiet, 1)
    second = attacked["server"]["second_wave"]
    return {
        "p99": latency,
        "peak_rss_mib": {"without": quiet["server"]["peak_rss_vmhwm_mib"], "with": attacked["server"]["peak_rss_vmhwm_mib"]},
        "rss_growth_after_settling_mib": {"without": growth_quiet, "with": growth_attacked, "left_by_attackers": left},
        "second_wave_rss_growth_mib": None if second is None else second["rss_growth_mib"],
        # A second wave that leaves nothing more: what the first left is the allocator's to reuse.
        "memory_returned": (left if second is None else second["rss_growth_mib"]) <= tolerance_mib,
        "tolerance_mib": tolerance_mib,
        "messages_lost": {"without": quiet["well_behaved"]["messages_lost"], "with": attacked["well_behaved"]["messages_lost"]},
        "loadgen_cpu_percent": {"without": quiet["loadgen"]["cpu_percent_of_wall"], "with": attacked["loadgen"]["cpu_percent_of_wall"]},
        "loadgen_under_limit": quiet["loadgen"]["under_limit"] and attacked["loadgen"]["under_limit"],
    }


def comparison_table(results: Obj) -> str:
    """The two phases side by side."""
    c = results["comparison"]
    quiet, attacked = results["without_attackers"], results["with_attackers"]
    rows = [("figure", "without", "with", "with/without")]
    for kind, figures in c["p99"].items():
        rows.append((f"p99 {kind} (ms)", str(figures["p99_ms_without"]), str(figures["p99_ms_with"]), str(figures["ratio"])))
    rows.append(("messages lost", str(c["messages_lost"]["without"]), str(c["messages_lost"]["with"]), ""))
    rows.append(("server peak RSS VmHWM (MiB)", str(c["peak_rss_mib"]["without"]), str(c["peak_rss_mib"]["with"]), ""))
    for label, key in (("RSS after login (MiB)", "rss_after_login_mib"), ("RSS settled, attackers gone (MiB)", "rss_settled_mib")):
        rows.append((label, str(quiet["server"][key]), str(attacked["server"][key]), ""))
    growth = c["rss_growth_after_settling_mib"]
    rows.append(("RSS settled - after login (MiB)", str(growth["without"]), str(growth["with"]),
                 f"attackers left {growth['left_by_attackers']}"))
    if c["second_wave_rss_growth_mib"] is not None:
        rows.append(("RSS growth by a second wave (MiB)", "", str(c["second_wave_rss_growth_mib"]),
                     f"returned: {c['memory_returned']} (tolerance {c['tolerance_mib']})"))
    rows.append(("load generator CPU %", str(c["loadgen_cpu_percent"]["without"]), str(c["loadgen_cpu_percent"]["with"]),
                 f"< {LOADGEN_CPU_LIMIT:g}: {c['loadgen_under_limit']}"))
    rows.append(("host load (1 min) start, end", str(quiet["config"]["loadavg_1min_start_end"]),
                 str(attacked["config"]["loadavg_1min_start_end"]), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: both phases of --attackers in under 2 min")
    parser.add_argument("--attackers", action="store_true",
                        help="run twice on fresh servers: ordinary users alone, then with the misbehaving"
                             " minority and the attackers of issue 15 (bench.attackers); compare")
    parser.add_argument("--clients", type=int, default=None, help="clients in all (default 60; --quick 24)")
    parser.add_argument("--seconds", type=float, default=None, help="length of the run (default 30; --quick 15)")
    parser.add_argument("--bad-fraction", type=float, default=0.2, help="share of misbehaving clients (default 0.2)")
    parser.add_argument("--dm-interval", type=float, default=1.0, help="seconds between a client's direct messages")
    parser.add_argument("--broadcast-interval", type=float, default=5.0, help="seconds between a client's broadcasts")
    parser.add_argument("--room-interval", type=float, default=3.0,
                        help="seconds between a client's room posts (0: no rooms)")
    parser.add_argument("--absent", type=int, default=4, help="users who stay offline while others write to them")
    parser.add_argument("--drain-seconds", type=float, default=None, help="longest wait for messages in flight")
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds after the misbehaving clients are gone before the RSS is read again")
    parser.add_argument("--history-mb", type=float, default=None,
                        help="--attackers: megabytes of history the read amplifiers ask for (default 10; --quick 3)")
    parser.add_argument("--idle-tls", type=int, default=None,
                        help="--attackers: TLS sockets that never finish the handshake, from 2 addresses (default 48)")
    parser.add_argument("--amplifiers", type=int, default=None,
                        help="--attackers: read amplifiers, and as many pagers (default 3; --quick 2)")
    parser.add_argument("--second-wave", type=float, default=None,
                        help="--attackers: seconds of a second wave of the same attackers after the first has"
                             " settled, to tell memory kept by the allocator from memory that leaks (default: half"
                             " of --seconds; 0: none)")
    parser.add_argument("--pairs", type=int, default=1,
                        help="--attackers: runs without and with attackers, alternating, this many times each")
    parser.add_argument("--attack-kinds", nargs="*", choices=ATTACK_KINDS, default=list(ATTACK_KINDS),
                        help="--attackers: these kinds only (default: all; none: only the misbehaving minority)")
    parser.add_argument("--tolerance-mib", type=float, default=3.0,
                        help="--attackers: how much the second wave may grow the RSS, once settled (without a"
                             " second wave: how much more than without attackers); more is a leak (default 3)")
    parser.add_argument("--seed", type=int, default=6, help="seed of the random choices")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="source tree of the server to run (e.g. an older commit's git archive, to compare)")
    parser.add_argument("--server-option", action="append", default=[],
                        help="a twistd chat option for the server (repeat; e.g. --server-option=--tls-handshake-deadline=1)")
    parser.add_argument(
        "--output", type=Path, default=Path("bench/results/soak.json"), help="where to write the JSON"
    )
    parser.add_argument(
        "--server-log", type=Path, default=None,
        help="where to keep the server's log (default: beside --output, .log)",
    )
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.second_wave is None:
        args.second_wave = args.seconds / 2
    if not args.attackers:
        args.idle_tls = args.amplifiers = 0
    if args.clients < 3 or args.clients > 2000:
        parser.error("--clients must be from 3 to 2000")
    if not 0 <= args.bad_fraction < 1:
        parser.error("--bad-fraction must be in [0, 1)")
    if not 0 < args.seconds <= 3600:
        parser.error("--seconds must be in (0, 3600]")
    if min(args.dm_interval, args.broadcast_interval) < 0.5 or 0 < args.room_interval < 0.5:
        parser.error("intervals below 0.5 s would trip the flood limit")
    if not 1 <= args.pairs <= 10:
        parser.error("--pairs must be from 1 to 10")
    if not 0 <= args.absent <= 100 or not 0 <= args.idle_tls <= 1000 or not 0 <= args.amplifiers <= 100:
        parser.error("--absent, --idle-tls, --amplifiers: from 0 to 100, 1000, 100")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * args.clients + 2 * args.idle_tls + 1000
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, wanted), hard))

    if args.attackers:
        results = with_and_without(args)
        sections = [f"-- {name.replace('_', ' ')}\n" + table(results[name]) for name in ("without_attackers", "with_attackers")]
        for number, pair in enumerate([results, *results["pairs"]]):
            sections.append(f"-- side by side, pair {number + 1}\n" + comparison_table(pair))
        summary = results["summary"]
        if summary["pairs"] > 1:
            sections.append("-- p99 with/without, pair by pair (median)\n" + "\n".join(
                f"{kind:<16} {' '.join(str(r) for r in figures['ratios'])}  ({figures['median']})"
                for kind, figures in summary["p99_ratio"].items()
            ))
        text = "\n\n".join(sections)
        lost = summary["messages_lost"]
    else:
        results = run_phase(args, hostile=True)
        text = table(results)
        lost = results["well_behaved"]["messages_lost"]
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.output}")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
