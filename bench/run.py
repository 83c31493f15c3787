"""Every workload against every available server: ``python3 -m bench.run [--quick] [--output DIR]``.

Starts each server (:mod:`bench.peers`) pinned to one core, the load
generator (:mod:`bench.loadgen`) pinned to the other, runs the workloads of
issue 7 one after the other (a fresh server for each), reads the server's CPU
time and memory from ``/proc`` at the points the load generator marks, and
prints a table with the ratios chatservice / peer.  The same figures go to
``DIR/results.json`` and a chart to ``DIR/results.png`` (default
``bench/results/``).  See ``bench/README.rst``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import queue
import resource
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import peers, procstat, report
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
            "time_limit": 40, "max_steps": 16, "start_deliveries": 20000, "login_limit": 60,
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
            "sizes": [100, 1000, 5000], "senders": 2, "probes": 32, "step_seconds": 4.0, "drain": 4.0,
            "time_limit": 110, "max_steps": 18, "start_deliveries": 10000, "login_limit": 200,
        },
        "direct": {"users": 1000, "pairs": 500, "seconds": 20, "ping_interval": 1.0, "drain": 5.0},
        "churn": {"clients": 1000, "reconnects_per_s": 100, "seconds": 20, "spare": 500, "probes": 32, "drain": 5.0},
        "neverread": {"receivers": 100, "never_readers": 20, "seconds": 30, "senders": 2, "probes": 32, "drain": 5.0},
    },
}
WORKLOAD_ORDER = ["login", "fanout", "direct", "churn", "neverread"]
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
        "ngircd": peers.ngircd_version() or "not installed",
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


def run_one(server: str, workload: str, size: int, plan: Obj, extra: Obj, args: argparse.Namespace) -> Obj:
    label = peers.SERVER_LABELS[server]
    log(f"== {label}: {workload} {size}")
    names = account_names(workload, size, plan)
    record: Obj = {"server": server, "workload": workload, "size": size,
                   "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "code": code_version()}
    try:
        peer = peers.STARTERS[server](names, args.server_cpu)
    except Exception as e:  # a server that does not start is reported, not fatal
        record["error"] = f"server did not start: {e}"
        log(record["error"])
        return record
    spec = workload_spec(workload, size, plan, extra, peer, label)
    cpu_before = procstat.cpu_seconds(peer.pid)
    started = time.monotonic()
    try:
        result, marks, samples, error = run_loadgen(peer, spec, args.loadgen_cpu, time_limit(workload, size, plan))
        record["server_cpu_s"] = round((procstat.cpu_seconds(peer.pid) or 0) - (cpu_before or 0), 2)
        record["server_peak_rss_kib"] = procstat.status_kib(peer.pid, "VmHWM")
        log_text = peer.log_tail(200_000)
    finally:
        peer.stop()
    record.update(
        version=peer.version, raised=peer.raised, notes=peer.notes, spec=spec, result=result, marks=marks,
        rss_samples=samples, wall_s=round(time.monotonic() - started, 1),
        server_log_tracebacks=log_text.count("Traceback"),
    )
    if error:
        record["error"] = error
        log(f"   {error}")
    log(f"   done in {record['wall_s']} s")
    return record


def workload_spec(workload: str, size: int, plan: Obj, extra: Obj, peer: peers.Peer, label: str,
                  protocol: str | None = None, port: int | None = None) -> Obj:
    """The load generator's specification of one run against ``peer`` (in its own protocol,
    unless ``protocol`` and ``port`` say another, e.g. chatservice's WebSocket)."""
    spec: Obj = {
        "workload": workload,
        "server": label,
        "protocol": protocol or peer.protocol,
        "irc_pass": peer.irc_pass,
        "channel": f"#{peers.ROOM}",
        "port": port or peer.port,
        "password_format": peers.PASSWORD_FORMAT,
        "concurrency": CONCURRENCY,
        "quiet": 1.0,
        "pad": PAD,
        "loadgen_cpu_limit": LOADGEN_CPU_LIMIT,
    }
    if workload == "login":
        spec.update(clients=size, login_limit=plan["login_limit"][size], settle_limit=plan["settle_limit"])
    elif workload == "fanout":
        spec.update(
            receivers=size, senders=plan["senders"], probes=plan["probes"],
            step_seconds=plan["step_seconds"], drain=plan["drain"], time_limit=plan["time_limit"],
            max_steps=plan["max_steps"], start_rate=extra.get("start_rate", plan["start_deliveries"] / size),
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


def run_all(args: argparse.Namespace) -> Obj:
    plan = PLANS["quick" if args.quick else "full"]
    servers, notices = peers.available_servers(args.servers)
    for notice in notices:
        log(f"NOTICE: {notice}")
    workloads = [w for w in WORKLOAD_ORDER if w in args.workloads]
    runs: list[Obj] = []
    started = time.monotonic()
    for server in servers:
        fanout_max: dict[int, float] = {}
        for workload in workloads:
            wplan = plan[workload]
            if workload == "login":
                for size in wplan["sizes"]:
                    runs.append(run_one(server, workload, size, wplan, {}, args))
            elif workload == "fanout":
                previous: tuple[int, float] | None = None
                for size in args.fanout_sizes or wplan["sizes"]:
                    extra: Obj = {}
                    if previous is not None:
                        # Start the next size at a quarter of what the last one sustained.
                        extra["start_rate"] = max(1.0, 0.25 * previous[1] / size)
                    record = run_one(server, workload, size, wplan, extra, args)
                    runs.append(record)
                    best = report.fanout_best(record)
                    if best is not None:
                        fanout_max[size] = best["delivered_per_s"]
                        previous = (size, best["delivered_per_s"])
            elif workload == "direct":
                users = wplan["users"]
                rate = args.background_rate or half_max_rate(fanout_max, users, args, server, users)
                runs.append(run_one(server, workload, users, wplan, {"background_rate": rate}, args))
            elif workload == "churn":
                runs.append(run_one(server, workload, wplan["clients"], wplan, {}, args))
            elif workload == "neverread":
                receivers = wplan["receivers"]
                rate = half_max_rate(fanout_max, receivers, args, server, receivers)
                runs.append(run_one(server, workload, receivers, wplan, {"rate": rate}, args))
    return {
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "cpus": {"server": args.server_cpu, "loadgen": args.loadgen_cpu},
        "notices": notices,
        "loadgen_cpu_limit_percent": LOADGEN_CPU_LIMIT,
        "runs": runs,
        "wall_s": round(time.monotonic() - started, 1),
    }


def half_max_rate(fanout_max: dict[int, float], receivers: int, args: argparse.Namespace, server: str, users: int) -> float:
    """Broadcasts a second for workload 2 at half its maximum, with ``receivers`` receivers.

    From the fan-out run with the nearest number of receivers (its delivered/s
    scaled to ``receivers``); a fixed low rate when there was none.
    """
    if not fanout_max:
        log(f"   ({server}: no fan-out maximum measured; background at 10 broadcasts/s)")
        return 10.0
    size = min(fanout_max, key=lambda n: abs(n - receivers))
    return max(1.0, 0.5 * fanout_max[size] / receivers)


def combine(parts: list[Obj]) -> Obj:
    """Several results in one: the first's machine and settings, every run (later ones win)."""
    combined = dict(parts[0])
    runs: dict[tuple[str, str, int], Obj] = {}
    for part in parts:
        for record in part.get("runs", []):
            runs[(record["server"], record["workload"], record["size"])] = record
    order = {name: i for i, name in enumerate(["chatservice", "words", "ngircd"])}
    combined["runs"] = sorted(runs.values(), key=lambda r: (order.get(r["server"], 9), WORKLOAD_ORDER.index(r["workload"]), r["size"]))
    if len(parts) > 1:
        combined["combined_from"] = [
            {"wall_s": p.get("wall_s"), "servers": sorted({r["server"] for r in p.get("runs", [])})} for p in parts
        ]
        combined["wall_s"] = sum(p.get("wall_s") or 0 for p in parts)
        combined.pop("table", None)
        combined.pop("targets", None)
    return combined


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if "--cluster" in given:
        # Two cluster nodes vs one (issue 12): its own harness and table.
        from bench import cluster

        return cluster.main(given)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes in all")
    parser.add_argument("--cluster", action="store_true",
                        help="two cluster nodes on Redis + PostgreSQL vs one (bench.cluster; its own options)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results", help="folder for results.json/.png")
    parser.add_argument("--servers", nargs="+", default=["chatservice", "words", "ngircd"],
                        choices=["chatservice", "words", "ngircd"])
    parser.add_argument("--workloads", nargs="+", default=WORKLOAD_ORDER, choices=WORKLOAD_ORDER)
    parser.add_argument("--fanout-sizes", type=int, nargs="+", default=None,
                        help="receivers for workload 2 (default: the plan's sizes)")
    parser.add_argument("--background-rate", type=float, default=None,
                        help="broadcasts/s behind workload 3 (default: half of workload 2's maximum)")
    parser.add_argument("--server-args", default="",
                        help="extra twistd chat options, one string (experiments; recorded in the results),"
                             " e.g. --server-args='--flush-interval 0'")
    parser.add_argument("--server-cpu", type=int, default=0, help="core the server is pinned to (default 0)")
    parser.add_argument("--loadgen-cpu", type=int, default=1, help="core the load generator is pinned to (default 1)")
    parser.add_argument("--from-json", type=Path, nargs="+",
                        help="only print and chart earlier results.json files; with several, their runs are"
                             " combined (a later file's run replaces an earlier one's for the same server,"
                             " workload and size), e.g. one server re-run after a change")
    args = parser.parse_args(argv)
    if args.from_json:
        results = combine([json.loads(path.read_text(encoding="utf-8")) for path in args.from_json])
    else:
        if args.server_cpu == args.loadgen_cpu:
            parser.error("the server and the load generator need different cores")
        peers.CHAT_EXPERIMENT[:] = shlex.split(args.server_args)
        limit = raise_file_limit()
        log(f"file descriptor limit: {limit[0]}")
        results = run_all(args)
    results["table"] = report.table_rows(results)
    results["targets"] = report.targets(results)
    text = report.render(results)
    print(text)
    args.output.mkdir(parents=True, exist_ok=True)
    name = args.from_json[0].stem if args.from_json and len(args.from_json) == 1 else "results"
    (args.output / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (args.output / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    (args.output / f"{name}.rst").write_text(report.render_rst(results), encoding="utf-8")
    chart = report.chart(results, args.output / f"{name}.png")
    print(f"\nwritten: {args.output / (name + '.json')}, {args.output / (name + '.txt')}" + (f", {chart}" if chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
