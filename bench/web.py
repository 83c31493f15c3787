"""WebSocket vs TCP on one chatservice, side by side: ``python3 -m bench.web [--quick]``.

Starts one ``twistd -n chat --listen ... --web ...`` pinned to one core and
runs, with :mod:`bench.loadgen` pinned to the other, the broadcast fan-out
(workload 2) and the DM ping-pong under load (workload 3) over each
transport back to back, at the same sizes and rates:

- ``text``: plain TCP, the text protocol (what :mod:`bench.run` measures);
- ``json``: plain TCP, JSON lines (the WebSocket's format, over TCP);
- ``websocket``: the WebSocket at ``/ws``, one JSON object a text message.

Each transport has its own accounts, so no login races the logout of an
earlier run.  The table gives each figure per transport, the ratios
WebSocket / TCP, the load generator's CPU for every figure (a figure is
flagged ``(!)`` when it was above 80% of its core) and the server's CPU
during the best fan-out step.  The same figures go to ``DIR/web.json`` and
``DIR/web.txt`` (default ``bench/results/``).  See ``bench/README.rst``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench import peers, procstat, report
from bench.harness import (
    LOADGEN_CPU_LIMIT,
    PLANS,
    account_names,
    code_version,
    log,
    machine,
    raise_file_limit,
    run_loadgen,
    time_limit,
    workload_spec,
)
from bench.servers import ROOT

Obj = dict[str, Any]

TRANSPORTS = {
    "text": ("TCP text", "chat", "t"),
    "json": ("TCP JSON", "json", "j"),
    "websocket": ("WebSocket", "websocket", "w"),
}
"""Transport -> (label, load generator protocol, account prefix)."""
TARGET = 0.5
"""Issue 13: WebSocket fan-out delivered/s >= 50% of TCP's."""
QUICK_FANOUT_SECONDS = 30
"""The quick fan-out's time bound per transport (``bench.run``'s is 40 s): three transports in 3 minutes."""


def plans(quick: bool) -> dict[str, Obj]:
    plan = PLANS["quick" if quick else "full"]
    fanout = dict(plan["fanout"])
    if quick:
        fanout["time_limit"] = QUICK_FANOUT_SECONDS
    return {"fanout": fanout, "direct": dict(plan["direct"])}


def prefixed(transport: str, workload: str) -> str:
    """Account prefix of one transport and workload (``wf`` for the WebSocket's fan-out)."""
    return TRANSPORTS[transport][2] + workload[0]


def run_step(peer: peers.Peer, transport: str, workload: str, size: int, plan: Obj, extra: Obj, cpu: int) -> Obj:
    label, protocol, _ = TRANSPORTS[transport]
    port = peer.web_port if transport == "websocket" else peer.port
    spec = workload_spec(workload, size, plan, extra, peer, f"chatservice ({label})", protocol, port)
    spec["account_prefix"] = prefixed(transport, workload)
    log(f"== {label}: {workload} {size}")
    record: Obj = {"server": "chatservice", "transport": transport, "workload": workload, "size": size,
                   "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "spec": spec}
    started = time.monotonic()
    cpu_before = procstat.cpu_seconds(peer.pid)
    result, marks, _samples, error = run_loadgen(peer, spec, cpu, time_limit(workload, size, plan))
    record.update(result=result, marks=marks, wall_s=round(time.monotonic() - started, 1),
                  server_cpu_s=round((procstat.cpu_seconds(peer.pid) or 0) - (cpu_before or 0), 2))
    if error:
        record["error"] = error
        log(f"   {error}")
    log(f"   done in {record['wall_s']} s")
    return record


def figures(record: Obj) -> dict[str, report.Figure]:
    """The figures of one run, with the load generator's and the server's CPU (and wait) beside them."""
    limit = LOADGEN_CPU_LIMIT
    result = record.get("result") or {}
    if record["workload"] == "fanout":
        out = report.fanout_figures(record, limit)
        steps = result.get("steps", [])
        best = report.fanout_best(record, limit)
        # No valid step: show the step where the load generator was busiest, which says why.
        shown = best or max(steps, key=lambda s: s["loadgen_cpu_percent"], default=None)
        index, name = (steps.index(shown) if shown else 0), "step"
        stopped = STOPPED.get(result.get("stopped", "?"), result.get("stopped", "?"))
        out["steps"] = report.Figure(len(steps), text=f"{len(steps)}, {stopped}")
        cpu_s = report.server_seconds(record, "step", index, "cpu_s")
        per = None
        if shown and cpu_s is not None and shown.get("delivered_total"):
            per = 1e6 * cpu_s / shown["delivered_total"]
        out["server us/delivery"] = report.Figure(per)
    else:
        out = report.direct_figures(record, limit)
        shown, index, name = result or None, 0, "run"
    cpu = None if shown is None else shown.get("loadgen_cpu_percent")
    ok, why = report._loadgen_ok(cpu, limit)
    out["loadgen CPU %"] = report.Figure(cpu, ok, why)
    out["loadgen waited %"] = report.Figure(None if shown is None else shown.get("loadgen_wait_percent"))
    out["server CPU %"] = report.Figure(report.server_percent(record, name, index, "cpu_s"))
    out["server waited %"] = report.Figure(report.server_percent(record, name, index, "wait_s"))
    return out


STOPPED = {"converged below the rate where p99 > 1 s": "converged", "load generator CPU limit": "loadgen CPU limit"}
"""Why a fan-out stopped stepping, shortened for the table."""
CONTEXT = [("loadgen CPU %", None), ("loadgen waited %", None), ("server CPU %", None), ("server waited %", None)]
"""Beside every workload's figures: where the two processes spent the measured time.  *waited*: on a
run queue, kept off their core by other work on the machine (``/proc/<pid>/schedstat``)."""
ROWS = [
    ("fanout", "2. broadcast fan-out", [("delivered/s", True), ("p99 ms", False), ("server us/delivery", False),
                                        *CONTEXT, ("steps", None)]),
    ("direct", "3. DM ping-pong under load", [("RTT p50 ms", False), ("RTT p99 ms", False),
                                              ("background delivered/s", True), *CONTEXT]),
]
BUSY = 10.0
"""A process that waited for its core over this share of a measurement shared it with other work."""


def ratio(a: report.Figure | None, b: report.Figure | None) -> float | None:
    if a is None or b is None or a.value is None or not b.value:
        return None
    if math.isinf(a.value) or math.isinf(b.value):
        return None
    return round(a.value / b.value, 3)


def table(results: Obj) -> list[Obj]:
    """One row per workload, size and figure: each transport's value and WebSocket / each TCP."""
    transports = results["transports"]
    rows: list[Obj] = []
    for workload, title, keys in ROWS:
        records = [r for r in results["runs"] if r["workload"] == workload]
        for size in sorted({r["size"] for r in records}):
            cells = {r["transport"]: figures(r) for r in records if r["size"] == size}
            for key, higher in keys:
                row: Obj = {"workload": workload, "title": title, "size": size, "figure": key,
                            "higher_is_better": higher, "values": {}, "ratios": {}}
                for transport in transports:
                    figure = cells.get(transport, {}).get(key)
                    if figure is not None:
                        row["values"][transport] = figure.as_json()
                ws = cells.get("websocket", {}).get(key)
                for tcp in ("text", "json"):
                    if higher is not None and tcp in cells and "websocket" in cells:
                        row["ratios"][tcp] = ratio(ws, cells[tcp].get(key))
                rows.append(row)
    return rows


def target(rows: list[Obj]) -> list[Obj]:
    """Issue 13's target for each fan-out size and TCP format: MET, NOT MET or undecided (bounds)."""
    found = []
    for row in rows:
        if row["workload"] != "fanout" or row["figure"] != "delivered/s":
            continue
        for tcp in ("text", "json"):
            value = row["ratios"].get(tcp)
            if value is None:
                continue
            tcp_cell, ws_cell = row["values"][tcp], row["values"]["websocket"]
            tcp_lower = str(tcp_cell.get("text") or "").startswith(">=")
            ws_lower = str(ws_cell.get("text") or "").startswith(">=")
            note = []
            if tcp_lower:
                note.append("TCP's figure is a lower bound, so the ratio is an upper bound")
            if ws_lower:
                note.append("the WebSocket's figure is a lower bound, so the ratio is a lower bound")
            met: bool | None = value >= TARGET
            if tcp_lower and ws_lower:
                met = None
            elif tcp_lower:
                met = False if value < TARGET else None
            elif ws_lower:
                met = True if value >= TARGET else None
            found.append({
                "target": f"fan-out delivered/s, N={row['size']}: WebSocket >= {TARGET:.0%} of {TRANSPORTS[tcp][0]}",
                "ratio": value, "met": met, "valid": tcp_cell["valid"] and ws_cell["valid"],
                "note": "; ".join(note) or None,
            })
    return found


def render(results: Obj) -> str:
    transports = results["transports"]
    rows = results["table"]
    tcps = [t for t in ("text", "json") if t in transports and "websocket" in transports]
    header = ["workload", "N", "figure", *[TRANSPORTS[t][0] for t in transports],
              *[f"WS/{TRANSPORTS[t][0]}" for t in tcps]]
    body = []
    for row in rows:
        arrow = {True: " ^", False: " v"}.get(row["higher_is_better"], "")
        line = [row["title"], str(row["size"]), row["figure"] + arrow]
        line += [report._fmt_cell(row["values"].get(t)) for t in transports]
        line += ["-" if row["ratios"].get(t) is None else f"{row['ratios'][t]:.2f}" for t in tcps]
        body.append(line)
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    m = results["machine"]
    code = results.get("code", {})
    out = [
        f"{results['mode']} run on {m.get('nproc')} x {m.get('cpu_model')}, Linux {m.get('kernel')}, "
        f"Python {m.get('python')}, Twisted {m.get('twisted')}",
        f"one server ({results.get('server_version')}) on CPU {results['cpus']['server']}, "
        f"load generator on CPU {results['cpus']['loadgen']}; order: " + ", ".join(
            f"{r['workload']} {TRANSPORTS[r['transport']][0]}" for r in results["runs"]),
        f"chatservice code: commit {code.get('commit')}{' + local changes' if code.get('chatservice_dirty') else ''}"
        f" (sources sha1 {code.get('chatservice_sha1')})",
        f"load average (1 min) at the start and the end: {results.get('load_average_1min')}",
        f"^ higher is better, v lower is better; (!) invalid: the load generator above {LOADGEN_CPU_LIMIT:.0f}%"
        " of its core, or another reason below; >= lower bound",
        "",
        "  ".join(h.ljust(w) for h, w in zip(header, widths)),
        "  ".join("-" * w for w in widths),
    ]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in body]
    out.append("")
    out.append(f"Background of workload 3: {results['background_rate']:.1f} broadcasts/s for every transport"
               f" ({results['background_basis']})")
    out.append("Target (issue 13):")
    for t in results["targets"]:
        verdict = "UNDECIDED" if t["met"] is None else ("MET" if t["met"] else "NOT MET")
        extra = "" if t["valid"] else " (figures invalid)"
        note = f" [{t['note']}]" if t.get("note") else ""
        out.append(f"  [{verdict}] {t['target']}: {t['ratio']:.2f}{extra}{note}")
    invalid = [f"  {row['title']} N={row['size']} {row['figure']} {TRANSPORTS[t][0]}: {cell['why']}"
               for row in rows for t, cell in row["values"].items() if cell.get("why")]
    busy = [f"  {row['title']} N={row['size']} {TRANSPORTS[t][0]}: {row['figure'].split(' waited')[0]}"
            f" kept off its core {cell['value']:.0f}% of the time (other work on the machine)"
            for row in rows if row["figure"].endswith("waited %")
            for t, cell in row["values"].items() if cell["value"] is not None and cell["value"] > BUSY]
    if busy:
        out += ["", f"Shared cores (waited > {BUSY:.0f}%: the figure is lower, or its latency higher, than on"
                    " an idle machine):", *busy]
    if invalid:
        out += ["", "Invalid, incomplete or bounded figures:", *dict.fromkeys(invalid)]
    errors = [f"  {TRANSPORTS[r['transport']][0]} {r['workload']} {r['size']}: {r['error']}"
              for r in results["runs"] if r.get("error")]
    for r in results["runs"]:
        probes = r["spec"].get("probes", 0)
        for step in (r.get("result") or {}).get("steps", []):
            # A probe's last message may be counted (its mark arrived) in one step and parsed
            # (its end arrived) in the next: at most one a probe either way.
            if abs((step.get("probes_parsed") or 0) - (step.get("probes_counted") or 0)) > probes:
                errors.append(f"  {TRANSPORTS[r['transport']][0]} fan-out step {step['step']}: the probes parsed"
                              f" {step.get('probes_parsed')} messages but counted {step.get('probes_counted')} marks")
    if results.get("server_log_tracebacks"):
        errors.append(f"  {results['server_log_tracebacks']} traceback(s) in the server log")
    if errors:
        out += ["", "Errors:", *errors]
    out += ["", f"total wall time {results['wall_s']} s"]
    return "\n".join(out)


def background_rate(runs: list[Obj], users: int, given: float | None) -> tuple[float, str]:
    """Workload 3's broadcasts/s: half the lowest fan-out maximum of the transports, so that
    every transport runs at the same rate and none is past its maximum."""
    if given is not None:
        return given, "--background-rate"
    best = {r["transport"]: report.fanout_best(r) for r in runs if r["workload"] == "fanout"}
    found = {t: b["delivered_per_s"] for t, b in best.items() if b is not None}
    if not found:
        return 10.0, "no fan-out maximum measured: 10 broadcasts/s"
    slowest = min(found, key=found.get)  # type: ignore[arg-type]
    return max(1.0, 0.5 * found[slowest] / users), f"half of {TRANSPORTS[slowest][0]}'s fan-out maximum, the lowest"


def run(args: argparse.Namespace) -> Obj:
    plan = plans(args.quick)
    size = args.receivers or plan["fanout"]["sizes"][0]
    users = plan["direct"]["users"]
    names: list[str] = []
    for transport in args.transports:
        for workload, n in (("fanout", size), ("direct", users)):
            names += [prefixed(transport, workload) + name for name in account_names(workload, n, plan[workload])]
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    code = code_version()
    peer = peers.start_chat(names, args.server_cpu, web=True)
    runs: list[Obj] = []
    basis = ""
    rate = 0.0
    try:
        log(f"chatservice pid {peer.pid}: TCP port {peer.port}, web port {peer.web_port} (WebSocket /ws)")
        for transport in args.transports:
            runs.append(run_step(peer, transport, "fanout", size, plan["fanout"], {}, args.loadgen_cpu))
        rate, basis = background_rate(runs, users, args.background_rate)
        for transport in args.transports:
            runs.append(run_step(peer, transport, "direct", users, plan["direct"], {"background_rate": rate},
                                 args.loadgen_cpu))
        tracebacks = peer.log_tail(2_000_000).count("Traceback")
    finally:
        peer.stop()
    results: Obj = {
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "cpus": {"server": args.server_cpu, "loadgen": args.loadgen_cpu},
        "server_version": peer.version,
        "raised": peer.raised,
        "code": code,
        "code_after": code_version(),
        "transports": list(args.transports),
        "background_rate": rate,
        "background_basis": basis,
        "loadgen_cpu_limit_percent": LOADGEN_CPU_LIMIT,
        "server_log_tracebacks": tracebacks,
        "runs": runs,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "wall_s": round(time.monotonic() - started, 1),
    }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quick sizes (100 receivers, 100 users): ~3 minutes")
    parser.add_argument("--transports", nargs="+", default=list(TRANSPORTS), choices=list(TRANSPORTS),
                        help="which transports, in this order (default: text json websocket)")
    parser.add_argument("--receivers", type=int, default=None,
                        help="receivers for the fan-out (default: the plan's first size, 100)")
    parser.add_argument("--background-rate", type=float, default=None,
                        help="broadcasts/s behind workload 3 (default: half the lowest fan-out maximum)")
    parser.add_argument("--server-args", default="", help="extra twistd chat options, one string (experiments)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results", help="folder for web.json/web.txt")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--loadgen-cpu", type=int, default=1)
    parser.add_argument("--from-json", type=Path, help="only print an earlier web.json again")
    args = parser.parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text(encoding="utf-8"))
    else:
        if args.server_cpu == args.loadgen_cpu:
            parser.error("the server and the load generator need different cores")
        peers.CHAT_EXPERIMENT[:] = shlex.split(args.server_args)
        raise_file_limit()
        results = run(args)
    results["table"] = table(results)
    results["targets"] = target(results["table"])
    text = render(results)
    print(text)
    if not args.from_json:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "web.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        (args.output / "web.txt").write_text(text + "\n", encoding="utf-8")
        print(f"\nwritten: {args.output / 'web.json'}, {args.output / 'web.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
