"""Memory per idle logged-in connection, by allocation site: ``python3 -m bench.memory_per_connection``.

``bench.run``'s workload 1 reports the server's RSS growth per idle
connection, which says how much but not what.  This probe logs ``N``
connections in through the real code path, in process (the test harness:
a whole server on a ``Clock``, each connection a :class:`ChatProtocol` on a
StringTransport, output batched as on TCP, text logins with passwords as
workload 1's), and compares two ``tracemalloc`` snapshots: one once the
server is built and a few connections came and went (so caches and first
uses are paid), one with the ``N`` connections idle.  The difference, per
connection, is broken down by where it was allocated and by the kind of
object that grew.

What the harness itself keeps per connection (its ``Connection`` records and
the StringTransports, which stand where Twisted's TCP transport is), and the
log events Twisted keeps until logging starts (``twistd`` writes them out),
are reported apart and not counted.  RSS counts more than the Python objects
(the allocator's free space, the sockets), so ``bench.run``'s figures are
higher; the sites are what this probe is for.

Usage::

    python3 -m bench.memory_per_connection [--connections N] [--group site|line|file]
        [--top K] [--base DIR] [--json]

``--group site`` (the default) names the innermost line of ``chatservice``
that asked for the memory (a Twisted DelayedCall counts where the server
called ``callLater``); ``line`` the innermost line whatever its file; ``file``
the file of ``site``.  ``--base`` is another checkout (e.g. ``git worktree
add /tmp/base <commit>``) measured the same way, side by side.  Each checkout
is measured in its own process, with ``PYTHONPATH`` at that checkout.
"""

from __future__ import annotations

import argparse
import gc
import json
import linecache
import os
import re
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

FRAMES = 40
"""Frames kept per allocation: enough to reach the server's code from Twisted's or the standard library's."""
WARM_UP = 20
"""Connections logged in and out before the first snapshot."""
GROUPS = ("site", "line", "file")
HARNESS_FILES = (os.path.join("tests", "support.py"), os.path.join("twisted", "internet", "testing.py"))
"""Where the harness's own per-connection objects are allocated (not counted)."""
PACKAGE = "chatservice" + os.sep
LOGGER = os.path.join("twisted", "logger") + os.sep


def _relative(filename: str) -> str:
    """``filename`` from its package down (``chatservice/session.py``, ``twisted/internet/task.py``)."""
    parts = Path(filename).parts
    for anchor in ("chatservice", "twisted", "tests", "bench"):
        if anchor in parts:
            index = len(parts) - 1 - parts[::-1].index(anchor)
            return os.path.join(*parts[index:])
    return os.path.join(*parts[-2:]) if len(parts) > 1 else filename


def _site(traceback: tracemalloc.Traceback) -> tracemalloc.Frame:
    """The innermost frame of ``traceback`` in the server's own code, else the innermost."""
    for frame in reversed(traceback):  # most recent last
        if PACKAGE in frame.filename and os.sep + "tests" + os.sep not in frame.filename:
            return frame
    return traceback[0]


def _not_counted(traceback: tracemalloc.Traceback) -> str | None:
    """Why the allocation is not the server's, or ``None`` if it is.

    ``harness``: a test ``Connection``, a StringTransport, this probe's own
    lists (nothing of ``chatservice`` asked for it); ``log``: a log event
    kept by Twisted until logging starts (``twistd`` writes it out).
    """
    frames = list(traceback)
    if frames[-1].filename.endswith(HARNESS_FILES):
        return "harness"
    if not any(PACKAGE in frame.filename for frame in frames):
        return "harness"
    if any(LOGGER in frame.filename for frame in frames):
        return "log"
    return None


def _label(frame: tracemalloc.Frame, group: str) -> str:
    path = _relative(frame.filename)
    if group == "file":
        return path
    code = linecache.getline(frame.filename, frame.lineno).strip()
    return f"{path}:{frame.lineno}  {code[:90]}"


def _type_counts() -> Counter[str]:
    gc.collect()
    return Counter(type(obj).__qualname__ for obj in gc.get_objects())


def measure(connections: int, group: str = "site") -> dict[str, Any]:
    """Log in ``connections`` idle text connections and say what they hold.

    :param connections: how many idle logged-in connections to measure.
    :param group: how to group the allocations (one of :data:`GROUPS`).
    :return: ``connections``; ``bytes_per_connection`` (the server's);
        ``not_counted_per_connection``, ``harness`` and ``log`` (see
        :func:`_not_counted`) to bytes per connection; ``sites``,
        label to bytes per connection (largest first, growth only);
        ``objects``, type name to objects per connection (tracked by the
        garbage collector: instances, dicts, lists, bound methods...).
    """
    from tests.support import ChatHarness  # the checkout's own harness (PYTHONPATH)

    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}")
    total = WARM_UP + connections
    names = [f"u{i}" for i in range(total)]
    harness = ChatHarness(
        accounts={name: "pw" for name in names},
        batched=True,
        max_connections=total + 10,
        max_connections_per_address=total + 10,
    )
    clock = harness.clock

    def log_in(name: str) -> Any:
        connection = harness.connect()
        connection.login(name, "pw")
        return connection

    warm = [log_in(name) for name in names[:WARM_UP]]
    clock.advance(0)
    for connection in warm:
        connection.drop()
    clock.advance(0)
    del warm, connection
    tracemalloc.start(FRAMES)
    objects_before = _type_counts()
    before = tracemalloc.take_snapshot()
    idle = [log_in(name) for name in names[WARM_UP:]]
    clock.advance(0)
    for connection in idle:
        connection.output()  # flushed and read: nothing waits on the transport
    del connection
    objects_after = _type_counts()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    if len(harness.state.sessions) != connections:
        raise RuntimeError(f"{len(harness.state.sessions)} sessions online, expected {connections}")

    sites: Counter[str] = Counter()
    apart: Counter[str] = Counter({"harness": 0, "log": 0})
    for difference in after.compare_to(before, "traceback"):
        if difference.size_diff == 0:
            continue
        reason = _not_counted(difference.traceback)
        if reason is not None:
            apart[reason] += difference.size_diff
            continue
        frame = difference.traceback[-1] if group == "line" else _site(difference.traceback)
        sites[_label(frame, group)] += difference.size_diff
    harness.close_all(*idle)
    server_bytes = sum(sites.values())
    objects = objects_after.copy()
    objects.subtract(objects_before)
    return {
        "connections": connections,
        "bytes_per_connection": server_bytes / connections,
        "not_counted_per_connection": {reason: size / connections for reason, size in apart.items()},
        "sites": {
            label: size / connections
            for label, size in sorted(sites.items(), key=lambda item: -item[1])
            if size > 0
        },
        "objects": {
            name: count / connections
            for name, count in sorted(objects.items(), key=lambda item: -item[1])
            if count > 0
        },
    }


def measure_checkout(checkout: Path, connections: int, group: str) -> dict[str, Any]:
    """:func:`measure` in a process of its own whose ``chatservice`` and ``tests`` are ``checkout``'s."""
    result = subprocess.run(
        [sys.executable, __file__, "--connections", str(connections), "--group", group, "--json"],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def _aligned(sites: dict[str, float]) -> dict[str, float]:
    """``sites`` with the line numbers left out, so that one line of code is one row in every checkout."""
    merged: Counter[str] = Counter()
    for label, size in sites.items():
        merged[_LINE_NUMBER.sub("", label, count=1)] += size
    return dict(merged.most_common())


def report(figures: dict[str, dict[str, Any]], top: int) -> str:
    """The figures of one or more checkouts as a table (bytes per connection).

    Of several checkouts, the sites are compared by file and code, without
    their line numbers (which move from commit to commit).
    """
    if len(figures) > 1:
        figures = {name: {**values, "sites": _aligned(values["sites"])} for name, values in figures.items()}
    names = list(figures)
    first = figures[names[0]]
    lines = [
        f"memory per idle logged-in connection ({first['connections']} connections, tracemalloc), bytes",
        "  ".join(f"{name}: {values['bytes_per_connection']:,.0f}"
                  f" ({values['bytes_per_connection'] / 1024:.2f} KiB)" for name, values in figures.items()),
        "not counted (harness, buffered log events): " + "  ".join(
            f"{name}: {values['not_counted_per_connection']['harness']:,.0f},"
            f" {values['not_counted_per_connection']['log']:,.0f}"
            for name, values in figures.items()
        ),
    ]
    for section, unit in (("sites", "bytes"), ("objects", "objects")):
        lines.append("")
        lines.append(f"by {'allocation site' if section == 'sites' else 'object type'} ({unit} per connection)")
        labels: list[str] = []
        for values in figures.values():
            for label in list(values[section])[:top]:
                if label not in labels:
                    labels.append(label)
        width = 12 if section == "sites" else 8
        lines.append("".join(f"{name[:width]:>{width}}" for name in names) + "  what")
        fmt = "{:>12,.0f}" if section == "sites" else "{:>8.2f}"
        for label in labels:
            lines.append(
                "".join(fmt.format(values[section].get(label, 0)) for values in figures.values())
                + "  " + label
            )
    return "\n".join(lines)


_LINE_NUMBER = re.compile(r":\d+(?=  )")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000, help="idle connections (default 2000)")
    parser.add_argument("--group", choices=GROUPS, default="site", help="how to group allocations")
    parser.add_argument("--top", type=int, default=25, help="sites and types shown per checkout")
    parser.add_argument("--base", type=Path, help="another checkout to compare with")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    options = parser.parse_args(argv)
    if options.connections < 1:
        parser.error("--connections must be at least 1")
    if options.base is None:
        figures = {"this checkout": measure(options.connections, options.group)}
    else:
        here = Path(__file__).resolve().parent.parent
        figures = {
            name: measure_checkout(path.resolve(), options.connections, options.group)
            for name, path in (("this checkout", here), ("base", options.base))
        }
    if options.json:
        print(json.dumps(figures if options.base is not None else figures["this checkout"]))
    else:
        print(report(figures, options.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
