"""The factory that builds a :class:`~chatservice.server.protocol.ChatProtocol` per connection."""

from __future__ import annotations

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ServerFactory

from chatservice.auth.login import LoginGate
from chatservice.server.protocol import ChatProtocol


class ChatFactory(ServerFactory):
    """Builds chat connections that share one login gate (and so one chat state).

    :param gate: where connections log in.
    :param clock: the reactor, or a test ``Clock``.
    :param timeout: inactivity timeout in seconds.
    :param max_line_length: longest accepted line, in bytes.
    """

    protocol = ChatProtocol

    def __init__(
        self,
        gate: LoginGate,
        clock: IReactorTime,
        timeout: float,
        max_line_length: int = 8192,
    ) -> None:
        self.gate = gate
        self.clock = clock
        self.timeout = timeout
        self.max_line_length = max_line_length

    def buildProtocol(self, addr: IAddress) -> ChatProtocol:
        protocol = self.protocol(
            self.gate, self.clock, self.timeout, self.max_line_length
        )
        protocol.factory = self
        return protocol
