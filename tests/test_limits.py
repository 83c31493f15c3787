"""Limits that protect everyone: flood control, slow readers, connection caps, deadlines."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.ssl import DefaultOpenSSLContextFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial import unittest

from chatservice import events
from chatservice.server.connection import ChatConnection
from chatservice.server.output import ConnectionWriter
from chatservice.server.policy import ConnectionPolicy
from chatservice.wire import TEXT
from chatservice.server.flowcontrol import InputPacer, TokenBucket
from tests.certs import make_certificates
from tests.test_protocol import HarnessTestCase


class TokenBucketTests(unittest.TestCase):
    """A burst, then a steady rate."""

    def test_burst_then_rate(self) -> None:
        clock = Clock()
        bucket = TokenBucket(clock, burst=3, rate=2)
        self.assertEqual([bucket.take() for _ in range(3)], [0, 0, 0])
        self.assertEqual(bucket.take(), 0.5)
        self.assertEqual(bucket.take(), 1.0)
        clock.advance(1.0)
        self.assertEqual(bucket.take(), 0.5)
        self.assertFalse(bucket.full)
        clock.advance(10)
        self.assertTrue(bucket.full)
        self.assertEqual(bucket.tokens, 3)


class RecordingOwner:
    """A writer's owner that notes what it is told."""

    def __init__(self) -> None:
        self.told: list[object] = []

    def output_drained(self) -> None:
        self.told.append(True)

    def output_dropped(self) -> None:
        self.told.append("dropped")

    def output_abandoned(self, backlog: int) -> None:
        self.told.append(backlog)


class ConnectionWriterBacklogTests(unittest.TestCase):
    """The writer counts what is written while the transport is backed up."""

    def test_backlog(self) -> None:
        owner = RecordingOwner()
        drained = owner.told
        transport = StringTransport()
        writer = ConnectionWriter(transport, TEXT, ConnectionPolicy(), Clock(), None, owner)
        self.assertIs(transport.producer, writer)
        writer.send(events.ErrorReply("x", "y" * 98))
        self.assertEqual(writer.backlog, 0)
        writer.pauseProducing()
        writer.send(events.ErrorReply("x", "y" * 98))
        writer.send(events.ErrorReply("x", "y" * 48))
        self.assertEqual(writer.backlog, 150)
        writer.resumeProducing()
        self.assertEqual((writer.backlog, drained), (0, [True]))


class FloodTests(HarnessTestCase):
    """Lines beyond the bucket wait; nothing is lost; a long flood is closed."""

    harness_options = {"flood_burst": 5, "flood_rate": 1.0, "flood_limit": 10}

    def test_burst_passes_then_reading_pauses(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        self.harness.clock.advance(10)  # the bucket refills after the login lines
        yoda.protocol.dataReceived(b"".join(b"message hans m%d\r\n" % i for i in range(8)))
        # The 5 of the burst, plus the line that found the bucket empty.
        self.assertEqual(hans.lines(), [f"yoda: m{i}" for i in range(6)])
        self.assertEqual(yoda.transport.producerState, "paused")
        self.harness.clock.advance(1)
        self.assertEqual(hans.lines(), ["yoda: m6"])
        self.harness.clock.advance(1)
        self.assertEqual(hans.lines(), ["yoda: m7"])
        self.harness.clock.advance(1)
        self.assertEqual(yoda.transport.producerState, "producing")
        self.assertFalse(yoda.closed)

    def test_sustained_flood_disconnected(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.protocol.dataReceived(b"whoelse\r\n" * 100)
        for _ in range(20):
            self.harness.clock.advance(1)
            if yoda.closed:
                break
        self.assertTrue(yoda.closed)
        self.assertIn(
            "Disconnected: more than 1 lines a second for over 10 seconds.", yoda.lines()
        )

    def test_calm_user_never_throttled(self) -> None:
        (yoda,) = self.online("yoda")
        for _ in range(30):
            yoda.send("whoelse")
            self.harness.clock.advance(1)
        self.assertEqual(yoda.transport.producerState, "producing")
        self.assertFalse(yoda.closed)


class TurnTests(HarnessTestCase):
    """One connection's burst of lines leaves the others their turn."""

    harness_options = {"flood_burst": 1000, "flood_rate": 1000.0, "lines_per_turn": 4}

    def turns_waiting(self) -> int:
        return sum(
            "_turn" in repr(call) for call in self.harness.clock.getDelayedCalls()
        )

    def test_lines_beyond_the_turn_wait_for_the_next(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        turns: list[list[str]] = []
        take_turn = InputPacer._take_turn

        def recording_turn(pacer: InputPacer) -> None:
            take_turn(pacer)
            turns.append(hans.lines())

        self.patch(InputPacer, "_take_turn", recording_turn)
        yoda.protocol.dataReceived(b"".join(b"message hans m%d\r\n" % i for i in range(10)))
        self.assertEqual(hans.lines(), [f"yoda: m{i}" for i in range(4)])
        self.assertEqual(yoda.transport.producerState, "paused")
        self.assertEqual(self.turns_waiting(), 1)
        # (A Clock runs the turns scheduled meanwhile in the same advance.)
        self.harness.clock.advance(0)
        self.assertEqual(
            turns, [[f"yoda: m{i}" for i in range(4, 8)], ["yoda: m8", "yoda: m9"]]
        )
        self.assertEqual(yoda.transport.producerState, "producing")
        self.assertEqual(self.turns_waiting(), 0)

    def test_a_partial_line_does_not_end_the_turn(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.protocol.dataReceived(
            b"".join(b"message hans m%d\r\n" % i for i in range(4)) + b"message ha"
        )
        self.assertEqual(hans.lines(), [f"yoda: m{i}" for i in range(4)])
        self.assertEqual(self.turns_waiting(), 0)
        self.assertEqual(yoda.transport.producerState, "producing")

    def test_dropped_connection_cancels_its_next_turn(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.protocol.dataReceived(b"whoelse\r\n" * 10)
        self.assertEqual(self.turns_waiting(), 1)
        yoda.drop()
        self.assertEqual(self.turns_waiting(), 0)


class TurnBudgetTests(HarnessTestCase):
    """Costly lines end a connection's turn by time, not by count."""

    harness_options = {"flood_burst": 1000, "flood_rate": 1000.0, "turn_budget": 0.01}

    def test_turn_ends_when_its_time_is_spent(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        clock = self.harness.clock
        handle = ChatConnection._line

        def slow_line(connection: ChatConnection, line: bytes) -> None:
            handle(connection, line)
            clock.rightNow += 0.004  # each line "takes" 4 ms (no timers run)

        self.patch(ChatConnection, "_line", slow_line)
        yoda.protocol.dataReceived(b"".join(b"message hans m%d\r\n" % i for i in range(6)))
        # 0, 4 and 8 ms have passed before lines 1-3; the fourth finds 12 ms.
        self.assertEqual(hans.lines(), [f"yoda: m{i}" for i in range(4)])
        self.assertEqual(yoda.transport.producerState, "paused")
        clock.advance(0)
        self.assertEqual(hans.lines(), ["yoda: m4", "yoda: m5"])


class SlowReaderTests(HarnessTestCase):
    """A client that stops reading loses optional traffic, then the connection."""

    harness_options = {"output_soft_limit": 1000, "output_hard_limit": 5000}

    def test_soft_then_hard_limit(self) -> None:
        yoda, hans, luke = self.online("yoda", "hans", "luke")
        # The transport says its buffer is full: hans stopped reading.
        hans.connection.writer.pauseProducing()
        text = "x" * 200
        for _ in range(6):
            yoda.send(f"broadcast {text}")
        hans_backlog = hans.connection.writer.backlog
        self.assertGreater(hans_backlog, 1000)
        self.assertTrue(hans.connection.congested)
        hans.output()
        yoda.send(f"broadcast {text}")
        self.assertEqual(hans.output(), "", "broadcasts are dropped past the soft limit")
        self.assertIn(f"[broadcast] yoda: {text}", luke.output(), "others unaffected")
        yoda.output()
        yoda.send("message hans kept for later")
        self.assertEqual(hans.output(), "")
        self.assertEqual(
            yoda.lines(), ["hans is offline; your message will be delivered when they log in."]
        )
        # Catching up: the dropped count, then the kept message.
        dropped = hans.connection.writer._dropped
        self.assertGreaterEqual(dropped, 1)
        hans.connection.writer.resumeProducing()
        lines = hans.lines()
        self.assertTrue(lines[0].startswith(f"{dropped} notice(s) or broadcast(s) were not shown"))
        self.assertTrue(lines[1].endswith("] yoda: kept for later"))
        self.harness.run_due()  # written: forgotten
        self.assertEqual(self.harness.store.offline_messages("hans"), [])
        # Stops reading again but keeps asking: closed at the hard limit.
        hans.connection.writer.pauseProducing()
        for _ in range(10):
            hans.send("help")
        self.assertTrue(hans.connection.writer.closed)
        self.assertLess(hans.connection.writer.backlog, 5000 + 3000, "bounded")
        hans.drop()
        self.assertNotIn("hans", self.harness.state.sessions)
        yoda.send("message hans after the drop")
        self.assertEqual(self.harness.store.offline_messages("hans")[-1].text, "after the drop")


class ConnectionCapTests(HarnessTestCase):
    """Global and per-address caps."""

    harness_options = {"max_connections": 3, "max_connections_per_address": 2}

    def raw_connect(self, host: str) -> tuple[object, StringTransport]:
        address = IPv4Address("TCP", host, 5000)
        protocol = self.harness.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, None)
        return protocol, transport

    def test_per_address(self) -> None:
        self.raw_connect("192.0.2.1")
        self.raw_connect("192.0.2.1")
        _, transport = self.raw_connect("192.0.2.1")
        self.assertIn(b"Too many connections from your address.", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_global(self) -> None:
        for host in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            _, transport = self.raw_connect(host)
            self.assertFalse(transport.disconnecting)
        protocol, transport = self.raw_connect("192.0.2.4")
        self.assertIn(b"The server is full", transport.value())
        protocol.connectionLost(None)
        _, transport = self.raw_connect("192.0.2.5")
        self.assertIn(b"The server is full", transport.value(), "the refused one still counts until closed")


class LoginDeadlineTests(HarnessTestCase):
    """A connection has a fixed time to log in, however chatty."""

    harness_options = {"login_deadline": 20, "timeout": 600}

    def test_deadline_not_extended_by_lines(self) -> None:
        connection = self.connect()
        # Two unknown names and a blank line (a third unknown name would lock the address).
        for line in ("vader", "   ", "maul"):
            connection.send(line)
            self.harness.clock.advance(6)
        self.assertFalse(connection.closed)
        self.harness.clock.advance(2)
        self.assertTrue(connection.closed)
        self.assertTrue(connection.output().endswith("Username: Login timed out after 20 seconds.\r\n"))

    def test_login_switches_to_the_inactivity_timeout(self) -> None:
        (yoda,) = self.online("yoda")
        self.harness.clock.advance(100)
        self.assertFalse(yoda.closed)


class MessageSizeTests(HarnessTestCase):
    """A cap on message text."""

    harness_options = {"max_message_length": 10}

    def test_long_message_refused(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("message hans " + "y" * 11)
        self.assertEqual(yoda.lines(), ["Error. Messages are limited to 10 characters."])
        self.assertEqual(hans.output(), "")
        yoda.send("broadcast " + "y" * 10)
        self.assertEqual(hans.lines(), ["[broadcast] yoda: " + "y" * 10])


class SlowReaderGraceTests(HarnessTestCase):
    """A client that stays past the soft limit is closed after a grace period."""

    harness_options = {"output_soft_limit": 1000, "output_hard_limit": 10**9, "slow_reader_grace": 30}

    def test_closed_after_grace_unless_it_catches_up(self) -> None:
        yoda, hans, luke = self.online("yoda", "hans", "luke")
        for reader in (hans, luke):
            reader.connection.writer.pauseProducing()
        for _ in range(3):
            yoda.send("help")  # replies to yoda only: nobody congested yet
        for _ in range(6):
            yoda.send("broadcast " + "x" * 300)
        self.assertTrue(hans.connection.congested and luke.connection.congested)
        self.harness.clock.advance(20)
        luke.connection.writer.resumeProducing()  # luke catches up in time
        self.harness.clock.advance(10)
        self.assertTrue(hans.connection.writer.closed)
        self.assertNotIn("hans", self.harness.state.sessions)
        self.assertFalse(luke.connection.writer.closed)


class CloseDeadlineTests(HarnessTestCase):
    """A close that never completes (the client takes nothing more) is aborted."""

    harness_options = {"close_deadline": 10}

    def test_aborted_after_the_deadline(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("logout")
        self.assertTrue(yoda.closed)
        self.harness.clock.advance(9.9)
        self.assertFalse(yoda.transport.disconnected, "not aborted before its time")
        self.harness.clock.advance(0.2)
        self.assertTrue(yoda.transport.disconnected, "aborted")

    def test_completed_close_leaves_no_timer(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("logout")
        yoda.drop()
        self.assertEqual(self.harness.clock.getDelayedCalls(), [])


class TLSHandshakeDeadlineTests(HarnessTestCase):
    """Over TLS the handshake has a deadline; a connection refused before it is dropped at once."""

    harness_options = {"tls_handshake_deadline": 3, "login_deadline": 20, "max_connections": 1}

    def tls_connect(self) -> StringTransport:
        """A TLS connection (Twisted's TLS layer over a StringTransport) whose client says nothing."""
        directory = Path(tempfile.mkdtemp(prefix="chat-tls-"))
        self.addCleanup(shutil.rmtree, directory, True)
        certs = make_certificates(directory)
        context = DefaultOpenSSLContextFactory(str(certs["key"]), str(certs["cert"]))
        tls = TLSMemoryBIOFactory(context, False, self.harness.factory, self.harness.clock)
        protocol = tls.buildProtocol(IPv4Address("TCP", "192.0.2.9", 4000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", 4000))
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, Failure(ConnectionDone()))
        return transport

    def test_handshake_not_done_in_time_is_aborted(self) -> None:
        transport = self.tls_connect()
        self.harness.clock.advance(2.9)
        self.assertFalse(transport.disconnected)
        self.harness.clock.advance(0.2)
        self.assertTrue(transport.disconnected)

    def test_refused_before_the_handshake_is_dropped_at_once(self) -> None:
        self.tls_connect()
        refused = self.tls_connect()
        self.assertTrue(refused.disconnected, "server full: no slot held until a handshake")
class MailboxShareTests(HarnessTestCase):
    """One sender may fill a quarter of an offline user's mailbox (``--max-offline`` 100: 25)."""

    harness_options = {"flood_burst": 100}

    def test_one_sender_cannot_shut_the_others_out(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        for n in range(25):
            yoda.send(f"message obiwan spam {n}")
        self.assertEqual(
            yoda.lines()[-1], "obiwan is offline; your message will be delivered when they log in."
        )
        yoda.send("message obiwan one more")
        self.assertEqual(
            yoda.lines(),
            [
                "Error. You have 25 messages waiting for obiwan already; yours was not kept."
                " Try again later."
            ],
        )
        hans.send("message obiwan are you there?")
        self.assertEqual(
            hans.lines(), ["obiwan is offline; your message will be delivered when they log in."]
        )
        luke = self.connect()
        luke.login_json("luke")
        luke.send_json({"type": "message", "to": "obiwan", "message": "hi", "id": 1})
        self.assertEqual(luke.json()[0]["stored"], True)
        (obiwan,) = self.online("obiwan")
        self.assertEqual(len(self.harness.store.offline_messages("obiwan")), 27, "not yet written")
        self.harness.run_due()
        self.assertEqual(len(self.harness.store.offline_messages("obiwan")), 0)
