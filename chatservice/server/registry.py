"""The server's live connections: :class:`ConnectionRegistry`.

It admits a new connection or says why not (server full, too many from one
address, a banned address), forgets a closed one, and tells every one of
them goodbye at shutdown.  It holds the server's one
:class:`~chatservice.server.output.OutputBatcher`.
"""

from __future__ import annotations

from typing import Callable, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from chatservice import events
from chatservice.metrics import ChatMetrics
from chatservice.server.output import OutputBatcher
from chatservice.server.policy import ConnectionPolicy

BANNED = "Your address is banned from this server."
STARTING = "The server is starting; please try again in a moment."


class LiveConnection(Protocol):
    """What the registry needs of a connection."""

    host: str

    def disconnect(
        self, event: events.Disconnected, request_id: object = None, log_out: bool = True
    ) -> None:
        """Send ``event`` as the last line and close."""

    def end_session(self) -> None:
        """Log out now, if logged in."""


class ConnectionRegistry:
    """Every live connection of one server, counted per address.

    :param policy: the caps (``max_connections``, ``max_connections_per_address``) and bans.
    :param clock: the reactor, or a test ``Clock``.
    :param metrics: where the connections' slow readers are counted
        (default: a registry of its own).
    """

    def __init__(
        self, policy: ConnectionPolicy, clock: IReactorTime, metrics: ChatMetrics | None = None
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.metrics = ChatMetrics() if metrics is None else metrics
        self.ready = True
        """Whether connections are taken (the chat service clears it until its state is loaded)."""
        self.connections: set[LiveConnection] = set()
        self.output_batcher = OutputBatcher(clock, policy.flush_interval)
        self._per_address: dict[str, int] = {}
        self._closing: dict[LiveConnection, defer.Deferred[None]] = {}
        self.address_bans: Callable[[str], events.Disconnected | None] | None = None
        """What a connection from an address an operator banned is told (``None``: not
        banned); see :meth:`chatservice.moderation.Moderation.address_refusal`."""

    def admit(self, connection: LiveConnection) -> events.Disconnected | None:
        """Count a new live connection; return why it must be refused, if it must."""
        self.connections.add(connection)
        count = self._per_address.get(connection.host, 0) + 1
        self._per_address[connection.host] = count
        if not self.ready:
            return events.Disconnected("starting", STARTING)
        if len(self.connections) > self.policy.max_connections:
            return events.Disconnected("server_full", "The server is full; please try again later.")
        if count > self.policy.max_connections_per_address:
            return events.Disconnected(
                "too_many_connections", "Too many connections from your address."
            )
        if self.policy.bans.banned(connection.host):
            return events.Disconnected("banned", BANNED)
        if self.address_bans is not None:
            return self.address_bans(connection.host)
        return None

    def forget(self, connection: LiveConnection) -> None:
        """Forget a closed connection."""
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        count = self._per_address[connection.host] - 1
        if count:
            self._per_address[connection.host] = count
        else:
            del self._per_address[connection.host]
        closing = self._closing.pop(connection, None)
        if closing is not None:
            closing.callback(None)

    def disconnect_all(
        self, event: events.Disconnected, grace: float = 2.0
    ) -> defer.Deferred[None]:
        """Send ``event`` to every connection and close it.

        Fires when every connection is closed, or after ``grace`` seconds (a
        client that does not read cannot hold the shutdown up).
        """
        waiting = []
        connections = list(self.connections)
        for connection in connections:
            closing = self._closing.get(connection)
            if closing is None:
                closing = self._closing[connection] = defer.Deferred()
            waiting.append(closing)
            connection.disconnect(event, log_out=False)
        # Only now that every connection has had its last line: nobody is
        # told of the others leaving after being told the server stops.
        for connection in connections:
            connection.end_session()
        done = defer.gatherResults(waiting, consumeErrors=True)
        if waiting:
            done.addTimeout(grace, self.clock, onTimeoutCancel=lambda *_: None)
        done.addBoth(lambda _: None)
        return done
