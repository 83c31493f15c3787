"""Instructions per broadcast recipient and per login, two checkouts side by side: ``python3 -m bench.instructions``.

Wall-clock figures on a shared 2-core virtual machine move by tens of per
cent from run to run (``bench.run --quick`` twice on one commit: fan-out
626k and 886k deliveries/s).  ``valgrind --tool=callgrind`` counts the
instructions the CPU runs instead, which repeat to the instruction for the
same code, so a change to the hot path shows up even when it is 1%.

Each figure is a difference of two runs of the same in-process script (the
test harness: a whole server on a ``Clock`` over StringTransports, output
batched as on TCP), so start-up and imports cancel out:

- *per recipient*: ``N`` users logged in, then 100 broadcasts (each
  delivered to ``N - 1``) minus no broadcasts;
- *per login*: ``N`` connections logged in minus ``N / 3``.

Usage::

    python3 -m bench.instructions [--base DIR] [--users N]

``--base`` is another checkout (e.g. ``git worktree add /tmp/base <commit>``)
measured in the same run; the ratios are this checkout / the base.  Needs
``valgrind`` (``apt-get install valgrind``); a run takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from tests.support import ChatHarness
users, broadcasts = int(sys.argv[1]), int(sys.argv[2])
harness = ChatHarness(
    accounts={f"u{i}": "pw" for i in range(users)}, batched=True,
    flood_burst=10**6, flood_rate=10**6, max_connections=10**6, max_connections_per_address=10**6,
)
connections = []
for i in range(users):
    connection = harness.connect()
    connection.login(f"u{i}", "pw")
    connections.append(connection)
batcher = harness.factory.output_batcher
batcher.flush_now()
sender = harness.state.sessions["u0"]
for k in range(broadcasts):
    sender.broadcast(f"hello {k}")
    if k % 10 == 9:
        batcher.flush_now()
        for connection in connections:
            connection.transport.clear()
"""
BROADCASTS = 100


def instructions(checkout: Path, users: int, broadcasts: int) -> int:
    """Instructions ``SCRIPT`` runs in ``checkout`` under callgrind."""
    python = os.path.realpath(sys.executable)  # not a shim: valgrind must run Python itself
    result = subprocess.run(
        [
            "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            python, "-c", SCRIPT, str(users), str(broadcasts),
        ],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=1800,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def measure(checkout: Path, users: int) -> dict[str, float]:
    """Instructions per broadcast recipient and per connect-and-login in ``checkout``."""
    few = max(users // 3, 2)
    logged_in = instructions(checkout, users, 0)
    return {
        "per recipient": (instructions(checkout, users, BROADCASTS) - logged_in)
        / (BROADCASTS * (users - 1)),
        "per login": (logged_in - instructions(checkout, few, 0)) / (users - few),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="another checkout to compare with")
    parser.add_argument("--users", type=int, default=300, help="users logged in (default 300)")
    options = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    here = Path(__file__).resolve().parent.parent
    checkouts = {"this checkout": here}
    if options.base is not None:
        checkouts["base"] = options.base.resolve()
    figures = {name: measure(path, options.users) for name, path in checkouts.items()}
    print(f"instructions (callgrind), {options.users} users, {BROADCASTS} broadcasts")
    for figure in ("per recipient", "per login"):
        row = "  ".join(f"{name}: {values[figure]:,.0f}" for name, values in figures.items())
        if "base" in figures:
            row += f"  ratio: {figures['this checkout'][figure] / figures['base'][figure]:.3f}"
        print(f"  {figure:14} {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
