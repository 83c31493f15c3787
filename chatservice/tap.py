"""``twistd chat``: the command-line options and the service they build."""

from __future__ import annotations

import math
import os
from functools import partial
from pathlib import Path
from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import Portal
from twisted.internet import endpoints, threads
from twisted.python import usage

from chatservice.activitylog import ActivityLog
from chatservice.auth.accounts import AccountManager
from chatservice.auth.guests import GuestChecker
from chatservice.auth.credentials import CredentialsChecker, CredentialsError, CredentialsFile
from chatservice.auth.lockout import LoginLockout
from chatservice.auth.login import LockoutChecker, LoginGate
from chatservice.auth.realm import ChatRealm
from chatservice.auth.scram import ScramChecker
from chatservice.server.factory import ChatFactory
from chatservice.server.policy import BanList, ConnectionPolicy
from chatservice.service import ChatService
from chatservice.session import Session
from chatservice.state import ChatState
from chatservice.store.memory import MemoryStore
from chatservice.store.sqlite import SQLiteStore, StoreError
from chatservice.workers import ThreadWorkers

DEFAULT_LISTEN = "tcp:4119"
DEFAULT_CREDENTIALS = Path("etc") / "credentials.txt"
BUNDLED_CREDENTIALS = Path(__file__).parent / "data" / "credentials.txt"
MAX_FAILURES_RANGE = range(1, 6)
STORES = ("sqlite", "memory")
DATABASE_NAME = "chat.sqlite3"

_DEFAULT_POLICY = ConnectionPolicy()
LIMITS: tuple[tuple[str, str, type, float, str], ...] = (
    ("login-deadline", "login_deadline", float, 1, "Seconds a connection has to log in."),
    ("max-line-length", "max_line_length", int, 64, "Longest line accepted, in bytes."),
    ("max-message-length", "max_message_length", int, 1, "Longest message, in characters."),
    ("flood-burst", "flood_burst", int, 1, "Lines a connection may send at once..."),
    ("flood-rate", "flood_rate", float, 0.1, "...then per second (faster lines wait)."),
    ("flood-limit", "flood_limit", float, 1, "Seconds of non-stop flooding before a connection is closed."),
    ("lines-per-turn", "lines_per_turn", int, 1, "Lines of one connection handled before the others get a turn."),
    ("turn-budget", "turn_budget", float, 0, "Seconds one connection's lines may take before the others get a turn."),
    ("flush-interval", "flush_interval", float, 0, "Least seconds between two flushes of the output (batches writes under load)."),
    ("output-soft-limit", "output_soft_limit", int, 1024, "Unread bytes past which broadcasts to a client are dropped."),
    ("output-hard-limit", "output_hard_limit", int, 1024, "Unread bytes past which a client is disconnected."),
    ("max-connections", "max_connections", int, 1, "Connections the server takes at once."),
    ("max-per-address", "max_connections_per_address", int, 1, "Connections one address may have."),
)
"""``(option, ConnectionPolicy field, type, minimum, help)`` of each limit."""


def _number(options: usage.Options, name: str, kind: type, minimum: float) -> None:
    """Convert option ``name`` to ``kind``; refuse values below ``minimum``."""
    raw = options[name]
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise usage.UsageError(f"--{name} must be a number, not {raw!r}") from None
    if not (math.isfinite(value) and value >= minimum):
        raise usage.UsageError(f"--{name} must be at least {minimum:g}, not {raw}")
    options[name] = value


class Options(usage.Options):
    """Options of ``twistd chat``."""

    synopsis = "[options]"
    longdesc = (
        "Run the chat server. Users connect with telnet/nc (text commands) or"
        " a program speaking JSON lines (see docs/protocol.rst)."
    )
    optParameters = [
        [
            "credentials",
            "c",
            None,
            "Accounts file, 'username password' a line"
            f" [default: {DEFAULT_CREDENTIALS} if it exists, else the bundled sample]",
        ],
        [
            "block-duration",
            "b",
            "60",
            "Seconds a user name stays locked after too many failed logins.",
        ],
        [
            "max-failures",
            "f",
            "3",
            "Failed logins in a row (1 to 5) that lock a user name.",
        ],
        [
            "timeout",
            "t",
            "600",
            "Seconds without a valid command before a user is logged out.",
        ],
        [
            "ban-file",
            None,
            None,
            "File of banned addresses or networks, one a line ('#' comments).",
        ],
        [
            "store",
            None,
            "sqlite",
            f"Where chat data is kept: sqlite ({DATABASE_NAME} in --data-dir,"
            " survives restarts) or memory (lost at exit).",
        ],
        ["max-offline", None, "100", "Messages kept for one offline user at most."],
        *(
            [option, None, str(getattr(_DEFAULT_POLICY, field)), text]
            for option, field, _kind, _minimum, text in LIMITS
        ),
        [
            "data-dir",
            "d",
            "chat-data",
            "Directory where the service keeps what it writes (created if missing).",
        ],
    ]

    optFlags = [
        ["allow-register", None, "Let unknown users create an account (stored hashed)."],
        ["allow-guests", None, "Let 'guest <name>' log in without an account."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["ban"] = []

    def opt_ban(self, address: str) -> None:
        """Refuse connections from this address or network, e.g. 203.0.113.7 or 10.0.0.0/8 (repeatable)"""
        self["ban"].append(address)

    def opt_listen(self, description: str) -> None:
        """Listen on this endpoint, e.g. tcp:4119 or ssl:4120:privateKey=key.pem:certKey=cert.pem (repeatable) [default: tcp:4119]"""
        self["listen"].append(description)

    opt_l = opt_listen

    def postOptions(self) -> None:
        from twisted.internet import reactor

        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        for description in self["listen"]:
            try:
                endpoints.serverFromString(reactor, description)
            except (ValueError, TypeError, KeyError) as e:
                raise usage.UsageError(
                    f"--listen {description!r} is not a server endpoint: {e}"
                ) from None
        _number(self, "block-duration", float, 0)
        _number(self, "timeout", float, 1)
        _number(self, "max-failures", int, 1)
        if self["max-failures"] not in MAX_FAILURES_RANGE:
            raise usage.UsageError(
                f"--max-failures must be from 1 to 5, not {self['max-failures']}"
            )
        path = self["credentials"]
        if path is None:
            path = DEFAULT_CREDENTIALS if DEFAULT_CREDENTIALS.exists() else BUNDLED_CREDENTIALS
        try:
            self["accounts"] = CredentialsFile.load(path)
        except CredentialsError as e:
            raise usage.UsageError(str(e)) from None
        self["data-dir"] = Path(os.path.expanduser(self["data-dir"]))
        _number(self, "max-offline", int, 1)
        for option, _field, kind, minimum, _text in LIMITS:
            _number(self, option, kind, minimum)
        if self["store"] not in STORES:
            raise usage.UsageError(f"--store must be sqlite or memory, not {self['store']!r}")
        self["database"] = self["data-dir"] / DATABASE_NAME
        if self["store"] == "sqlite" and self["database"].exists():
            try:
                SQLiteStore(self["database"]).check()
            except StoreError as e:
                raise usage.UsageError(str(e)) from None
        bans = list(self["ban"])
        if self["ban-file"] is not None:
            try:
                bans += BanList.read(Path(self["ban-file"]))
            except (OSError, UnicodeDecodeError) as e:
                raise usage.UsageError(f"--ban-file {self['ban-file']}: cannot read: {e}") from None
        try:
            self["bans"] = BanList(bans)
        except ValueError as e:
            raise usage.UsageError(f"--ban: {e}") from None


def makeService(config: Options, reactor: Any = None) -> IService:
    """Build the chat service and its listeners from parsed ``config``.

    :param reactor: the reactor to listen and keep time with (the global one
        when ``None``).
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    accounts: CredentialsFile = config["accounts"]
    data_dir: Path = config["data-dir"]
    activity = ActivityLog(
        data_dir,
        reactor,
        partial(threads.deferToThreadPool, reactor, reactor.getThreadPool()),
    )
    store = SQLiteStore(config["database"]) if config["store"] == "sqlite" else MemoryStore()
    max_failures, duration = config["max-failures"], config["block-duration"]
    lockout = LoginLockout(reactor, max_failures, duration)
    address_lockout = LoginLockout(reactor, max_failures, duration)
    # Password hashing runs in low-priority worker threads, so a login
    # storm never takes the CPU the reactor thread needs.
    run_in_thread = ThreadWorkers(reactor)
    checkers: list[ICredentialsChecker] = [
        LockoutChecker(CredentialsChecker(accounts, run_in_thread), lockout, address_lockout)
    ]
    # The state changes passwords through the manager, which asks the state
    # whether an online guest holds a name.
    manager = AccountManager(accounts, run_in_thread, lambda name: state.guest_online(name))
    state = ChatState(
        store,
        accounts,
        reactor,
        activity,
        config["max-offline"],
        session_factory=Session,
        passwords=manager,
        max_message_length=config["max-message-length"],
    )
    activity.active_users = state.active_user_rows
    checkers.append(LockoutChecker(ScramChecker(manager), lockout, address_lockout))
    if config["allow-guests"]:
        checkers.append(GuestChecker(manager.taken))
    portal = Portal(ChatRealm(state), checkers)
    gate = LoginGate(portal, accounts, lockout, address_lockout, manager)
    policy = ConnectionPolicy(
        timeout=config["timeout"],
        bans=config["bans"],
        allow_register=config["allow-register"],
        allow_guests=config["allow-guests"],
        **{field: config[option] for option, field, _kind, _minimum, _text in LIMITS},
    )
    factory = ChatFactory(gate, reactor, policy)

    top = MultiService()
    ChatService(
        state, factory, [lockout, address_lockout], activity, data_dir, run_in_thread
    ).setServiceParent(top)
    for description in config["listen"]:
        strports.service(description, factory, reactor=reactor).setServiceParent(top)
    return top
