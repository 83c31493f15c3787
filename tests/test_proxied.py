"""Listeners behind a load balancer (``--listen haproxy:...``): the PROXY header first, then the chat."""

from __future__ import annotations

import socket
import struct

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from chatservice.server.proxied import LONGEST_HEADER, ProxiedConnection, ProxiedFactory, proxied
from chatservice.tap import Options
from tests.support import SAMPLE_ACCOUNTS, ChatHarness

BALANCER = IPv4Address("TCP", "192.0.2.1", 51000)
"""Where every proxied connection comes from on the socket."""


def v1(source: str, port: int = 40001) -> bytes:
    return f"PROXY TCP4 {source} 198.51.100.9 {port} 4119\r\n".encode()


def v2(source: str, port: int = 40001) -> bytes:
    """A PROXY v2 header (PROXY command, TCP over IPv4)."""
    addresses = socket.inet_aton(source) + socket.inet_aton("198.51.100.9") + struct.pack("!HH", port, 4119)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


class ProxiedTests(unittest.TestCase):
    def setUp(self) -> None:
        self.harness = ChatHarness(login_deadline=8, max_connections_per_address=1)
        self.factory = ProxiedFactory(self.harness.factory, self.harness.clock, 8)

    def tearDown(self) -> None:
        for protocol in list(self.factory.protocols):
            protocol.connectionLost(None)
        self.assertEqual(self.harness.clock.getDelayedCalls(), [])

    def open(self) -> tuple[ProxiedConnection, StringTransport]:
        wrapper = self.factory.buildProtocol(BALANCER)
        transport = StringTransport(peerAddress=BALANCER)
        wrapper.makeConnection(transport)
        return wrapper, transport

    def test_the_chat_sees_the_client_address_of_a_v1_header(self) -> None:
        wrapper, transport = self.open()
        self.assertEqual(transport.value(), b"", "nothing is said before the header")
        self.assertEqual(self.harness.factory.connections, set())
        wrapper.dataReceived(v1("203.0.113.5"))
        self.assertTrue(wrapper.connected_inside)
        self.assertEqual(wrapper.wrappedProtocol.connection.host, "203.0.113.5")
        self.assertIn(b"Username:", transport.value())
        self.assertEqual(wrapper.getPeer().host, "203.0.113.5")
        self.assertEqual(wrapper.getHost().host, "198.51.100.9")

    def test_a_v2_header_split_anywhere_and_the_login_after_it(self) -> None:
        wrapper, transport = self.open()
        data = v2("203.0.113.6") + b"yoda\r\n" + SAMPLE_ACCOUNTS["yoda"].encode() + b"\r\n"
        for at in range(0, len(data), 3):
            wrapper.dataReceived(data[at:at + 3])
        self.assertEqual(wrapper.wrappedProtocol.connection.host, "203.0.113.6")
        self.assertIn("yoda", self.harness.state.sessions)
        self.assertEqual(self.harness.state.sessions["yoda"].client.host, "203.0.113.6")

    def test_the_per_address_cap_counts_client_addresses_not_the_balancer(self) -> None:
        first, _ = self.open()
        first.dataReceived(v1("203.0.113.7"))
        other, other_transport = self.open()
        other.dataReceived(v1("203.0.113.8"))
        self.assertFalse(other_transport.disconnecting, "another client of the same balancer is let in")
        again, again_transport = self.open()
        again.dataReceived(v1("203.0.113.7", 40002))
        self.assertIn(b"too many connections", again_transport.value().lower())

    def test_no_header_is_aborted_before_the_chat_sees_it(self) -> None:
        wrapper, transport = self.open()
        wrapper.dataReceived(b"yoda\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertFalse(wrapper.connected_inside)
        self.assertEqual(self.harness.factory.connections, set())

    def test_a_malformed_or_overlong_header_is_aborted(self) -> None:
        wrapper, transport = self.open()
        wrapper.dataReceived(b"PROXY TCP4 not-an-address\r\n")
        self.assertTrue(transport.disconnecting)
        wrapper, transport = self.open()
        wrapper.dataReceived(b"PROXY " + b"9" * 200)
        self.assertTrue(transport.disconnecting)
        wrapper, transport = self.open()
        wrapper.dataReceived(v2("203.0.113.9")[:14] + struct.pack("!H", 60000) + b"\x00" * (LONGEST_HEADER + 10))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.harness.factory.connections, set())

    def test_headers_the_parser_lets_through_but_that_are_no_addresses_are_aborted(self) -> None:
        for header in (
            b"PROXY TCP4 203.0.113.5 198.51.100.9 abc 4119\r\n",
            b"PROXY TCP4 203.0.113.5 198.51.100.9 99999 4119\r\n",
            b"PROXY TCP4 \xff\xfe 198.51.100.9 40001 4119\r\n",
            b"PROXY TCP4 evil\x1b[2J 198.51.100.9 40001 4119\r\n",
        ):
            wrapper, transport = self.open()
            wrapper.dataReceived(header)
            self.assertTrue(transport.disconnecting, header)
            self.assertFalse(wrapper.connected_inside, header)
        self.assertEqual(self.harness.factory.connections, set())
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_a_header_that_never_comes_is_aborted_at_the_deadline(self) -> None:
        wrapper, transport = self.open()
        wrapper.dataReceived(b"PRO")
        self.harness.clock.advance(7.9)
        self.assertFalse(transport.disconnecting)
        self.harness.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        wrapper.connectionLost(None)
        self.assertFalse(self.factory.protocols)

    def test_a_connection_lost_before_its_header_stops_its_deadline(self) -> None:
        wrapper, _ = self.open()
        wrapper.connectionLost(None)
        self.assertEqual(self.harness.clock.getDelayedCalls(), [])

    def test_a_health_check_without_addresses_keeps_the_socket_s_address(self) -> None:
        # HAProxy's checks send a v2 LOCAL header: no addresses.
        wrapper, _ = self.open()
        wrapper.dataReceived(b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00]) + b"\x00\x00")
        self.assertTrue(wrapper.connected_inside)
        self.assertEqual(wrapper.wrappedProtocol.connection.host, BALANCER.host)

    def test_a_v1_header_of_unknown_addresses_is_refused(self) -> None:
        # Twisted's v1 parser has no UNKNOWN: balancers are told to send v2 (docs/cluster.rst).
        wrapper, transport = self.open()
        wrapper.dataReceived(b"PROXY UNKNOWN\r\n")
        self.assertTrue(transport.disconnecting)


class ListenOptionTests(unittest.TestCase):
    def test_haproxy_prefix(self) -> None:
        self.assertEqual(proxied("haproxy:tcp:4119"), "tcp:4119")
        self.assertIsNone(proxied("tcp:4119"))

    def test_options_accept_a_proxied_listener_and_refuse_a_bad_one(self) -> None:
        from twisted.python import usage

        options = Options()
        options.parseOptions(["--listen", "haproxy:tcp:0:interface=127.0.0.1", "--store", "memory"])
        self.assertEqual(options["listen"], ["haproxy:tcp:0:interface=127.0.0.1"])
        with self.assertRaises(usage.UsageError):
            Options().parseOptions(["--listen", "haproxy:nonsense:1", "--store", "memory"])
        with self.assertRaises(usage.UsageError) as raised:
            Options().parseOptions(["--listen", "haproxy:ssl:4120:privateKey=k.pem", "--store", "memory"])
        self.assertIn("terminate TLS at the balancer", str(raised.exception))
