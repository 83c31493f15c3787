"""The factory that builds a :class:`~chatservice.server.protocol.ChatProtocol` per connection."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ServerFactory

from chatservice import events
from chatservice.auth.login import LoginGate
from chatservice.metrics import ChatMetrics
from chatservice.server.output import OutputBatcher
from chatservice.server.policy import ConnectionPolicy
from chatservice.server.protocol import ChatProtocol
from chatservice.server.registry import ConnectionRegistry, LiveConnection


class ChatFactory(ServerFactory):
    """Builds chat connections that share one login gate (and so one chat state).

    :param gate: where connections log in.
    :param clock: the reactor, or a test ``Clock``.
    :param policy: the settings every connection reads.
    :param metrics: where the connections are counted (default: the gate's).
    """

    protocol = ChatProtocol

    def __init__(
        self,
        gate: LoginGate,
        clock: IReactorTime,
        policy: ConnectionPolicy,
        metrics: ChatMetrics | None = None,
    ) -> None:
        self.gate = gate
        self.clock = clock
        self.registry = ConnectionRegistry(policy, clock, gate.metrics if metrics is None else metrics)

    @property
    def policy(self) -> ConnectionPolicy:
        """The settings new connections get: the registry's (a reload swaps them there)."""
        return self.registry.policy

    def buildProtocol(self, addr: IAddress) -> ChatProtocol:
        return self.protocol(self.gate, self.registry.policy, self.clock, self.registry)

    @property
    def connections(self) -> set[LiveConnection]:
        """The live connections."""
        return self.registry.connections

    @property
    def output_batcher(self) -> OutputBatcher:
        """The batcher every plain TCP connection writes through."""
        return self.registry.output_batcher

    def disconnect_all(
        self, event: events.Disconnected, grace: float = 2.0
    ) -> defer.Deferred[None]:
        """Tell every connection ``event`` and close it (see :meth:`ConnectionRegistry.disconnect_all`)."""
        return self.registry.disconnect_all(event, grace)
