"""How long each :class:`~chatservice.store.sqlite.SQLiteStore` call holds its caller (the reactor).

Every call of the chat store runs on the reactor thread, so its duration is
time no other client is served.  This script opens a store on a temporary
file, times each call with ``time.perf_counter_ns`` and prints p50, p99 and
maximum in microseconds per kind of call: first back to back (a burst: 10,000
``add_offline``, ``add_history`` and ``remove_offline`` calls, fewer of the
others), then as a steady mixed load with gaps (a tick every 4 ms: a direct
message kept and a room message posted, a ``read`` every 5 ticks, a login's
delivery every 10), with a page of ``read`` (``history_page``) and the
history retention's batches (``purge_history``: cutting the history to a
tenth, and a sweep with nothing due)::

    python bench/store_latency.py                      # the default settings
    python bench/store_latency.py --calls 2000 --all   # also other settings

``--all`` also measures ``synchronous=FULL`` (an fsync per commit) and SQLite's
own checkpoints inside commits (``background_checkpoints=False``), to show
what the defaults avoid.  The temporary directory is on the same file system
as ``--dir`` (default: the system's temporary directory); put it where the
server's ``--data-dir`` would be to measure that disk.

``--postgres`` measures :class:`~chatservice.store.postgres.PostgresStore`
instead, on a throw-away cluster started as the tests start it
(``tests/pg_support.py``), or ``--postgres DSN`` on an existing (empty)
database.  Its calls run in the adbapi pool's thread, so what matters is
different: the time from a call to its Deferred firing (one at a time: the
round trip), the calls per second when 1000 are made at once, and that the
reactor is never blocked meanwhile: a ``LoopingCall`` every millisecond
records how late each of its ticks is (the reactor's lag), while the calls
run and, for comparison, while nothing does::

    python bench/store_latency.py --postgres                 # throw-away cluster
    python bench/store_latency.py --postgres postgresql://chat:pw@127.0.0.1/chatbench
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatservice.retention import BATCH  # noqa: E402
from chatservice.store.interface import HistoryPosition  # noqa: E402
from chatservice.store.sqlite import SQLiteStore  # noqa: E402

T = 1_700_000_000.0
USERS = [f"user{i:03d}" for i in range(100)]
CHANNELS = ["broadcast"] + [f"room:{i}" for i in range(1, 11)]
PACE = 0.004
"""Seconds between two paced calls."""
TEXT = "The quick brown fox jumps over the lazy dog; a chat line of a typical length."


class Timings:
    """Call durations in nanoseconds, by name."""

    def __init__(self) -> None:
        self.samples: dict[str, list[int]] = {}
        self.notes: list[str] = []

    def time(self, name: str, call: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter_ns()
        result = call(*args)
        self.samples.setdefault(name, []).append(time.perf_counter_ns() - start)
        return result

    def table(self, title: str) -> str:
        rows = [f"{title}", f"{'call':<28}{'n':>7}{'p50 µs':>10}{'p99 µs':>10}{'max µs':>10}"]
        for name, samples in self.samples.items():
            ordered = sorted(samples)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            rows.append(
                f"{name:<28}{len(ordered):>7}{statistics.median(ordered) / 1000:>10.1f}"
                f"{p99 / 1000:>10.1f}{ordered[-1] / 1000:>10.1f}"
            )
        return "\n".join(rows + self.notes)


def run(directory: Path, calls: int, paced: int, **settings: Any) -> Timings:
    """Time ``calls`` calls of each kind back to back, then ``paced`` ticks of a mixed load."""
    path = directory / "chat.sqlite3"
    timings = Timings()
    store = SQLiteStore(path, **settings)
    timings.time("open (new file)", store.open)

    ids = []
    for i in range(calls):
        message = timings.time(
            "add_offline", store.add_offline, "sender", USERS[i % len(USERS)], TEXT, T + i
        )
        ids.append(message.message_id)
    for i in range(calls):
        timings.time("add_history", store.add_history, CHANNELS[i % len(CHANNELS)], "sender", TEXT, T + i)
    for i in range(min(calls, 2000)):
        timings.time("record_seen", store.record_seen, USERS[i % len(USERS)], T + i)
        timings.time("add_block", store.add_block, USERS[i % len(USERS)], USERS[(i * 7) % len(USERS)])
        timings.time("save_room (3 members)", store.save_room, i % 50 + 1, frozenset(USERS[i % 90 : i % 90 + 3]))
    for i in range(min(calls, 1000)):
        timings.time(
            "history_after (last 60 s)", store.history_after, CHANNELS[:4], T + calls - 60
        )
    for i in range(min(calls, 1000)):
        start = HistoryPosition(T + (i * 37) % calls, "", 0)
        timings.time("history_page (101 of 11 channels)", store.history_page, CHANNELS, start, 101)
    for user in USERS:
        timings.time(f"offline_messages (~{calls // len(USERS)})", store.offline_messages, user)
    for message_id in ids:
        timings.time("remove_offline (1 id)", store.remove_offline, [message_id])
    for i in range(0, calls, 20):
        batch = [
            store.add_offline("sender", "batch", TEXT, T + i + j).message_id for j in range(20)
        ]
        timings.time("remove_offline (20 ids)", store.remove_offline, batch)
    # Retention: the history cut to its last tenth per channel, by count then by
    # age, a batch of BATCH rows a call (as the server does, a call a turn).
    keep = max(1, calls // len(CHANNELS) // 10)
    while timings.time(f"purge_history (by count, {BATCH} a call)", store.purge_history, None, keep, BATCH):
        pass
    while timings.time(f"purge_history (by age, {BATCH} a call)", store.purge_history, T + calls * 0.95, None, BATCH):
        pass
    for _ in range(100):
        timings.time("purge_history (nothing due)", store.purge_history, T + calls * 0.95, keep, BATCH)
    timings.time("close", store.close)
    size = path.stat().st_size
    store = SQLiteStore(path, **settings)
    timings.time(f"open (existing, {size // 1024} KiB)", store.open)
    store.close()

    # A steady mixed load with gaps, like a busy chat server, on a new file:
    # every tick a direct message kept and a room message posted, a `read`
    # every 5 ticks, a login delivering a user's messages every 10.
    path = directory / "paced.sqlite3"
    wal = path.with_name(path.name + "-wal")
    store = SQLiteStore(path, **settings)
    store.open()
    largest_log = 0
    writes, reads = f"paced writes ({PACE * 1000:g} ms)", f"paced reads ({PACE * 1000:g} ms)"
    for i in range(paced):
        user = USERS[i % len(USERS)]
        timings.time(writes, store.add_offline, "sender", user, TEXT, T + i)
        timings.time(writes, store.add_history, CHANNELS[i % len(CHANNELS)], "sender", TEXT, T + i)
        if i % 5 == 0:
            timings.time(reads, store.history_after, CHANNELS[:3], T + i - 30)
        if i % 10 == 0:
            kept = timings.time(reads, store.offline_messages, USERS[(i // 10) % len(USERS)])
            timings.time(writes, store.remove_offline, [m.message_id for m in kept])
        time.sleep(PACE)
        if wal.exists():
            largest_log = max(largest_log, wal.stat().st_size)
    store.close()
    for name in (writes, reads):
        slow = sum(1 for sample in timings.samples[name] if sample > 2_000_000)
        timings.notes.append(f"{name}: {slow} calls over 2 ms")
    timings.notes.append(
        f"largest log file (-wal) during the paced calls: {largest_log // 1024} KiB"
    )
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000, help="calls of each main kind")
    parser.add_argument("--paced", type=int, default=2000, help=f"ticks of the paced mixed load, {PACE}s apart")
    parser.add_argument("--dir", type=Path, default=None, help="where to make the temporary file")
    parser.add_argument("--all", action="store_true", help="also measure the other settings")
    parser.add_argument(
        "--postgres", nargs="?", const="", default=None, metavar="DSN",
        help="measure PostgresStore (on a throw-away cluster unless a DSN is given)",
    )
    options = parser.parse_args()
    if options.postgres is not None:
        main_postgres(options.postgres, options.calls)
        return

    configurations: list[tuple[str, dict[str, Any]]] = [
        ("default: synchronous=NORMAL, checkpoints in a background thread", {}),
    ]
    if options.all:
        configurations += [
            (
                "synchronous=NORMAL, SQLite's automatic checkpoints in the committing call",
                {"background_checkpoints": False},
            ),
            ("synchronous=FULL (fsync per commit), background checkpoints", {"synchronous": "FULL"}),
        ]
    print(f"Python {sys.version.split()[0]}, SQLite {__import__('sqlite3').sqlite_version}")
    for title, settings in configurations:
        directory = Path(tempfile.mkdtemp(prefix="chat-store-bench-", dir=options.dir))
        try:
            timings = run(directory, options.calls, options.paced, **settings)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        print()
        print(timings.table(f"{title} (temporary file in {directory.parent})"))


LAG_TICK = 0.001
"""Seconds between the ticks that measure the reactor's lag."""


class LagMeter:
    """How late a ``LoopingCall`` every :data:`LAG_TICK` seconds runs: the reactor's lag."""

    def __init__(self, reactor: Any) -> None:
        from twisted.internet.task import LoopingCall

        self.reactor = reactor
        self.lags: list[float] = []
        self._last = 0.0
        self._loop = LoopingCall(self._tick)
        self._loop.clock = reactor

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last:
            self.lags.append(max(0.0, now - self._last - LAG_TICK))
        self._last = now

    def start(self) -> None:
        self.lags, self._last = [], 0.0
        self._loop.start(LAG_TICK, now=True)

    def stop(self) -> str:
        """Stop, and describe the lags measured (ms)."""
        self._loop.stop()
        ordered = sorted(self.lags) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (
            f"reactor lag over {len(ordered)} ticks: p50 {statistics.median(ordered) * 1000:.2f} ms,"
            f" p99 {p99 * 1000:.2f} ms, max {ordered[-1] * 1000:.2f} ms"
        )


async def run_postgres(reactor: Any, dsn: str, calls: int) -> Timings:
    """Time PostgresStore calls one at a time, then 1000 at once, measuring the reactor's lag."""
    from twisted.internet.defer import gatherResults
    from twisted.internet.task import deferLater

    from chatservice.store.postgres import PostgresStore

    timings = Timings()
    meter = LagMeter(reactor)

    async def timed(name: str, call: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter_ns()
        result = await call(*args)
        timings.samples.setdefault(name, []).append(time.perf_counter_ns() - start)
        return result

    store = PostgresStore(dsn, reactor)
    await timed("open (new database)", store.open)
    meter.start()
    await deferLater(reactor, 1.0, lambda: None)
    timings.notes.append("idle, for comparison: " + meter.stop())

    meter.start()
    ids = []
    for i in range(calls):
        message = await timed("add_offline", store.add_offline, "sender", USERS[i % len(USERS)], TEXT, T + i)
        ids.append(message.message_id)
    for i in range(calls):
        await timed("add_history", store.add_history, CHANNELS[i % len(CHANNELS)], "sender", TEXT, T + i)
    for i in range(min(calls, 2000)):
        await timed("record_seen", store.record_seen, USERS[i % len(USERS)], T + i)
        await timed("add_block", store.add_block, USERS[i % len(USERS)], USERS[(i * 7) % len(USERS)])
        await timed("save_room (3 members)", store.save_room, i % 50 + 1, frozenset(USERS[i % 90 : i % 90 + 3]))
    for i in range(min(calls, 1000)):
        await timed("history_after (last 60 s)", store.history_after, CHANNELS[:4], T + calls - 60)
    for user in USERS:
        await timed(f"offline_messages (~{calls // len(USERS)})", store.offline_messages, user)
    for message_id in ids:
        await timed("remove_offline (1 id)", store.remove_offline, [message_id])
    timings.notes.append("one call at a time: " + meter.stop())

    # 1000 calls made at once (as a burst of chat traffic would): the pool's
    # thread runs them in order while the reactor goes on.
    meter.start()
    started = time.perf_counter()
    made = [store.add_history(CHANNELS[i % len(CHANNELS)], "sender", TEXT, T + i) for i in range(1000)]
    made += [store.add_offline("sender", USERS[i % len(USERS)], TEXT, T + i) for i in range(1000)]
    making = time.perf_counter() - started
    await gatherResults(made)
    elapsed = time.perf_counter() - started
    timings.notes.append(
        f"2000 writes made at once: {elapsed:.2f} s, {2000 / elapsed:.0f} calls/s; making them"
        f" took the reactor {making * 1000:.1f} ms ({making / 2000 * 1e6:.0f} µs a call); "
        + meter.stop()
    )
    await timed("close", store.close)
    return timings


def main_postgres(dsn: str, calls: int) -> None:
    """Measure PostgresStore on ``dsn``, or on a throw-away cluster when it is empty."""
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    if not dsn:
        import psycopg

        from tests import pg_support

        server = pg_support.cluster()
        server.admin("CREATE DATABASE chat_bench")
        dsn = server.dsn("chat_bench")
        with psycopg.connect(server.dsn(), autocommit=True) as connection:
            (version,) = connection.execute("SHOW server_version").fetchone()
        where = f"throw-away PostgreSQL {version} cluster on 127.0.0.1 (fsync off)"
    else:
        where = "the given database"
    print(f"Python {sys.version.split()[0]}, PostgresStore through adbapi and psycopg, {where}")

    async def measure(reactor: Any) -> None:
        timings = await run_postgres(reactor, dsn, calls)
        print()
        print(timings.table("PostgresStore: time from each call to its Deferred firing"))

    react(lambda reactor: ensureDeferred(measure(reactor)))


if __name__ == "__main__":
    main()
