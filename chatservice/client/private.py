"""The client's private chats: the tokens the server handed out, and the open sessions.

:class:`PrivateChats` is the :class:`~chatservice.client.peer.PeerDirectory`
of every peer connection.  The server's ``private_request`` puts a one-time
token here (:meth:`PrivateChats.expect`); a peer's ``HELLO`` must present
exactly that token for that initiator (:meth:`PrivateChats.authorize`).
``startprivate`` connects out (:meth:`PrivateChats.start`).  At most one
session per peer user: a new one replaces the old.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice.client.peer import Connector, PeerProtocol

log = Logger()

TOKEN_LIFETIME = 60.0
"""Seconds a token from the server stays usable."""
EARLY_HELLO_GRACE = 5.0
"""Seconds a ``HELLO`` waits for the server's ``private_request`` that names its token."""


class PrivateChatListener(Protocol):
    """Who shows what happens to private chats (the client application)."""

    def private_started(self, user: str) -> None: ...

    def private_message(self, user: str, text: str) -> None: ...

    def private_ended(self, user: str, reason: str) -> None: ...

    def private_failed(self, user: str, reason: str) -> None: ...

    def private_offered(self, user: str) -> defer.Deferred[bool]:
        """Ask the user whether to accept a private chat from ``user``."""

    def private_waiting(self, user: str) -> None:
        """``user`` is asked whether to accept our private chat."""


class _EarlyHello:
    """A ``HELLO`` whose token the server has not announced yet."""

    def __init__(self, token: str, answer: defer.Deferred[bool], timer: IDelayedCall) -> None:
        self.token = token
        self.answer = answer
        self.timer = timer


class PrivateChats:
    """Tokens, handshakes and sessions of one client.

    :param clock: the reactor, or a test ``Clock``.
    :param listener: told about sessions starting, messages and endings.
    :param connect: connects an initiator protocol to ``host:port``.
    """

    def __init__(
        self,
        clock: IReactorTime,
        listener: PrivateChatListener,
        connect: Connector,
        token_lifetime: float = TOKEN_LIFETIME,
        grace: float = EARLY_HELLO_GRACE,
    ) -> None:
        self.clock = clock
        self.listener = listener
        self.connect = connect
        self.token_lifetime = token_lifetime
        self.grace = grace
        self.username = ""
        self.sessions: dict[str, PeerProtocol] = {}
        self._starting: dict[str, PeerProtocol] = {}
        self._tokens: dict[str, tuple[str, IDelayedCall]] = {}
        self._early: dict[str, list[_EarlyHello]] = {}
        self._handshakes: set[PeerProtocol] = set()
        self._closing = False

    # What the user does ------------------------------------------------------------

    def is_open(self, user: str) -> bool:
        """Whether a private session with ``user`` is open."""
        return user in self.sessions

    def is_starting(self, user: str) -> bool:
        """Whether a session with ``user`` is being set up."""
        return user in self._starting

    def start(self, target: str, host: str, port: int, token: str) -> None:
        """Connect to ``target`` at ``host:port`` and present ``token``."""
        protocol = PeerProtocol(self, self.clock, peer_name=target, token=token)
        self._starting[target] = protocol
        d = self.connect(host, port, protocol)
        d.addErrback(self._connect_failed, target, protocol)

    def _connect_failed(self, failure: Failure, target: str, protocol: PeerProtocol) -> None:
        if self._starting.get(target) is protocol:
            del self._starting[target]
        self.listener.private_failed(
            target, f"could not connect to {target}: {failure.getErrorMessage()}"
        )

    def send(self, user: str, text: str) -> bool:
        """Send ``text`` to ``user`` over the open session; ``False`` if there is none."""
        session = self.sessions.get(user)
        if session is None:
            return False
        session.send_message(text)
        return True

    def stop(self, user: str) -> bool:
        """Close the session with ``user``; ``False`` if there is none."""
        session = self.sessions.pop(user, None)
        if session is None:
            return False
        session.close()
        return True

    def close_all(self) -> list[str]:
        """Close every session and handshake and forget every token.

        :returns: the users whose open sessions were closed.
        """
        self._closing = True
        for _token, timer in self._tokens.values():
            if timer.active():
                timer.cancel()
        self._tokens.clear()
        early, self._early = self._early, {}
        for waiters in early.values():
            for waiter in waiters:
                if waiter.timer.active():
                    waiter.timer.cancel()
                waiter.answer.callback(False)
        closed = sorted(self.sessions)
        for protocol in list(self.sessions.values()) + list(self._handshakes):
            protocol.close()
        self.sessions.clear()
        self._starting.clear()
        return closed

    # What the server says --------------------------------------------------------------

    def expect(self, initiator: str, token: str) -> None:
        """The server gave us ``token`` for a session that ``initiator`` will open."""
        if self._closing:
            return
        for waiter in self._early.get(initiator, []):
            if _same(waiter.token, token):
                self._early[initiator].remove(waiter)
                if not self._early[initiator]:
                    del self._early[initiator]
                waiter.timer.cancel()
                waiter.answer.callback(True)
                return
        self._forget_token(initiator)
        timer = self.clock.callLater(self.token_lifetime, self._token_expired, initiator, token)
        self._tokens[initiator] = (token, timer)

    def _token_expired(self, initiator: str, token: str) -> None:
        if initiator in self._tokens and self._tokens[initiator][0] == token:
            del self._tokens[initiator]

    def _forget_token(self, initiator: str) -> None:
        entry = self._tokens.pop(initiator, None)
        if entry is not None and entry[1].active():
            entry[1].cancel()

    # What peer connections ask (PeerDirectory) ---------------------------------------

    def authorize(self, initiator: str, token: str) -> defer.Deferred[bool]:
        """Whether ``token`` is the one the server gave us for ``initiator`` (used up if so)."""
        if self._closing:
            return defer.succeed(False)
        entry = self._tokens.get(initiator)
        if entry is not None:
            if not _same(entry[0], token):
                return defer.succeed(False)
            self._forget_token(initiator)
            return defer.succeed(True)
        # The initiator may have been quicker than the server's note to us.
        answer: defer.Deferred[bool] = defer.Deferred()
        timer = self.clock.callLater(self.grace, self._early_expired, initiator, answer)
        self._early.setdefault(initiator, []).append(_EarlyHello(token, answer, timer))
        return answer

    def _early_expired(self, initiator: str, answer: defer.Deferred[bool]) -> None:
        waiters = self._early.get(initiator, [])
        self._early[initiator] = [w for w in waiters if w.answer is not answer]
        if not self._early[initiator]:
            del self._early[initiator]
        answer.callback(False)

    def ask(self, initiator: str) -> defer.Deferred[bool]:
        """Ask the user whether to accept the (authorized) private chat from ``initiator``."""
        if self._closing:
            return defer.succeed(False)
        return self.listener.private_offered(initiator)

    def waiting(self, peer: PeerProtocol) -> None:
        if not self._closing:
            self.listener.private_waiting(peer.peer_name)

    def handshake_started(self, peer: PeerProtocol) -> None:
        self._handshakes.add(peer)

    def established(self, peer: PeerProtocol) -> None:
        self._handshakes.discard(peer)
        user = peer.peer_name
        if peer.initiator:
            if self._starting.get(user) is peer:
                del self._starting[user]
        old = self.sessions.get(user)
        if old is not None:
            old.close()
        self.sessions[user] = peer
        self.listener.private_started(user)

    def message(self, peer: PeerProtocol, text: str) -> None:
        if self.sessions.get(peer.peer_name) is peer:
            self.listener.private_message(peer.peer_name, text)

    def ended(self, peer: PeerProtocol, reason: str) -> None:
        self._handshakes.discard(peer)
        user = peer.peer_name
        if peer.initiator and self._starting.get(user) is peer:
            del self._starting[user]
            if not self._closing:
                self.listener.private_failed(user, reason)
            return
        if self.sessions.get(user) is peer:
            del self.sessions[user]
            if not peer.closed_by_us and not self._closing:
                self.listener.private_ended(user, reason)
        else:
            log.info("A peer connection closed: {reason}", reason=reason)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
