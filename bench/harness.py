"""What the benchmark harnesses share: the plans, running the load generator, a run's specification.

:mod:`bench.run` (every server), :mod:`bench.web` (WebSocket vs TCP),
:mod:`bench.cluster` (two nodes vs one) and :mod:`bench.profile` drive
:mod:`bench.loadgen` the same way through these.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import queue
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import peers, procstat
from bench.servers import ROOT

Obj = dict[str, Any]

LOADGEN_CPU_LIMIT = 80.0
"""Above this share of its core, the load generator may be the bottleneck: the figure is invalid."""
CONCURRENCY = 8
"""Logins in flight at once (ngIRCd's listen backlog is 10; more would measure SYN retries)."""

PLANS: dict[str, Obj] = {
    "quick": {
        "login": {"sizes": [200, 1000], "login_limit": {200: 30, 1000: 40}, "settle_limit": 20},
        "fanout": {
            "sizes": [100], "senders": 2, "probes": 32, "step_seconds": 1.5, "drain": 2.0,
            "time_limit": 40, "max_steps": 16, "start_deliveries": 100000, "login_limit": 60,
        },
        "direct": {"users": 100, "pairs": 50, "seconds": 5, "ping_interval": 1.0, "drain": 3.0},
        "churn": {"clients": 200, "reconnects_per_s": 20, "seconds": 5, "spare": 100, "probes": 16, "drain": 3.0},
        "neverread": {"receivers": 100, "never_readers": 10, "seconds": 8, "senders": 2, "probes": 32, "drain": 3.0},
    },
    "full": {
        "login": {
            "sizes": [1000, 5000, 10000], "login_limit": {1000: 60, 5000: 120, 10000: 150}, "settle_limit": 60,
        },
        "fanout": {
            "sizes": [100, 1000, 5000, 10000], "senders": 2, "probes": 32, "step_seconds": 4.0, "drain": 4.0,
            "time_limit": 110, "max_steps": 18, "start_deliveries": 100000, "login_limit": 200,
        },
        "direct": {"users": 1000, "pairs": 500, "seconds": 20, "ping_interval": 1.0, "drain": 5.0},
        "churn": {"clients": 1000, "reconnects_per_s": 100, "seconds": 20, "spare": 500, "probes": 32, "drain": 5.0},
        "neverread": {"receivers": 100, "never_readers": 20, "seconds": 30, "senders": 2, "probes": 32, "drain": 5.0},
    },
}
WORKLOAD_ORDER = ["login", "fanout", "direct", "churn", "neverread"]
"""``start_deliveries``: the first fan-out step offers this many deliveries a second for every server
and size, so its server CPU time per delivery compares the servers at the same offered load."""
PAD = 40
"""Filler characters in each timed message (about 100 bytes a line on the wire)."""
NEVERREAD_PAD = 400
"""Workload 5's messages are longer (about 470 bytes a line, still one IRC line), so the
never-readers' backlog outgrows the kernel's socket buffers within the run."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def raise_file_limit() -> tuple[int, int]:
    """Raise ``ulimit -n`` to the hard limit, for this process and the servers it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def machine() -> Obj:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    total = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory": total,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "twisted": peers.twisted_version(),
        **peers.peer_versions(),
        "file_limit": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


# Running one workload ------------------------------------------------------------------


def run_loadgen(
    peer: peers.Peer, spec: Obj, cpu: int | None, limit: float, also: dict[str, int] | None = None
) -> tuple[Obj | None, list[Obj], list[tuple[float, int]], str | None]:
    """Run the load generator with ``spec``; answer its marks with ``/proc`` figures of ``peer``.

    :param also: other processes whose figures each mark records too, under
        ``mark["also"][name]`` (a cluster's other nodes and Redis).

    :returns: the result, the marks with the server's figures, the RSS samples,
        and an error message (or ``None``).
    """
    command = [sys.executable, "-m", "bench.loadgen"]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert process.stdin is not None and process.stdout is not None
    sampler = procstat.RssSampler(peer.pid).start()
    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    process.stdin.write(json.dumps(spec) + "\n")
    process.stdin.flush()
    marks: list[Obj] = []
    result: Obj | None = None
    error: str | None = None
    deadline = time.monotonic() + limit
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                error = f"load generator still running after {limit:.0f} s: stopped"
                break
            if line is None:
                break
            obj = json.loads(line)
            if "mark" in obj:
                obj["server"] = procstat.snapshot(peer.pid)
                obj["server"].update(procstat.server_send_queue(peer.port))
                if also:
                    obj["also"] = {name: procstat.snapshot(pid) for name, pid in also.items()}
                obj["loadgen_cpu_s"] = procstat.cpu_seconds(process.pid)
                obj["sampler_t"] = round(time.monotonic() - sampler.t0, 2)
                marks.append(obj)
                try:
                    process.stdin.write("ok\n")
                    process.stdin.flush()
                except BrokenPipeError:
                    pass
            elif "result" in obj:
                result = obj["result"]
    finally:
        sampler.stop()
        if process.poll() is None:
            try:
                process.wait(10 if result is not None else 0.1)
            except subprocess.TimeoutExpired:
                pass
        if process.poll() is None:
            process.kill()
            process.wait()
    if result is None and error is None:
        error = f"load generator exited with status {process.returncode} and no result"
    return result, marks, sampler.samples, error


def account_names(workload: str, size: int, plan: Obj) -> list[str]:
    if workload == "login":
        return [f"u{i}" for i in range(size)]
    if workload == "fanout":
        return [f"r{i}" for i in range(size)] + [f"s{i}" for i in range(size, size + plan["senders"])]
    if workload == "direct":
        return [f"u{i}" for i in range(plan["users"])] + [f"s{plan['users']}"]
    if workload == "churn":
        return [f"u{i}" for i in range(plan["clients"] + plan["spare"])]
    if workload == "neverread":
        n, s, z = plan["receivers"], plan["senders"], plan["never_readers"]
        return [f"r{i}" for i in range(n)] + [f"s{i}" for i in range(n, n + s)] + [f"z{i}" for i in range(n + s, n + s + z)]
    raise ValueError(workload)


def time_limit(workload: str, size: int, plan: Obj) -> float:
    """The longest the load generator may take for one run (it bounds itself; this is a backstop)."""
    if workload == "login":
        return plan["login_limit"][size] + 2 * plan["settle_limit"] + 60
    if workload == "fanout":
        return plan["login_limit"] + plan["time_limit"] + 120
    return 600


def code_version() -> Obj:
    """The commit, and a hash of chatservice's sources as they are on disk now.

    A server reads its code when it starts; recording this at every start shows
    a run during which someone changed chatservice."""
    digest = hashlib.sha1()
    for path in sorted((ROOT / "chatservice").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "chatservice"],
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "chatservice_dirty": dirty, "chatservice_sha1": digest.hexdigest()[:12]}


MIN_PROBES = 10
"""Fewest probes of a fan-out: with ten, a step of 4 s at 8000 broadcasts/s still times 320 000 deliveries."""


def fanout_probes(receivers: int, most: int) -> int:
    """How many of ``receivers`` are probes: ``most``, but at most a tenth of them (not below :data:`MIN_PROBES`).

    A probe splits and parses every line it gets; the other receivers only
    count them.  At 100 receivers, 32 probes made the load generator the limit
    before the fastest servers reached theirs (InspIRCd and ngIRCd past 80% of
    its core at 0.8 M deliveries/s), so their maxima were only lower bounds.
    """
    return min(most, max(MIN_PROBES, receivers // 10))


def workload_spec(workload: str, size: int, plan: Obj, extra: Obj, peer: peers.Peer, label: str,
                  protocol: str | None = None, port: int | None = None) -> Obj:
    """The load generator's specification of one run against ``peer`` (in its own protocol,
    unless ``protocol`` and ``port`` say another, e.g. chatservice's WebSocket)."""
    spec: Obj = {
        "workload": workload,
        "server": label,
        "protocol": protocol or peer.protocol,
        "irc_pass": peer.irc_pass,
        "irc_join_after_welcome": peer.join_after_welcome,
        "channel": f"#{peers.ROOM}",
        "port": port or peer.port,
        "password_format": peers.PASSWORD_FORMAT,
        "concurrency": peer.login_concurrency or CONCURRENCY,
        "quiet": 1.0,
        "pad": PAD,
        "loadgen_cpu_limit": LOADGEN_CPU_LIMIT,
    }
    if workload == "login":
        spec.update(clients=size, login_limit=plan["login_limit"][size], settle_limit=plan["settle_limit"])
    elif workload == "fanout":
        spec.update(
            receivers=size, senders=plan["senders"], probes=fanout_probes(size, plan["probes"]),
            step_seconds=plan["step_seconds"], drain=plan["drain"], time_limit=plan["time_limit"],
            max_steps=plan["max_steps"], start_rate=plan["start_deliveries"] / size,
            login_limit=plan["login_limit"], settle_limit=plan["login_limit"],
        )
    elif workload == "direct":
        spec.update(plan, login_limit=120, settle_limit=60, background_rate=extra["background_rate"])
    elif workload == "churn":
        spec.update(plan, login_limit=120, settle_limit=60)
    elif workload == "neverread":
        spec.update(plan, login_limit=120, settle_limit=60, rate=extra["rate"])
        spec["pad"] = NEVERREAD_PAD
    return spec
