"""Profile chatservice under broadcast fan-out (workload 2): ``python3 -m bench.profile``.

Starts ``twistd -n chat`` under ``py-spy record`` (sampling, so the server
runs at nearly full speed; py-spy itself runs on the load generator's core),
drives it with :mod:`bench.loadgen`'s fan-out at a fixed rate for
``--seconds``, stops it, and prints the hot spots:

- *self* time by source line (``function (file:line)`` at the top of the
  stack), the share of the samples in which the server was running Python;
- *inclusive* time by function (every function on the stack counts once per
  sample).

The raw collapsed stacks go to ``--output`` (default
``bench/results/profile-fanout.txt``) with the summary beside it
(``.summary.txt``); feed the raw file to ``flamegraph.pl`` or speedscope for a
picture.  Without py-spy (``pip install py-spy``), the same run uses twistd's
own ``--profile`` (cProfile) instead.

py-spy must start the server itself (``py-spy record -- ...``): attaching to a
running process (``--pid``) needs ptrace rights that containers often lack.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import peers
from bench.harness import PAD, PLANS, raise_file_limit, run_loadgen
from bench.servers import HOST, ROOT

_PORT_LINE = re.compile(rb"ChatFactory starting on (\d+)")
_WEB_PORT_LINE = re.compile(rb"Site \(InputGuardFactory\) starting on (\d+)")
TRANSPORTS = {"text": "chat", "json": "json", "websocket": "websocket"}
"""``--transport`` -> the load generator's protocol (``websocket``: ``twistd chat --web``, ``/ws``)."""
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?):(?P<line>\d+)\)$")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def start_profiled_chat(names: list[str], server_cpu: int, spy_cpu: int, raw: Path, rate: int,
                        web: bool = False) -> tuple[peers.Peer, subprocess.Popen[bytes], str]:
    """chatservice under py-spy (or twistd --profile), with ``--web`` if ``web``; returns the peer,
    the top process, the tool."""
    workdir = tempfile.TemporaryDirectory(prefix="chat-profile-")
    work = Path(workdir.name)
    (work / "credentials.txt").write_text(
        "".join(f"{u} {p}\n" for u, p in peers.accounts_for(names).items()), encoding="utf-8")
    options = [item for pair in peers.CHAT_RAISED.items() for item in pair]
    twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]
    chat = ["chat", "--listen", f"tcp:0:interface={HOST}", "--credentials", str(work / "credentials.txt"),
            "--data-dir", str(work / "data"), *options, *(["--web", f"tcp:0:interface={HOST}"] if web else [])]
    spy = shutil.which("py-spy")
    if spy:
        tool = "py-spy"
        command = ["taskset", "-c", str(spy_cpu), spy, "record", "--rate", str(rate), "--format", "raw",
                   "--nonblocking", "-o", str(raw), "--", "taskset", "-c", str(server_cpu), *twistd, *chat]
    else:
        tool = "cprofile"
        command = ["taskset", "-c", str(server_cpu), *twistd, f"--profile={raw.with_suffix('.pstats')}",
                   "--profiler=cprofile", "--savestats", *chat]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    log_path = work / "server.log"
    with open(log_path, "wb") as log_file:
        top = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    port = web_port = None
    while time.monotonic() < deadline and port is None:
        log = log_path.read_bytes()
        match = _PORT_LINE.search(log)
        web_match = _WEB_PORT_LINE.search(log)
        if match and (web_match or not web):
            port = int(match.group(1))
            web_port = int(web_match.group(1)) if web_match else 0
        elif top.poll() is not None:
            break
        time.sleep(0.1)
    if port is None:
        top.kill()
        raise RuntimeError("chatservice did not start:\n" + log_path.read_text(errors="replace")[-3000:])
    server_pid = top.pid
    if tool == "py-spy":
        kids = _children(top.pid)
        if kids:
            server_pid = kids[0]

    def stop() -> None:
        if tool == "py-spy":
            try:
                os.kill(server_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        elif top.poll() is None:
            top.send_signal(signal.SIGTERM)
        try:
            top.wait(60)
        except subprocess.TimeoutExpired:
            top.kill()
            top.wait()

    peer = peers.Peer(name="chatservice", protocol="chat", port=port, pid=server_pid,
                      version="chatservice (profiled)", raised=dict(peers.CHAT_RAISED), stop=stop,
                      log_path=log_path, web_port=web_port or 0)
    peer.workdir = workdir  # type: ignore[attr-defined]  (kept alive until the end)
    return peer, top, tool


SETUP_FRAMES = re.compile(r"Session\.begin|ChatState\.detach|_logged_in|LoginGate|_wait_for_login|ChatRealm|_bootstrap|twistd\.py:\d+\);[^;]*$")
"""Frames of the setup (logins and their presence storm, start-up), left out of the second view."""


def summarise_raw(raw: Path, top_n: int) -> tuple[str, dict]:
    """Both views: every sample, then the broadcast phase only (setup stacks left out)."""
    text_all, data_all = _summarise(raw, top_n, None)
    text_run, data_run = _summarise(raw, top_n, SETUP_FRAMES)
    text = (
        "=== The broadcast phase (stacks through login/presence/start-up code left out) ===\n"
        + text_run
        + "\n\n=== Every sample (including the 1000 logins and their presence storm) ===\n"
        + text_all
    )
    return text, {"broadcast_phase": data_run, "all": data_all}


def _summarise(raw: Path, top_n: int, exclude: re.Pattern[str] | None) -> tuple[str, dict]:
    """Self time by line and inclusive time by function, from py-spy's collapsed stacks."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    files: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        if exclude is not None and exclude.search(stack):
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_time[frames[-1]] += count
        seen_funcs = set()
        seen_files = set()
        for frame in frames:
            m = _FRAME.match(frame)
            func = f"{m['func']} ({m['file']})" if m else frame
            if func not in seen_funcs:
                seen_funcs.add(func)
                inclusive[func] += count
            fname = m["file"] if m else "?"
            if fname not in seen_files:
                seen_files.add(fname)
                files[fname] += count
    lines = [f"{total} samples in which the server ran Python code (idle time in epoll is not sampled)", ""]
    lines.append(f"Top {top_n} lines by self time (share of samples):")
    for frame, count in self_time.most_common(top_n):
        lines.append(f"  {100 * count / total:5.1f}%  {frame}")
    lines.append("")
    lines.append(f"Top {top_n} functions by inclusive time:")
    for func, count in inclusive.most_common(top_n):
        lines.append(f"  {100 * count / total:5.1f}%  {func}")
    lines.append("")
    lines.append("chatservice files by inclusive time:")
    for fname, count in files.most_common():
        if "chatservice" in fname or fname.startswith(("server/", "wire/", "store/", "auth/")):
            lines.append(f"  {100 * count / total:5.1f}%  {fname}")
    data = {
        "samples": total,
        "self": [[f, c] for f, c in self_time.most_common(top_n)],
        "inclusive": [[f, c] for f, c in inclusive.most_common(top_n)],
    }
    return "\n".join(lines), data


def summarise_pstats(path: Path, top_n: int) -> str:
    import io

    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(top_n)
    stats.sort_stats("cumulative").print_stats(top_n)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=["fanout", "direct"], default="fanout",
                        help="fanout (workload 2 at --rate) or direct (workload 3: DM ping-pong of 1000 users"
                             " with --rate broadcasts/s behind it)")
    parser.add_argument("--transport", choices=list(TRANSPORTS), default="text",
                        help="how the clients connect: TCP text (default), TCP JSON lines, or the WebSocket"
                             " of --web (JSON)")
    parser.add_argument("--receivers", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--rate", type=float, default=None,
                        help="broadcasts a second (default: 70%% of chatservice's maximum in --results, else 100)")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "results.json",
                        help="a bench.run results.json (default: where bench.run writes it)")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--sample-rate", type=int, default=250, help="py-spy samples a second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "profile-fanout.txt")
    args = parser.parse_args(argv)
    raise_file_limit()
    rate = args.rate
    if rate is None:
        rate = 100.0
        previous = args.results
        if previous.exists():
            from bench import report

            results = json.loads(previous.read_text())
            for record in results.get("runs", []):
                if record["server"] == "chatservice" and record["workload"] == "fanout" and record["size"] == args.receivers:
                    best = report.fanout_best(record)
                    if best:
                        rate = 0.7 * best["offered_msgs_per_s"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    raw = args.output
    if args.workload == "direct":
        plan = PLANS["full"]["direct"]
        names = [f"u{i}" for i in range(plan["users"])] + [f"s{plan['users']}"]
    else:
        names = [f"r{i}" for i in range(args.receivers)] + [f"s{i}" for i in range(args.receivers, args.receivers + args.senders)]
    websocket = args.transport == "websocket"
    peer, top, tool = start_profiled_chat(names, 0, 1, raw, args.sample_rate, web=websocket)
    print(f"profiling chatservice (pid {peer.pid}) with {tool}: {args.workload} over {args.transport},"
          f" {len(names)} users, {rate:.1f} broadcasts/s for {args.seconds:g} s", file=sys.stderr)
    spec = {
        "workload": args.workload, "server": "chatservice (profiled)", "protocol": TRANSPORTS[args.transport],
        "irc_pass": False, "channel": "#bench", "port": peer.web_port if websocket else peer.port,
        "password_format": peers.PASSWORD_FORMAT, "concurrency": 8,
        "quiet": 1.0, "pad": PAD, "loadgen_cpu_limit": 100.0, "login_limit": 300, "settle_limit": 300,
    }
    if args.workload == "direct":
        spec.update(PLANS["full"]["direct"], seconds=args.seconds, background_rate=rate)
    else:
        spec.update({
            "receivers": args.receivers, "senders": args.senders, "probes": 32, "step_seconds": args.seconds,
            "drain": 5.0, "time_limit": args.seconds + 30, "max_steps": 1, "start_rate": rate,
        })
    try:
        result, marks, _samples, error = run_loadgen(peer, spec, 1, 900)
        cpu = None
        starts = [m for m in marks if m["mark"] in ("step_start", "step_end", "run_start", "run_end")]
        if len(starts) >= 2:
            a, b = starts[0], starts[1]
            cpu = 100 * (b["server"]["cpu_s"] - a["server"]["cpu_s"]) / max(0.001, b["t"] - a["t"])
    finally:
        peer.stop()
    step = (result or {}).get("steps", [{}])[0] if result and result.get("steps") else {}
    if args.workload == "direct" and result:
        step = {"delivered_per_s": result.get("background_delivered_per_s"), "latency": result.get("rtt")}
    header = [
        f"chatservice under {args.workload} over {args.transport}: {len(names)} users, "
        f"{rate:.1f} broadcasts/s offered for {args.seconds:g} s ({tool}, {args.sample_rate} samples/s)",
        f"delivered/s {step.get('delivered_per_s')}, latency (direct: DM round trip) {step.get('latency')}, "
        f"server CPU during the step {cpu:.0f}% of one core" if cpu is not None else f"result: {error}",
        "",
    ]
    if tool == "py-spy" and raw.exists():
        text, data = summarise_raw(raw, args.top)
    elif raw.with_suffix(".pstats").exists():
        text, data = summarise_pstats(raw.with_suffix(".pstats"), args.top), {}
    else:
        text, data = "no profile was written", {}
    summary = "\n".join(header) + text
    print(summary)
    summary_path = raw.with_suffix(".summary.txt")
    summary_path.write_text(summary + "\n", encoding="utf-8")
    raw.with_suffix(".summary.json").write_text(json.dumps({"step": step, "server_cpu_percent": cpu, **data}, indent=1),
                                                encoding="utf-8")
    print(f"\nwritten: {raw} (collapsed stacks), {summary_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
