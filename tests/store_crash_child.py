"""The process ``tests/test_store_crash.py`` kills: it stores offline messages until killed.

Usage: ``python store_crash_child.py DATABASE TAG``

It opens :class:`~chatservice.store.sqlite.SQLiteStore` on ``DATABASE`` and,
forever, keeps a message ``"<TAG> <n>"`` (n = 0, 1, 2, ...) for one of a few
recipients and then writes ``A <message id> <n>`` to stdout: that line is the
acknowledgement a sender would get, written only after ``add_offline``
returned.  After every tenth message it removes, as a login delivering them
would, the five messages ``n - 9`` to ``n - 5`` and then writes
``R <n - 9> <n - 5>``.  Each line goes out in one ``write`` as soon as it is
made.
"""

from __future__ import annotations

import sys
from pathlib import Path

from chatservice.store.sqlite import SQLiteStore

RECIPIENTS = ("hans", "leia", "luke")
START = 1_700_000_000.0


def main(database: str, tag: str) -> None:
    store = SQLiteStore(Path(database))
    store.open()
    out = sys.stdout
    ids: list[int] = []
    n = 0
    while True:
        message = store.add_offline("yoda", RECIPIENTS[n % 3], f"{tag} {n}", START + n)
        ids.append(message.message_id)
        out.write(f"A {message.message_id} {n}\n")
        out.flush()
        if n % 10 == 9:
            store.remove_offline(ids[n - 9 : n - 4])
            out.write(f"R {n - 9} {n - 5}\n")
            out.flush()
        n += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
