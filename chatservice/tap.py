"""``twistd chat``: the command-line options and the service they build."""

from __future__ import annotations

import os
import socket
from functools import partial
from pathlib import Path
from typing import Any

from twisted.application import strports
from twisted.application.service import IService
from twisted.internet import endpoints
from twisted.logger import Logger
from twisted.python import usage

from chatservice.admin.actions import AdminActions, LiveServer
from chatservice.admin.socket import SOCKET_NAME, AdminSocket
from chatservice.auth.credentials import CredentialsError, CredentialsFile
from chatservice.auth.slowdown import DEFAULT_NAME_FAILURES
from chatservice.build import build_chat, sqlite_store
from chatservice.datadir import DataDirInUse, check_unlocked
from chatservice.reload import ReloadOnSignal
from chatservice.retention import parse_duration
from chatservice.metrics.health import Readiness
from chatservice.metrics.lag import ReactorLag
from chatservice.metrics.site import metrics_site
from chatservice.server.certificates import (
    CertificateError,
    TLSListeners,
    certificate_options,
    is_tls,
)
from chatservice.server.proxied import ProxiedFactory, follow_login_deadline, proxied
from chatservice.settings import (
    LIMITS,
    RELOADABLE,
    TIMEOUT,
    SettingsError,
    default,
    effective_limits,
    number,
    read_bans,
)
from chatservice.store.sqlite import StoreError


def check_dsn(dsn: str) -> None:
    """Refuse a PostgreSQL URL that cannot be parsed (nothing is connected to).

    :raises StoreError: naming the URL without its password.
    """
    from twisted.internet import reactor

    from chatservice.store.postgres import PostgresStore

    PostgresStore(dsn, reactor)
from chatservice.web.site import chat_site, follow_line_length

log = Logger()

DEFAULT_LISTEN = "tcp:4119"
DEFAULT_CREDENTIALS = Path("etc") / "credentials.txt"
BUNDLED_CREDENTIALS = Path(__file__).parent / "data" / "credentials.txt"
MAX_FAILURES_RANGE = range(1, 6)
STORES = ("sqlite", "memory")
POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")
DATABASE_NAME = "chat.sqlite3"
DEFAULT_HISTORY_MAX_ENTRIES = 100_000
"""Messages a channel keeps by default (``--history-max-entries``)."""


def _number(options: usage.Options, name: str, kind: type, minimum: float) -> None:
    """Convert option ``name`` to ``kind``; refuse values below ``minimum``."""
    try:
        options[name] = number(name, options[name], kind, minimum)
    except SettingsError as e:
        raise usage.UsageError(str(e)) from None


def _limit_parameter(option: str, text: str) -> list[object]:
    """The ``optParameters`` row of a limit; a reloadable one has no default here (the
    limits file may set it; :meth:`Options.postOptions` fills the default in)."""
    if option in RELOADABLE:
        return [option, None, None, f"{text} [default: {default(option):g}]"]
    return [option, None, str(default(option)), text]


MAX_SOCKET_PATH_BYTES = 107
"""The longest UNIX socket path Linux takes (``sun_path`` less its NUL)."""


def admin_socket_path(option: str | None, data_dir: Path) -> tuple[Path | None, str | None]:
    """Where the admin socket listens (``None``: nowhere), and why not when it cannot.

    ``--admin-socket`` (``option``), by default ``admin.sock`` in ``data_dir``.
    A default path too long for a UNIX socket means no socket (the server
    starts without one, saying why: the second value); a path given that
    is too long is refused.

    :raises usage.UsageError: a given path too long for a UNIX socket.
    """
    if option is not None and option.lower() == "none":
        return None, None
    path = (data_dir / SOCKET_NAME if option is None else Path(os.path.expanduser(option))).absolute()
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH_BYTES:
        return path, None
    problem = (
        f"The admin socket path {path} is longer than a UNIX socket's"
        f" {MAX_SOCKET_PATH_BYTES} bytes: give a shorter --admin-socket PATH, or 'none'."
    )
    if option is not None:
        raise usage.UsageError(problem)
    return None, f"{problem} The server runs without an admin socket meanwhile."


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
            "Accounts file, 'username password' a line, imported into the store at"
            " start: accounts the store lacks are added, the others stay as the"
            " store has them; never written to. Read again at each reload (SIGHUP):"
            " new lines are imported, changed ones replace the password"
            f" [default: {DEFAULT_CREDENTIALS} if it exists, else the bundled sample]",
        ],
        [
            "block-duration",
            "b",
            "60",
            "Seconds a user name stays locked (for the address that failed) after"
            " too many failed logins; also how long failures are remembered.",
        ],
        [
            "max-failures",
            "f",
            "3",
            "Failed logins in a row (1 to 5) that lock a user name for the address"
            " that failed, or lock that address.",
        ],
        [
            "name-failures",
            None,
            str(DEFAULT_NAME_FAILURES),
            "Failed logins of one user name from all addresses together after which"
            " its logins are answered later and later (1 s, 2 s, 4 s, ... up to 30 s);"
            " more than --max-failures.",
        ],
        [
            "timeout",
            "t",
            None,
            f"{TIMEOUT[4]} [default: {default('timeout'):g}]",
        ],
        [
            "ban-file",
            None,
            None,
            "File of banned addresses or networks, one a line ('#' comments);"
            " read again at each reload (SIGHUP).",
        ],
        [
            "limits",
            None,
            None,
            "File of limits, one 'option = value' a line (e.g. max-connections = 2000),"
            " read again at each reload (SIGHUP); an option given on the command line"
            " wins over the file's.",
        ],
        [
            "store",
            None,
            "sqlite",
            f"Where accounts and chat data are kept: sqlite ({DATABASE_NAME} in --data-dir,"
            " survives restarts), memory (lost at exit), or a PostgreSQL server"
            " as postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME (the password"
            " is better in ~/.pgpass or PGPASSWORD).",
        ],
        [
            "max-offline",
            None,
            "100",
            "Messages kept for one offline user at most (a quarter of them from one sender).",
        ],
        [
            "history-max-age",
            None,
            "0",
            "Forget broadcasts and room messages older than this: seconds, or"
            " a number and s, m, h or d (e.g. 30d); 0 keeps them however old.",
        ],
        [
            "history-max-entries",
            None,
            str(DEFAULT_HISTORY_MAX_ENTRIES),
            "Messages kept per channel (the broadcasts, each room) at most; older"
            " ones are forgotten. 0: no bound.",
        ],
        [
            "history-purge-interval",
            None,
            "60",
            "Seconds between two sweeps that forget history past its bounds.",
        ],
        *(_limit_parameter(option, text) for option, _field, _kind, _minimum, text in LIMITS),
        [
            "redis",
            None,
            None,
            "Share the service with the other nodes on this Redis, e.g."
            " redis://127.0.0.1:6379/0 (needs --store postgresql://...).",
        ],
        [
            "node-name",
            None,
            None,
            "This node's name in the cluster [default: host name and first --listen port].",
        ],
        [
            "data-dir",
            "d",
            "chat-data",
            "Directory where the service keeps what it writes (created if missing).",
        ],
        [
            "admin-socket",
            None,
            None,
            f"The UNIX socket chatservice-admin talks to while the server runs (mode 0600)"
            f" [default: {SOCKET_NAME} in --data-dir]; 'none': no admin socket.",
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics (/metrics), /healthz and /readyz on this endpoint,"
            " e.g. tcp:9119:interface=127.0.0.1 (no authentication: keep it private).",
        ],
    ]

    optFlags = [
        ["allow-register", None, "Let unknown users create an account (stored hashed, in the store)."],
        ["allow-guests", None, "Let 'guest <name>' log in without an account."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["ban"] = []
        self["web"] = []
        self["web-origin"] = []
        self["operator"] = []

    def opt_ban(self, address: str) -> None:
        """Refuse connections from this address or network, e.g. 203.0.113.7 or 10.0.0.0/8 (repeatable)"""
        self["ban"].append(address)

    def opt_operator(self, username: str) -> None:
        """Make this account an operator at start, kept in the store (repeatable; the server does not start if there is no such account)"""
        self["operator"].append(username)

    def opt_listen(self, description: str) -> None:
        """Listen on this endpoint, e.g. tcp:4119 or ssl:4120:privateKey=key.pem:certKey=cert.pem; haproxy:tcp:4119 behind a load balancer sending the PROXY header (repeatable) [default: tcp:4119]"""
        self["listen"].append(description)

    opt_l = opt_listen

    def opt_web(self, description: str) -> None:
        """Serve the browser client (the page and its WebSocket at /ws) on this endpoint, e.g. tcp:8080 or ssl:8443:privateKey=key.pem:certKey=cert.pem (repeatable)"""
        self["web"].append(description)

    def opt_web_origin(self, origin: str) -> None:
        """Also let pages from this origin use the WebSocket, e.g. https://chat.example.org (repeatable; the page's own origin always may)"""
        self["web-origin"].append(origin)

    def postOptions(self) -> None:
        from twisted.internet import reactor

        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        endpoints_given = {
            "listen": self["listen"],
            "web": self["web"],
            "metrics": [self["metrics"]] if self["metrics"] is not None else [],
        }
        for option, descriptions in endpoints_given.items():
            for description in descriptions:
                try:
                    inner = proxied(description) if option == "listen" else None
                    if is_tls(description):
                        certificate_options(description)
                    endpoints.serverFromString(reactor, inner or description)
                except CertificateError as e:
                    raise usage.UsageError(f"--{option}: {e}") from None
                except (ValueError, TypeError, KeyError) as e:
                    raise usage.UsageError(
                        f"--{option} {description!r} is not a server endpoint: {e}"
                    ) from None
        for origin in self["web-origin"]:
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise usage.UsageError(
                    f"--web-origin {origin!r} is not an origin such as https://chat.example.org"
                )
        _number(self, "block-duration", float, 0)
        _number(self, "max-failures", int, 1)
        if self["max-failures"] not in MAX_FAILURES_RANGE:
            raise usage.UsageError(
                f"--max-failures must be from 1 to 5, not {self['max-failures']}"
            )
        _number(self, "name-failures", int, 2)
        if self["name-failures"] <= self["max-failures"]:
            raise usage.UsageError(
                f"--name-failures must be more than --max-failures ({self['max-failures']}),"
                f" not {self['name-failures']}"
            )
        path = self["credentials"]
        if path is None:
            path = DEFAULT_CREDENTIALS if DEFAULT_CREDENTIALS.exists() else BUNDLED_CREDENTIALS
        try:
            self["accounts"] = CredentialsFile.load(path)
        except CredentialsError as e:
            raise usage.UsageError(str(e)) from None
        self["data-dir"] = Path(os.path.expanduser(self["data-dir"]))
        try:
            # Refused here with a clear message; the service takes the lock when it starts.
            check_unlocked(self["data-dir"])
        except DataDirInUse as e:
            raise usage.UsageError(str(e)) from None
        self["admin-socket"], self["admin-socket-problem"] = admin_socket_path(
            self["admin-socket"], self["data-dir"]
        )
        _number(self, "max-offline", int, 1)
        raw_age = self["history-max-age"]
        try:
            self["history-max-age"] = parse_duration(raw_age)
        except ValueError:
            raise usage.UsageError(
                f"--history-max-age must be seconds, or a number and s, m, h or d"
                f" (e.g. 30d), not {raw_age!r}"
            ) from None
        _number(self, "history-max-entries", int, 0)
        _number(self, "history-purge-interval", float, 0.01)
        self._limits()
        if self["store"].startswith(POSTGRESQL_SCHEMES):
            from chatservice.store.postgres import redact

            try:
                check_dsn(self["store"])
            except StoreError as e:
                raise usage.UsageError(f"--store: {e}") from None
            self["store-name"] = redact(self["store"])
        elif self["redis"] is not None:
            raise usage.UsageError(
                "--redis needs --store postgresql://...: with a local store each"
                " node would keep its own data and the nodes would disagree."
            )
        elif self["store"] not in STORES:
            raise usage.UsageError(
                "--store must be sqlite, memory or a postgresql:// URL,"
                f" not {self['store']!r}"
            )
        self["database"] = self["data-dir"] / DATABASE_NAME
        if self["store"] == "sqlite" and self["database"].exists():
            try:
                sqlite_store(self["database"]).check()
            except StoreError as e:
                raise usage.UsageError(str(e)) from None
        if self["redis"] is not None:
            from chatservice.cluster.link import RedisURLError, parse_redis_url

            try:
                parse_redis_url(self["redis"])
            except RedisURLError as e:
                raise usage.UsageError(f"--redis: {e}") from None
            if self["node-name"] is None:
                first = proxied(self["listen"][0]) or self["listen"][0]
                port = first.split(":")[1] if ":" in first else ""
                self["node-name"] = f"{socket.gethostname()}:{port}"
        if self["ban-file"] is not None:
            self["ban-file"] = Path(self["ban-file"])
        try:
            self["bans"] = read_bans(self["ban"], self["ban-file"])
        except SettingsError as e:
            raise usage.UsageError(str(e)) from None

    def _limits(self) -> None:
        """Convert the limits: the command line's, else the limits file's, else the defaults.

        ``limits-from-command-line`` keeps the options given on the command
        line (a reload leaves them as they are).
        """
        given = {}
        for option, _field, kind, minimum, _text in (TIMEOUT, *LIMITS):
            if self[option] is not None:
                _number(self, option, kind, minimum)
                if option in RELOADABLE:
                    given[option] = self[option]
        if self["limits"] is not None:
            self["limits"] = Path(self["limits"])
        try:
            values, self["limits-ignored"] = effective_limits(given, self["limits"])
        except SettingsError as e:
            raise usage.UsageError(str(e)) from None
        self.update(values)
        self["limits-from-command-line"] = frozenset(given)


def makeService(config: Options, reactor: Any = None) -> IService:
    """Build the chat service (:func:`~chatservice.build.build_chat`) and its listeners.

    The listeners are children of the chat service, which starts them once
    its store is open and its state loaded; ``ssl:`` listeners present the
    certificate a reload swaps in (:class:`~chatservice.server.certificates.TLSListeners`).
    Another child reloads on ``SIGHUP`` while the service runs
    (:class:`~chatservice.reload.ReloadOnSignal`).

    :param reactor: the reactor to listen and keep time with (the global one
        when ``None``).
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    chat = build_chat(config, reactor)
    top = chat.service
    reloader = chat.reloader
    tls = TLSListeners(reactor)

    def listen(description: str, factory: Any) -> None:
        strports.service(description, factory, reactor=tls.reactor(description)).setServiceParent(top)

    for description in config["listen"]:
        inner = proxied(description)
        if inner is None:
            listen(description, chat.factory)
        else:
            factory = ProxiedFactory(chat.factory, reactor, chat.policy.login_deadline)
            reloader.follow(partial(follow_login_deadline, factory))
            listen(inner, factory)
    if config["web"]:
        site = chat_site(chat.factory, config["web-origin"])
        reloader.follow(partial(follow_line_length, site))
        for description in config["web"]:
            listen(description, site)
    if config.get("admin-socket-problem"):
        log.warn("{problem}", problem=config["admin-socket-problem"])
    if config.get("admin-socket"):
        live = LiveServer(
            chat.state, [chat.lockout, chat.address_lockout], chat.slowdown, chat.state.cluster
        )
        actions = AdminActions(chat.accounts, reactor, live)
        AdminSocket(config["admin-socket"], actions, lambda: top.serving, reactor).setServiceParent(top)
    if config.get("metrics"):
        readiness = Readiness(lambda: top.serving, chat.state.store, reactor, chat.state.cluster)
        metrics = metrics_site(chat.metrics.registry, readiness)
        listen(config["metrics"], metrics)
        ReactorLag(reactor, chat.metrics.reactor_lag).setServiceParent(top)
    reloader.certificates.update(tls.certificates)
    ReloadOnSignal(reloader, reactor).setServiceParent(top)
    return top
