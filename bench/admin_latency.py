"""How long ``chatservice-admin``'s SQLite store calls hold a running server's reactor.

Inside a running server the admin actions call the store on the reactor
thread, like every other store call.  ``user_data`` (``export``) and
``delete`` call ``user_data`` and ``delete_user`` once, then read
(``history_of``) or forget (``forget_history_of``) the user's history
entries a batch of :data:`~chatservice.admin.actions.PURGE_BATCH` a call,
each call on its own reactor turn.  This measures each call (median of
``--repeat`` runs, in ms) on histories of growing size, spread over 100
senders and 11 channels (so each user sent 1% of it)::

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

from chatservice.admin.actions import PURGE_BATCH  # noqa: E402
from chatservice.store.interface import HistoryPosition  # noqa: E402
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
    calls = {
        "user_data": lambda u: store.user_data(u),
        "history_of (a batch)": lambda u: store.history_of(u, HistoryPosition(0, "", 0), PURGE_BATCH),
        "delete_user": lambda u: store.delete_user(u, True),
        "forget_history_of (a batch)": lambda u: store.forget_history_of(u, PURGE_BATCH),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    path = directory / f"chat-{entries}.sqlite3"
    store = SQLiteStore(path)
    store.open()
    try:
        fill(store, entries)
        for run in range(repeat):
            user = USERS[run]
            for name, call in calls.items():
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
        print(f"{'history entries':>16}  " + "  ".join(
            f"{n + ' ms':>28}" for n in ("user_data", "history_of (a batch)", "delete_user", "forget_history_of (a batch)")
        ))
        for entries in args.sizes:
            figures = measure(entries, args.repeat, directory)
            print(f"{entries:>16,}  " + "  ".join(f"{v:>28.2f}" for v in figures.values()))
        print(f"load average after: {os.getloadavg()}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
