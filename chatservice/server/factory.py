"""The factory that builds a :class:`~chatservice.server.protocol.ChatProtocol` per
connection, and keeps track of the live ones."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ServerFactory

from chatservice import events
from chatservice.auth.login import LoginGate
from chatservice.server.output import OutputBatcher
from chatservice.server.policy import ConnectionPolicy
from chatservice.server.protocol import ChatProtocol


class ChatFactory(ServerFactory):
    """Builds chat connections that share one login gate (and so one chat state).

    :param gate: where connections log in.
    :param clock: the reactor, or a test ``Clock``.
    :param policy: the settings every connection reads.
    """

    protocol = ChatProtocol

    def __init__(
        self, gate: LoginGate, clock: IReactorTime, policy: ConnectionPolicy
    ) -> None:
        self.gate = gate
        self.clock = clock
        self.policy = policy
        self.connections: set[ChatProtocol] = set()
        self._per_address: dict[str, int] = {}
        self._closing: dict[ChatProtocol, defer.Deferred[None]] = {}
        self.output_batcher = OutputBatcher(clock, policy.flush_interval)

    def buildProtocol(self, addr: IAddress) -> ChatProtocol:
        protocol = self.protocol(self.gate, self.clock, self.policy)
        protocol.factory = self
        return protocol

    def connection_made(self, protocol: ChatProtocol) -> events.Disconnected | None:
        """Count a new live connection; return why it must be refused, if it must."""
        self.connections.add(protocol)
        count = self._per_address.get(protocol.host, 0) + 1
        self._per_address[protocol.host] = count
        if len(self.connections) > self.policy.max_connections:
            return events.Disconnected("server_full", "The server is full; please try again later.")
        if count > self.policy.max_connections_per_address:
            return events.Disconnected(
                "too_many_connections", "Too many connections from your address."
            )
        return None

    def connection_lost(self, protocol: ChatProtocol) -> None:
        """Forget a closed connection."""
        if protocol not in self.connections:
            return
        self.connections.discard(protocol)
        count = self._per_address[protocol.host] - 1
        if count:
            self._per_address[protocol.host] = count
        else:
            del self._per_address[protocol.host]
        closing = self._closing.pop(protocol, None)
        if closing is not None:
            closing.callback(None)

    def disconnect_all(self, event: events.Disconnected, grace: float = 2.0) -> defer.Deferred[None]:
        """Send ``event`` to every connection and close it.

        Fires when every connection is closed, or after ``grace`` seconds (a
        client that does not read cannot hold the shutdown up).
        """
        waiting = []
        protocols = list(self.connections)
        for protocol in protocols:
            closing = self._closing.get(protocol)
            if closing is None:
                closing = self._closing[protocol] = defer.Deferred()
            waiting.append(closing)
            protocol.disconnect(event, log_out=False)
        # Only now that every connection has had its last line: nobody is
        # told of the others leaving after being told the server stops.
        for protocol in protocols:
            protocol.end_session()
        done = defer.gatherResults(waiting, consumeErrors=True)
        if waiting:
            done.addTimeout(grace, self.clock, onTimeoutCancel=lambda *_: None)
        done.addBoth(lambda _: None)
        return done
