"""Peer-to-peer private chat: the line protocol two clients speak over TCP.

Every client listens for peers on its TCP port (``--p2p-port``) and tells the
server that port at login.  ``startprivate <user>`` asks the server, which
answers the initiator with the target's address and a one-time token
(``private_address``) and gives the target the same token for that initiator
(``private_request``).  Then the initiator connects to the target and they
speak lines of UTF-8 text ending with LF (a CR before it is ignored):

1. initiator: ``HELLO <initiator> <token>``
2. target: ``OK <target>`` if the server gave it exactly that token for that
   initiator (the token is then used up: it opens one session only) and its
   user accepts, or ``ERR <reason>`` and it closes the connection (``ERR
   declined`` when its user declined).  A target that has not yet heard from
   the server about this initiator waits a few seconds for it.  While its user
   decides, the target first sends ``WAIT``: both sides then give the
   handshake :data:`ASK_TIMEOUT` seconds more.
3. from then on, every line either side sends is one private message; empty
   lines are ignored.  The server never sees them.

Closing the connection, by either side, ends the session: that is what
``stopprivate <user>`` does, and what logging out or quitting does to every
session.

The listening port is open to anyone who can reach it, before any login, so
it guards itself.  A peer that does not send its ``HELLO`` within
:data:`HELLO_TIMEOUT` seconds (an initiator sends it at once), does not
complete the handshake within :data:`HANDSHAKE_TIMEOUT` seconds, sends
anything but a valid ``HELLO`` first, or sends a line longer than the limit
(:data:`MAX_HANDSHAKE_LINE` bytes before the handshake,
:data:`MAX_MESSAGE_BYTES` after) is disconnected.  A listener keeps at most
:data:`MAX_HANDSHAKES_PER_ADDRESS` handshakes from one address and
:data:`MAX_HANDSHAKES` in all: a new connection beyond either cap displaces
the oldest handshake of its own address, or (when all are full) of the
address that holds the most.  So idle connections cannot keep a genuine
initiator out, and one address can only displace its own.
"""

from __future__ import annotations

import enum
from collections import Counter
from typing import Callable, Protocol

from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IAddress, IReactorTCP, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from chatservice.commands import remove_control_characters

log = Logger()

HELLO = b"HELLO"
OK = b"OK"
ERR = b"ERR"
HELLO_TIMEOUT = 3.0
"""Seconds a connection to the listener has to send its ``HELLO``."""
HANDSHAKE_TIMEOUT = 10.0
"""Seconds the whole handshake may take (the target may wait for the server's note)."""
WAIT = b"WAIT"
ASK_TIMEOUT = 30.0
"""Seconds more a handshake may take once the target said ``WAIT`` (its user decides)."""
DECLINED = "declined"
CONNECT_TIMEOUT = 10
MAX_HANDSHAKE_LINE = 1024
MAX_MESSAGE_BYTES = 8192
MAX_HANDSHAKES = 16
"""Handshakes a listener keeps at once."""
MAX_HANDSHAKES_PER_ADDRESS = 4
"""Handshakes a listener keeps at once from one address."""


class PeerDirectory(Protocol):
    """What a peer connection needs from the client's private chats."""

    username: str

    def authorize(self, initiator: str, token: str) -> defer.Deferred[bool]: ...

    def ask(self, initiator: str) -> defer.Deferred[bool]:
        """Whether the user accepts a private chat with ``initiator`` (authorized)."""

    def waiting(self, peer: PeerProtocol) -> None:
        """The target (``peer.peer_name``) asks its user (an initiator's handshake)."""

    def handshake_started(self, peer: PeerProtocol) -> None: ...

    def established(self, peer: PeerProtocol) -> None: ...

    def message(self, peer: PeerProtocol, text: str) -> None: ...

    def ended(self, peer: PeerProtocol, reason: str) -> None: ...


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


class PeerProtocol(LineReceiver, TimeoutMixin):
    """One private chat connection, from either end.

    :param directory: the client's private chats.
    :param clock: for the handshake timeout.
    :param peer_name: the target's name, for the initiator; ``None`` for the
        target, which learns it from ``HELLO``.
    :param token: the token to present, for the initiator.
    """

    delimiter = b"\n"
    MAX_LENGTH = MAX_HANDSHAKE_LINE

    def __init__(
        self,
        directory: PeerDirectory,
        clock: IReactorTime,
        peer_name: str | None = None,
        token: str | None = None,
    ) -> None:
        self.directory = directory
        self.callLater = clock.callLater
        self.initiator = peer_name is not None
        self.peer_name = peer_name or ""
        self.token = token or ""
        self.phase = Phase.HANDSHAKE
        self.closed_by_us = False
        self.hello_received = False
        self.refusal = ""
        """Why the handshake failed, when it did."""

    # Connection life ---------------------------------------------------------------

    def connectionMade(self) -> None:
        self.setTimeout(HANDSHAKE_TIMEOUT if self.initiator else HELLO_TIMEOUT)
        self.directory.handshake_started(self)
        if self.initiator:
            self._send(b" ".join([HELLO, self._encode(self.directory.username), self._encode(self.token)]))

    def connectionLost(self, reason: Failure = None) -> None:
        self.setTimeout(None)
        self._handshake_over()
        was = self.phase
        self.phase = Phase.CLOSED
        if was is not Phase.CLOSED:
            self.directory.ended(self, self.refusal or _describe(reason))

    def timeoutConnection(self) -> None:
        if self.initiator or self.hello_received:
            self._drop("the handshake took too long")
        else:
            self._drop(f"no HELLO within {HELLO_TIMEOUT:g} seconds")

    def displace(self) -> None:
        """Drop this handshake to make room for a newer connection (see :class:`PeerFactory`)."""
        self._drop("too many connections from its address")

    def lineLengthExceeded(self, line: bytes) -> None:
        self._drop("a line was too long")

    # Lines -------------------------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if self.phase is Phase.OPEN:
            text = remove_control_characters(line.decode("utf-8", "replace"))
            if text.strip():
                self.directory.message(self, text)
        elif self.phase is Phase.HANDSHAKE:
            if self.initiator:
                self._answer_received(line)
            else:
                self._hello_received(line)

    def _hello_received(self, line: bytes) -> None:
        words = line.split(b" ")
        if len(words) != 3 or words[0] != HELLO or not words[1] or not words[2]:
            self._refuse("expected HELLO <user> <token>")
            return
        try:
            initiator, token = words[1].decode("utf-8"), words[2].decode("utf-8")
        except UnicodeDecodeError:
            self._refuse("expected HELLO <user> <token>")
            return
        self.hello_received = True
        self.setTimeout(HANDSHAKE_TIMEOUT)
        self.pauseProducing()
        d = self.directory.authorize(initiator, token)
        d.addCallback(self._authorized, initiator)
        d.addErrback(lambda f: log.failure("Checking a peer's token failed", f))

    def _authorized(self, allowed: bool, initiator: str) -> None:
        if self.phase is not Phase.HANDSHAKE or self.refusal:
            return
        if not allowed:
            self._refuse("no private chat was arranged with that token")
            return
        self.peer_name = initiator
        answer = self.directory.ask(initiator)
        if not answer.called:
            self._send(WAIT)
            self.setTimeout(ASK_TIMEOUT + HANDSHAKE_TIMEOUT)
        answer.addCallback(self._answered)
        answer.addErrback(lambda f: log.failure("Asking about a private chat failed", f))

    def _answered(self, accepted: bool) -> None:
        if self.phase is not Phase.HANDSHAKE or self.refusal:
            return
        if not accepted:
            self._refuse(DECLINED)
            return
        self._send(OK + b" " + self._encode(self.directory.username))
        self._open()
        self.resumeProducing()

    def _answer_received(self, line: bytes) -> None:
        words = line.split(b" ", 1)
        if words[0] == OK and len(words) == 2 and words[1] == self._encode(self.peer_name):
            self._open()
        elif line == WAIT:
            self.setTimeout(ASK_TIMEOUT + HANDSHAKE_TIMEOUT)
            self.directory.waiting(self)
        elif words[0] == ERR and len(words) == 2 and words[1] == DECLINED.encode():
            self._drop(f"{self.peer_name} declined")
        elif words[0] == ERR:
            reason = words[1].decode("utf-8", "replace") if len(words) == 2 else ""
            self._drop(f"{self.peer_name} refused: {remove_control_characters(reason)}")
        else:
            self._drop(f"{self.peer_name} answered something unexpected")

    def _open(self) -> None:
        self.setTimeout(None)
        self._handshake_over()
        self.phase = Phase.OPEN
        self.MAX_LENGTH = MAX_MESSAGE_BYTES
        self.directory.established(self)

    # Sending and closing -------------------------------------------------------------

    def send_message(self, text: str) -> None:
        """Send one private message (one line)."""
        self._send(text.replace("\r", " ").replace("\n", " ").encode("utf-8"))

    def close(self) -> None:
        """End the session from this side."""
        self.closed_by_us = True
        if self.transport is not None:
            self.transport.loseConnection()

    def _refuse(self, reason: str) -> None:
        self._send(ERR + b" " + reason.encode("utf-8"))
        self._drop(reason)

    def _drop(self, reason: str) -> None:
        if not self.refusal:
            self.refusal = reason
        self.transport.loseConnection()

    def _send(self, line: bytes) -> None:
        if self.transport is not None:
            self.transport.write(line + self.delimiter)

    def _handshake_over(self) -> None:
        """Tell the listener (for a target) that this handshake no longer counts."""
        if isinstance(self.factory, PeerFactory):
            self.factory.handshake_over(self)

    @staticmethod
    def _encode(word: str) -> bytes:
        return word.encode("utf-8")


def _describe(reason: Failure | None) -> str:
    if reason is None:
        return "the connection closed"
    message = reason.getErrorMessage()
    return "the connection closed" if "cleanly" in message else message


class PeerFactory(Factory):
    """Builds the target end of private chats for the listening port, within the caps.

    Every connection is accepted: when its address already holds
    ``per_address`` handshakes, the oldest of them is dropped; else, when
    ``max_handshakes`` are under way, the oldest handshake of the address
    holding the most is.  Open sessions do not count.

    :param directory: the client's private chats.
    :param clock: for the handshake timeouts.
    :param max_handshakes: handshakes kept at once.
    :param per_address: handshakes kept at once from one address.
    """

    def __init__(
        self,
        directory: PeerDirectory,
        clock: IReactorTime,
        max_handshakes: int = MAX_HANDSHAKES,
        per_address: int = MAX_HANDSHAKES_PER_ADDRESS,
    ) -> None:
        self.directory = directory
        self.clock = clock
        self.max_handshakes = max_handshakes
        self.per_address = per_address
        self._handshakes: dict[PeerProtocol, str] = {}
        """Handshakes under way, oldest first, with the address they come from."""

    def buildProtocol(self, addr: IAddress) -> PeerProtocol:
        host = getattr(addr, "host", "")
        self._make_room(host)
        protocol = PeerProtocol(self.directory, self.clock)
        protocol.factory = self
        self._handshakes[protocol] = host
        return protocol

    def handshake_over(self, protocol: PeerProtocol) -> None:
        """``protocol`` opened its session or closed: it no longer counts."""
        self._handshakes.pop(protocol, None)

    def _make_room(self, host: str) -> None:
        """Drop one handshake when a new one from ``host`` would exceed a cap."""
        handshakes = self._handshakes
        counts = Counter(handshakes.values())
        if counts[host] >= self.per_address:
            crowded = host
        elif len(handshakes) >= self.max_handshakes:
            crowded = max(counts, key=counts.__getitem__)
        else:
            return
        victim = next(protocol for protocol, address in handshakes.items() if address == crowded)
        del handshakes[victim]
        log.info("Dropped a peer handshake from {host}: too many at once", host=crowded)
        victim.displace()


Connector = Callable[[str, int, PeerProtocol], "defer.Deferred[PeerProtocol]"]


def tcp_connector(reactor: IReactorTCP) -> Connector:
    """Connects initiator protocols over TCP with ``reactor``."""

    def connect(host: str, port: int, protocol: PeerProtocol) -> defer.Deferred[PeerProtocol]:
        endpoint = endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT)
        return endpoints.connectProtocol(endpoint, protocol)

    return connect
