"""Memory under ``read`` amplifiers: clients that ask for the whole history and never read it.

Run: ``python3 -m bench.read_amplifier [--connections N] [--history-mb M]
[--requests R]`` (defaults: 20 connections, 25 MB of history, 1 request).
It fills a chat database with about ``--history-mb`` megabytes of broadcasts
(messages of ``--message-chars`` characters, spread over the last day), starts
the real ``twistd -n chat`` on it (:func:`bench.servers.start_chatservice`),
then:

1. logs in ``--connections`` JSON clients (small ``SO_RCVBUF``), which stop
   reading;
2. each sends ``{"type":"read","since":0}`` (``read 0``) ``--requests`` times
   (once a ``--request-interval``) and reads nothing; they hold on for
   ``--hold`` seconds;
3. closes them all (a TCP reset, as a client that gives up), then waits
   ``--settle`` seconds;
4. logs in one well-behaved client that reads the whole history (page by
   page when the server pages, paced under the flood limit as a client
   must: a page each 0.21 s) and checks it got every message.

The server's ``VmRSS`` (``/proc/<pid>/status``) is sampled every 0.1 s
throughout; the report gives it at the start (history loaded, nobody
connected), once the clients are logged in, its peak while they hold on,
after they are gone and the server has settled, and after the full read;
also how many of the amplifiers the server closed itself (the output hard
limit) and the bytes each received before it stopped reading.  ``--root DIR``
runs another source tree's server (e.g. ``git archive`` of an older commit)
to compare; ``--server-option`` passes options on.  The figures go to
``--output`` (JSON, default ``bench/results/read_amplifier.json``).

"Returns to baseline" means: after the amplifiers are gone, the RSS is within
``--tolerance-mib`` of what it was once they had logged in (before any
``read``); the exit status is 1 when it is not, or when the full read misses
a message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.procstat import RssSampler, status_kib
from bench.servers import HOST, ROOT, start_chatservice
from bench.soak_clients import Conn, json_login, mib, open_conn, passwords, source_address

PAGES_AT_ONCE = 10
"""Pages the full read asks for back to back, then one a :data:`PAGE_PACE`."""
PAGE_PACE = 0.21
"""Seconds between two pages after the first ones: under ``--flood-rate`` (5 a second)."""
AMPLIFIER_RCVBUF = 4096
"""``SO_RCVBUF`` of an amplifier (the kernel doubles it)."""

_FILL = """
import sys, time
from pathlib import Path
from chatservice.store.sqlite import SQLiteStore
path, count, chars = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
store = SQLiteStore(path)
store.open()
now = time.time()
body = ("history " * (chars // 8 + 1))[: chars - 12]
for i in range(count):
    store.add_history("broadcast", "user0", f"{i:010d} {body}", now - 86400 + i * 86000 / count)
store.close()
"""
"""Run with the server's own code (``--root``), so the database has the schema it expects."""


def fill_history(root: Path, data_dir: Path, count: int, chars: int) -> float:
    """Write ``count`` broadcasts of ``chars`` characters into ``data_dir``'s database; seconds taken."""
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", _FILL, str(data_dir / "chat.sqlite3"), str(count), str(chars)],
        check=True,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    return time.monotonic() - started


async def read_everything(port: int, user: str, password: str, timeout: float) -> tuple[int, int, float]:
    """Log in ``user`` and read the whole history; ``(messages, pages, seconds)``."""
    pages: list[dict[str, Any]] = []

    def is_history(line: bytes, obj: dict[str, Any] | None) -> bool:
        return obj is not None and obj.get("type") in ("history", "error")

    conn = await open_conn(port, HOST, Conn())
    try:
        await json_login(conn, user, password)
        started = time.monotonic()
        request: dict[str, Any] = {"type": "read", "since": 0}
        seen: set[int] = set()
        while True:
            reply = conn.expect(is_history)
            conn.send_json(request)
            page = await asyncio.wait_for(reply, timeout)
            assert page is not None and page["type"] == "history", page
            pages.append(page)
            seen.update(int(message["seq"]) for message in page["messages"])
            if not page.get("more"):
                break
            request = {"type": "read_next", "after": page["next"]}
            if len(pages) >= PAGES_AT_ONCE:
                # Under the server's flood limit (20 lines at once, then 5 a second).
                await asyncio.sleep(PAGE_PACE)
        return len(seen), len(pages), time.monotonic() - started
    finally:
        conn.close()


async def attack(
    args: argparse.Namespace,
    port: int,
    accounts: dict[str, str],
    figures: dict[str, Any],
    mark: Callable[[str], None],
    rss_now: Callable[[], int],
    first: bool,
) -> None:
    """Steps 1 to 3 once (a round): log in, ask without reading, hold on, go; figures into ``figures``."""
    conns: list[Conn] = []
    for index in range(args.connections):
        conn = await open_conn(port, source_address(index), Conn(parse=False), rcvbuf=AMPLIFIER_RCVBUF)
        await json_login(conn, f"user{index + 1}", accounts[f"user{index + 1}"])
        conns.append(conn)
    await asyncio.sleep(1.0)
    if first:
        figures["rss_logged_in_kib"] = rss_now()
    for conn in conns:
        assert conn.transport is not None
        conn.transport.pause_reading()
    if first:
        mark("reads")
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + args.hold
    for _ in range(args.requests):
        for conn in conns:
            conn.write(b'{"type":"read","since":0}\n')
        await asyncio.sleep(args.request_interval)
    await asyncio.sleep(max(0.0, stop_at - loop.time()))
    mark("close")
    figures["rss_before_close_kib"] = max(figures.get("rss_before_close_kib", 0), rss_now())
    closed_by_server = 0
    for conn in conns:
        assert conn.transport is not None
        conn.transport.resume_reading()  # to learn whether the server closed it
    await asyncio.sleep(0.5)
    for conn in conns:
        if conn.is_closed:
            closed_by_server += 1
        conn.reset()
    figures["received_bytes_per_amplifier_max"] = max(
        [figures.get("received_bytes_per_amplifier_max", 0)] + [conn.bytes_in for conn in conns]
    )
    figures["closed_by_server_rounds"].append(closed_by_server)
    await asyncio.sleep(args.settle)
    mark("settled")
    figures["rss_after_rounds_kib"].append(rss_now())


async def amplify(args: argparse.Namespace, port: int, pid: int, sampler: RssSampler) -> dict[str, Any]:
    """Steps 1 to 4 of the module's description; the figures."""
    accounts = passwords(args.connections + 1)
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks[name] = time.monotonic() - sampler.t0

    def rss_now() -> int:
        value = status_kib(pid, "VmRSS")
        assert value is not None, "the server is gone"
        return value

    figures: dict[str, Any] = {"rss_start_kib": rss_now()}
    figures["rss_after_rounds_kib"] = []
    figures["closed_by_server_rounds"] = []
    for round_ in range(args.rounds):
        await attack(args, port, accounts, figures, mark, rss_now, first=round_ == 0)
    figures["rss_after_kib"] = figures["rss_after_rounds_kib"][-1]
    figures["closed_by_server"] = figures["closed_by_server_rounds"][-1]
    try:
        if not args.full_read:
            raise ConnectionError("skipped (--no-full-read)")
        messages, pages, seconds = await read_everything(port, "user0", accounts["user0"], args.read_timeout)
    except (asyncio.TimeoutError, ConnectionError, AssertionError) as e:
        # The old server's one reply is a single line of the whole history,
        # longer than the client takes (1 MiB): it never completes.
        figures["full_read_error"] = f"{type(e).__name__}: {e}"
        messages, pages, seconds = 0, 0, 0.0
    figures["rss_after_full_read_kib"] = rss_now()
    figures["peak_kib"] = max(sampler.between(marks["reads"], marks["settled"]) + [figures["rss_before_close_kib"]])
    figures["hwm_kib"] = status_kib(pid, "VmHWM")
    figures["full_read"] = {"messages": messages, "pages": pages, "seconds": round(seconds, 2)}
    return figures


def table(results: dict[str, Any]) -> str:
    """The figures as text."""
    f = results["figures"]
    lines = [
        f"read amplifiers: {results['connections']} connections x {results['requests']} read 0,"
        f" history {results['history_messages']} messages (~{results['history_mb']} MB),"
        f" code {results['root']}",
        f"  RSS start (history loaded)     {mib(f['rss_start_kib']):8.1f} MiB",
        f"  RSS amplifiers logged in       {mib(f['rss_logged_in_kib']):8.1f} MiB  (baseline)",
        f"  RSS peak (reads to settled)    {mib(f['peak_kib']):8.1f} MiB",
        f"  RSS after they are gone        {mib(f['rss_after_kib']):8.1f} MiB"
        f"  (after each round: {', '.join(str(mib(kib)) for kib in f['rss_after_rounds_kib'])})",
        f"  RSS after one full read        {mib(f['rss_after_full_read_kib']):8.1f} MiB",
        f"  VmHWM                          {mib(f['hwm_kib']):8.1f} MiB",
        f"  amplifiers closed by the server {f['closed_by_server']} / {results['connections']};"
        f" most received by one: {f['received_bytes_per_amplifier_max']} bytes",
        f"  full read: {f['full_read']['messages']} messages in {f['full_read']['pages']} page(s),"
        f" {f['full_read']['seconds']} s {f.get('full_read_error', '')}",
        f"  back to baseline (within {results['tolerance_mib']} MiB): {results['returned_to_baseline']}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=20, help="amplifiers (default 20)")
    parser.add_argument("--history-mb", type=float, default=25.0, help="megabytes of history (default 25)")
    parser.add_argument("--message-chars", type=int, default=1000, help="characters a message (default 1000)")
    parser.add_argument("--requests", type=int, default=1, help="read 0 per amplifier (default 1)")
    parser.add_argument("--request-interval", type=float, default=0.25, help="seconds between two of them")
    parser.add_argument("--rounds", type=int, default=1, help="times the amplifiers come back (default 1)")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds the amplifiers hold on (default 10)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait after they are gone")
    parser.add_argument("--full-read", action=argparse.BooleanOptionalAction, default=True,
                        help="read the whole history at the end (step 4; default: yes)")
    parser.add_argument("--read-timeout", type=float, default=60.0, help="longest wait for a page")
    parser.add_argument("--tolerance-mib", type=float, default=10.0, help="how close to baseline counts as back")
    parser.add_argument("--root", type=Path, default=ROOT, help="source tree of the server to run")
    parser.add_argument("--server-option", action="append", default=[], help="more twistd chat options")
    parser.add_argument("--output", type=Path, default=Path("bench/results/read_amplifier.json"))
    args = parser.parse_args(argv)
    if not 1 <= args.connections <= 500:
        parser.error("--connections must be from 1 to 500")
    count = max(1, int(args.history_mb * 1_000_000 / args.message_chars))
    with tempfile.TemporaryDirectory(prefix="chat-amplifier-") as directory:
        data_dir = Path(directory) / "data"
        fill_seconds = fill_history(args.root.resolve(), data_dir, count, args.message_chars)
        server = start_chatservice(
            passwords(args.connections + 1),
            extra=[
                "--data-dir", str(data_dir),
                "--max-per-address", str(max(20, args.connections)),
                *args.server_option,
            ],
            root=args.root.resolve(),
        )
        sampler = RssSampler(server.pid, interval=0.1).start()
        try:
            time.sleep(2.0)  # the service logs in its start, loads its state
            figures = asyncio.run(amplify(args, server.port, server.pid, sampler))
        finally:
            sampler.stop()
            server.stop()
    returned = figures["rss_after_kib"] - figures["rss_logged_in_kib"] <= args.tolerance_mib * 1024
    results = {
        "connections": args.connections,
        "requests": args.requests,
        "history_messages": count,
        "history_mb": args.history_mb,
        "fill_seconds": round(fill_seconds, 1),
        "root": str(args.root),
        "server_options": args.server_option,
        "tolerance_mib": args.tolerance_mib,
        "returned_to_baseline": returned,
        "figures": figures,
        "rss_samples": sampler.samples,
    }
    print(table(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.output}")
    complete = figures["full_read"]["messages"] == count or not args.full_read
    if not complete:
        print(f"the full read got {figures['full_read']['messages']} of {count} messages")
    return 0 if returned and complete else 1


if __name__ == "__main__":
    sys.exit(main())
