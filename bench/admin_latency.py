"""How long ``chatservice-admin``'s SQLite store calls hold a running server's reactor.

Inside a running server the admin actions call the store on the reactor
thread, like every other store call.  ``user_data`` (``export``) and
``delete_user`` with what the user sent (``delete``) read or delete the
user's history entries without an index on the sender, so they cost the
whole history; this measures them (median of ``--repeat`` runs, in ms) on
histories of growing size, spread over 100 senders and 11 channels::

    python bench/admin_latency.py                  # 10k, 100k and 1M entries
    python bench/admin_latency.py --sizes 100000
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatservice.store.sqlite import SQLiteStore  # noqa: E402

T = 1_700_000_000.0
USERS = [f"user{i:03d}" for i in range(100)]
CHANNELS = ["broadcast"] + [f"room:{i}" for i in range(1, 11)]
TEXT = "The quick brown fox jumps over the lazy dog; a chat line of a typical length."


def fill(store: SQLiteStore, entries: int) -> None:
    """``entries`` history entries (in one transaction each channel), the accounts and some data."""
    connection = store._db
    with store._transaction():
        for number in range(entries):
            channel = CHANNELS[number % len(CHANNELS)]
            connection.execute(
                "INSERT INTO history (channel, seq, sender, body, sent_at) VALUES (?, ?, ?, ?, ?)",
                (channel, number // len(CHANNELS) + 1, USERS[number % len(USERS)], TEXT, T + number),
            )
        for channel in CHANNELS:
            connection.execute(
                "INSERT INTO history_channels (channel, last_seq) VALUES (?, ?)",
                (channel, entries // len(CHANNELS) + 1),
            )
    for user in USERS:
        store.add_account(user, "$scrypt$x", None)
        store.add_block(user, USERS[0])
        store.add_offline(USERS[1], user, TEXT, T)


def measure(entries: int, repeat: int, directory: Path) -> dict[str, float]:
    """Median milliseconds of each call on a history of ``entries``."""
    times: dict[str, list[float]] = {"user_data": [], "delete_user(sent=False)": [], "delete_user(sent=True)": []}
    path = directory / f"chat-{entries}.sqlite3"
    store = SQLiteStore(path)
    store.open()
    try:
        fill(store, entries)
        for run in range(repeat):
            for name, call in (
                ("user_data", lambda u: store.user_data(u)),
                ("delete_user(sent=False)", lambda u: store.delete_user(u, False)),
                ("delete_user(sent=True)", lambda u: store.delete_user(u, True)),
            ):
                user = USERS[(run * 3 + len(times[name]) + hash(name)) % len(USERS)]
                start = time.perf_counter()
                call(user)
                times[name].append((time.perf_counter() - start) * 1000)
    finally:
        store.close()
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="chat-admin-bench-"))
    try:
        print(f"load average before: {os.getloadavg()}")
        print(f"{'history entries':>16}  " + "  ".join(f"{n:>24}" for n in ("user_data ms", "delete_user(sent=False) ms", "delete_user(sent=True) ms")))
        for entries in args.sizes:
            figures = measure(entries, args.repeat, directory)
            print(f"{entries:>16,}  " + "  ".join(f"{v:>24.2f}" for v in figures.values()))
        print(f"load average after: {os.getloadavg()}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
