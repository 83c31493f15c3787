"""Listeners behind a load balancer: the PROXY protocol header (v1 or v2) first, then the chat.

A TCP load balancer (HAProxy's ``send-proxy``/``send-proxy-v2``, nginx's
``proxy_protocol``) connects to the node itself, so without the header every
user would seem to come from the balancer's address, and the per-address
caps, bans and lock-outs would count them all as one.  ``--listen
haproxy:tcp:4119`` takes the header first, with Twisted's own parsers.

Twisted's ``haproxy:`` endpoint hands the connection to the protocol it
wraps *before* the header has arrived (``connectionMade`` would see the
balancer's address), so the chat service wraps its factory itself:
:class:`ProxiedConnection` reads the header, and only then connects the chat
protocol, whose address is the client's from the start.  A connection whose
header is malformed, too long, or not complete within the login deadline is
aborted and never reaches the chat.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, ITransport
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from chatservice.server.policy import ConnectionPolicy

log = Logger()

LONGEST_HEADER = 16 + 2048
"""Bytes a header may take: v1's is at most 107; v2's is 16 and its addresses and TLVs
(HAProxy sends a few dozen bytes).  A longer one is refused."""
ENDPOINT_PREFIX = "haproxy:"
"""``--listen haproxy:<endpoint>``: the connections on ``<endpoint>`` start with a PROXY header."""


class ProxiedConnection(ProtocolWrapper):
    """One connection from the load balancer: its PROXY header, then the chat protocol it carries.

    It is the chat protocol's transport (a :class:`ProtocolWrapper`), which
    reports the client's address (:meth:`getPeer`) and the address it
    connected to (:meth:`getHost`).
    """

    factory: ProxiedFactory

    def __init__(self, factory: ProxiedFactory, wrappedProtocol: object) -> None:
        super().__init__(factory, wrappedProtocol)  # type: ignore[arg-type]
        self._buffer = b""
        self._parser: V1Parser | V2Parser | None = None
        self._source: IAddress | None = None
        self._destination: IAddress | None = None
        self._deadline: IDelayedCall | None = None
        self.connected_inside = False
        """Whether the header has been read and the chat protocol connected."""
        self.underlying: ITransport | None = None
        """The socket's transport, once the chat runs: output may go straight to it."""

    def makeConnection(self, transport: ITransport) -> None:
        # As ProtocolWrapper, but the chat protocol is connected once the header is read.
        self.transport = transport  # type: ignore[assignment]
        self.connected = 1
        self.factory.registerProtocol(self)
        self._deadline = self.factory.clock.callLater(self.factory.deadline, self._too_slow)

    def dataReceived(self, data: bytes) -> None:
        if self.connected_inside:
            self.wrappedProtocol.dataReceived(data)
            return
        self._buffer += data
        try:
            header = self._header()
            if header is not None:
                info, rest = header
                source, destination = valid_address(info.source), valid_address(info.destination)
        except (InvalidProxyHeader, ValueError):  # (UnicodeDecodeError is a ValueError)
            self._refuse("not a PROXY header, or a malformed or overlong one")
            return
        if header is None:
            return
        self._source, self._destination = source, destination
        self._stop_deadline()
        self.connected_inside = True
        self.underlying = self.transport
        self.wrappedProtocol.makeConnection(self)
        if rest and self.connected_inside and self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(rest)

    def _header(self) -> tuple[object, bytes] | None:
        """The parsed header and the bytes after it, or ``None`` while it is incomplete.

        :raises InvalidProxyHeader: when the bytes are not a PROXY header.
        """
        if self._parser is None:
            data = self._buffer
            if data[:12] == V2Parser.PREFIX and len(data) >= 16:
                self._parser = V2Parser()
            elif data[:5] == V1Parser.PROXYSTR:
                self._parser = V1Parser()
            elif V2Parser.PREFIX.startswith(data[:12]) or V1Parser.PROXYSTR.startswith(data):
                return None  # the start of one of them
            else:
                raise InvalidProxyHeader()
        data, self._buffer = self._buffer, b""
        info, rest = self._parser.feed(data)
        if info is None:
            self._buffer = b""
            if len(self._parser.buffer) > LONGEST_HEADER:
                raise InvalidProxyHeader()
            return None
        return info, rest or b""

    def _too_slow(self) -> None:
        self._deadline = None
        self._refuse("no PROXY header within the deadline")

    def _refuse(self, why: str) -> None:
        log.info("Refused a proxied connection from {peer}: {why}", peer=self.transport.getPeer(), why=why)
        self._stop_deadline()
        self._buffer = b""
        self.transport.abortConnection()

    def _stop_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def getPeer(self) -> IAddress:
        """The client's address (the balancer's when the header names none: a health check)."""
        return self._source or self.transport.getPeer()

    def getHost(self) -> IAddress:
        """The address the client connected to (else this socket's)."""
        return self._destination or self.transport.getHost()

    def connectionLost(self, reason: object = None) -> None:
        self._stop_deadline()
        self.connected = 0
        if self.connected_inside:
            super().connectionLost(reason)
        else:
            self.factory.unregisterProtocol(self)
            self.wrappedProtocol = None


class ProxiedFactory(WrappingFactory):
    """Wraps the chat factory of one ``haproxy:`` listener.

    :param factory: the chat factory.
    :param clock: the reactor, or a test ``Clock``.
    :param deadline: seconds the header may take (the login deadline).
    """

    protocol = ProxiedConnection

    def __init__(self, factory: Factory, clock: IReactorTime, deadline: float) -> None:
        super().__init__(factory)
        self.clock = clock
        self.deadline = deadline

    def logPrefix(self) -> str:
        return f"{self.wrappedFactory.__class__.__name__} (PROXY)"


def follow_login_deadline(factory: ProxiedFactory, policy: ConnectionPolicy) -> None:
    """After a reload (:meth:`chatservice.reload.Reloader.follow`): new headers have ``policy``'s login deadline."""
    factory.deadline = policy.login_deadline


def valid_address(address: Any) -> Any:
    """``address`` from a header, checked: an IP address and a port (or ``None``: no address).

    :raises ValueError: for anything else (a host that is not an address, a
        port out of range), which the header's parser lets through.
    """
    if address is None:
        return None
    ipaddress.ip_address(address.host)
    if not 0 <= int(address.port) <= 65535:
        raise ValueError(f"port {address.port} out of range")
    return address


def proxied(description: str) -> str | None:
    """The endpoint under ``haproxy:<endpoint>``, or ``None`` for a listener without the header.

    :raises ValueError: for ``haproxy:ssl:...``: the balancer sends the
        header in clear before any TLS handshake, so TLS is terminated at the
        balancer, or passed through on a plain ``haproxy:tcp:`` listener.
    """
    if description.startswith(ENDPOINT_PREFIX):
        inner = description[len(ENDPOINT_PREFIX):]
        if inner.split(":", 1)[0].lower() in ("ssl", "tls"):
            raise ValueError(
                "haproxy:ssl:... cannot work (the PROXY header comes before TLS):"
                " terminate TLS at the balancer and use haproxy:tcp:..."
            )
        return inner
    return None
