"""The client's JSON-lines connection to the server, over StringTransport."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from chatservice.client.server_connection import ServerConnection, ServerError


class Listener:
    def __init__(self) -> None:
        self.connected: list[ServerConnection] = []
        self.messages: list[dict[str, Any]] = []
        self.lost: list[tuple[Failure, dict[str, Any] | None]] = []

    def server_connected(self, connection: ServerConnection) -> None:
        self.connected.append(connection)

    def server_message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def server_lost(self, reason: Failure, goodbye: dict[str, Any] | None) -> None:
        self.lost.append((reason, goodbye))


class Transcript:
    def __init__(self) -> None:
        self.out: list[dict[str, Any]] = []
        self.into: list[dict[str, Any]] = []

    def sent(self, message: dict[str, Any]) -> None:
        self.out.append(message)

    def received(self, message: dict[str, Any]) -> None:
        self.into.append(message)


class ServerConnectionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.listener = Listener()
        self.transcript = Transcript()
        self.connection = ServerConnection(self.listener, self.transcript)  # type: ignore[arg-type]
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)

    def written(self) -> list[dict[str, Any]]:
        lines = self.transport.value().decode("utf-8").splitlines()
        self.transport.clear()
        return [json.loads(line) for line in lines]

    def receive(self, *lines: str | dict[str, Any]) -> None:
        for line in lines:
            text = json.dumps(line) if isinstance(line, dict) else line
            self.connection.dataReceived(text.encode("utf-8") + b"\r\n")

    def test_tells_the_listener_it_is_connected(self) -> None:
        self.assertEqual(self.listener.connected, [self.connection])

    def test_greeting_lines_are_skipped(self) -> None:
        self.connection.dataReceived(
            b"Welcome to chatservice 0.1.0. Please log in (programs: ...).\r\nUsername: "
        )
        d = self.connection.request({"type": "login", "user": "yoda", "password": "wise"})
        self.connection.dataReceived(b'\n{"type":"login","success":true,"user":"yoda","id":1}\n')
        self.assertEqual(self.successResultOf(d)["user"], "yoda")
        self.assertEqual(self.listener.messages, [])

    def test_requests_get_fresh_ids_and_replies_match_them(self) -> None:
        first = self.connection.request({"type": "whoelse"})
        second = self.connection.request({"type": "rooms"})
        self.assertEqual(self.written(), [{"type": "whoelse", "id": 1}, {"type": "rooms", "id": 2}])
        self.receive({"type": "rooms", "rooms": [], "id": 2})
        self.assertNoResult(first)
        self.assertEqual(self.successResultOf(second), {"type": "rooms", "rooms": [], "id": 2})
        self.receive({"type": "userlist", "users": ["hans"], "id": 1})
        self.assertEqual(self.successResultOf(first)["users"], ["hans"])

    def test_error_replies_fail_the_request(self) -> None:
        d = self.connection.request({"type": "block", "target": "vader"})
        self.receive({"type": "error", "code": "invalid_user", "message": "Error. Invalid user vader.", "id": 1})
        error = self.failureResultOf(d, ServerError).value
        self.assertEqual((error.code, error.message), ("invalid_user", "Error. Invalid user vader."))

    def test_unsolicited_messages_go_to_the_listener(self) -> None:
        self.receive(
            {"type": "message", "from": "hans", "message": "hi"},
            {"type": "error", "code": "line_too_long", "message": "too long"},
            {"type": "user_notification", "user": "luke", "status": True, "id": 99},
        )
        self.assertEqual(
            [m["type"] for m in self.listener.messages],
            ["message", "error", "user_notification"],
        )

    def test_bad_lines_after_json_are_skipped(self) -> None:
        self.receive({"type": "hello"}, "not json", "{broken", "[1, 2]", '{"no": "type"}', "")
        self.assertEqual(self.listener.messages, [{"type": "hello"}])

    def test_transcript_records_both_ways(self) -> None:
        self.connection.request({"type": "whoelse"})
        self.receive({"type": "userlist", "users": [], "id": 1})
        self.assertEqual(self.transcript.out, [{"type": "whoelse", "id": 1}])
        self.assertEqual(self.transcript.into, [{"type": "userlist", "users": [], "id": 1}])

    def test_goodbye_is_remembered(self) -> None:
        d = self.connection.request({"type": "logout"})
        goodbye = {"type": "disconnect", "reason": "logout", "message": "Goodbye, yoda!", "id": 1}
        self.receive(goodbye)
        self.assertEqual(self.successResultOf(d), goodbye)
        self.connection.connectionLost(Failure(ConnectionDone()))
        [(reason, said)] = self.listener.lost
        self.assertEqual(said, goodbye)

    def test_shutdown_is_a_goodbye(self) -> None:
        self.receive({"type": "shutdown", "message": "The server is shutting down."})
        self.assertEqual(self.connection.goodbye["type"], "shutdown")

    def test_connection_lost_fails_pending_requests(self) -> None:
        d = self.connection.request({"type": "whoelse"})
        self.connection.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(d, ConnectionLost)
        [(reason, goodbye)] = self.listener.lost
        self.assertIsNone(goodbye)
        self.failureResultOf(self.connection.request({"type": "whoelse"}), ConnectionDone)

    def test_close(self) -> None:
        self.connection.close()
        self.assertTrue(self.transport.disconnecting)

    def test_overlong_line_closes(self) -> None:
        self.connection.dataReceived(b"{" + b"x" * (self.connection.MAX_LENGTH + 1))
        self.assertTrue(self.transport.disconnecting)

    def test_unicode_is_sent_as_utf8(self) -> None:
        self.connection.request({"type": "message", "to": "hans", "message": "héllo ✓"})
        self.assertIn("héllo ✓".encode("utf-8"), self.transport.value())


class PromptGlueTests(unittest.TestCase):
    def test_reply_glued_to_the_prompt_is_read(self) -> None:
        connection = ServerConnection(Listener())  # type: ignore[arg-type]
        connection.makeConnection(StringTransport())
        connection.dataReceived(b"Welcome.\r\nUsername: ")
        d = connection.request({"type": "help"})
        connection.dataReceived(b'{"type":"help","commands":[],"id":1}\n')
        self.assertEqual(self.successResultOf(d)["type"], "help")
        # Once JSON flows, text lines are only skipped.
        connection.dataReceived(b'junk {"type":"x"}\n')
        self.assertEqual(connection.listener.messages, [])
