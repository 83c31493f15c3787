"""What one idle logged-in connection keeps in memory (see docs/benchmarks.rst).

The per-connection objects keep their fields in slots: a field added
without a slot would silently give every connection an instance dict again
(about 0.5-1.7 KiB each), so these tests name what may exist.
"""

from __future__ import annotations

from twisted.trial import unittest

from chatservice.server.flowcontrol import InputPacer, TokenBucket
from chatservice.server.output import ConnectionWriter
from chatservice.session import Session
from tests.support import ChatHarness


class FootprintTests(unittest.TestCase):
    def setUp(self) -> None:
        self.harness = ChatHarness()
        self.connections = self.harness.online("yoda", "hans")

    def tearDown(self) -> None:
        self.harness.close_all(*self.connections)

    def test_a_used_connection_has_no_instance_dict(self) -> None:
        yoda, hans = self.connections
        yoda.send("broadcast hello")
        yoda.send("message hans hi")
        yoda.send("whoelse")
        hans.send("busy")
        yoda.send("message hans are you there")
        yoda.send("x" * 10000)  # too long: the overflow path
        yoda.protocol.dataReceived(b"whoelse\r\n" * 40)  # more than a turn
        self.harness.clock.advance(0)
        for connection in (yoda, hans):
            self.assertEqual(connection.protocol.__dict__, {})
            self.assertFalse(hasattr(connection.connection, "__dict__"))

    def test_sessions_and_helpers_have_no_instance_dict(self) -> None:
        session = self.harness.state.sessions["yoda"]
        self.assertIsInstance(session, Session)
        connection = self.connections[0].connection
        pacer, writer = connection._pacer, connection.writer
        for obj in (session, connection, pacer, pacer._bucket, writer, self.connections[0].protocol._lines):
            self.assertFalse(hasattr(obj, "__dict__"), type(obj).__name__)
        self.assertIsInstance(pacer, InputPacer)
        self.assertIsInstance(pacer._bucket, TokenBucket)
        self.assertIsInstance(writer, ConnectionWriter)

    def test_every_command_has_a_session_method(self) -> None:
        from chatservice.commands import COMMANDS

        for command in COMMANDS:
            self.assertTrue(callable(getattr(Session, command.handler)), command.name)
