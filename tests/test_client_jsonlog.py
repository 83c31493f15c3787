"""--json-log: every JSON line exchanged with the server, passwords hidden, SCRAM messages kept."""

from __future__ import annotations

import base64
import io
import json

from twisted.internet.task import Clock
from twisted.trial import unittest

from chatservice.auth.scram import ScramClientExchange
from chatservice.client.jsonlog import JsonTranscript


class TranscriptTests(unittest.TestCase):
    def test_records_and_hides_passwords(self) -> None:
        clock = Clock()
        clock.advance(12.5)
        stream = io.StringIO()
        transcript = JsonTranscript(stream, clock)
        transcript.sent({"type": "login", "user": "yoda", "password": "wise", "id": 1})
        transcript.received({"type": "login", "success": True, "user": "yoda", "id": 1})
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        self.assertEqual(
            lines,
            [
                {"time": 12.5, "direction": "sent",
                 "message": {"type": "login", "user": "yoda", "password": "***", "id": 1}},
                {"time": 12.5, "direction": "received",
                 "message": {"type": "login", "success": True, "user": "yoda", "id": 1}},
            ],
        )
        transcript.sent({"type": "passwd", "old": "wise", "new": "wiser", "id": 2})
        self.assertEqual(
            json.loads(stream.getvalue().splitlines()[-1])["message"],
            {"type": "passwd", "old": "***", "new": "***", "id": 2},
        )
        transcript.close()
        self.assertTrue(stream.closed)
        transcript.sent({"type": "whoelse"})
        transcript.close()

    def test_scram_messages_are_kept(self) -> None:
        """They hold no password (nor the salted password): the transcript shows them whole."""
        stream = io.StringIO()
        transcript = JsonTranscript(stream, Clock())
        exchange = ScramClientExchange("yoda", "wise")
        salt = {"type": "salt", "mechanism": "SCRAM-SHA-256", "message": exchange.first(), "id": 1}
        challenge = {"type": "salt", "message": f"r={exchange.client_nonce}x,s=c2FsdHNhbHQ=,i=4096", "id": 1}
        final = {"type": "login", "mechanism": "SCRAM-SHA-256",
                 "message": exchange.final(challenge["message"]), "p2p_port": 1, "udp_port": 1, "id": 2}
        for message in (salt, final):
            transcript.sent(message)
        transcript.received(challenge)
        recorded = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
        self.assertEqual(recorded, [salt, final, challenge])
        assert exchange.salted_password is not None
        for secret in ("wise", base64.b64encode(exchange.salted_password).decode(), exchange.salted_password.hex()):
            self.assertNotIn(secret, stream.getvalue())
