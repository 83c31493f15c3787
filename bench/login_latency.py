"""While 50 logins with hashed passwords are being verified, how long does a
logged-in user's ``whoelse`` take?  (Issue: hashing must stay off the reactor.)

Run: ``python3 -m bench.login_latency [--logins 50]``.  Prints the round-trip
p50/p99/max of ``whoelse`` during the login storm, and the same with no
storm, side by side.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time

from chatservice.auth.passwords import hash_password
from bench.servers import HOST, start_chatservice


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_json(sock: socket.socket, buffer: bytearray) -> dict:
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.startswith(b"{"):
                return json.loads(line)
            continue
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buffer += data


def _login(port: int, user: str, password: str) -> socket.socket:
    sock = _connect(port)
    buffer = bytearray()
    sock.sendall(json.dumps({"type": "login", "user": user, "password": password}).encode() + b"\n")
    reply = _read_json(sock, buffer)
    if not reply.get("success"):
        raise RuntimeError(f"login of {user} failed: {reply}")
    return sock


def _round_trips(sock: socket.socket, stop: threading.Event, limit: int) -> list[float]:
    buffer = bytearray()
    samples = []
    while not stop.is_set() and len(samples) < limit:
        started = time.perf_counter()
        sock.sendall(b'{"type":"whoelse","id":1}\n')
        while _read_json(sock, buffer).get("id") != 1:
            pass
        samples.append((time.perf_counter() - started) * 1000)
        time.sleep(0.002)
    return samples


def _summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"n={len(samples):5d}  p50={statistics.median(ordered):7.2f} ms  p99={p99:7.2f} ms  max={ordered[-1]:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=50)
    args = parser.parse_args()
    secret = hash_password("secret-pass")
    accounts = {f"user{i}": secret for i in range(args.logins)}
    accounts["watcher"] = secret
    # One load generator opens every connection from 127.0.0.1, and the probe
    # sends a request every 2 ms: lift the per-address cap and the flood
    # control that would otherwise refuse or slow it (said in the output).
    limits = ["--max-per-address", str(args.logins + 10), "--flood-burst", "1000", "--flood-rate", "1000"]
    print("server limits raised for the load generator:", " ".join(limits))
    # Not pinned: the server's hashing thread and its reactor thread need the
    # two CPUs between them (pinned to one CPU, the reactor waits behind the
    # KDF); the load generator mostly sleeps in recv.
    server = start_chatservice(accounts, limits)
    try:
        watcher = _login(server.port, "watcher", "secret-pass")
        quiet = _round_trips(watcher, threading.Event(), 200)

        stop = threading.Event()
        results: list[float] = []
        probe = threading.Thread(target=lambda: results.extend(_round_trips(watcher, stop, 10**6)))
        started = time.perf_counter()
        probe.start()
        sockets: list[socket.socket] = []
        workers = [
            threading.Thread(target=lambda i=i: sockets.append(_login(server.port, f"user{i}", "secret-pass")))
            for i in range(args.logins)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        storm = time.perf_counter() - started
        stop.set()
        probe.join()
        print(f"{args.logins} concurrent logins (scrypt ln=14) took {storm * 1000:.0f} ms in all")
        print(f"whoelse, no logins:     {_summary(quiet)}")
        print(f"whoelse, during logins: {_summary(results)}")
        print(f"ratio p99 during/quiet: {sorted(results)[int(len(results) * 0.99)] / sorted(quiet)[int(len(quiet) * 0.99)]:.2f}")
        for sock in sockets + [watcher]:
            sock.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
