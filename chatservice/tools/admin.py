"""``chatservice-admin``: manage the accounts and data of a chat server, running or not.

::

    chatservice-admin --data-dir DIR ACTION ...     # a server's data directory (SQLite store)
    chatservice-admin --store URL ACTION ...        # a PostgreSQL store (nodes may run on it)
    chatservice-admin --socket PATH ACTION ...      # a running server's admin socket

Actions: ``list``; ``add USER``; ``passwd USER``; ``remove USER`` (the
account and what is kept about the user; what they sent stays with its
readers); ``delete USER`` (the same, and what they sent: their history
entries and the messages kept for others); ``export USER`` (everything kept
about the user, as JSON); ``grant USER`` and ``revoke USER`` (operators);
``ban TARGET [--for DURATION] [--reason TEXT]``, ``unban TARGET``, ``bans``
(an operator's bans, kept in the store); ``unlock USER`` or ``unlock
--address ADDRESS`` (clear login lock-outs: a running server only); ``purge --before DATE|--older-than DURATION`` (history).

**Running or not.**  With ``--data-dir``, the tool looks at the data
directory's lock (:mod:`chatservice.datadir`): when a server holds it, every
action goes through that server's admin socket (``DIR/admin.sock``,
:mod:`chatservice.admin.socket`), so the server applies it to its store *and*
its memory at once, and in a cluster tells the other nodes.  When no server
holds it, the tool takes the lock itself for the moment it works (a server
starting meanwhile refuses to start, naming the tool's pid) and applies the
action to the store.  Both ways run the same
:class:`~chatservice.admin.actions.AdminActions`.

With ``--store postgresql://...`` no lock says whether nodes run.  Actions
that the nodes' memory could contradict (``remove``, ``delete``, ``ban``,
``unban``: the nodes hold the bans in force) therefore need ``--socket PATH`` of one node (which applies it and tells the others
through Redis) or ``--no-server`` (no node runs); ``unlock`` needs
``--socket``.  The others (``list``, ``add``, ``passwd``, ``grant``, ``revoke``,
``bans``, ``export``, ``purge``) may be applied to the store directly: logins and
operator commands always read the store, and a node looks a name it does not
know up in the store.

**Passwords** are asked twice without echo on a terminal, or read as one
line from standard input with ``--password-stdin``; never from the command
line.  The tool hashes them exactly as the server does (scrypt and
SCRAM-SHA-256 keys, :func:`~chatservice.auth.accounts.hash_and_derive`):
the password reaches neither the socket nor the store.

Output is a table (or a sentence) by default, JSON with ``--json``.  Exit
status: 0 done, 1 refused or failed (the reason on standard error), 2 usage.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from twisted.internet import defer
from twisted.python.failure import Failure

from chatservice.activitylog import LOG_PATTERNS
from chatservice.admin.actions import AdminActions, AdminError
from chatservice.admin.socket import SOCKET_NAME
from chatservice.auth.accounts import hash_and_derive, password_problem
from chatservice.datadir import DataDirInUse, DataDirLock, check_unlocked
from chatservice.store.interface import IChatStore
from chatservice.store.sqlite import StoreError
from chatservice.tap import DATABASE_NAME, POSTGRESQL_SCHEMES
from chatservice.timefmt import parse_duration

__all__ = ["main", "Target", "resolve_target", "read_password"]

PROGRAM = "chatservice-admin"
SOCKET_TIMEOUT = 600.0
"""Seconds the tool waits for the server's reply (a large purge takes a while)."""

NEEDS_NO_SERVER = frozenset({"remove", "delete", "ban", "unban"})
"""Actions a PostgreSQL store takes directly only with ``--no-server``."""
NEEDS_SERVER = frozenset({"unlock"})
"""Actions that only a running server can do."""
CREATE_STORE = frozenset({"add", "passwd"})
"""Actions that may create the SQLite database of a data directory that has none yet."""


class ToolError(Exception):
    """Something the tool itself refuses or cannot do (exit status 1, or ``status``)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# Where the actions run ---------------------------------------------------------------


@dataclass
class Target:
    """Where the tool's requests go: a running server's socket, or a store opened here.

    :param where: what it is, as the output names it.
    :param socket_path: the admin socket (``None``: the store).
    :param open_store: makes the store (``None``: the socket).
    :param lock: the data directory's lock, held while the store is used.
    """

    where: str
    socket_path: Path | None = None
    open_store: Callable[[], IChatStore] | None = None
    lock: DataDirLock | None = None

    def run(self, request: dict[str, Any]) -> Any:
        """Carry out ``request``: its result, or :class:`AdminError`."""
        if self.socket_path is not None:
            return _ask_socket(self.socket_path, request)
        assert self.open_store is not None
        if self.lock is not None:
            try:
                self.lock.acquire()
            except DataDirInUse as e:
                raise ToolError(f"{e} (a server started meanwhile: try again)") from None
        try:
            return _run_on_store(self.open_store(), request)
        finally:
            if self.lock is not None:
                self.lock.release()


def resolve_target(
    data_dir: Path | None, store: str | None, socket_path: Path | None, action: str,
    no_server: bool = False,
) -> Target:
    """Where ``action`` goes, as the options and the data directory's lock say.

    :raises ToolError: when it cannot go anywhere safely.
    """
    if socket_path is not None:
        return Target(f"the server at {socket_path}", socket_path=socket_path)
    if data_dir is not None:
        if not data_dir.is_dir():
            raise ToolError(f"the data directory {data_dir} does not exist")
        try:
            check_unlocked(data_dir)
        except DataDirInUse:
            path = data_dir / SOCKET_NAME
            return Target(f"the running server ({path})", socket_path=path)
        if action in NEEDS_SERVER:
            raise ToolError(
                f"no server runs on {data_dir}: lock-outs live in a running server's"
                " memory, so there is nothing to unlock"
            )
        database = data_dir / DATABASE_NAME
        if not database.exists():
            used = sorted({found.name for sign in LOG_PATTERNS for found in data_dir.glob(sign)})
            if used:
                # A server ran here without an SQLite store: not one to create now.
                raise ToolError(
                    f"{data_dir} has no {DATABASE_NAME} but a server used it ({', '.join(used)}):"
                    " if it keeps its data in PostgreSQL, give --store URL (or --socket PATH)"
                )
            if action not in CREATE_STORE:
                raise ToolError(f"there is no chat database in {data_dir} ({database} is missing)")

        def sqlite() -> IChatStore:
            from chatservice.build import sqlite_store
            from chatservice.store.local import LocalStore

            return LocalStore(sqlite_store(database))

        return Target(str(database), open_store=sqlite, lock=DataDirLock(data_dir))
    assert store is not None
    if not store.startswith(POSTGRESQL_SCHEMES):
        raise ToolError("--store takes a postgresql:// URL (for SQLite: --data-dir DIR)", 2)
    from chatservice.store.postgres import PostgresStore, redact

    if action in NEEDS_SERVER:
        raise ToolError(
            f"{action} needs a running node: give --socket PATH (its admin socket)", 2
        )
    if action in NEEDS_NO_SERVER and not no_server:
        raise ToolError(
            f"{action} on a shared store would be contradicted by the memory of the nodes"
            " running on it: give --socket PATH of one node (it tells the others), or"
            " --no-server if none runs",
            2,
        )

    def postgres() -> IChatStore:
        from twisted.internet import reactor

        return PostgresStore(store, reactor)

    try:
        postgres()  # the URL is checked now
    except StoreError as e:
        raise ToolError(str(e), 2) from None
    return Target(redact(store), open_store=postgres)


def _ask_socket(path: Path, request: dict[str, Any]) -> Any:
    """Send one request to a running server's admin socket; its result, or :class:`AdminError`."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(SOCKET_TIMEOUT)
        try:
            connection.connect(str(path))
        except PermissionError:
            raise ToolError(
                f"permission denied on {path}: run as the user the server runs as"
            ) from None
        except OSError as e:
            raise ToolError(
                f"the server's admin socket {path} cannot be reached ({e.strerror or e});"
                " is the server still starting, or running without it (--admin-socket none,"
                " or a path too long for a socket: its log says)?"
            ) from None
        connection.sendall(json.dumps(request).encode("utf-8") + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = connection.recv(65536)
            if not chunk:
                raise ToolError(f"the server closed its admin socket {path} without a reply")
            reply += chunk
    except socket.timeout:
        raise ToolError(f"no reply from the server on {path} in {SOCKET_TIMEOUT:g} s") from None
    finally:
        connection.close()
    answer = json.loads(reply)
    if not answer.get("ok"):
        raise AdminError(answer.get("code", "internal"), answer.get("error", "failed"))
    return answer["result"]


def _run_on_store(store: IChatStore, request: dict[str, Any]) -> Any:
    """Open ``store``, run ``request`` on it with :class:`AdminActions`, close it.

    A local store answers at once, so most requests are done when this
    returns from the first step; otherwise (PostgreSQL, a purge's turns) the
    reactor runs until they are.
    """
    from twisted.internet import reactor

    from chatservice.auth.directory import StoredAccounts

    async def work() -> Any:
        await store.open()
        try:
            return await AdminActions(StoredAccounts(store, reactor), reactor).run(request)
        finally:
            await store.close()

    outcome: list[Any] = []
    d = defer.ensureDeferred(work())
    d.addBoth(outcome.append)
    if not outcome:
        d.addBoth(lambda _: reactor.stop())
        reactor.run()
    if isinstance(outcome[0], Failure):
        if outcome[0].check(StoreError):
            raise ToolError(f"{outcome[0].value}; nothing changed")
        outcome[0].raiseException()
    return outcome[0]


# Passwords ---------------------------------------------------------------------------


def read_password(stdin: TextIO, from_stdin: bool, twice: bool = True) -> str:
    """The new password: asked (twice) without echo on a terminal, or one line of ``stdin``.

    :raises ToolError: no password, two different ones, or one the server refuses.
    """
    try:
        if from_stdin:
            line = stdin.readline()
            if not line:
                raise EOFError
            password = line.rstrip("\r\n")
        elif stdin.isatty():
            password = getpass.getpass("New password: ")
            if twice and getpass.getpass("Repeat the password: ") != password:
                raise ToolError("the passwords differ; nothing changed")
        else:
            raise ToolError("no terminal to ask the password on: use --password-stdin", 2)
    except (EOFError, KeyboardInterrupt):
        raise ToolError("no password given; nothing changed") from None
    problem = password_problem(password)
    if problem:
        raise ToolError(f"{problem}; nothing changed")
    return password


def hashed(password: str) -> dict[str, str]:
    """The request fields of a password: its scrypt hash and SCRAM keys (slow)."""
    secret, keys = hash_and_derive(password)
    return {"secret": secret, "scram": keys.format()}


# The command line ------------------------------------------------------------------------


def parse_date(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 date or time (UTC unless it says otherwise)."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date: {text!r} (e.g. 2026-01-31 or 2026-01-31T12:00:00+01:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (seconds, or a number and s, m, h or d: 30d)"
        ) from None


def parser() -> argparse.ArgumentParser:
    """The command line of ``chatservice-admin``."""
    top = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Manage a chat server's accounts and data, while it runs or not.",
    )
    where = top.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", type=Path, help="the server's data directory (SQLite store)")
    where.add_argument("--store", help="a postgresql:// store")
    where.add_argument("--socket", type=Path, help="a running server's admin socket")
    top.add_argument("--json", action="store_true", help="print JSON instead of tables")
    top.add_argument(
        "--no-server", action="store_true",
        help="with --store: no node runs on it (needed for remove and delete without --socket)",
    )
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="list the accounts")
    for name, text in (("add", "create an account"), ("passwd", "set an account's password")):
        action = actions.add_parser(name, help=text)
        action.add_argument("user")
        action.add_argument(
            "--password-stdin", action="store_true",
            help="read the password as one line of standard input",
        )
        if name == "passwd":
            action.add_argument("--create", action="store_true", help="create it if missing")
    for name, text in (
        ("remove", "delete an account and what is kept about the user (not what they sent)"),
        ("delete", "delete an account with all its data, what the user sent included"),
        ("export", "print everything kept about a user, as JSON"),
        ("grant", "make an account an operator"),
        ("revoke", "make an operator an ordinary account again"),
    ):
        actions.add_parser(name, help=text).add_argument("user")
    unlock = actions.add_parser(
        "unlock", help="clear the login lock-outs of a name or an address (a running server only)"
    )
    unlocked = unlock.add_mutually_exclusive_group(required=True)
    unlocked.add_argument("user", nargs="?", help="a user name: its locks at every address")
    unlocked.add_argument("--address", help="an IP address locked for every name")
    ban = actions.add_parser("ban", help="ban an account, an address or a network (CIDR)")
    ban.add_argument("target", help="a user name, an IP address or a network")
    ban.add_argument("--for", dest="duration", type=_duration, help="how long: 10m, 2h, 7d (default: for good)")
    ban.add_argument("--reason", default="", help="why (shown to the banned)")
    actions.add_parser("unban", help="remove a ban: its number (#3) or its target").add_argument("target")
    actions.add_parser("bans", help="list the bans in force")
    purge = actions.add_parser("purge", help="forget the history older than a date")
    when = purge.add_mutually_exclusive_group(required=True)
    when.add_argument("--before", type=parse_date, help="an ISO 8601 date or time (UTC by default)")
    when.add_argument("--older-than", type=_duration, help="a duration: 30d, 12h, 90m")
    return top


def request_of(args: argparse.Namespace, stdin: TextIO) -> dict[str, Any]:
    """The request the parsed command line makes (asking for a password if it needs one)."""
    action = args.action
    if action in ("list", "bans"):
        return {"action": action}
    if action == "ban":
        request = {"action": "ban", "target": args.target, "reason": args.reason}
        if args.duration is not None:
            request["duration"] = args.duration
        return request
    if action == "unban":
        return {"action": "unban", "target": args.target}
    if action == "purge":
        if args.before is not None:
            return {"action": "purge", "before": args.before}
        return {"action": "purge", "older_than": args.older_than}
    if action == "unlock" and args.address is not None:
        return {"action": "unlock", "address": args.address}
    request: dict[str, Any] = {"action": action, "username": args.user}
    if action in ("add", "passwd"):
        request.update(hashed(read_password(stdin, args.password_stdin)))
        if action == "passwd" and args.create:
            request["create"] = True
    return request


def table(header: list[str], rows: list[list[str]]) -> str:
    """``rows`` under ``header``, in columns."""
    lines = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def _shown(iso: str) -> str:
    """An ISO 8601 UTC time as a table shows it: ``2026-12-01 20:45:00``."""
    return iso[:19].replace("T", " ")


def render(action: str, result: Any, where: str) -> str:
    """The human-readable output of ``action``'s ``result``."""
    if action == "list":
        if not result:
            return "No accounts."
        online = "online" in result[0]
        return table(
            ["USER", "OPERATOR", "LAST SEEN (UTC)", *(["ONLINE"] if online else [])],
            [
                [row["user"], "yes" if row["operator"] else "-",
                 _shown(row["last_seen_iso"]) if row["last_seen_iso"] else "-",
                 *(["yes" if row["online"] else "no"] if online else [])]
                for row in result
            ],
        )
    if action == "export":
        return json.dumps(result, ensure_ascii=False, indent=2)
    if action == "bans":
        if not result:
            return "No bans."
        return table(
            ["#", "KIND", "TARGET", "BY", "SET (UTC)", "UNTIL (UTC)", "REASON"],
            [[str(b["id"]), b["kind"], b["target"], b["set_by"], _shown(b["set_at"]),
              _shown(b["until"]) if b["until"] else "for good", b["reason"] or "-"] for b in result],
        )
    if action == "ban":
        ban = result["ban"]
        text = f"ban #{ban['id']}: {ban['kind']} {ban['target']}"
        text += f" until {_shown(ban['until'])} UTC" if ban["until"] else " for good"
        if "sessions_ended" in result:
            text += f"; {result['sessions_ended']} session(s) ended"
        return text
    if action == "unban":
        return f"{result['removed']} ban(s) of {result['target']} removed"
    if action == "unlock":
        text = f"{result.get('user') or result.get('address')} unlocked: {result['locks']} lock(s) cleared"
        if result.get("slowed"):
            text += ", its logins no longer wait"
        if "redis_keys" in result:
            text += f", {result['redis_keys']} Redis key(s) deleted"
        return text
    if action == "purge":
        return f"{result['purged']} history entries sent before {result['before_iso']} forgotten."
    if action in ("grant", "revoke"):
        now = "is an operator now" if action == "grant" else "is no longer an operator"
        return f"{result['user']} {now} ({where})"
    return f"{result['user']} {result['action']} in {where}"


def run_command(argv: Sequence[str], stdin: TextIO) -> tuple[int, str]:
    """Run the command line ``argv``: the exit status and what to print (on standard error if not 0)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # argparse printed the usage
        return (e.code if isinstance(e.code, int) else 2), ""
    if args.no_server and args.store is None:
        return 2, "--no-server goes with --store"
    try:
        target = resolve_target(args.data_dir, args.store, args.socket, args.action, args.no_server)
        result = target.run(request_of(args, stdin))
    except ToolError as e:
        return e.status, str(e)
    except AdminError as e:
        return 1, e.message
    if args.json:
        return 0, json.dumps(result, ensure_ascii=False, indent=None if args.action == "list" else 2)
    if isinstance(result, dict) and "warning" in result:
        print(f"{PROGRAM}: warning: {result['warning']}", file=sys.stderr)
    return 0, render(args.action, result, target.where)


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None) -> int:
    """Run the tool; return the exit status."""
    status, text = run_command(
        list(sys.argv[1:] if argv is None else argv), sys.stdin if stdin is None else stdin
    )
    if status == 0:
        print(text)
    elif text:
        print(f"{PROGRAM}: {text}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
