"""A node's two connections to Redis: :class:`RedisLink`.

As Synapse does with ``txredisapi``: one connection for commands (and
``PUBLISH``), one subscribed to the node's channels, both reconnecting for
ever with a capped back-off, both pinged so that a dead Redis is noticed.
Every time the subscriber is (re)connected and subscribed, the link says so
(:meth:`RedisLink.when_subscribed` callbacks): the node then re-registers
what Redis may have lost (its lease, its users) and looks for what it may
have missed.

Replies and messages are read by ``hiredis``'s C parser when it is installed
(``pip install chatservice[cluster]``; ``txredisapi`` picks it when it is
imported), else by ``txredisapi``'s own parser in Python, which costs the
reactor thread noticeably more per message (``docs/benchmarks.rst``); the
log says which (:func:`reply_parser`).
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlsplit

import txredisapi
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice.cluster.publisher import publish_now, ready_connection

log = Logger()

PING_INTERVAL = 5.0
"""Seconds between two pings on each connection."""
REPLY_TIMEOUT = 10
"""Seconds a command may wait for its reply before the connection is dropped."""


class RedisURLError(ValueError):
    """A ``--redis`` URL that is not ``redis://HOST[:PORT][/DB]``."""


def parse_redis_url(url: str) -> tuple[str, int, int, str | None]:
    """``(host, port, database, password)`` of ``redis://[:PASSWORD@]HOST[:PORT][/DB]``.

    :raises RedisURLError: for anything else.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
        database = int(parts.path.strip("/") or 0)
    except ValueError:
        raise RedisURLError(f"{url!r} is not a redis:// URL") from None
    if parts.scheme != "redis" or not parts.hostname or database < 0:
        raise RedisURLError(f"{url!r} is not redis://HOST[:PORT][/DB]")
    return parts.hostname, port, database, parts.password


def _no_delay(transport: Any) -> None:
    """Turn Nagle's algorithm off on ``transport`` (a TCP connection; others have no such setting)."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        set_no_delay(True)


class _Commands(txredisapi.RedisProtocol):
    """The command connection (``PUBLISH`` and the rest), without Nagle's delay."""

    def connectionMade(self) -> Any:
        _no_delay(self.transport)
        return super().connectionMade()


class _CommandsFactory(txredisapi.RedisFactory):
    """What ``txredisapi.lazyConnection`` builds, with :class:`_Commands` connections."""

    protocol = _Commands


class _Subscriber(txredisapi.SubscriberProtocol):
    """The subscribed connection: subscribes at every (re)connection, hands messages on."""

    link: RedisLink

    def connectionMade(self) -> None:
        _no_delay(self.transport)
        super().connectionMade()
        d = self.subscribe(list(self.link.channels))
        d.addCallback(lambda _: self.link.subscribed(self))
        d.addErrback(lambda failure: log.failure("Subscribing to Redis failed", failure))

    def tryConvertData(self, data: Any) -> Any:
        """A message (``[b"message", channel, text]``) as it came: ``txredisapi`` would
        try each part as a number, then decode it; :meth:`messageReceived` decodes it once.
        (``hiredis``'s parser hands the whole reply here; ``txredisapi``'s own converts
        each part as it reads it, and the nodes' JSON is never read as a number.)"""
        if type(data) is list and len(data) == 3 and data[0] == b"message":
            return data
        return super().tryConvertData(data)

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.link.received(_text(channel), _text(message))

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.link.unsubscribed(self)


class _SubscriberFactory(txredisapi.SubscriberFactory):
    protocol = _Subscriber
    maxDelay = 5

    def __init__(self, link: RedisLink) -> None:
        super().__init__()
        self.link = link
        self.password = link.password

    def buildProtocol(self, addr: Any) -> _Subscriber:
        protocol = super().buildProtocol(addr)
        protocol.link = self.link
        return protocol


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def reply_parser() -> str:
    """What reads Redis's replies on the link's connections: ``"hiredis"`` or ``"python"``."""
    fast = (issubclass(protocol, txredisapi.HiredisProtocol) for protocol in (_Subscriber, _Commands))
    return "hiredis" if all(fast) else "python"


class RedisLink(Service):
    """The node's connections to Redis, started and stopped with the chat service.

    :param url: ``redis://HOST[:PORT][/DB]``.
    :param reactor: for the connections and the pings.
    :param channels: the channels to subscribe to.
    :param on_message: called with ``(channel, message)`` for each message received.
    """

    def __init__(
        self,
        url: str,
        reactor: IReactorTCP,
        channels: list[str],
        on_message: Callable[[str, str], None],
    ) -> None:
        self.url = url
        self.host, self.port, self.database, self.password = parse_redis_url(url)
        self.reactor = reactor
        self.channels = channels
        self.on_message = on_message
        self.commands: Any = None
        """The command connection (a ``txredisapi`` connection handler)."""
        self._commands_factory: _CommandsFactory | None = None
        self.connected = False
        """Whether the subscriber is connected and subscribed now."""
        self._subscriber_factory: _SubscriberFactory | None = None
        self._subscriber: _Subscriber | None = None
        self._on_subscribed: list[Callable[[], object]] = []
        self._pings = LoopingCall(self._ping)
        self._pings.clock = reactor  # type: ignore[assignment]

    def when_subscribed(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` each time the subscription is (re)established."""
        self._on_subscribed.append(callback)

    def startService(self) -> None:
        super().startService()
        endpoint = TCP4ClientEndpoint(self.reactor, self.host, self.port, timeout=REPLY_TIMEOUT)
        # As txredisapi.lazyConnection(host, port, dbid, reconnect=True, password,
        # replyTimeout) builds it, with connections of our protocol.
        commands = _CommandsFactory(
            f"{self.host}:{self.port}", self.database, 1, isLazy=True,
            password=self.password, replyTimeout=REPLY_TIMEOUT,
        )
        commands.reconnect = True
        commands.startConnecting(endpoint)
        self._commands_factory = commands
        self.commands = commands.handler
        self._subscriber_factory = _SubscriberFactory(self)
        self._subscriber_factory.startConnecting(endpoint)
        self._pings.start(PING_INTERVAL, now=False)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        if self._pings.running:
            self._pings.stop()
        stops = []
        if self.commands is not None:
            stops.append(self.commands.disconnect())
        if self._subscriber_factory is not None:
            stops.append(self._subscriber_factory.disconnect())
        return defer.gatherResults(stops, consumeErrors=True).addBoth(lambda _: None)

    # What the subscriber tells ------------------------------------------------------------

    def subscribed(self, subscriber: _Subscriber) -> None:
        self._subscriber = subscriber
        self.connected = True
        log.info(
            "Subscribed to Redis at {host}:{port} (replies read by the {parser} parser)",
            host=self.host, port=self.port, parser=reply_parser(),
        )
        for callback in list(self._on_subscribed):
            try:
                result = callback()
            except Exception:
                log.failure("A Redis (re)connection callback failed")
                continue
            if isinstance(result, defer.Deferred):
                result.addErrback(self._rejoin_failed)

    def _rejoin_failed(self, failure: Failure) -> None:
        """A (re)connection callback failed: Redis went away again (the next
        subscription runs it again), or a bug (logged with its traceback)."""
        if failure.check(txredisapi.ConnectionError, ConnectionError, defer.TimeoutError):
            log.warn("Redis went away while this node joined again: {e}", e=failure.value)
        else:
            log.failure("A Redis (re)connection callback failed", failure)

    def unsubscribed(self, subscriber: _Subscriber) -> None:
        if subscriber is self._subscriber:
            self._subscriber = None
            self.connected = False
            log.warn("Lost the Redis subscription; reconnecting")

    def received(self, channel: str, message: str) -> None:
        try:
            self.on_message(channel, message)
        except Exception:
            log.failure("Handling a message from Redis on {channel} failed", channel=channel)

    # Commands -------------------------------------------------------------------------

    def publish(self, channel: str, message: str) -> defer.Deferred[Any]:
        """Publish ``message`` on ``channel``; fires with the number of subscribers that got it.

        Straight on the command connection when it is ready, with no reply
        timeout of its own (the caller, the outbox, times all of its
        ``PUBLISH`` commands out together;
        :func:`~chatservice.cluster.publisher.publish_now`), else through
        ``txredisapi``, which waits for a connection.
        """
        connection = None if self._commands_factory is None else ready_connection(self._commands_factory)
        if connection is None:
            return self.commands.publish(channel, message)
        return publish_now(connection, channel, message)

    def _ping(self) -> None:
        if self.commands is not None:
            self.commands.ping().addErrback(lambda f: log.warn("Redis ping failed: {f}", f=f.value))
        if self._subscriber is not None:
            self._subscriber.ping().addErrback(lambda f: None)

