"""``chatservice-passwd FILE USER``: add or change a hashed account in a credentials file.

The entry gets the scrypt hash and the SCRAM-SHA-256 keys of the password.

The password is asked twice without echo on a terminal; from a pipe, the
first two lines of standard input are read.  The file is rewritten
atomically, so a running server never sees half a file.
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
    username_problem,
    write_entry,
)

USAGE = "usage: chatservice-passwd FILE USER"


def _ask(prompt: str, stdin: TextIO) -> str:
    if stdin.isatty():
        return getpass.getpass(prompt)
    line = stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None) -> int:
    """Run the tool; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    stdin = sys.stdin if stdin is None else stdin
    if len(args) != 2 or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if len(args) != 2 else sys.stdout)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    path, username = Path(args[0]), args[1]
    problem = username_problem(username)
    if problem:
        print(f"chatservice-passwd: {problem}", file=sys.stderr)
        return 2
    if path.exists():
        try:
            existing = CredentialsFile.load(path)
        except CredentialsError as e:
            print(f"chatservice-passwd: {e}", file=sys.stderr)
            return 1
        action = "changed" if existing.exists(username) else "added"
    else:
        action = "added"
    try:
        password = _ask("New password: ", stdin)
        again = _ask("Repeat the password: ", stdin)
    except (EOFError, KeyboardInterrupt):
        print("chatservice-passwd: no password given; nothing changed", file=sys.stderr)
        return 1
    if password != again:
        print("chatservice-passwd: the passwords differ; nothing changed", file=sys.stderr)
        return 1
    problem = password_problem(password)
    if problem:
        print(f"chatservice-passwd: {problem}; nothing changed", file=sys.stderr)
        return 1
    secret, keys = hash_and_derive(password)
    write_entry(path, username, secret, keys)
    print(f"{username} {action} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
