"""The attacks of issue 15, as soak clients: what one attacker on the same network may try.

:mod:`bench.soak` mixes these in with ``--attackers`` (each kind on its own
loopback addresses, ``127.2.<kind>.<n>``, so no per-address cap of the
ordinary users is touched):

``idle_tls``
    Raw TCP connections to the ``ssl:`` listener that never finish the TLS
    handshake: every other one sends nothing, the others half a ClientHello.
    More per address than the per-address cap allows.  Each is reopened
    when the server ends it; how long the server let it live is recorded
    (the handshake deadline bounds it; one refused at once lives
    milliseconds).
``read_amplifier``
    Logs in (small ``SO_RCVBUF``), stops reading and sends ``read 0`` (the
    whole history, a page a reply) four times a second until the server
    closes it; then comes back.
``pager``
    As ``read_amplifier``, but pages through the history with ``read_next``
    at cursors it makes up (spread over the history's day), never reading a
    reply: every request is a store query at another place.
``mailbox_flooder``
    One account sending direct messages to users who are offline, to fill
    their mailboxes: :data:`PER_VICTIM` to one (ten, five a second, then
    twenty at once, the flood limit's burst), then the next, round and
    round; it counts what the server kept and refused.
``lockout``
    Wrong passwords for an ordinary user's name (the login prober's) from
    one address, again and again: the owner, from another address, must
    still log in.
``telnet_flood``
    A text connection (never logged in) sending bytes that are not lines:
    64 KiB of ``IAC NOP``, then 64 KiB of random bytes without a newline, and
    so on, one each :data:`TELNET_FLOOD_INTERVAL` (3 MiB a second); it reads
    and discards what comes back, and comes back when closed.  Twisted's
    telnet parser took 15 to 25 ms of the server's one thread for each.

Every loop is bounded in time (the run's end) and count (:data:`MAX_CYCLES`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, Sequence

from bench.soak_clients import MAX_CYCLES, BadClient, BadStats, Conn, Obj, json_login, open_conn

ATTACK_KINDS = ("idle_tls", "read_amplifier", "pager", "mailbox_flooder", "lockout", "telnet_flood")
"""The kinds, in the order of their address blocks."""
AMPLIFIER_RCVBUF = 4096
"""``SO_RCVBUF`` of a read amplifier (the kernel doubles it)."""
REQUEST_INTERVAL = 0.25
"""Seconds between two requests of an amplifier (under the flood limit of 5 a second)."""
HISTORY_SPAN = 86400.0
"""Seconds of history the pager makes cursors over (:func:`bench.read_amplifier.fill_history` spreads it over a day)."""
STAGGER = 0.02
"""Seconds between the first connections of two idle TLS sockets."""
GUESS_INTERVAL = 0.3
"""Seconds between two wrong passwords of the lock-out attacker."""
FLOOD_BURST = 20
"""Direct messages the mailbox flooder sends at once (the server's ``--flood-burst``)."""
TELNET_FLOOD_CHUNK = 65536
"""Bytes of each write of the telnet flooder."""
TELNET_FLOOD_INTERVAL = 0.02
"""Seconds between two writes of the telnet flooder."""
PER_VICTIM = 30
"""Direct messages the mailbox flooder sends one victim before it turns to the next (a share is 25)."""
BURST_AFTER = 10
"""Direct messages to a victim after which the mailbox flooder sends the rest at once."""


def attacker_source(kind: str, number: int) -> str:
    """The loopback address attacker ``number`` of ``kind`` connects from."""
    return f"127.2.{ATTACK_KINDS.index(kind)}.{1 + number % 250}"


class IdleTls:
    """Keeps ``count`` sockets open on the TLS port that never finish their handshake.

    :param hello: a real ClientHello; half of it is what every other socket sends.
    :param sources: the addresses the sockets are spread over.
    """

    kind = "idle_tls"

    def __init__(self, port: int, count: int, sources: Sequence[str], hello: bytes, stats: BadStats) -> None:
        self.port = port
        self.count = count
        self.sources = list(sources)
        self.half_hello = hello[: len(hello) // 2]
        self.stats = stats
        self.conns: list[Conn] = []
        self.lifetimes: list[float] = []
        stats.clients += count

    async def _one(self, slot: int, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        source = self.sources[slot % len(self.sources)]
        await asyncio.sleep(slot * STAGGER)  # not all in one turn of this process's loop
        cycles = 0
        while loop.time() < stop_at and cycles < MAX_CYCLES:
            cycles += 1
            conn = Conn(parse=False)
            try:
                await open_conn(self.port, source, conn)
            except (OSError, asyncio.TimeoutError) as e:
                self.stats.connect_failures[type(e).__name__] += 1
                await asyncio.sleep(0.5)
                continue
            opened = loop.time()
            self.stats.connections += 1
            self.conns.append(conn)
            conn.closed.add_done_callback(lambda _, conn=conn: self.stats.ended(conn))
            if slot % 2:
                conn.write(self.half_hello)
            await asyncio.wait([conn.closed], timeout=max(0.0, stop_at - loop.time()))
            if conn.is_closed and not conn.closed_by_us:
                lived = loop.time() - opened
                self.lifetimes.append(lived)
                self.stats.notes["refused at once (< 0.5 s)" if lived < 0.5 else "closed after the deadline"] += 1
                await asyncio.sleep(0.2 if lived >= 0.5 else 1.0)

    async def run(self, stop_at: float) -> None:
        await asyncio.gather(*(self._one(slot, stop_at) for slot in range(self.count)))

    def close_all(self) -> None:
        for conn in self.conns:
            if not conn.is_closed:
                conn.close()

    def figures(self) -> Obj:
        """How long the server let the sockets live (those it ended)."""
        lived = sorted(self.lifetimes)
        deadline_closes = [t for t in lived if t >= 0.5]
        return {
            "lifetime_s_median": round(deadline_closes[len(deadline_closes) // 2], 2) if deadline_closes else None,
            "lifetime_s_max": round(lived[-1], 2) if lived else None,
        }


class ReadAmplifier(BadClient):
    """Logs in, stops reading, asks for history four times a second until closed; comes back.

    :param pager: ask for pages at made-up cursors (``read_next``) rather than ``read 0``.
    """

    kind = "read_amplifier"

    def __init__(self, *args: Any, pager: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pager = pager
        self.requests = 0

    def request(self, now: float) -> bytes:
        """The next request: ``read 0``, or a page at a random point of the last day."""
        if not self.pager:
            return b'{"type":"read","since":0}\n'
        at = now - self.rng.uniform(0, HISTORY_SPAN)
        return b'{"type":"read_next","after":"%r/broadcast/0"}\n' % at

    async def run(self, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        async for conn in self.sessions(stop_at, lambda: Conn(parse=False), AMPLIFIER_RCVBUF):
            assert conn.transport is not None
            conn.transport.pause_reading()
            sent = 0
            while not conn.is_closed and loop.time() < stop_at and self.requests < MAX_CYCLES:
                conn.write(self.request(time.time()))  # cursors hold epoch seconds
                self.requests += 1
                sent += 1
                await asyncio.wait([conn.closed], timeout=REQUEST_INTERVAL)
            if conn.is_closed and not conn.closed_by_us:
                self.stats.notes[f"closed after {'< 10' if sent < 10 else '10-39' if sent < 40 else '40+'} requests"] += 1
                await asyncio.sleep(0.5)


class MailboxFlooder(BadClient):
    """Fills the offline mailboxes of ``victims`` with direct messages, counting what was kept.

    :param victims: accounts that stay offline during the run.
    """

    kind = "mailbox_flooder"

    def __init__(self, *args: Any, victims: Sequence[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.victims = list(victims)
        self.kept: Counter[str] = Counter()
        """Messages the server acknowledged as kept, by victim."""
        self.refused: Counter[str] = Counter()
        self.sent = 0

    def on_line(self, conn: Conn, line: bytes, obj: Obj | None) -> None:
        if obj is None or not str(obj.get("id", "")).startswith("f:"):
            return
        victim = str(obj["id"]).split(":", 2)[2]
        if obj.get("type") == "message_status" and obj.get("stored"):
            self.kept[victim] += 1
        elif obj.get("type") == "message_status":
            self.stats.notes["delivered (victim online?)"] += 1
        elif obj.get("type") == "error":
            self.refused[str(obj.get("code"))] += 1

    async def run(self, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        async for conn in self.sessions(stop_at, lambda: Conn(self.on_line)):
            while not conn.is_closed and loop.time() < stop_at and self.sent < 100 * MAX_CYCLES:
                # One a 0.2 s, then a burst when the victim's share is nearly
                # taken (all in flight at once: a share counted before the
                # burst's messages are kept would let them all in).
                victim = self.victims[(self.sent // PER_VICTIM) % len(self.victims)]
                burst = FLOOD_BURST if self.sent % PER_VICTIM == BURST_AFTER else 1
                for _ in range(min(burst, PER_VICTIM - self.sent % PER_VICTIM)):
                    conn.send_json(
                        {"type": "message", "to": victim, "message": f"flood {self.sent}", "id": f"f:{self.sent}:{victim}"}
                    )
                    self.sent += 1
                await asyncio.sleep(0.2)
            if conn.is_closed:
                await asyncio.sleep(0.5)

    def figures(self) -> Obj:
        return {
            "sent": self.sent,
            "kept": sum(self.kept.values()),
            "kept_most_for_one_victim": max(self.kept.values(), default=0),
            "refused": dict(self.refused),
        }


class LockoutGuesser(BadClient):
    """Sends wrong passwords for ``self.name`` (someone else's account) from one address."""

    kind = "lockout"

    async def run(self, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        cycles = 0
        guesses = 0
        conn: Conn | None = None
        while loop.time() < stop_at and cycles < MAX_CYCLES:
            if conn is None or conn.is_closed:
                cycles += 1
                conn = await self.connect(Conn())
                if conn is None:
                    await asyncio.sleep(0.5)
                    continue
            guesses += 1
            try:
                reply = await asyncio.wait_for(
                    json_login(conn, self.name, f"guess-{guesses}"), max(0.1, stop_at - loop.time() + 5)
                )
            except (ConnectionError, asyncio.TimeoutError) as e:
                self.stats.login_refused[type(e).__name__] += 1
                continue
            self.stats.login_refused[str(reply.get("reason") if not reply.get("success") else "accepted!")] += 1
            await asyncio.sleep(GUESS_INTERVAL)
        if conn is not None and not conn.is_closed:
            conn.close()


class TelnetFlooder(BadClient):
    """Sends ``IAC NOP`` and random bytes without a newline to a text connection, never logging in."""

    kind = "telnet_flood"

    def chunk(self, number: int) -> bytes:
        """The ``number``-th write: ``IAC NOP`` repeated, or random bytes without LF, in turn."""
        if number % 2 == 0:
            return b"\xff\xf1" * (TELNET_FLOOD_CHUNK // 2)
        return self.rng.randbytes(TELNET_FLOOD_CHUNK).replace(b"\n", b"-")

    async def run(self, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        written = 0
        async for conn in self.sessions(stop_at, lambda: Conn(parse=False), login=False):
            number = 0
            while not conn.is_closed and loop.time() < stop_at and written < 100 * MAX_CYCLES * TELNET_FLOOD_CHUNK:
                conn.write(self.chunk(number))
                number += 1
                written += TELNET_FLOOD_CHUNK
                await conn.drain(stop_at)
                await asyncio.sleep(TELNET_FLOOD_INTERVAL)
            self.stats.notes["64 KiB writes"] += number
            if conn.is_closed and not conn.closed_by_us:
                await asyncio.sleep(0.5)
