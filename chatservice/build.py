"""Putting the chat service together: :func:`build_chat`.

The one place that wires the parts: the store, the chat state, the accounts
(in the store, :class:`~chatservice.auth.directory.StoredAccounts`),
the lock-outs, the ``twisted.cred`` portal (password, SCRAM and guest
checkers), the login gate, the connection factory, the service that
starts and stops them, and the metrics they all count in (one
:class:`~chatservice.metrics.ChatMetrics` per server, whether or not
``--metrics`` serves them).  The SQLite or memory store is wrapped in a
:class:`~chatservice.store.local.LocalStore` for the chat state, and every
store in a :class:`~chatservice.metrics.timedstore.TimedStore`.
``twistd chat`` (:func:`chatservice.tap.makeService`) builds with it and adds
the listeners to the service; the tests build with it on a ``Clock``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import Portal
from twisted.internet import threads
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import Logger

from chatservice.activitylog import LOG_PATTERNS, WRITE_INTERVAL, ActivityLog
from chatservice.auth.accounts import AccountManager
from chatservice.auth.credentials import CredentialsFile, Runner
from chatservice.auth.directory import CredentialsChecker, StoredAccounts
from chatservice.auth.guests import GuestChecker
from chatservice.auth.lockout import LoginLockout
from chatservice.auth.login import LockoutChecker, LoginGate
from chatservice.auth.realm import ChatRealm
from chatservice.auth.scram import ScramChecker
from chatservice.auth.slowdown import MAX_DELAY, LoginSlowdown
from chatservice.interfaces import ActivityRecorder
from chatservice.retention import INTERVAL, HistoryRetention
from chatservice.metrics import ChatMetrics
from chatservice.metrics.live import LiveCollector
from chatservice.metrics.timedstore import TimedStore
from chatservice.server.factory import ChatFactory
from chatservice.server.policy import ConnectionPolicy
from chatservice.reload import Reloader
from chatservice.service import ChatService
from chatservice.session import Session
from chatservice.settings import LIMITS, TIMEOUT
from chatservice.state import ChatState
from chatservice.store.interface import IChatStore
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore
from chatservice.store.sqlite import SQLiteStore
from chatservice.workers import ThreadWorkers

log = Logger()


@dataclass(frozen=True)
class Chat:
    """Everything :func:`build_chat` made, for the service and for tests to reach."""

    state: ChatState
    accounts: StoredAccounts
    manager: AccountManager
    lockout: LoginLockout
    address_lockout: LoginLockout
    slowdown: LoginSlowdown
    gate: LoginGate
    policy: ConnectionPolicy
    factory: ChatFactory
    service: ChatService
    retention: HistoryRetention
    metrics: ChatMetrics
    reloader: Reloader


def connection_policy(config: Mapping[str, Any]) -> ConnectionPolicy:
    """The connections' settings from ``config`` (the options of :data:`LIMITS` and a few more)."""
    return ConnectionPolicy(
        bans=config["bans"],
        allow_register=config["allow-register"],
        allow_guests=config["allow-guests"],
        **{field: config[option] for option, field, _kind, _minimum, _text in (TIMEOUT, *LIMITS)},
    )


def _max_login_delay(policy: ConnectionPolicy) -> float:
    """The longest login slowdown: the slowest login still ends well within the login deadline."""
    return min(MAX_DELAY, policy.login_deadline / 2)


def _follow_limits(state: ChatState, slowdown: LoginSlowdown, policy: ConnectionPolicy) -> None:
    """After a reload: what copied a limit at start takes ``policy``'s."""
    state.max_message_length = policy.max_message_length
    slowdown.max_delay = _max_login_delay(policy)


def sqlite_store(database: Path) -> SQLiteStore:
    """The SQLite store of ``twistd chat`` in ``database``.

    An empty ``database`` is refused when its data directory has activity
    logs (it was in use: the database was lost), and becomes a new database
    otherwise.
    """
    return SQLiteStore(database, in_use_signs=LOG_PATTERNS)


def make_store(config: Mapping[str, Any], reactor: IReactorTime) -> IChatStore:
    """The store ``config["store"]`` names: ``sqlite`` (in ``config["database"]``), ``memory`` or a PostgreSQL URL."""
    if config["store"] == "sqlite":
        return LocalStore(sqlite_store(config["database"]))
    if config["store"] == "memory":
        return LocalStore(MemoryStore())
    # Imported only here: psycopg is needed for PostgreSQL only.
    from chatservice.store.postgres import PostgresStore

    return PostgresStore(config["store"], reactor)


def build_chat(
    config: Mapping[str, Any],
    reactor: IReactorTime,
    run_in_thread: Runner | None = None,
    activity: ActivityRecorder | None = None,
    store: IChatStore | None = None,
) -> Chat:
    """Build the chat service from parsed ``twistd chat`` options.

    :param config: :class:`chatservice.tap.Options` after parsing (or a
        mapping with the same keys and converted values); its ``accounts``
        is the credentials file imported into the store at start (or ``None``).
    :param reactor: the reactor, or a test ``Clock``, for every timer.
    :param run_in_thread: runs password hashing off the reactor thread
        (default: the service's own low-priority
        :class:`~chatservice.workers.ThreadWorkers`).
    :param activity: where the activity logs go (default: the files in
        ``--data-dir``, written in the reactor's thread pool).
    :param store: the store to use instead of the one ``config`` names
        (tests: two servers on one store, as two nodes on one database).
    """
    imported: CredentialsFile | None = config.get("accounts")
    data_dir: Path = config["data-dir"]
    workers = None
    if run_in_thread is None:
        # Password hashing runs in low-priority worker threads, so a login
        # storm never takes the CPU the reactor thread needs.
        run_in_thread = workers = ThreadWorkers(reactor)
    if activity is None:
        activity = ActivityLog(
            data_dir,
            reactor,
            partial(threads.deferToThreadPool, reactor, reactor.getThreadPool()),
            interval=WRITE_INTERVAL,
        )
    if store is None:
        store = make_store(config, reactor)
    local_store = getattr(store, "local", None)
    metrics = ChatMetrics()
    store = TimedStore(store, metrics.store_call, reactor)
    accounts = StoredAccounts(store, reactor, imported)
    policy = connection_policy(config)
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
        max_message_length=policy.max_message_length,
        metrics=metrics,
    )
    if isinstance(activity, ActivityLog):
        activity.active_users = state.active_user_rows
    lockout = LoginLockout(reactor, config["max-failures"], config["block-duration"])
    address_lockout = LoginLockout(
        reactor, config["max-failures"], config["block-duration"], kind="address"
    )
    slowdown = LoginSlowdown(
        reactor, config["name-failures"], config["block-duration"], max_delay=_max_login_delay(policy)
    )
    checkers: list[ICredentialsChecker] = [
        LockoutChecker(
            CredentialsChecker(accounts, run_in_thread), lockout, address_lockout, slowdown
        ),
        LockoutChecker(ScramChecker(manager), lockout, address_lockout, slowdown),
    ]
    if config["allow-guests"]:
        checkers.append(GuestChecker(manager.check_taken))
    portal = Portal(ChatRealm(state), checkers)
    gate = LoginGate(portal, accounts, lockout, address_lockout, manager, metrics)
    factory = ChatFactory(gate, reactor, policy, metrics)
    # Broadcasts to everyone: one append for every connection that keeps up.
    state.fanout = factory.output_batcher.fanout
    if isinstance(local_store, SQLiteStore):
        # The history rows (broadcasts') added between two writes of the
        # output batcher are one commit, made before anything reporting on
        # them leaves.
        local_store.group_history(factory.output_batcher.unsettled)
    factory.registry.address_bans = state.moderation.address_refusal
    state.moderation.granted = tuple(config.get("operator") or ())
    retention = HistoryRetention(
        store,
        reactor,
        config.get("history-max-age") or None,
        config.get("history-max-entries") or None,
        config.get("history-purge-interval", INTERVAL),
    )
    cluster = None
    if config.get("redis"):
        # Imported only here: a node on its own needs no Redis client.
        from chatservice.cluster.node import ClusterNode

        cluster = ClusterNode(
            config["redis"], config["node-name"], state, reactor, [lockout, address_lockout],
            accounts=accounts, slowdown=slowdown,
        )
        state.cluster = cluster
    service = ChatService(
        state,
        factory,
        [lockout, address_lockout, slowdown],
        activity,
        data_dir,
        workers,
        IReactorCore(reactor, None),
        cluster,
        retention,
        credentials=None if imported is None else imported.path,
        store=config.get("store-name") or config["store"],
        endpoints=[
            *config.get("listen", ()),
            *(f"web:{description}" for description in config.get("web") or ()),
        ],
    )
    reloader = Reloader(config, factory.registry, accounts, run_in_thread, lambda: service.serving)
    reloader.follow(partial(_follow_limits, state, slowdown))
    state.rehash = reloader.reload
    for option in config.get("limits-ignored") or ():
        log.warn(
            "Limit {option}: the command line's value is kept (the limits file's is ignored)",
            option=option,
        )
    metrics.registry.register(
        LiveCollector(
            lambda: factory.registry.connections,
            state.sessions,
            [lockout, address_lockout],
            lambda: service.serving,
            cluster,
        )
    )
    return Chat(
        state, accounts, manager, lockout, address_lockout, slowdown, gate, policy, factory, service,
        retention, metrics, reloader,
    )
