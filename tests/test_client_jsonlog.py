"""--json-log: every JSON line exchanged with the server, passwords hidden."""

from __future__ import annotations

import io
import json

from twisted.internet.task import Clock
from twisted.trial import unittest

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
