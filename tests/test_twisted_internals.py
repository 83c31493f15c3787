"""The Twisted internals the project relies on: the output path's, on a real loopback socket.

:class:`~chatservice.server.output.ConnectionWriter` writes straight to a
TCP socket when Twisted holds nothing for it, which needs fields that are
not Twisted's public API: ``FileDescriptor.dataBuffer`` and ``_tempDataLen``
(its two output buffers) and ``_aborting`` (set by ``abortConnection``), and
sends on the socket ``getHandle`` returns.  To count a client's backlog it also
reads ``FileDescriptor.offset`` and, over TLS, the
:class:`~twisted.protocols.tls.TLSMemoryBIOProtocol`'s ``_appSendBuffer``
and its small-write ``_aggregator``'s ``_buffer``
(:func:`~chatservice.server.output.transport_backlog`).  If a Twisted release
renames or drops any of them, the first tests here fail and say which,
instead of the server silently reordering or losing output, or no longer
counting it.

:mod:`chatservice.server.proxied` reads PROXY headers with Twisted's own
parsers, which are in private modules of ``twisted.protocols.haproxy``:
:class:`ProxyParserTests` fails, naming them, if they move or change.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.internet import defer, protocol, reactor, ssl, tcp
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.trial import unittest

from chatservice.server.output import transport_backlog, write_now, writes_directly
from tests.certs import make_certificates
from tests.test_output_batching import Collector, sleep, wait_until


class ServerSide(protocol.Protocol):
    """Hands its (real TCP) transport to the test once connected."""

    def connectionMade(self) -> None:
        self.factory.made.callback(self.transport)


class LoopbackTestCase(unittest.TestCase):
    async def connect(self) -> tuple[tcp.Connection, Collector]:
        server_factory = protocol.Factory.forProtocol(ServerSide)
        server_factory.made = defer.Deferred()
        port = reactor.listenTCP(0, server_factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = Collector()
        client_transport = await protocol.ClientCreator(reactor, lambda: client).connectTCP(
            "127.0.0.1", port.getHost().port
        )
        server_transport = await server_factory.made

        async def close() -> None:
            server_transport.abortConnection()
            client_transport.transport.abortConnection()
            await client.lost

        self.addCleanup(lambda: defer.ensureDeferred(close()))
        return server_transport, client


class TwistedInternalsTests(LoopbackTestCase):
    """Fails loudly when this Twisted lacks what the output path uses."""

    async def test_the_fields_exist_with_the_meaning_relied_on(self) -> None:
        transport, _client = await self.connect()
        self.assertIsInstance(transport, tcp.Connection)
        missing = [
            name
            for name in ("dataBuffer", "offset", "_tempDataLen", "_tempDataBuffer", "disconnected", "getHandle", "TLS")
            if not hasattr(transport, name)
        ]
        self.assertEqual(missing, [], f"Twisted no longer has {missing}: see chatservice/server/output.py")
        # Empty buffers when nothing is queued; a write goes to the second one.
        self.assertEqual((transport.dataBuffer, transport._tempDataLen), (b"", 0))
        transport.write(b"queued\n")
        self.assertEqual(transport._tempDataLen, len(b"queued\n"))
        self.assertEqual(transport_backlog(transport), len(b"queued\n"))
        # The handle is the connection's non-blocking socket: a send says how much the kernel took.
        self.assertEqual(transport.getHandle().gettimeout(), 0.0)
        self.assertEqual(transport.getHandle().send(b"x"), 1)
        self.assertFalse(getattr(transport, "_aborting", None))
        transport.abortConnection()
        self.assertTrue(getattr(transport, "_aborting", None), "abortConnection no longer sets _aborting")


class WriteNowTests(LoopbackTestCase):
    """:func:`write_now` on a real loopback connection."""

    async def test_small_write_goes_straight_to_the_socket(self) -> None:
        transport, client = await self.connect()
        self.assertTrue(writes_directly(transport))
        write_now(transport, b"hello\n")
        # Nothing was left for Twisted to buffer or to watch the socket for.
        self.assertEqual(transport.dataBuffer, b"")
        self.assertEqual(transport._tempDataLen, 0)
        await wait_until(lambda: bytes(client.received) == b"hello\n")

    async def test_full_kernel_buffer_falls_back_to_the_transport_in_order(self) -> None:
        transport, client = await self.connect()
        client.transport.pauseProducing()  # the client stops reading
        chunk = 64 * 1024
        sent = []
        index = 0
        # Write until the kernel refuses and the transport starts buffering.
        while not (transport.dataBuffer or transport._tempDataLen):
            data = bytes([index % 251]) * chunk
            write_now(transport, data)
            sent.append(data)
            index += 1
            self.assertLess(index, 2000, "the kernel never filled up")
        # Later writes queue behind what the transport holds, even small ones.
        for tail in (b"x", b"y" * 10, b"z\n"):
            write_now(transport, tail)
            sent.append(tail)
        self.assertGreater(transport._tempDataLen + len(transport.dataBuffer), 0)
        client.transport.resumeProducing()
        expected = b"".join(sent)
        await wait_until(lambda: len(client.received) >= len(expected), timeout=20)
        self.assertEqual(bytes(client.received), expected)

    async def test_a_reset_connection_is_left_to_the_transport(self) -> None:
        """The socket's error (the peer reset it) is not raised: the transport takes the bytes and reports the loss."""
        transport, client = await self.connect()
        transport.pauseProducing()  # the server does not read, so it has not seen the reset yet
        client.transport.abortConnection()  # a TCP reset
        await client.lost
        await sleep(0.05)
        with self.assertRaises(OSError):
            transport.getHandle().send(b"probe")  # what write_now meets
        self.assertTrue(transport.connected)
        write_now(transport, b"nobody listens\n")  # must not raise
        self.assertEqual(transport._tempDataLen, len(b"nobody listens\n"))

    async def test_closing_connection_is_left_to_the_transport(self) -> None:
        transport, client = await self.connect()
        transport.loseConnection()
        write_now(transport, b"last words\n")
        # Not sent directly, but as Twisted sends writes after loseConnection.
        self.assertEqual(transport._tempDataLen, len(b"last words\n"))
        await client.lost
        self.assertEqual(bytes(client.received), b"last words\n")
        write_now(transport, b"too late\n")  # closed: must not raise
        self.assertEqual(bytes(client.received), b"last words\n")


class TLSInternalsTests(unittest.TestCase):
    """The TLS layer's buffers, read to count a TLS client's backlog."""

    async def test_tls_buffers_exist_with_the_meaning_relied_on(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="chat-tls-"))
        self.addCleanup(shutil.rmtree, directory, True)
        certs = make_certificates(directory)
        context = ssl.DefaultOpenSSLContextFactory(str(certs["key"]), str(certs["cert"]))
        factory = protocol.Factory.forProtocol(ServerSide)
        factory.made = defer.Deferred()
        port = reactor.listenSSL(0, factory, context, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = Collector()
        await protocol.ClientCreator(reactor, lambda: client).connectTCP("127.0.0.1", port.getHost().port)
        transport = await factory.made
        self.addCleanup(lambda: transport.abortConnection())
        self.assertIsInstance(transport, TLSMemoryBIOProtocol)
        missing = [name for name in ("_appSendBuffer", "_aggregator") if not hasattr(transport, name)]
        missing += [] if hasattr(getattr(transport, "_aggregator", None), "_buffer") else ["_aggregator._buffer"]
        self.assertEqual(missing, [], f"Twisted no longer has {missing}: see chatservice/server/output.py")
        # A small write waits in the aggregator for the turn; before the
        # handshake a large one waits in _appSendBuffer.
        transport.write(b"small")
        self.assertEqual(transport._aggregator._buffer, [b"small"])
        self.assertEqual(transport_backlog(transport), 5)
        transport.write(b"x" * 100_000)
        self.assertEqual(sum(map(len, transport._appSendBuffer)), 100_005)
        self.assertEqual(transport_backlog(transport), 100_005)


class ProxyParserTests(unittest.TestCase):
    """The PROXY header parsers of ``twisted.protocols.haproxy`` that ``--listen haproxy:`` uses."""

    def test_the_parsers_are_where_proxied_imports_them_from_and_parse(self) -> None:
        from twisted.protocols.haproxy import _exceptions, _v1parser, _v2parser

        self.assertTrue(issubclass(_exceptions.InvalidNetworkProtocol, _exceptions.InvalidProxyHeader))
        self.assertEqual(_v1parser.V1Parser.PROXYSTR, b"PROXY")
        self.assertEqual(_v2parser.V2Parser.PREFIX, b"\r\n\r\n\x00\r\nQUIT\n")
        info, rest = _v1parser.V1Parser().feed(b"PROXY TCP4 203.0.113.5 198.51.100.9 40001 4119\r\nyoda")
        self.assertEqual((info.source.host, info.source.port, info.destination.port, rest),
                         ("203.0.113.5", 40001, 4119, b"yoda"))
        self.assertEqual(_v1parser.V1Parser().feed(b"PROXY TCP4 203.0.113.5"), (None, None))
        local = _v2parser.V2Parser.PREFIX + bytes([0x20, 0x00]) + b"\x00\x00"
        info, rest = _v2parser.V2Parser().feed(local + b"x")
        self.assertEqual((info.source, rest), (None, b"x"))
        tcp4 = _v2parser.V2Parser.PREFIX + bytes([0x21, 0x11]) + b"\x00\x0c" + bytes(range(1, 13))
        parser = _v2parser.V2Parser()
        self.assertEqual(parser.feed(tcp4[:20]), (None, None))
        self.assertEqual(parser.buffer, tcp4[:20], "proxied.py reads the parser's buffer to bound a header")
