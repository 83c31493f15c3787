"""Every byte queued for a client counts towards its backlog: on real TCP and TLS sockets.

A :class:`~chatservice.server.output.ConnectionWriter` on the server side of a
loopback connection whose client does not read.  A single large reply must
count at once (it used to count only what was written after Twisted reported
a full buffer, so a 25 MB ``read`` reply was never counted), whether it waits
in the writer's batch, in Twisted's TCP buffers, or in the TLS layer.  The
writer's timers run on a :class:`Clock`; the bytes travel over the reactor.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import tracemalloc
from pathlib import Path

from twisted.internet import defer, protocol, reactor, ssl, tcp
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.trial import unittest

from chatservice import events
from chatservice.server.output import (
    ConnectionWriter,
    OutputBatcher,
    release_buffers,
    transport_backlog,
)
from chatservice.server.policy import ConnectionPolicy
from chatservice.wire import JSON
from tests.certs import make_certificates
from tests.test_limits import RecordingOwner
from tests.test_output_batching import Collector, wait_until
from tests.test_twisted_internals import LoopbackTestCase, ServerSide

POLICY = ConnectionPolicy(output_soft_limit=256 * 1024, output_hard_limit=1024 * 1024)


def reply(size: int) -> events.Event:
    """A reply of about ``size`` bytes."""
    return events.ErrorReply("x", "y" * size)


class BacklogOnTCPTests(LoopbackTestCase):
    """A non-reading client on real TCP."""

    async def writer(self, batched: bool = False) -> tuple[ConnectionWriter, RecordingOwner, Clock, Collector]:
        transport, client = await self.connect()
        client.transport.pauseProducing()  # the client stops reading
        owner, clock = RecordingOwner(), Clock()
        batcher = OutputBatcher(clock) if batched else None
        writer = ConnectionWriter(transport, JSON, POLICY, clock, batcher, owner)
        return writer, owner, clock, client

    async def test_one_huge_reply_is_counted_and_closes_the_connection(self) -> None:
        # Batched, as every TCP connection's output is.
        writer, owner, _clock, _client = await self.writer(batched=True)
        writer.send(reply(2 * 1024 * 1024))
        self.assertTrue(writer.closed, "2 MiB unread is past the 1 MiB hard limit")
        (told,) = owner.told
        self.assertGreater(told, POLICY.output_hard_limit)

    async def test_batched_bytes_count(self) -> None:
        writer, _owner, _clock, _client = await self.writer(batched=True)
        writer.send(reply(100_000))
        self.assertGreater(writer.backlog, 100_000, "waiting in the batch")
        self.assertFalse(writer.congested)
        writer.send(reply(200_000))
        self.assertTrue(writer.congested)
        writer.flush_output()
        # Now in the kernel and Twisted's buffers: what the kernel took no longer counts.
        self.assertLess(writer.backlog, 300_000)
        self.assertEqual(writer.backlog, transport_backlog(writer.transport))

    async def test_grace_spares_a_client_that_caught_up(self) -> None:
        writer, owner, clock, client = await self.writer()
        writer.send(reply(400_000))
        self.assertTrue(writer.congested)
        client.transport.resumeProducing()
        await wait_until(lambda: len(client.received) > 400_000)
        clock.advance(POLICY.slow_reader_grace)
        self.assertFalse(writer.closed)
        self.assertEqual(owner.told, [True], "told it caught up, never given up on")

    async def test_grace_closes_a_client_still_behind(self) -> None:
        writer, owner, clock, _client = await self.writer()
        writer.send(reply(400_000))
        clock.advance(POLICY.slow_reader_grace)
        self.assertTrue(writer.closed)
        self.assertEqual(len(owner.told), 1)


class ReleasedWhenLostTests(LoopbackTestCase):
    """What a lost connection's transport held goes back at once, not at the next full garbage collection."""

    async def test_lost_connection_releases_its_unsent_output(self) -> None:
        gc.disable()  # as between two full passes: only reference counts free memory
        self.addCleanup(gc.enable)
        transport, client = await self.connect()
        client.transport.pauseProducing()  # the client stops reading
        writer = ConnectionWriter(transport, JSON, POLICY, Clock(), None, RecordingOwner())
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        before, _peak = tracemalloc.get_traced_memory()
        writer.send(reply(900_000))  # under the hard limit: kept, waiting for the client
        self.assertFalse(writer.closed)
        held, _peak = tracemalloc.get_traced_memory()
        self.assertGreater(held - before, 800_000)
        client.transport.abortConnection()  # the client gives up
        await wait_until(lambda: transport.disconnected)
        writer.connection_lost()  # as the connection does when its transport is lost
        after, _peak = tracemalloc.get_traced_memory()
        self.assertLess(after - before, 100_000, "the unsent bytes are freed though the transport lives on")
        self.assertEqual(transport_backlog(transport), 0)

    async def test_nothing_dropped_while_still_connected(self) -> None:
        transport, client = await self.connect()
        client.transport.pauseProducing()
        transport.write(b"x" * 300_000)
        self.assertEqual(release_buffers(transport), 0)
        self.assertGreater(transport_backlog(transport), 0)
        client.transport.resumeProducing()
        await wait_until(lambda: len(client.received) == 300_000)


class BacklogOnTLSTests(unittest.TestCase):
    """Before its handshake, what is written to a TLS connection waits in the TLS layer, and counts."""

    async def test_bytes_held_by_the_tls_layer_count(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="chat-tls-"))
        self.addCleanup(shutil.rmtree, directory, True)
        certs = make_certificates(directory)
        context = ssl.DefaultOpenSSLContextFactory(str(certs["key"]), str(certs["cert"]))
        factory = protocol.Factory.forProtocol(ServerSide)
        factory.made = defer.Deferred()
        port = reactor.listenSSL(0, factory, context, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = Collector()
        # A plain TCP client: the handshake never starts.
        await protocol.ClientCreator(reactor, lambda: client).connectTCP("127.0.0.1", port.getHost().port)
        transport = await factory.made
        self.assertIsInstance(transport, TLSMemoryBIOProtocol)
        self.assertIsInstance(transport.transport, tcp.Connection)

        async def close() -> None:
            transport.abortConnection()
            client.transport.abortConnection()
            await client.lost

        self.addCleanup(lambda: defer.ensureDeferred(close()))
        owner = RecordingOwner()
        writer = ConnectionWriter(transport, JSON, POLICY, Clock(), None, owner)
        for _ in range(5):  # each one small enough for the TLS layer to gather
            writer.send(reply(60_000))
        self.assertGreater(writer.backlog, 300_000)
        self.assertTrue(writer.congested)
        writer.send(reply(800_000))
        self.assertTrue(writer.closed)
        self.assertGreater(owner.told[0], POLICY.output_hard_limit)

    def test_unknown_transport_is_not_measured(self) -> None:
        self.assertIsNone(transport_backlog(object()))
