"""The gauges read when ``/metrics`` is scraped: :class:`LiveCollector`.

What is a state rather than an event (how many connections there are, how
far behind their clients are, what is locked, whether the cluster link is up)
is read from the server's own objects at scrape time, so keeping it costs
nothing between scrapes.  Scrapes run in the reactor thread (see
:mod:`chatservice.metrics.site`), so the objects are read as they are.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.internet import tcp
from twisted.internet.interfaces import INegotiated

from chatservice.auth.lockout import LoginLockout
from chatservice.wire import WEBSOCKET

TRANSPORTS = ("tcp", "tls", "websocket", "other")
"""The ``transport`` label of ``chat_connections``."""
STATES = ("login", "chat", "closing")
"""The ``state`` label of ``chat_connections``: logging in, logged in, being closed."""


def transport_of(connection: Any) -> str:
    """What carries ``connection`` (a :class:`~chatservice.server.connection.ChatConnection`)."""
    if connection.wire is WEBSOCKET:
        return "websocket"
    transport = connection.writer.transport
    if isinstance(transport, tcp.Connection):
        return "tls" if transport.TLS else "tcp"
    if INegotiated.providedBy(transport):
        return "tls"  # Twisted's TLS over a plain transport (TLSMemoryBIOProtocol)
    return "other"


def state_of(connection: Any) -> str:
    """Where ``connection`` is: logging in, logged in (chatting), or being closed."""
    if connection.writer.closed:
        return "closing"
    return "login" if connection.session is None else "chat"


class LiveCollector(Collector):
    """Reads the server's state at each scrape.

    :param connections: returns the live connections (the registry's set).
    :param sessions: the users logged in on this node (the chat state's dict).
    :param lockouts: the login lock-outs.
    :param serving: whether the service serves (its state is loaded).
    :param cluster: the cluster node (``--redis``), or ``None``.
    """

    def __init__(
        self,
        connections: Callable[[], Iterable[Any]],
        sessions: dict[str, Any],
        lockouts: Sequence[LoginLockout],
        serving: Callable[[], bool],
        cluster: Any = None,
    ) -> None:
        self.connections = connections
        self.sessions = sessions
        self.lockouts = lockouts
        self.serving = serving
        self.cluster = cluster

    def collect(self) -> Iterator[Metric]:
        counts = {(transport, state): 0 for transport in TRANSPORTS for state in STATES}
        backlog = largest = 0
        for connection in list(self.connections()):
            key = (transport_of(connection), state_of(connection))
            counts[key] += 1
            behind = connection.writer.backlog
            backlog += behind
            largest = max(largest, behind)
        connections = GaugeMetricFamily(
            "chat_connections", "Open connections by transport and state.",
            labels=["transport", "state"],
        )
        for (transport, state), count in counts.items():
            connections.add_metric([transport, state], count)
        yield connections
        yield GaugeMetricFamily(
            "chat_output_backlog_bytes",
            "Bytes written to clients that stopped reading, not yet taken by them (all connections).",
            value=backlog,
        )
        yield GaugeMetricFamily(
            "chat_output_backlog_max_bytes",
            "The largest backlog of one connection, in bytes.",
            value=largest,
        )
        users = GaugeMetricFamily(
            "chat_users_online", "Users logged in, on this node or on the others.", labels=["node"]
        )
        users.add_metric(["this"], len(self.sessions))
        if self.cluster is not None:
            users.add_metric(["others"], len(self.cluster.remote))
        yield users
        locked = GaugeMetricFamily(
            "chat_locked_out", "User names and addresses locked out now.", labels=["kind"]
        )
        started = CounterMetricFamily(
            "chat_lockouts",
            "Lock-outs this node started after too many failed logins, by kind (user, address).",
            labels=["kind"],
        )
        for lockout in self.lockouts:
            locked.add_metric([lockout.kind], lockout.locked_count())
            started.add_metric([lockout.kind], lockout.locks_started)
        yield locked
        yield started
        yield GaugeMetricFamily(
            "chat_serving", "1 once the store is open and the state loaded, else 0.",
            value=int(self.serving()),
        )
        if self.cluster is not None:
            yield GaugeMetricFamily(
                "chat_cluster_link_up",
                "1 while this node is connected and subscribed to Redis, else 0.",
                value=int(self.cluster.link.connected),
            )
