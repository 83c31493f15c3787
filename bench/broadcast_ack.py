"""How long a broadcast's sender waits for its acknowledgement in a cluster: ``python3 -m bench.broadcast_ack``.

Two nodes (``a`` and ``b``: ``twistd -n chat --redis ... --store
postgresql://...``) on a throw-away ``redis-server`` and PostgreSQL (the test
suite's, :mod:`tests.redis_support` and :mod:`tests.pg_support`), receivers
logged in on both, and one sender on ``a`` that sends a broadcast (JSON
lines), waits for its ``broadcast_status`` and sends the next: the time from
sending to the status is the acknowledgement's latency, one broadcast at a
time (so the figure is the path's latency, not a queue's).  The receivers read
everything they get.

With ``--base DIR`` (another checkout, e.g. ``git worktree add /tmp/base
<commit>``) its code runs the same, in alternating rounds (this checkout,
the base, this checkout, ...), so that the load of a shared machine falls on
both alike; each round has fresh nodes, a fresh database and Redis to
itself.  Every figure is printed with the load averages around it.

Usage::

    python3 -m bench.broadcast_ack [--base DIR] [--receivers N] [--broadcasts N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import log
from bench.peers import CHAT_RAISED
from bench.servers import HOST, ROOT, start_chatservice

PASSWORD = "bench-pw"
READY = b'"type":"login","success":true'


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


async def _logged_in(port: int, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A JSON connection to ``port``, logged in as ``name`` (again while the node is still starting)."""
    deadline = time.monotonic() + 30
    while True:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        writer.write(_line({"type": "login", "user": name, "password": PASSWORD}))
        while True:
            line = await asyncio.wait_for(reader.readline(), 30)
            if READY in line:
                return reader, writer
            if not line or b'"type":"disconnect"' in line:
                break  # a node that is still loading refuses connections ("starting")
            if b'"success":false' in line or b'"type":"error"' in line:
                raise RuntimeError(f"{name}: login refused: {line!r}")
        writer.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: the node did not take the login within 30 s")
        await asyncio.sleep(0.2)


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(1 << 16):
        pass


async def _measure(ports: list[int], receivers: int, broadcasts: int) -> list[float]:
    """Seconds from each broadcast's line to its ``broadcast_status``, one at a time."""
    sender_reader, sender = await _logged_in(ports[0], "sender")
    connections = [
        await _logged_in(ports[i % 2], f"r{i}") for i in range(receivers)
    ]
    drains = [asyncio.ensure_future(_drain(reader)) for reader, _ in connections]
    await asyncio.sleep(1.0)  # every node knows every user (their "on" messages arrived)
    latencies = []
    try:
        for number in range(broadcasts):
            started = time.perf_counter()
            sender.write(_line({"type": "broadcast", "message": f"ack {number}"}))
            while True:
                line = await asyncio.wait_for(sender_reader.readline(), 30)
                if not line:
                    raise RuntimeError("the sender was disconnected")
                if b'"broadcast_status"' in line:
                    break
            latencies.append(time.perf_counter() - started)
            status = json.loads(line)
            expected = receivers
            if status.get("delivered") != expected or status.get("unreached"):
                raise RuntimeError(f"broadcast {number} reached {status}, not {expected} receivers")
    finally:
        for drain in drains:
            drain.cancel()
        for _, writer in [*connections, (sender_reader, sender)]:
            writer.close()
    return latencies


def _round(root: Path, label: str, redis: Any, database: Any, number: int, receivers: int, broadcasts: int) -> dict[str, Any]:
    """One round: two fresh nodes of ``root``'s code, measured; their load averages."""
    dbname = f"bench_ack_{number}_{os.getpid()}"
    database.admin(f"CREATE DATABASE {dbname}")
    accounts = {name: PASSWORD for name in ["sender", *(f"r{i}" for i in range(receivers))]}
    nodes = []
    try:
        for node in ("a", "b"):
            options = [
                *(item for pair in CHAT_RAISED.items() for item in pair),
                "--redis", redis.url, "--store", database.dsn(dbname), "--node-name", f"{number}{node}",
            ]
            nodes.append(start_chatservice(accounts, extra=options, root=root))
        load_before = os.getloadavg()
        latencies = asyncio.run(_measure([n.port for n in nodes], receivers, broadcasts))
        load_after = os.getloadavg()
    finally:
        for running in nodes:
            running.stop()
        database.admin(f"DROP DATABASE IF EXISTS {dbname}")
    ordered = sorted(latencies)
    figures = {
        "checkout": label,
        "p50_ms": 1000 * statistics.median(ordered),
        "p90_ms": 1000 * ordered[int(0.9 * (len(ordered) - 1))],
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "mean_ms": 1000 * statistics.fmean(ordered),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
    }
    log(
        f"{label}: p50 {figures['p50_ms']:.2f} ms, p90 {figures['p90_ms']:.2f}, p99 {figures['p99_ms']:.2f},"
        f" mean {figures['mean_ms']:.2f} (load {figures['load_before']} -> {figures['load_after']})"
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="another checkout to compare with")
    parser.add_argument("--receivers", type=int, default=20, help="receivers, half on each node (default 20)")
    parser.add_argument("--broadcasts", type=int, default=300, help="broadcasts a round (default 300)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each checkout (default 2)")
    options = parser.parse_args(argv)
    from tests import pg_support
    from tests.redis_support import RedisServer

    checkouts = [("this checkout", ROOT)]
    if options.base is not None:
        checkouts.append(("base", options.base.resolve()))
    database = pg_support.cluster()
    results = []
    number = 0
    for _ in range(options.rounds):
        for label, root in checkouts:
            # A Redis of its own each round: pub/sub channels are not per database.
            redis = RedisServer().start()
            try:
                results.append(_round(root, label, redis, database, number, options.receivers, options.broadcasts))
            finally:
                redis.cleanup()
            number += 1
    print(f"broadcast acknowledgement, 2 nodes, {options.receivers} receivers, {options.broadcasts} broadcasts a round")
    for label, _ in checkouts:
        mine = [r for r in results if r["checkout"] == label]
        p50 = statistics.median(r["p50_ms"] for r in mine)
        p99 = statistics.median(r["p99_ms"] for r in mine)
        loads = [r["load_before"][0] for r in mine] + [r["load_after"][0] for r in mine]
        print(f"  {label:14} p50 {p50:.2f} ms  p99 {p99:.2f} ms  (median of {len(mine)} rounds;"
              f" 1-min load {min(loads):.2f}..{max(loads):.2f})")
    json.dump(results, sys.stderr)
    sys.stderr.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
