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
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench import peers, procstat, report
from bench.harness import (
    account_names,
    code_version,
    LOADGEN_CPU_LIMIT,
    log,
    machine,
    PLANS,
    raise_file_limit,
    run_loadgen,
    time_limit,
    WORKLOAD_ORDER,
    workload_spec,
)
from bench.servers import ROOT

Obj = dict[str, Any]

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


def run_all(args: argparse.Namespace) -> Obj:
    plan = PLANS["quick" if args.quick else "full"]
    servers, notices = peers.available_servers(args.servers)
    for notice in notices:
        log(f"NOTICE: {notice}")
    workloads = [w for w in WORKLOAD_ORDER if w in args.workloads]
    runs: list[Obj] = []
    started = time.monotonic()
    fanout_max: dict[str, dict[int, float]] = {server: {} for server in servers}
    # Workload by workload (each server in turn), so that workload 3's background is known
    # from every server's fan-out before any runs it.
    for workload in workloads:
        wplan = plan[workload]
        for server in servers:
            if workload == "login":
                for size in args.login_sizes or wplan["sizes"]:
                    runs.append(run_one(server, workload, size, wplan, {}, args))
            elif workload == "fanout":
                for size in args.fanout_sizes or wplan["sizes"]:
                    record = run_one(server, workload, size, wplan, {}, args)
                    runs.append(record)
                    best = report.fanout_best(record)
                    if best is not None:
                        fanout_max[server][size] = best["delivered_per_s"]
            elif workload == "direct":
                users = wplan["users"]
                rate = args.background_rate or common_background_rate(fanout_max, users)
                runs.append(run_one(server, workload, users, wplan, {"background_rate": rate}, args))
            elif workload == "churn":
                runs.append(run_one(server, workload, wplan["clients"], wplan, {}, args))
            elif workload == "neverread":
                receivers = wplan["receivers"]
                rate = half_max_rate(fanout_max[server], receivers, server)
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


def common_background_rate(fanout_max: dict[str, dict[int, float]], users: int) -> float:
    """Workload 3's background, the same for every server: half the best peer's fan-out maximum.

    Issue 17 compares DM p99 under half-maximum background load; a
    background of half of each server's *own* maximum loaded chatservice
    (the fastest) several times more than the peers, past what one load
    generator can send.  Each server now gets the same load: half the
    maximum of the best of the other servers (chatservice's own if it ran
    alone), in broadcasts a second to ``users`` users.
    """
    peers_max = {s: m for s, m in fanout_max.items() if s != "chatservice" and m}
    pool = peers_max or {s: m for s, m in fanout_max.items() if m}
    if not pool:
        log("   (no fan-out maximum measured; workload 3's background at 10 broadcasts/s)")
        return 10.0
    rates = {s: half_max_rate(m, users, s) for s, m in pool.items()}
    best = max(rates, key=rates.__getitem__)
    log(f"   workload 3's background for every server: {rates[best]:.1f} broadcasts/s (half {best}'s maximum)")
    return rates[best]


def half_max_rate(fanout_max: dict[int, float], receivers: int, server: str) -> float:
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
    order = {name: i for i, name in enumerate(peers.SERVERS)}
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
    parser.add_argument("--servers", nargs="+", default=peers.SERVERS, choices=peers.SERVERS,
                        help="the servers to run (default: all; a peer that cannot be fetched is skipped)")
    parser.add_argument("--workloads", nargs="+", default=WORKLOAD_ORDER, choices=WORKLOAD_ORDER)
    parser.add_argument("--login-sizes", type=int, nargs="+", default=None,
                        help="clients for workload 1 (default: the plan's sizes)")
    parser.add_argument("--fanout-sizes", type=int, nargs="+", default=None,
                        help="receivers for workload 2 (default: the plan's sizes)")
    parser.add_argument("--background-rate", type=float, default=None,
                        help="broadcasts/s behind workload 3 (default: half of the best peer's workload 2 maximum)")
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
