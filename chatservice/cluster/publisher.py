"""``PUBLISH`` on a node's command connection for the cost of a write and a queued reply.

Through ``txredisapi``'s ``publish`` each command goes through its connection
handler (a Deferred to get the connection), ``execute_command`` (three more,
two closures, a reply timeout scheduled on the reactor and cancelled again),
its generic encoder, and Twisted's ``transport.write`` (the socket watched
for writability, then unwatched, on the next turn).  A cluster publishes
every broadcast (:class:`~chatservice.cluster.outbox.Outbox`), so
:func:`publish_now` does what those steps amount to, and only that: it
writes the command's bytes straight to the socket
(:func:`~chatservice.server.output.write_now`) and takes its reply from the
connection's reply queue, in the order ``txredisapi``'s own commands take
theirs (they, too, write and queue in one call).  It sets no timer: the
outbox times its ``PUBLISH`` commands out together.

This needs ``txredisapi`` internals, all of them here and checked by
``tests/test_txredisapi_internals.py`` against a real Redis, which fails
naming the one a release renames or drops:

- ``RedisFactory.pool``: the connections ready for commands (connected,
  authenticated, their database selected);
- ``BaseRedisProtocol.connected``, ``pipelining``, ``inMulti``: whether a
  connection may take a command now, outside a pipeline or transaction;
- ``BaseRedisProtocol.replyQueue``: the ``DeferredQueue`` its replies are
  put on, in order; a reply that is an error is an exception instance, and
  a lost connection puts a ``ConnectionError`` for every reply awaited;
- ``BaseRedisProtocol.transport``: the connection's TCP transport.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from chatservice.server.output import write_now


def ready_connection(factory: Any) -> Any | None:
    """A connection of ``factory`` (a ``txredisapi.RedisFactory``) that can take a
    command now, or ``None`` (none is connected and ready yet)."""
    for connection in factory.pool:
        if connection.connected and not connection.pipelining and not connection.inMulti:
            return connection
    return None


def command(*words: bytes) -> bytes:
    """A Redis command in the protocol's (RESP) form."""
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        parts.append(b"$%d\r\n%b\r\n" % (len(word), word))
    return b"".join(parts)


def publish_now(connection: Any, channel: str, message: str) -> defer.Deferred[int]:
    """``PUBLISH message`` on ``channel`` through ``connection`` (from :func:`ready_connection`).

    :return: a Deferred firing with how many subscribers got it, or failing
        with Redis's error or the lost connection's.  It has no timeout of
        its own; cancelling it leaves the reply queue as it is (the reply,
        when it comes, is dropped), so later commands still get theirs.
    """
    write_now(connection.transport, command(b"PUBLISH", channel.encode(), message.encode()))
    result: defer.Deferred[int] = defer.Deferred()
    connection.replyQueue.get().addBoth(_answered, result)
    return result


def _answered(reply: Any, result: defer.Deferred[int]) -> None:
    """The reply to a :func:`publish_now`: hand it on, unless the caller gave up on it."""
    if result.called:
        return
    if isinstance(reply, Failure):
        result.errback(reply)
    elif isinstance(reply, Exception):
        result.errback(Failure(reply))
    else:
        result.callback(reply)
