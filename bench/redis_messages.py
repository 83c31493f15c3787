"""What a node's reactor thread pays per Redis message: ``python3 -m bench.redis_messages``.

A cluster node receives every other node's fan-out as a pub/sub message on
its subscribed connection and sends its own as ``PUBLISH`` commands whose
replies come back on the command connection (``chatservice/cluster/link.py``).
This script starts a throw-away ``redis-server`` (``tests/redis_support.py``),
opens a :class:`~chatservice.cluster.link.RedisLink` as a node does, and has a
second process publish ``--messages`` messages of ``--size`` bytes (about a
broadcast's JSON) to the link's channel.  It measures this process's CPU time
(user + system) per message received, and per ``PUBLISH`` made (its reply
read): everything on the reactor thread (the socket reads, the parser, the
link's callbacks), as a node pays it.  Which parser read
them (``hiredis`` when installed, ``txredisapi``'s pure-Python one otherwise)
is printed; run it with and without ``hiredis`` on the path to compare::

    python3 -m bench.redis_messages
    PYTHONPATH=/path/with/hiredis python3 -m bench.redis_messages
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from typing import Any

from twisted.internet import defer, reactor, task

from chatservice.cluster.link import RedisLink, reply_parser
from tests.redis_support import RedisServer

CHANNEL = "chat:node:bench"


def cpu_seconds() -> float:
    """This process's CPU time so far (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def wait_until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        await task.deferLater(reactor, 0.01, lambda: None)


async def measure(messages: int, size: int) -> dict[str, float]:
    server = RedisServer().start()
    received = [0]

    def on_message(channel: str, message: str) -> None:
        received[0] += 1

    link = RedisLink(server.url, reactor, [CHANNEL], on_message)
    link.startService()
    try:
        await wait_until(lambda: link.connected)
        payload = "x" * size
        # Received: another process publishes them as fast as Redis takes them.
        script = (
            "import socket,sys;n,size,port=map(int,sys.argv[1:]);"
            "s=socket.create_connection(('127.0.0.1',port));p='x'*size;"
            f"c=('*3\\r\\n$7\\r\\nPUBLISH\\r\\n${len(CHANNEL)}\\r\\n{CHANNEL}\\r\\n$%d\\r\\n%s\\r\\n'%(size,p)).encode();"
            "[s.sendall(c*100) for _ in range(n//100)];"
            "r=b'';need=n//100*100\n"
            "while r.count(b'\\r\\n')<need: r+=s.recv(65536)"
        )
        start = cpu_seconds()
        wall = time.monotonic()
        publisher = subprocess.Popen([sys.executable, "-c", script, str(messages), str(size), str(server.port)])
        await wait_until(lambda: received[0] >= messages // 100 * 100)
        receive_cpu = cpu_seconds() - start
        receive_wall = time.monotonic() - wall
        publisher.wait(30)
        # Published: PUBLISH commands in batches of 100, each reply read.
        start = cpu_seconds()
        for _ in range(messages // 100):
            await defer.gatherResults([link.publish("chat:nobody", payload) for _ in range(100)])
        publish_cpu = cpu_seconds() - start
    finally:
        await link.stopService()
        server.cleanup()
    count = messages // 100 * 100
    return {
        "received us/message": receive_cpu / count * 1e6,
        "received messages/s (wall)": count / receive_wall,
        "published us/message": publish_cpu / count * 1e6,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=300, help="bytes a message")
    parser.add_argument("--rounds", type=int, default=3, help="the best of this many is shown")
    options = parser.parse_args(argv)
    results: list[dict[str, float]] = []

    async def run() -> None:
        for _ in range(options.rounds):
            results.append(await measure(options.messages, options.size))

    def done(result: object) -> object:
        reactor.stop()
        return result

    reactor.callWhenRunning(lambda: defer.ensureDeferred(run()).addBoth(done))
    reactor.run()
    if len(results) < options.rounds:
        raise SystemExit("the measurement failed")
    print(f"parser: {reply_parser()}; {options.messages} messages of {options.size} bytes,"
          f" best of {options.rounds}")
    for name in results[0]:
        values = [r[name] for r in results]
        best = max(values) if "/s" in name else min(values)
        print(f"  {name:28} {best:10.2f}")


if __name__ == "__main__":
    main()
