"""Peer-to-peer private chat: the HELLO/OK line protocol and the token checks, over iosim."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial import unittest

from chatservice.client import peer
from chatservice.client.peer import PeerFactory, PeerProtocol, Phase
from chatservice.client.private import PrivateChats

TOKEN = "a" * 32


class Recorder:
    """A PrivateChatListener that keeps what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self.answers: list[defer.Deferred[bool]] = []

    def private_started(self, user: str) -> None:
        self.events.append(("started", user))

    def private_message(self, user: str, text: str) -> None:
        self.events.append(("message", user, text))

    def private_ended(self, user: str, reason: str) -> None:
        self.events.append(("ended", user, reason))

    def private_failed(self, user: str, reason: str) -> None:
        self.events.append(("failed", user, reason))

    def private_offered(self, user: str) -> defer.Deferred[bool]:
        """Accepted at once, unless a test put a Deferred in :attr:`answers`."""
        if self.answers:
            self.events.append(("offered", user))
        return self.answers.pop(0) if self.answers else defer.succeed(True)

    def private_waiting(self, user: str) -> None:
        self.events.append(("waiting", user))

    def take(self) -> list[tuple[str, ...]]:
        events, self.events = self.events, []
        return events


class PeerNetwork:
    """Connects initiator protocols to listeners (PeerFactory) by port, through iosim pumps."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.listeners: dict[int, PeerFactory] = {}
        self.pumps: list[iosim.IOPump] = []
        self.accepted: list[PeerProtocol | None] = []
        self.source = "127.0.0.1"
        """The address initiators connect from."""

    def connect(self, host: str, port: int, protocol: PeerProtocol) -> defer.Deferred[Any]:
        """Connect ``protocol`` from :attr:`source` to the listener on ``port``."""
        factory = self.listeners.get(port)
        if factory is None:
            return defer.fail(ConnectionRefusedError(host, port))
        server = factory.buildProtocol(IPv4Address("TCP", self.source, 40000))
        self.accepted.append(server)
        if server is None:
            return defer.fail(ConnectionRefusedError(host, port))
        server_transport = iosim.FakeTransport(server, isServer=True)
        client_transport = iosim.FakeTransport(protocol, isServer=False)
        self.pumps.append(
            iosim.connect(server, server_transport, protocol, client_transport, clock=self.clock)
        )
        return defer.succeed(protocol)

    def raw(self, port: int, source: str = "127.0.0.1") -> tuple[iosim.IOPump, PeerProtocol, RawClient]:
        """A connection from a raw line sender (not a PeerProtocol) at ``source`` to the listener on ``port``.

        A refused connection (no protocol built) comes back already lost, with no pump.
        """
        server = self.listeners[port].buildProtocol(IPv4Address("TCP", source, 40000))
        client = RawClient()
        if server is None:
            client.lost = True
            return None, None, client  # type: ignore[return-value]
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, isServer=True),
            client,
            iosim.FakeTransport(client, isServer=False),
            clock=self.clock,
        )
        self.pumps.append(pump)
        return pump, server, client

    def flush(self) -> None:
        for _ in range(10):
            moved = False
            for pump in self.pumps:
                moved = pump.flush() or moved
            if not moved:
                return


class RawClient(iosim.Protocol):
    """Sends whatever the test says and records what comes back."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


class PrivateChatTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.network = PeerNetwork(self.clock)
        self.yoda_events, self.hans_events = Recorder(), Recorder()
        self.yoda = PrivateChats(self.clock, self.yoda_events, self.network.connect)
        self.hans = PrivateChats(self.clock, self.hans_events, self.network.connect)
        self.yoda.username, self.hans.username = "yoda", "hans"
        self.network.listeners[6001] = PeerFactory(self.yoda, self.clock)
        self.network.listeners[6002] = PeerFactory(self.hans, self.clock)

    def tearDown(self) -> None:
        self.yoda.close_all()
        self.hans.close_all()
        self.network.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def open_session(self) -> None:
        """yoda opens a private chat with hans; both see it start."""
        self.hans.expect("yoda", TOKEN)
        self.yoda.start("hans", "127.0.0.1", 6002, TOKEN)
        self.network.flush()
        self.assertEqual(self.yoda_events.take(), [("started", "hans")])
        self.assertEqual(self.hans_events.take(), [("started", "yoda")])


class AskingTests(PrivateChatTestCase):
    """The target's user decides: ``WAIT``, then ``OK`` or ``ERR declined``; the wait outlasts the handshake timeout."""

    def test_accepted_after_a_while(self) -> None:
        answer: defer.Deferred[bool] = defer.Deferred()
        self.hans_events.answers.append(answer)
        self.hans.expect("yoda", TOKEN)
        pump, server, raw = self.network.raw(6002)
        raw.transport.write(f"HELLO yoda {TOKEN}\n".encode())
        pump.flush()
        self.assertEqual(raw.received, b"WAIT\n")
        self.assertEqual(self.hans_events.take(), [("offered", "yoda")])
        self.clock.advance(peer.HANDSHAKE_TIMEOUT + 5)
        pump.flush()
        self.assertIs(server.phase, Phase.HANDSHAKE)
        answer.callback(True)
        pump.flush()
        self.assertEqual(raw.received, b"WAIT\nOK hans\n")
        self.assertEqual(self.hans_events.take(), [("started", "yoda")])

    def test_declined(self) -> None:
        answer: defer.Deferred[bool] = defer.Deferred()
        self.hans_events.answers.append(answer)
        self.hans.expect("yoda", TOKEN)
        self.yoda.start("hans", "127.0.0.1", 6002, TOKEN)
        self.network.flush()
        self.assertEqual(self.yoda_events.take(), [("waiting", "hans")])
        self.clock.advance(peer.HANDSHAKE_TIMEOUT + 5)
        self.network.flush()
        self.assertEqual(self.yoda_events.take(), [])
        answer.callback(False)
        self.network.flush()
        self.assertEqual(self.yoda_events.take(), [("failed", "hans", "hans declined")])
        self.assertEqual(self.hans_events.take(), [("offered", "yoda")])
        self.assertFalse(self.hans.is_open("yoda"))

    def test_no_answer_ever_is_a_timeout(self) -> None:
        self.hans_events.answers.append(defer.Deferred())
        self.hans.expect("yoda", TOKEN)
        self.yoda.start("hans", "127.0.0.1", 6002, TOKEN)
        self.network.flush()
        self.clock.advance(peer.ASK_TIMEOUT + peer.HANDSHAKE_TIMEOUT)
        self.network.flush()
        self.assertEqual(self.yoda_events.take()[-1], ("failed", "hans", "the handshake took too long"))


class SessionTests(PrivateChatTestCase):
    def test_messages_both_ways(self) -> None:
        self.open_session()
        self.assertTrue(self.yoda.send("hans", "this goes straight to hans"))
        self.assertTrue(self.hans.send("yoda", "héllo ✓"))
        self.network.flush()
        self.assertEqual(
            self.hans_events.take(), [("message", "yoda", "this goes straight to hans")]
        )
        self.assertEqual(self.yoda_events.take(), [("message", "hans", "héllo ✓")])

    def test_the_wire_format(self) -> None:
        self.hans.expect("yoda", TOKEN)
        pump, server, raw = self.network.raw(6002)
        raw.transport.write(f"HELLO yoda {TOKEN}\r\n".encode())
        pump.flush()
        self.assertEqual(raw.received, b"OK hans\n")
        raw.transport.write(b"first line\nsecond\r\n\n")
        pump.flush()
        self.assertEqual(
            self.hans_events.take(),
            [("started", "yoda"), ("message", "yoda", "first line"), ("message", "yoda", "second")],
        )
        self.hans.send("yoda", "line\nbreaks\rgone")
        pump.flush()
        self.assertEqual(raw.received, b"OK hans\nline breaks gone\n")

    def test_control_characters_are_removed(self) -> None:
        self.open_session()
        self.yoda.sessions["hans"].transport.write(b"\x1b[31mred\x07\n")
        self.network.flush()
        self.assertEqual(self.hans_events.take(), [("message", "yoda", "[31mred")])

    def test_no_session_no_send(self) -> None:
        self.assertFalse(self.yoda.send("hans", "hi"))
        self.assertFalse(self.yoda.stop("hans"))
        self.assertFalse(self.yoda.is_open("hans"))

    def test_stop_tells_the_other_side(self) -> None:
        self.open_session()
        self.assertTrue(self.yoda.stop("hans"))
        self.network.flush()
        self.assertEqual(self.yoda_events.take(), [])
        self.assertEqual(self.hans_events.take(), [("ended", "yoda", "the connection closed")])
        self.assertFalse(self.yoda.is_open("hans"))
        self.assertFalse(self.hans.is_open("yoda"))

    def test_stop_from_the_target(self) -> None:
        self.open_session()
        self.hans.stop("yoda")
        self.network.flush()
        self.assertEqual(self.yoda_events.take(), [("ended", "hans", "the connection closed")])

    def test_close_all_closes_quietly(self) -> None:
        self.open_session()
        self.assertEqual(self.yoda.close_all(), ["hans"])
        self.network.flush()
        self.assertEqual(self.yoda_events.take(), [])
        self.assertEqual(self.hans_events.take(), [("ended", "yoda", "the connection closed")])

    def test_a_new_session_replaces_the_old(self) -> None:
        self.open_session()
        first = self.hans.sessions["yoda"]
        self.hans.expect("yoda", "b" * 32)
        self.yoda.start("hans", "127.0.0.1", 6002, "b" * 32)
        self.network.flush()
        self.assertIsNot(self.hans.sessions["yoda"], first)
        self.assertEqual(self.hans_events.take(), [("started", "yoda")])
        self.assertEqual(self.yoda_events.take(), [("started", "hans")])
        self.yoda.send("hans", "still works")
        self.network.flush()
        self.assertEqual(self.hans_events.take(), [("message", "yoda", "still works")])


class TokenTests(PrivateChatTestCase):
    def test_wrong_token_is_refused(self) -> None:
        self.hans.expect("yoda", TOKEN)
        self.yoda.start("hans", "127.0.0.1", 6002, "b" * 32)
        self.network.flush()
        self.assertEqual(
            self.yoda_events.take(),
            [("failed", "hans", "hans refused: no private chat was arranged with that token")],
        )
        self.assertEqual(self.hans_events.take(), [])
        # The genuine token still works once.
        self.yoda.start("hans", "127.0.0.1", 6002, TOKEN)
        self.network.flush()
        self.assertEqual(self.yoda_events.take(), [("started", "hans")])

    def test_token_of_another_initiator_is_refused(self) -> None:
        self.hans.expect("luke", TOKEN)
        self.yoda.start("hans", "127.0.0.1", 6002, TOKEN)
        self.network.flush()
        self.clock.advance(peer.HANDSHAKE_TIMEOUT)
        self.network.flush()
        self.assertEqual(self.yoda_events.take()[-1], ("failed", "hans", "the handshake took too long"))
        self.assertEqual(self.hans.sessions, {})
        self.hans.close_all()

    def test_token_is_used_once(self) -> None:
        self.open_session()
        self.yoda.stop("hans")
        self.network.flush()
        self.hans_events.take()
        self.yoda.start("hans", "127.0.0.1", 6002, TOKEN)
        self.network.flush()
        self.clock.advance(5)
        self.network.flush()
        [(kind, user, reason)] = self.yoda_events.take()
        self.assertEqual((kind, user), ("failed", "hans"))
        self.assertIn("no private chat was arranged", reason)

    def test_token_expires(self) -> None:
        self.hans.expect("yoda", TOKEN)
        self.clock.advance(60)
        self.yoda.start("hans", "127.0.0.1", 6002, TOKEN)
        self.network.flush()
        self.clock.advance(5)
        self.network.flush()
        [(kind, _user, _reason)] = self.yoda_events.take()
        self.assertEqual(kind, "failed")

    def test_hello_before_the_servers_note_waits_for_it(self) -> None:
        self.yoda.start("hans", "127.0.0.1", 6002, TOKEN)
        self.network.flush()
        self.assertEqual(self.yoda_events.take(), [])
        self.clock.advance(1)
        self.hans.expect("yoda", TOKEN)
        self.network.flush()
        self.assertEqual(self.yoda_events.take(), [("started", "hans")])
        self.assertEqual(self.hans_events.take(), [("started", "yoda")])

    def test_hello_whose_note_never_comes_is_refused(self) -> None:
        self.yoda.start("hans", "127.0.0.1", 6002, TOKEN)
        self.network.flush()
        self.clock.advance(5)
        self.network.flush()
        [(kind, _user, reason)] = self.yoda_events.take()
        self.assertEqual(kind, "failed")
        self.assertIn("refused", reason)


class HostilePeerTests(PrivateChatTestCase):
    def test_garbage_first_line_is_dropped(self) -> None:
        pump, server, raw = self.network.raw(6002)
        raw.transport.write(b"GET / HTTP/1.1\r\n")
        pump.flush()
        self.assertEqual(raw.received, b"ERR expected HELLO <user> <token>\n")
        self.assertTrue(raw.lost)
        self.assertEqual(self.hans_events.take(), [])

    def test_bad_utf8_hello_is_dropped(self) -> None:
        pump, server, raw = self.network.raw(6002)
        raw.transport.write(b"HELLO \xff\xfe token\n")
        pump.flush()
        self.assertTrue(raw.lost)

    def test_flood_without_newline_is_dropped(self) -> None:
        pump, server, raw = self.network.raw(6002)
        raw.transport.write(b"x" * (peer.MAX_HANDSHAKE_LINE + 10))
        pump.flush()
        self.assertTrue(raw.lost)
        self.assertEqual(self.hans_events.take(), [])

    def test_flood_after_the_handshake_is_dropped(self) -> None:
        self.hans.expect("yoda", TOKEN)
        pump, server, raw = self.network.raw(6002)
        raw.transport.write(f"HELLO yoda {TOKEN}\n".encode())
        pump.flush()
        raw.transport.write(b"y" * (peer.MAX_MESSAGE_BYTES + 10))
        pump.flush()
        self.assertTrue(raw.lost)
        self.assertEqual(
            self.hans_events.take(),
            [("started", "yoda"), ("ended", "yoda", "a line was too long")],
        )

    def test_silent_peer_times_out(self) -> None:
        pump, server, raw = self.network.raw(6002)
        self.clock.advance(peer.HANDSHAKE_TIMEOUT)
        pump.flush()
        self.assertTrue(raw.lost)

    def test_silent_peer_is_dropped_within_three_seconds(self) -> None:
        pump, server, raw = self.network.raw(6002)
        self.clock.advance(2.9)
        pump.flush()
        self.assertFalse(raw.lost)
        self.clock.advance(0.1)
        pump.flush()
        self.assertTrue(raw.lost)
        self.assertEqual(server.refusal, "no HELLO within 3 seconds")

    def test_a_hello_still_waits_for_the_servers_note(self) -> None:
        self.yoda.start("hans", "127.0.0.1", 6002, TOKEN)
        self.network.flush()
        self.clock.advance(4)
        self.hans.expect("yoda", TOKEN)
        self.network.flush()
        self.assertEqual(self.yoda_events.take(), [("started", "hans")])

    def idle(self, count: int, source: str = "127.0.0.1") -> list[RawClient]:
        """``count`` raw connections to hans that send nothing."""
        raws = [self.network.raw(6002, source)[2] for _ in range(count)]
        self.network.flush()
        return raws

    def test_idle_connections_do_not_block_a_private_chat(self) -> None:
        # Issue 15, item 10: 17 idle connections made the next private chat fail for 10 s.
        raws = self.idle(17)
        self.open_session()
        self.assertLessEqual(sum(not raw.lost for raw in raws), peer.MAX_HANDSHAKES_PER_ADDRESS - 1)

    def test_one_address_holds_a_few_handshakes(self) -> None:
        raws = self.idle(17, "127.0.0.66")
        self.assertEqual([raw.lost for raw in raws], [True] * 13 + [False] * 4)
        self.network.source = "127.0.0.7"
        self.open_session()
        self.assertEqual(sum(not raw.lost for raw in raws), peer.MAX_HANDSHAKES_PER_ADDRESS)

    def test_the_most_crowded_address_makes_room(self) -> None:
        crowd = self.idle(peer.MAX_HANDSHAKES_PER_ADDRESS, "127.0.0.66")
        loners = [raw for n in range(peer.MAX_HANDSHAKES - len(crowd)) for raw in self.idle(1, f"127.0.1.{n}")]
        self.assertFalse(any(raw.lost for raw in crowd + loners))
        self.network.source = "127.0.0.7"
        self.open_session()
        self.assertEqual([raw.lost for raw in crowd], [True] + [False] * (len(crowd) - 1))
        self.assertFalse(any(raw.lost for raw in loners))

    def test_false_hellos_do_not_block_a_private_chat(self) -> None:
        for _ in range(17):
            pump, server, raw = self.network.raw(6002)
            raw.transport.write(f"HELLO luke {'c' * 32}\n".encode())
        self.network.flush()
        self.open_session()
        self.clock.advance(peer.HANDSHAKE_TIMEOUT)
        self.network.flush()
        self.hans.close_all()

    def test_target_answering_another_name_is_dropped(self) -> None:
        server_side = RawClient()
        protocol = PeerProtocol(self.yoda, self.clock, peer_name="hans", token=TOKEN)
        self.yoda._starting["hans"] = protocol
        pump = iosim.connect(
            server_side,
            iosim.FakeTransport(server_side, isServer=True),
            protocol,
            iosim.FakeTransport(protocol, isServer=False),
            clock=self.clock,
        )
        self.assertEqual(server_side.received, f"HELLO yoda {TOKEN}\n".encode())
        server_side.transport.write(b"OK vader\n")
        pump.flush()
        self.assertEqual(
            self.yoda_events.take(), [("failed", "hans", "hans answered something unexpected")]
        )
        self.assertIs(protocol.phase, Phase.CLOSED)


class ConnectFailureTests(PrivateChatTestCase):
    def test_nobody_listening(self) -> None:
        self.yoda.start("hans", "127.0.0.1", 6999, TOKEN)
        [(kind, user, reason)] = self.yoda_events.take()
        self.assertEqual((kind, user), ("failed", "hans"))
        self.assertIn("could not connect to hans", reason)
        self.assertFalse(self.yoda.is_starting("hans"))

    def test_starting_is_tracked(self) -> None:
        pending: defer.Deferred[Any] = defer.Deferred()
        self.yoda.connect = lambda host, port, protocol: pending
        self.yoda.start("hans", "127.0.0.1", 6002, TOKEN)
        self.assertTrue(self.yoda.is_starting("hans"))
        pending.errback(ConnectionRefusedError())
        self.assertFalse(self.yoda.is_starting("hans"))
        self.assertEqual(self.yoda_events.take()[0][0], "failed")


class TcpConnectorTests(unittest.TestCase):
    def test_connects_with_the_reactor(self) -> None:
        from twisted.internet.testing import MemoryReactorClock

        reactor = MemoryReactorClock()
        connect = peer.tcp_connector(reactor)
        d = connect("127.0.0.1", 6002, PeerProtocol(None, reactor, "hans", TOKEN))  # type: ignore[arg-type]
        [(host, port, _factory, timeout, _bind)] = reactor.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 6002, peer.CONNECT_TIMEOUT))
        d.cancel()
        self.failureResultOf(d)
