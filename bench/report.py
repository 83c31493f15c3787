"""The figures of a :mod:`bench.run` run: table, ratios, targets and chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

Obj = dict[str, Any]

SERVERS = ["chatservice", "words", "ngircd", "inspircd", "hybrid"]
LABELS = {"chatservice": "chatservice", "words": "twistd words", "ngircd": "ngIRCd", "inspircd": "InspIRCd",
          "hybrid": "ircd-hybrid"}
PEERS = ["words", "ngircd", "inspircd", "hybrid"]
IRC_PEERS = ["ngircd", "inspircd", "hybrid"]
"""The peers issue 17's targets compare with: the best of them at each figure."""


def _num(value: Any) -> float | None:
    if value is None:
        return None
    if value == "inf":
        return math.inf
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _mark(record: Obj, name: str) -> Obj | None:
    for mark in record.get("marks", []):
        if mark["mark"] == name:
            return mark
    return None


def _runs(results: Obj, workload: str) -> list[Obj]:
    return [r for r in results.get("runs", []) if r["workload"] == workload]


def _step_marks(record: Obj, name: str, index: int, key: str) -> tuple[Obj, Obj] | None:
    """The ``index``-th marks ``<name>_start`` and ``<name>_end``, if both have the server's ``key``."""
    starts = [m for m in record.get("marks", []) if m["mark"] == f"{name}_start"]
    ends = [m for m in record.get("marks", []) if m["mark"] == f"{name}_end"]
    if index >= min(len(starts), len(ends)):
        return None
    a, b = starts[index], ends[index]
    if a["server"].get(key) is None or b["server"].get(key) is None or b["t"] <= a["t"]:
        return None
    return a, b


def server_seconds(record: Obj, name: str, index: int, key: str) -> float | None:
    """The server's ``key`` (``cpu_s``, or ``wait_s``: kept off its core) between two marks
    (a fan-out step: its sending and its drain)."""
    marks = _step_marks(record, name, index, key)
    return None if marks is None else marks[1]["server"][key] - marks[0]["server"][key]


def server_percent(record: Obj, name: str, index: int, key: str) -> float | None:
    """:func:`server_seconds` as % of the time between the marks."""
    marks = _step_marks(record, name, index, key)
    if marks is None:
        return None
    a, b = marks
    return round(100 * (b["server"][key] - a["server"][key]) / (b["t"] - a["t"]), 1)


def fanout_best(record: Obj, limit: float = 80.0) -> Obj | None:
    """The step of a fan-out run with the most delivered/s among those with p99 <= 1 s
    and the load generator within its CPU limit."""
    result = record.get("result") or {}
    steps = []
    overloaded_before = False
    for s in result.get("steps", []):
        if (
            s.get("p99_s") is not None and s["p99_s"] <= 1.0 and s["loadgen_cpu_percent"] <= limit
            and not (overloaded_before and _with_backlog(s))
        ):
            steps.append(s)
        overloaded_before = overloaded_before or _overloaded(s)
    if not steps:
        return None
    return max(steps, key=lambda s: s["delivered_per_s"] or 0)


def _with_backlog(step: Obj) -> bool:
    """Whether a fan-out step counted more deliveries than it sent.

    After an overloaded step, that is what the earlier step left queued,
    arriving during this one (the counting receivers cannot tell them apart),
    so its delivered/s overstates what the server sustained at that rate.
    After clean steps it is only the last few messages of this step, sent
    after the generator's count closed and delivered within the window.
    """
    wanted = step.get("deliveries_wanted")
    return bool(wanted) and step.get("delivered_total", 0) > 1.001 * wanted


def _overloaded(step: Obj) -> bool:
    """Whether a fan-out step left deliveries queued for the next: past the p99 limit, or short."""
    wanted = step.get("deliveries_wanted") or 0
    return step.get("p99_s") is None or step["p99_s"] > 1.0 or step.get("delivered_total", 0) < 0.999 * wanted


class Figure:
    """One cell: a value, whether it is valid, and why not."""

    def __init__(self, value: float | None, valid: bool = True, why: str = "", text: str | None = None) -> None:
        self.value = value
        self.valid = valid and value is not None
        self.why = why
        self.text = text

    def show(self, digits: int = 1) -> str:
        if self.value is None:
            return self.text or "-"
        if self.text is not None:
            body = self.text
        elif math.isinf(self.value):
            body = "inf"
        elif abs(self.value) >= 1000:
            body = f"{self.value:,.0f}"
        elif abs(self.value) < 10:
            body = f"{self.value:.{digits + 1}f}"
        else:
            body = f"{self.value:.{digits}f}"
        return body + ("" if self.valid else " (!)")

    def as_json(self) -> Obj:
        value = self.value
        if value is not None and math.isinf(value):
            value = "inf"
        return {"value": value, "valid": self.valid, "why": self.why or None, "text": self.text}


def _loadgen_ok(percent: float | None, limit: float) -> tuple[bool, str]:
    if percent is None:
        return True, ""
    if percent > limit:
        return False, f"load generator at {percent:.0f}% CPU (> {limit:.0f}%)"
    return True, ""


# Figures per workload -------------------------------------------------------------------


def login_figures(record: Obj, limit: float) -> dict[str, Figure]:
    result = record.get("result")
    if not result:
        why = record.get("error", "no result")
        return {"logins/s": Figure(None, False, why), "KiB/conn": Figure(None, False, why)}
    ok, why = _loadgen_ok(result.get("loadgen_cpu_percent"), limit)
    before, settled = _mark(record, "before"), _mark(record, "settled")
    per_conn = None
    count = (settled or {}).get("logged_in") or result["logged_in"]
    if before and settled and count:
        per_conn = (settled["server"]["rss_kib"] - before["server"]["rss_kib"]) / count
    incomplete = "" if result["complete"] else f"only {result['logged_in']}/{result['wanted']} in {result['seconds']:.0f} s"
    text = None
    if incomplete:
        text = f"{result['logins_per_s']:.0f} [{result['logged_in']}/{result['wanted']}]"
    mem_ok, mem_why = ok and bool(count), why
    if not result.get("settled", True):
        mem_ok = False
        mem_why = "; ".join(x for x in (why, "notifications still queued at the end of the settle bound (RSS includes them)") if x)
    return {
        "logins/s": Figure(result["logins_per_s"], ok, "; ".join(x for x in (why, incomplete) if x), text),
        "KiB/conn": Figure(per_conn, mem_ok, mem_why),
    }


def fanout_figures(record: Obj, limit: float) -> dict[str, Figure]:
    best = fanout_best(record, limit)
    if best is None:
        why = record.get("error") or (record.get("result") or {}).get("error") or (
            "no step with p99 <= 1 s and the load generator under its CPU limit")
        return {"delivered/s": Figure(None, False, why), "p99 ms": Figure(None, False, why),
                "server us/delivery": cpu_per_delivery(record, 0),
                "server CPU % (best step)": Figure(None, False, why),
                "server waited % (best step)": Figure(None, False, why),
                "loadgen CPU % (best step)": Figure(None, False, why)}
    ok, why = True, ""
    result = record["result"]
    login = result.get("login", {})
    if not login.get("complete", True):
        ok = False
        why = (f"only {result.get('receivers_actual', login.get('logged_in'))} of {login.get('wanted')}"
               f" clients joined within {login.get('seconds', 0):.0f} s; measured with those")
    if best.get("byte_counts_agree") is False:
        ok = False
        why = "; ".join(x for x in (why, "receivers counted by bytes, which the probes' marks contradict") if x)
    text = None
    if result.get("stopped") == "load generator CPU limit":
        # The server was not saturated: what it sustained is a lower bound.
        text = f">= {best['delivered_per_s']:,.0f}"
        why = "lower bound: the load generator reached its CPU limit before the server its p99 limit"
    elif result.get("stopped") == "max steps" and best is result["steps"][-1]:
        # The ramp ended on a step the server kept up with: it was not saturated either.
        text = f">= {best['delivered_per_s']:,.0f}"
        why = "lower bound: the ramp ran out of steps before the server reached its p99 limit"
    index = result["steps"].index(best)
    return {
        "delivered/s": Figure(best["delivered_per_s"], ok, why, text),
        "p99 ms": Figure(_num(best["latency"]["p99_ms"]), ok, why),
        "server us/delivery": cpu_per_delivery(record, 0),
        "server CPU % (best step)": Figure(server_percent(record, "step", index, "cpu_s")),
        "server waited % (best step)": Figure(server_percent(record, "step", index, "wait_s")),
        "loadgen CPU % (best step)": Figure(best["loadgen_cpu_percent"]),
    }


def cpu_per_delivery(record: Obj, index: int) -> Figure:
    """The server's CPU microseconds per delivery over fan-out step ``index`` (its sending and its drain).

    Step 0 is at the same offered load for every server (the plan's
    ``start_deliveries``), so this figure compares the servers' cost whatever
    the load generator can drive."""
    steps = (record.get("result") or {}).get("steps", [])
    cpu_s = server_seconds(record, "step", index, "cpu_s")
    if index >= len(steps) or cpu_s is None or not steps[index].get("delivered_total"):
        return Figure(None, False, "no such step")
    step = steps[index]
    complete = step["delivered_total"] >= 0.99 * step["deliveries_wanted"]
    why = "" if complete else (f"only {step['delivered_total']:,} of {step['deliveries_wanted']:,} deliveries"
                               " arrived by the end of the drain")
    return Figure(1e6 * cpu_s / step["delivered_total"], complete, why)


def direct_figures(record: Obj, limit: float) -> dict[str, Figure]:
    result = record.get("result")
    if not result or "rtt" not in result:
        why = record.get("error") or (result or {}).get("error") or "no result"
        return {k: Figure(None, False, why) for k in ("RTT p50 ms", "RTT p99 ms", "background delivered/s")}
    ok, why = _loadgen_ok(result["loadgen_cpu_percent"], limit)
    if not ok and result.get("reads_per_s"):
        # How the input came: many small reads (a server that sends each
        # line on its own) cost the generator's kernel, not its Python.
        why += (
            f", {result.get('loadgen_kernel_percent', 0):.0f}% in the kernel:"
            f" {result['reads_per_s']:,.0f} reads/s of {result['bytes_per_read']:,.0f} bytes"
        )
    return {
        "RTT p50 ms": Figure(_num(result["rtt"]["p50_ms"]), ok, why),
        "RTT p99 ms": Figure(_num(result["rtt"]["p99_ms"]), ok, why),
        "background delivered/s": Figure(result["background_delivered_per_s"], ok, why),
    }


def churn_figures(record: Obj, limit: float) -> dict[str, Figure]:
    result = record.get("result")
    if not result or "login_notice_latency" not in result:
        why = record.get("error") or (result or {}).get("error") or "no result"
        return {k: Figure(None, False, why) for k in ("notifications/s", "notice p50 ms", "notice p99 ms")}
    ok, why = _loadgen_ok(result["loadgen_cpu_percent"], limit)
    lat = result["login_notice_latency"]
    return {
        "notifications/s": Figure(result["notifications_per_s"], ok, why),
        "notice p50 ms": Figure(_num(lat["p50_ms"]), ok, why),
        "notice p99 ms": Figure(_num(lat["p99_ms"]), ok, why),
    }


def never_readers_closed(record: Obj) -> int:
    """Never-readers the server closed: seen as a reset by the client, or, for a close
    (FIN) queued behind unread data, as fewer established connections at the server."""
    result = record.get("result") or {}
    closed = result.get("never_readers_closed_by_server", 0)
    start, end = _mark(record, "run_start"), _mark(record, "run_end")
    if start and end and "connections" in start["server"]:
        closed = max(closed, start["server"]["connections"] - end["server"]["connections"])
    return min(closed, result.get("never_readers", closed))


def neverread_figures(record: Obj, limit: float) -> dict[str, Figure]:
    result = record.get("result")
    keys = ("peak RSS MiB", "RSS growth MiB", "kernel queue MiB", "held MiB", "unread MiB (all)",
            "never-readers closed", "others' p99 ms")
    if not result or "run" not in result:
        why = record.get("error") or (result or {}).get("error") or "no result"
        return {k: Figure(None, False, why) for k in keys}
    run = result["run"]
    ok, why = _loadgen_ok(run["loadgen_cpu_percent"], limit)
    start, end = _mark(record, "run_start"), _mark(record, "run_end")
    growth = peak = queue = held = None
    if start and end:
        samples = [rss for t, rss in record.get("rss_samples", []) if start["sampler_t"] <= t <= end["sampler_t"]]
        top = max(samples + [end["server"]["rss_kib"]])
        growth = (top - start["server"]["rss_kib"]) / 1024
        peak = end["server"]["hwm_kib"] / 1024
        queue = end["server"].get("tx_queue_bytes", 0) / 2**20
        held = growth + queue - start["server"].get("tx_queue_bytes", 0) / 2**20
    unread = result["bytes_sent_to_each_never_reader_approx"] * result["never_readers"] / 2**20
    closed = never_readers_closed(record)
    return {
        "peak RSS MiB": Figure(peak, ok, why),
        "RSS growth MiB": Figure(growth, ok, why),
        "kernel queue MiB": Figure(queue, ok, why),
        "held MiB": Figure(held, ok, why),
        "unread MiB (all)": Figure(unread, ok, why),
        "never-readers closed": Figure(closed, True, "", f"{closed}/{result['never_readers']}"),
        "others' p99 ms": Figure(_num(run["latency"]["p99_ms"]), ok, why),
    }


FIGURES: dict[str, tuple[str, Callable[[Obj, float], dict[str, Figure]], dict[str, bool | None]]] = {
    # figure -> True: higher is better, False: lower is better, None: context (no ratio)
    "login": ("1. idle logins", login_figures, {"logins/s": True, "KiB/conn": False}),
    "fanout": ("2. broadcast fan-out", fanout_figures,
               {"server us/delivery": False, "delivered/s": True, "p99 ms": False,
                "server CPU % (best step)": None, "server waited % (best step)": None,
                "loadgen CPU % (best step)": None}),
    "direct": ("3. DM ping-pong under load", direct_figures,
               {"RTT p50 ms": False, "RTT p99 ms": False, "background delivered/s": True}),
    "churn": ("4. presence churn", churn_figures, {"notifications/s": True, "notice p50 ms": False, "notice p99 ms": False}),
    "neverread": ("5. never-reading clients", neverread_figures,
                  {"peak RSS MiB": False, "RSS growth MiB": False, "kernel queue MiB": False,
                   "held MiB": False, "unread MiB (all)": None,
                   "never-readers closed": None, "others' p99 ms": False}),
}


def table_rows(results: Obj) -> list[Obj]:
    """One row per workload, size and figure: the value for each server and chatservice/peer."""
    limit = results.get("loadgen_cpu_limit_percent", 80.0)
    rows: list[Obj] = []
    for workload, (title, figures, better) in FIGURES.items():
        runs = _runs(results, workload)
        sizes = sorted({r["size"] for r in runs})
        for size in sizes:
            cells: dict[str, dict[str, Figure]] = {}
            for record in runs:
                if record["size"] == size:
                    cells[record["server"]] = figures(record, limit)
            for key, higher in better.items():
                row: Obj = {"workload": workload, "title": title, "size": size, "figure": key,
                            "higher_is_better": higher, "values": {}, "ratios": {}}
                for server, figs in cells.items():
                    row["values"][server] = figs[key].as_json()
                chat = cells.get("chatservice", {}).get(key)
                if higher is None:
                    chat = None
                for peer in PEERS:
                    other = cells.get(peer, {}).get(key)
                    ratio = None
                    if chat is not None and other is not None and chat.value is not None and other.value:
                        if not (math.isinf(chat.value) or math.isinf(other.value)):
                            ratio = round(chat.value / other.value, 3)
                    row["ratios"][peer] = ratio
                rows.append(row)
    return rows


def _value(rows: list[Obj], workload: str, figure: str, server: str, size: int | None = None) -> list[tuple[int, Obj]]:
    out = []
    for row in rows:
        if row["workload"] == workload and row["figure"] == figure and (size is None or row["size"] == size):
            cell = row["values"].get(server)
            if cell is not None:
                out.append((row["size"], cell))
    return out


def targets(results: Obj) -> list[Obj]:
    """Each target of issue 7 with the figures of this run and whether it is met."""
    rows = results.get("table") or table_rows(results)
    found: list[Obj] = []

    def cell(workload: str, figure: str, server: str, size: int) -> float | None:
        for s, c in _value(rows, workload, figure, server, size):
            return _num(c["value"])
        return None

    def valid(workload: str, figure: str, size: int, peer: str | None = None) -> bool:
        """Whether chatservice's figure (and ``peer``'s) are valid."""
        for row in rows:
            if row["workload"] == workload and row["figure"] == figure and row["size"] == size:
                servers = ["chatservice"] + ([peer] if peer else [])
                return all(row["values"].get(s, {}).get("valid", False) for s in servers)
        return False

    for row in rows:
        if "chatservice" not in row["values"]:
            continue
        if row["workload"] == "fanout" and row["figure"] == "delivered/s":
            for peer, goal in (("words", 3.0), ("ngircd", 0.4)):
                ratio = row["ratios"].get(peer)
                if peer not in row["values"]:
                    continue
                note = []
                if str((row["values"].get(peer) or {}).get("text") or "").startswith(">="):
                    note.append(f"{LABELS[peer]}'s figure is a lower bound, so the ratio is an upper bound")
                if str((row["values"].get("chatservice") or {}).get("text") or "").startswith(">="):
                    note.append("chatservice's figure is a lower bound, so the ratio is a lower bound")
                met: bool | None = None if ratio is None else ratio >= goal
                if met and any("upper bound" in n for n in note):
                    met = None  # the true ratio may be lower: not shown by this run
                found.append({
                    "target": f"fan-out delivered/s, N={row['size']}: chatservice >= {goal:g} x {LABELS[peer]}",
                    "ratio": ratio, "goal": goal, "met": met,
                    "valid": valid("fanout", "delivered/s", row["size"], peer), "note": "; ".join(note) or None,
                })
        if row["workload"] == "direct" and row["figure"] == "RTT p99 ms" and "words" in row["values"]:
            ratio = row["ratios"].get("words")
            found.append({
                "target": f"DM RTT p99 under load ({row['size']} users): chatservice <= 0.5 x twistd words",
                "ratio": ratio, "goal": 0.5, "met": ratio is not None and ratio <= 0.5,
                "valid": valid("direct", "RTT p99 ms", row["size"], "words"),
            })
        if row["workload"] == "login" and row["figure"] == "KiB/conn":
            chat = cell("login", "KiB/conn", "chatservice", row["size"])
            ratio = row["ratios"].get("words")
            if "words" in row["values"]:
                found.append({
                    "target": f"memory per idle connection, N={row['size']}: chatservice <= twistd words",
                    "ratio": ratio, "goal": 1.0, "met": ratio is not None and ratio <= 1.0,
                    "valid": valid("login", "KiB/conn", row["size"], "words"),
                })
            found.append({
                "target": f"memory per idle connection, N={row['size']}: chatservice < 10 KiB",
                "value": chat, "goal": 10.0, "met": chat is not None and chat < 10.0,
                "valid": valid("login", "KiB/conn", row["size"]),
            })
    found += peer_targets(results, rows)
    for record in _runs(results, "neverread"):
        figs = neverread_figures(record, results.get("loadgen_cpu_limit_percent", 80.0))
        growth, unread = figs["held MiB"].value, figs["unread MiB (all)"].value
        closed = never_readers_closed(record)
        readers = (record.get("result") or {}).get("never_readers", 0)
        bounded = None
        if growth is not None and unread:
            bounded = (readers and closed == readers) or growth < 0.5 * unread
        found.append({
            "target": f"never-reading clients: {LABELS[record['server']]} memory stays bounded",
            "value": growth, "unread_mib": unread, "closed": f"{closed}/{readers}",
            "met": bool(bounded), "valid": figs["RSS growth MiB"].valid,
            "rule": "bounded: every never-reader closed by the server, or the memory held"
                    " (RSS growth + the kernel's send queue growth) < 50% of the bytes left unread",
        })
    return found


def _best_peer(row: Obj, higher: bool) -> tuple[str, Obj] | None:
    """The IRC peer with the best valid figure in ``row`` (a lower-bound figure counts, marked by its text)."""
    cells = [(p, row["values"][p]) for p in IRC_PEERS
             if p in row["values"] and row["values"][p].get("valid") and _num(row["values"][p]["value"]) is not None]
    if not cells:
        return None
    pick = max if higher else min
    return pick(cells, key=lambda pc: _num(pc[1]["value"]))  # type: ignore[arg-type, return-value]


def _step_at(record: Obj | None, offered: float) -> Obj | None:
    """The step of a fan-out run offered ``offered`` broadcasts/s (within 1%), else the
    step offered the least above it: a p99 at a higher rate that is lower still
    answers the comparison at ``offered`` (the same load or more)."""
    steps = ((record or {}).get("result") or {}).get("steps", [])
    for step in steps:
        if abs(step["offered_msgs_per_s"] - offered) <= 0.01 * offered:
            return step
    above = [step for step in steps if step["offered_msgs_per_s"] > offered]
    return min(above, key=lambda step: step["offered_msgs_per_s"]) if above else None


def peer_targets(results: Obj, rows: list[Obj]) -> list[Obj]:
    """Issue 17's targets: chatservice against the best of ngIRCd, InspIRCd and ircd-hybrid at each figure."""
    found: list[Obj] = []
    fanout_runs = {(r["server"], r["size"]): r for r in _runs(results, "fanout")}
    login_sizes = sorted({row["size"] for row in rows if row["workload"] == "login"})
    for row in rows:
        chat = row["values"].get("chatservice")
        if chat is None or row["higher_is_better"] is None:
            continue
        key = (row["workload"], row["figure"])
        if key not in {("fanout", "server us/delivery"), ("fanout", "delivered/s"), ("direct", "RTT p99 ms")} and not (
            row["workload"] == "login" and login_sizes and row["size"] == login_sizes[-1]
        ):
            continue
        best = _best_peer(row, row["higher_is_better"])
        if best is None:
            continue
        peer, cell = best
        chat_value, peer_value = _num(chat["value"]), _num(cell["value"])
        goal = 2.0 if key == ("login", "logins/s") else 1.0
        ratio = None if chat_value is None or not peer_value or math.isinf(peer_value) else round(chat_value / peer_value, 3)
        higher = row["higher_is_better"]
        note = []
        if not higher and peer_value is not None and math.isinf(peer_value) and chat_value is not None and not math.isinf(chat_value):
            ratio = 0.0  # the best peer lost its messages (an infinite p99): any finite one is lower
            invalid = [LABELS[p] for p in IRC_PEERS if p in row["values"] and not row["values"][p].get("valid")]
            note.append(f"{LABELS[peer]} lost messages (an infinite p99)"
                        + (f"; {', '.join(invalid)} invalid here" if invalid else ""))
        met: bool | None = ratio is not None and (ratio >= goal if higher else ratio <= goal)
        if str(cell.get("text") or "").startswith(">="):
            note.append(f"{LABELS[peer]}'s figure is a lower bound")
            if met and higher:
                met = None
        if key == ("login", "logins/s") and "[" in str(chat.get("text") or ""):
            met = False
            note.append("not every chatservice client logged in")
        words = {"fanout": "fan-out", "direct": "DM", "login": "idle logins"}[row["workload"]]
        sign = ">=" if higher else "<="
        found.append({
            "target": f"{words} {row['figure']}, N={row['size']}: chatservice {sign} {goal:g} x the best peer ({LABELS[peer]})",
            "ratio": ratio, "goal": goal, "met": met, "valid": bool(chat.get("valid")), "note": "; ".join(note) or None,
            "issue": 17,
        })
        if key == ("fanout", "delivered/s"):
            # p99 at the same offered rate as the best peer's best step.
            peer_best = fanout_best(fanout_runs[(peer, row["size"])])
            chat_step = _step_at(fanout_runs.get(("chatservice", row["size"])), peer_best["offered_msgs_per_s"]) if peer_best else None
            chat_p99 = _num(chat_step["latency"]["p99_ms"]) if chat_step else None
            peer_p99 = _num(peer_best["latency"]["p99_ms"]) if peer_best else None
            p99_ratio = None if chat_p99 is None or not peer_p99 or math.isinf(chat_p99) else round(chat_p99 / peer_p99, 3)
            at = ""
            if chat_step is not None and peer_best and chat_step["offered_msgs_per_s"] > 1.01 * peer_best["offered_msgs_per_s"]:
                at = f"; chatservice's at {chat_step['offered_msgs_per_s']:g} broadcasts/s, the next rate it ran"
            found.append({
                "target": f"fan-out p99, N={row['size']}: chatservice <= {LABELS[peer]} at its best rate"
                          f" ({peer_best['offered_msgs_per_s'] if peer_best else '?'} broadcasts/s{at})",
                "ratio": p99_ratio, "goal": 1.0, "met": p99_ratio is not None and p99_ratio <= 1.0,
                "valid": chat_step is not None and chat_step["loadgen_cpu_percent"] <= results.get("loadgen_cpu_limit_percent", 80.0),
                "note": None if chat_step else "chatservice ran no step at that rate", "issue": 17,
            })
    return found


# Rendering ------------------------------------------------------------------------------


def _peer_versions(machine: Obj) -> str:
    return ", ".join(str(machine[k]) for k in ("ngircd", "inspircd", "ircd-hybrid") if k in machine)


def _fmt_cell(cell: Obj | None) -> str:
    if cell is None:
        return "-"
    fig = Figure(_num(cell["value"]), cell["valid"], cell.get("why") or "", cell.get("text"))
    return fig.show()


def render(results: Obj) -> str:
    rows = results.get("table") or table_rows(results)
    present = [s for s in SERVERS if any(s in r["values"] for r in rows)]
    peers = [p for p in PEERS if p in present]
    header = ["workload", "N", "figure", *[LABELS[s] for s in present], *[f"chat/{LABELS[p]}" for p in peers]]
    body: list[list[str]] = []
    for row in rows:
        arrow = {True: " ^", False: " v"}.get(row["higher_is_better"], "")
        line = [row["title"], str(row["size"]), row["figure"] + arrow]
        line += [_fmt_cell(row["values"].get(s)) for s in present]
        line += ["-" if row["ratios"].get(p) is None else f"{row['ratios'][p]:.2f}" for p in peers]
        body.append(line)
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    out = []
    m = results.get("machine", {})
    out.append(
        f"{results.get('mode', '?')} run on {m.get('nproc')} x {m.get('cpu_model')}, {m.get('memory')}, "
        f"Linux {m.get('kernel')}, Python {m.get('python')}, Twisted {m.get('twisted')}, {_peer_versions(m)}"
    )
    out.append(f"server pinned to CPU {results.get('cpus', {}).get('server')}, "
               f"load generator to CPU {results.get('cpus', {}).get('loadgen')}; "
               "^ higher is better, v lower is better; (!) invalid (see below)")
    for notice in results.get("notices", []):
        out.append(f"NOTICE: {notice}")
    versions = {}
    for record in results.get("runs", []):
        code = record.get("code")
        if record["server"] == "chatservice" and code:
            versions.setdefault(code["chatservice_sha1"], (code.get("commit"), code.get("chatservice_dirty")))
    if len(versions) > 1:
        out.append("WARNING: chatservice's code changed during the run: " + ", ".join(
            f"{sha} (commit {c}{', modified' if d else ''})" for sha, (c, d) in versions.items()))
    elif versions:
        (sha, (c, d)), = versions.items()
        out.append(f"chatservice code: commit {c}{' + local changes' if d else ''} (sources sha1 {sha})")
    out.append("")
    out.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    out.append("  ".join("-" * w for w in widths))
    for line in body:
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths)))
    out.append("")
    out.append("Targets (issue 7, then issue 17: against the best of ngIRCd, InspIRCd and ircd-hybrid):")
    for t in results.get("targets") or targets(results):
        figure = t.get("ratio", t.get("value"))
        shown = "-" if figure is None else (f"{figure:.2f}" if isinstance(figure, (int, float)) else str(figure))
        verdict = "UNDECIDED" if t["met"] is None else ("MET" if t["met"] else "NOT MET")
        extra = "" if t.get("valid", True) else " (figures invalid)"
        detail = ""
        if "unread_mib" in t:
            detail = f" (held {shown} MiB = RSS growth + kernel send queue, {t['unread_mib']:.1f} MiB left unread, closed {t['closed']})"
            shown = ""
        note = f" [{t['note']}]" if t.get("note") else ""
        out.append(f"  [{verdict}] {t['target']}: {shown}{detail}{extra}{note}")
    invalid = []
    for row in rows:
        for server, cell in row["values"].items():
            if cell.get("why"):
                invalid.append(f"  {row['title']} N={row['size']} {row['figure']} {LABELS[server]}: {cell['why']}")
    if invalid:
        out.append("")
        out.append("Invalid, incomplete or bounded figures:")
        out.extend(dict.fromkeys(invalid))
    raised: dict[str, Obj] = {}
    for record in results.get("runs", []):
        if "raised" in record:
            raised[record["server"]] = record["raised"]
    if raised:
        out.append("")
        out.append("Limits raised so one load generator is not throttled:")
        for server, items in raised.items():
            out.append(f"  {LABELS[server]}: " + ", ".join(f"{k} {v}" for k, v in items.items()))
    errors = [f"  {LABELS[r['server']]} {r['workload']} {r['size']}: {r['error']}" for r in results.get("runs", []) if r.get("error")]
    tracebacks = [f"  {LABELS[r['server']]} {r['workload']} {r['size']}: {r['server_log_tracebacks']} traceback(s) in the server log"
                  for r in results.get("runs", []) if r.get("server_log_tracebacks")]
    if errors or tracebacks:
        out.append("")
        out.append("Errors:")
        out.extend(errors + tracebacks)
    out.append("")
    out.append(f"total wall time {results.get('wall_s', '?')} s")
    return "\n".join(out)


def chart(results: Obj, path: Path) -> Path | None:
    """A PNG of the main figures (None when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)")
        return None
    rows = results.get("table") or table_rows(results)
    present = [s for s in SERVERS if any(s in r["values"] for r in rows)]
    colours = {"chatservice": "#1f77b4", "words": "#ff7f0e", "ngircd": "#2ca02c", "inspircd": "#d62728",
               "hybrid": "#9467bd"}
    panels = [
        ("login", "logins/s", "1. logins/s (higher is better)", False),
        ("login", "KiB/conn", "1. server KiB per idle connection", False),
        ("fanout", "delivered/s", "2. fan-out delivered msgs/s at p99 <= 1 s (log)", True),
        ("direct", "RTT p99 ms", "3. DM RTT p99 ms under load (log)", True),
        ("churn", "notifications/s", "4. presence notifications/s", False),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    flat = axes.flatten()
    for ax, (workload, figure, title, logy) in zip(flat, panels):
        sel = [r for r in rows if r["workload"] == workload and r["figure"] == figure]
        sizes = [r["size"] for r in sel]
        width = 0.8 / max(1, len(present))
        lowest = math.inf
        for k, server in enumerate(present):
            values = []
            for r in sel:
                v = _num((r["values"].get(server) or {}).get("value"))
                values.append(0 if v is None or math.isinf(v) else v)
            xs = [i + (k - (len(present) - 1) / 2) * width for i in range(len(sel))]
            ax.bar(xs, values, width, label=LABELS[server], color=colours[server])
            for x, r, v in zip(xs, sel, values):
                cell = r["values"].get(server)
                if cell is not None and not cell["valid"]:
                    ax.text(x, v, "!", ha="center", va="bottom", color="red", fontweight="bold")
                elif cell is not None and str(cell.get("text") or "").startswith(">="):
                    ax.text(x, v, ">=", ha="center", va="bottom", fontsize=8)
            positive = [v for v in values if v > 0]
            if positive:
                lowest = min(lowest, min(positive))
        ax.set_xticks(range(len(sel)))
        ax.set_xticklabels([f"N={s}" for s in sizes])
        ax.set_title(title, fontsize=10)
        if sel and logy:
            ax.set_yscale("log")
            if math.isfinite(lowest):
                ax.set_ylim(bottom=lowest / 3)
        if sel:
            ax.legend(fontsize=8)
    ax = flat[5]
    for record in _runs(results, "neverread"):
        start, end = _mark(record, "run_start"), _mark(record, "run_end")
        if not start or not end:
            continue
        pts = [(t - start["sampler_t"], rss / 1024) for t, rss in record.get("rss_samples", [])
               if start["sampler_t"] - 1 <= t <= end["sampler_t"] + 1]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=LABELS[record["server"]],
                    color=colours[record["server"]])
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title("5. server RSS (MiB) with never-reading clients, over time (s)", fontsize=10)
    m = results.get("machine", {})
    fig.suptitle(f"chatservice benchmarks ({results.get('mode')} run): {m.get('nproc')} x {m.get('cpu_model')}, "
                 f"Python {m.get('python')}, Twisted {m.get('twisted')}; '!' = invalid figure", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def render_rst(results: Obj) -> str:
    """The results as a reStructuredText section: the machine, then the table as a literal block."""
    m = results.get("machine", {})
    lines = [
        f"Results of ``python3 -m bench.run{' --quick' if results.get('mode') == 'quick' else ''}``",
        "",
        f"- CPU: {m.get('nproc')} x {m.get('cpu_model')} (server on CPU {results.get('cpus', {}).get('server')},"
        f" load generator on CPU {results.get('cpus', {}).get('loadgen')})",
        f"- memory: {m.get('memory')}; kernel: Linux {m.get('kernel')}; open files: {m.get('file_limit', ['?'])[0]}",
        f"- Python {m.get('python')}, Twisted {m.get('twisted')}, {_peer_versions(m)}",
        f"- wall time: {results.get('wall_s')} s",
        "",
        "::",
        "",
    ]
    lines += ["    " + line if line else "" for line in render(results).splitlines()]
    return "\n".join(lines) + "\n"
