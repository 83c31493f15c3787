"""Reading a process's CPU time and memory from ``/proc``, and sampling it in a thread."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time


def status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``), or ``None``."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of process ``pid`` (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_queue_seconds(pid: int | str = "self") -> float | None:
    """Seconds the (main thread of) process ``pid`` has waited for a CPU while it could run.

    The second field of ``/proc/<pid>/schedstat``: time on a run queue, not
    running because something else had the core.  It grows when other work on
    the machine takes the core a benchmark process was pinned to.
    """
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as schedstat:
            return int(schedstat.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def snapshot(pid: int) -> dict[str, float | int | None]:
    return {
        "cpu_s": cpu_seconds(pid),
        "wait_s": run_queue_seconds(pid),
        "rss_kib": status_kib(pid, "VmRSS"),
        "hwm_kib": status_kib(pid, "VmHWM"),
    }


class RssSampler:
    """Samples ``VmRSS`` of ``pid`` every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = status_kib(self.pid, "VmRSS")
            if rss is None:
                return
            self.samples.append((round(time.monotonic() - self.t0, 2), rss))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def between(self, start: float, end: float) -> list[int]:
        return [rss for t, rss in self.samples if start <= t <= end]


def send_queues(port: int) -> dict[tuple[str, int], int]:
    """Bytes the kernel holds unsent or unacknowledged in each server connection on ``port``.

    From ``/proc/net/tcp`` (``tx_queue`` of each established socket whose local
    port is ``port``), keyed by the client's ``(address, port)``: memory a
    server can hide outside its RSS when its sockets' send buffers grow (Linux
    autotunes them up to ``tcp_wmem``'s maximum unless the server pins
    ``SO_SNDBUF``).
    """
    queues: dict[tuple[str, int], int] = {}
    suffix = f":{port:04X}"
    try:
        with open("/proc/net/tcp", encoding="ascii") as table:
            next(table)
            for line in table:
                fields = line.split()
                if fields[3] != "01" or not fields[1].endswith(suffix):  # ESTABLISHED
                    continue
                address, remote_port = fields[2].split(":")
                host = socket.inet_ntoa(struct.pack("<I", int(address, 16)))
                queues[(host, int(remote_port, 16))] = int(fields[4].split(":")[0], 16)
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return queues


def server_send_queue(port: int) -> dict[str, int]:
    """:func:`send_queues` summed up: total, largest and number of connections."""
    queued = send_queues(port).values()
    return {
        "tx_queue_bytes": sum(queued),
        "tx_queue_largest": max(queued, default=0),
        "connections": len(queued),
    }
