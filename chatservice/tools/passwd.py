"""``chatservice-passwd``: add or change a hashed account, in a chat store or a credentials file.

::

    chatservice-passwd --data-dir DIR USER     # the SQLite store of a server (DIR/chat.sqlite3)
    chatservice-passwd --store URL USER        # a PostgreSQL store (postgresql://...)
    chatservice-passwd FILE USER               # a credentials file, prepared offline

A server keeps its accounts in its store, so ``--data-dir`` or ``--store`` is
how an operator sets a password that a server (every node on that store) uses:
at once, even while it runs.  Those two are ``chatservice-admin passwd
--create`` (:mod:`chatservice.tools.admin`), which this command runs: through
the admin socket of a server running on ``DIR``, or on the store.  A credentials FILE is only what a server
imports when it starts, and only the accounts its store does not have yet:
changing a password in the file does not change it in a store that already
has the account.

Either way the account gets the scrypt hash and the SCRAM-SHA-256 keys of the
password; the password itself is stored nowhere.  It is asked twice without
echo on a terminal; from a pipe, the first two lines of standard input are
read.  A file is rewritten atomically, so a running server never sees half a
file.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Sequence, TextIO

from chatservice.auth.accounts import hash_and_derive, password_problem
from chatservice.auth.credentials import (
    CredentialsError,
    CredentialsFile,
    login_name_problem,
    normalise_username,
    username_problem,
    write_entry,
)
from chatservice.tap import POSTGRESQL_SCHEMES

USAGE = (
    "usage: chatservice-passwd --data-dir DIR USER  (the SQLite store in DIR)\n"
    "       chatservice-passwd --store URL USER     (a postgresql:// store)\n"
    "       chatservice-passwd FILE USER            (a credentials file, imported by a"
    " server at start only for accounts its store lacks)"
)


def _ask(prompt: str, stdin: TextIO) -> str:
    if stdin.isatty():
        return getpass.getpass(prompt)
    line = stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def _fail(message: str, status: int = 1) -> int:
    print(f"chatservice-passwd: {message}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None) -> int:
    """Run the tool; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    stdin = sys.stdin if stdin is None else stdin
    if args[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    store_option = args[0] if args and args[0] in ("--data-dir", "--store") else None
    if len(args) != (3 if store_option else 2) or (store_option is None and args[0].startswith("-")):
        print(USAGE, file=sys.stderr)
        return 2
    target, username = args[-2], args[-1]
    username = normalise_username(username)
    problem = login_name_problem(username)
    if problem:
        return _fail(problem, 2)
    if store_option == "--store" and not target.startswith(POSTGRESQL_SCHEMES):
        return _fail("--store takes a postgresql:// URL (for SQLite: --data-dir DIR)", 2)
    path = Path(target)
    action = "added"
    if store_option == "--data-dir" and not path.is_dir():
        return _fail(f"the data directory {path} does not exist")
    if store_option is None and path.exists():
        try:
            existing = CredentialsFile.load(path)
        except CredentialsError as e:
            return _fail(str(e))
        action = "changed" if existing.exists(username) else "added"
        problem = None if existing.exists(username) else username_problem(username)
        if problem:
            return _fail(problem, 2)  # the server would not import it
    elif store_option is None:
        problem = username_problem(username)
        if problem:
            return _fail(problem, 2)
    try:
        password = _ask("New password: ", stdin)
        again = _ask("Repeat the password: ", stdin)
    except (EOFError, KeyboardInterrupt):
        return _fail("no password given; nothing changed")
    if password != again:
        return _fail("the passwords differ; nothing changed")
    problem = password_problem(password)
    if problem:
        return _fail(f"{problem}; nothing changed")
    secret, keys = hash_and_derive(password)
    if store_option is None:
        write_entry(path, username, secret, keys)
        print(f"{username} {action} in {path}")
        if action == "changed":
            print(
                "(a server whose store has this account already keeps the store's password:"
                " use --data-dir DIR or --store URL to change it there)"
            )
        return 0
    from chatservice.admin.actions import AdminError
    from chatservice.tools.admin import ToolError, resolve_target

    try:
        where = resolve_target(
            path if store_option == "--data-dir" else None,
            target if store_option == "--store" else None,
            None,
            "passwd",
        )
        result = where.run(
            {"action": "passwd", "username": username, "secret": secret,
             "scram": keys.format(), "create": True}
        )
    except ToolError as e:
        return _fail(str(e), e.status)
    except AdminError as e:
        return _fail(f"{e.message} Nothing changed.")
    action, where = result["action"], where.where
    print(f"{username} {action} in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
