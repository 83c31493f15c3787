"""The pieces of the thin connection, each on its own, and the rules they make together.

- :class:`~chatservice.server.lines.LineBuffer`: bytes in any pieces, lines out.
- :class:`~chatservice.server.flowcontrol.InputPacer`: holds, turns and floods.
- The first line decides the format; a program that speaks JSON first never
  receives a line that is not JSON; a person is greeted after a short silence.
- SCRAM-SHA-256 logins through the JSON dialogue, against a second SCRAM
  implementation (``scramp``) as the client.
- :func:`~chatservice.server.replies.login_rejection`: every typed auth error
  has its wording.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import scramp
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from chatservice import events
from chatservice.auth import errors
from chatservice.auth.accounts import hash_and_derive
from chatservice.auth.login import EXPECTED_ERRORS
from chatservice.auth.scram import ScramClientExchange
from chatservice.server.flowcontrol import InputPacer
from chatservice.server.lines import TOO_LONG, LineBuffer
from chatservice.server.policy import ConnectionPolicy
from chatservice.server.replies import login_rejection
from chatservice.state import AlreadyLoggedIn
from tests.support import ChatHarness
from tests.test_protocol import HarnessTestCase


class LineBufferTests(unittest.TestCase):
    """Lines of at most ``max_length`` bytes from a stream cut anywhere."""

    def drain(self, buffer: LineBuffer) -> list[bytes]:
        lines = []
        while (line := buffer.pop()) is not None:
            lines.append(line)
        return lines

    def test_lines_cut_anywhere(self) -> None:
        data = b"whoelse\r\nmessage hans hi\n\nlast"
        for cut in range(len(data) + 1):
            buffer = LineBuffer(100)
            buffer.feed(data[:cut])
            first = self.drain(buffer)
            buffer.feed(data[cut:])
            self.assertEqual(first + self.drain(buffer), [b"whoelse\r", b"message hans hi", b""])
            self.assertFalse(buffer.has_line())
            buffer.feed(b"\n")
            self.assertTrue(buffer.has_line())
            self.assertEqual(self.drain(buffer), [b"last"])

    def test_over_long_line_is_reported_once_and_skipped(self) -> None:
        buffer = LineBuffer(5)
        buffer.feed(b"12345\n123456\nok\n")
        self.assertEqual(self.drain(buffer), [b"12345", TOO_LONG, b"ok"])

    def test_over_long_partial_line_is_discarded_to_its_end(self) -> None:
        buffer = LineBuffer(5)
        buffer.feed(b"123456")
        self.assertEqual(self.drain(buffer), [TOO_LONG])
        buffer.feed(b"789")
        buffer.feed(b"0\nnext\n")
        self.assertEqual(self.drain(buffer), [b"next"])

    def test_has_line_only_for_whole_lines(self) -> None:
        buffer = LineBuffer(10)
        buffer.feed(b"a\nb")
        self.assertTrue(buffer.has_line())
        self.assertEqual(buffer.pop(), b"a")
        self.assertFalse(buffer.has_line())
        self.assertIsNone(buffer.pop())


class InputPacerTests(unittest.TestCase):
    """When a connection is read: holds stack, turns end, floods are cut off."""

    def make(self, **policy: Any) -> tuple[Clock, InputPacer, list[str]]:
        clock = Clock()
        log: list[str] = []

        class Reader:
            def pause_reading(self) -> None:
                log.append("pause")

            def resume_reading(self) -> None:
                log.append("resume")

        pacer = InputPacer(clock, ConnectionPolicy(**policy), Reader())
        pacer.new_turn()
        return clock, pacer, log

    def test_holds_stack(self) -> None:
        _clock, pacer, log = self.make()
        pacer.hold("checking")
        pacer.hold("turn")
        pacer.release("checking")
        self.assertEqual(log, ["pause"])
        self.assertTrue(pacer.holding("turn"))
        pacer.release("turn")
        pacer.release("turn")  # not held: nothing happens
        self.assertEqual(log, ["pause", "resume"])

    def test_a_turn_ends_after_its_lines_when_more_wait(self) -> None:
        clock, pacer, log = self.make(lines_per_turn=3, flood_burst=100)
        self.assertTrue(all(pacer.admit(more_waiting=True) for _ in range(2)))
        self.assertEqual(log, [])
        self.assertTrue(pacer.admit(more_waiting=True))
        self.assertEqual(log, ["pause"])
        clock.advance(0)
        self.assertEqual(log, ["pause", "resume"])

    def test_the_last_buffered_line_does_not_end_the_turn(self) -> None:
        clock, pacer, log = self.make(lines_per_turn=1, flood_burst=100)
        self.assertTrue(pacer.admit(more_waiting=False))
        self.assertEqual((log, clock.getDelayedCalls()), ([], []))

    def test_flood_waits_then_is_cut_off(self) -> None:
        clock, pacer, log = self.make(flood_burst=2, flood_rate=1.0, flood_limit=3)
        admitted = 0
        while pacer.admit(more_waiting=True):  # lines always waiting
            admitted += 1
            while pacer.holding("flood"):
                clock.advance(0.25)
            pacer.new_turn()  # read again: a new turn
            self.assertLess(admitted, 100, "never cut off")
        # 2 at once, then one a second, throttled from t=0; cut off once that lasts over 3 s.
        self.assertEqual((admitted, clock.seconds()), (6, 4.0))
        self.assertEqual(log.count("pause"), 4)
        pacer.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_nothing_waiting_ends_the_throttling(self) -> None:
        clock, pacer, _log = self.make(flood_burst=1, flood_rate=1.0, flood_limit=3)
        for _ in range(20):  # throttled now and then, but never 3 s on end
            self.assertTrue(pacer.admit(more_waiting=True))
            while pacer.holding("flood"):
                clock.advance(0.25)
            clock.advance(1)
            self.assertTrue(pacer.admit(more_waiting=False))
            while pacer.holding("flood"):
                clock.advance(0.25)
        pacer.stop()


class FirstBytesTests(HarnessTestCase):
    """JSON from the first byte; a person is greeted after a short silence."""

    harness_options = {"greeting_delay": 0.25}

    def raw(self) -> tuple[Any, StringTransport]:
        address = IPv4Address("TCP", "10.9.9.9", 5000)
        protocol = self.harness.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        self.addCleanup(lambda: protocol.connectionLost(None))
        return protocol, transport

    def test_a_program_that_speaks_first_gets_only_json(self) -> None:
        protocol, transport = self.raw()
        self.assertEqual(transport.value(), b"", "nothing before the client speaks")
        protocol.dataReceived(b'{"type": "login", "user": "yoda", "password": "wise", "id": 1}\n')
        self.harness.clock.advance(5)
        protocol.dataReceived(b'{"type": "whoelse", "id": 2}\n{"type":"bogus"}\n')
        lines = transport.value().split(b"\n")
        self.assertEqual(lines[-1], b"")
        replies = [json.loads(line) for line in lines[:-1]]  # every line parses
        self.assertEqual([r["type"] for r in replies], ["login", "userlist", "error"])

    def test_a_program_cut_mid_line_still_gets_only_json(self) -> None:
        protocol, transport = self.raw()
        protocol.dataReceived(b'{"type": "he')
        self.harness.clock.advance(1)  # the rest is late: still not greeted in text
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(b'lp"}\n')
        (reply,) = [json.loads(line) for line in transport.value().splitlines()]
        self.assertEqual(reply["type"], "help")

    def test_a_silent_connection_is_greeted_after_the_delay(self) -> None:
        _protocol, transport = self.raw()
        self.harness.clock.advance(0.2)
        self.assertEqual(transport.value(), b"")
        self.harness.clock.advance(0.05)
        self.assertTrue(transport.value().startswith(b"Welcome to chatservice "))
        self.assertTrue(transport.value().endswith(b"\r\nUsername: "))

    def test_white_space_first_decides_nothing(self) -> None:
        protocol, transport = self.raw()
        protocol.dataReceived(b"  ")
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(b'{"type": "help"}\n')
        self.assertTrue(transport.value().startswith(b"{"))

    def test_a_person_who_types_first_is_greeted_at_once(self) -> None:
        protocol, transport = self.raw()
        protocol.dataReceived(b"yoda\r\n")
        output = transport.value()
        self.assertTrue(output.startswith(b"Welcome to chatservice "), output)
        # Echo off for the password (IAC WILL ECHO), then the prompt.
        self.assertTrue(output.endswith(b"\r\nUsername: \xff\xfb\x01Password: "), output)
        self.assertEqual(self.harness.clock.getDelayedCalls()[0].getTime() - self.harness.clock.seconds(), 60)

    def test_telnet_negotiation_first_is_a_person(self) -> None:
        protocol, transport = self.raw()
        protocol.dataReceived(b"\xff\xfd\x03")  # IAC DO SUPPRESS-GO-AHEAD, no line yet
        # Refused (IAC WONT SUPPRESS-GO-AHEAD), and greeted at once.
        self.assertTrue(transport.value().startswith(b"\xff\xfc\x03Welcome"), transport.value())
        protocol.dataReceived(b"yoda\r\n")
        self.assertTrue(transport.value().endswith(b"Password: "))

    def test_json_after_the_greeting_still_switches(self) -> None:
        protocol, transport = self.raw()
        self.harness.clock.advance(0.25)
        transport.clear()
        protocol.dataReceived(b'{"type": "help", "id": 1}\n')
        self.assertTrue(transport.value().startswith(b"\n{"), "the prompt's line is ended first")

    def test_the_greeting_timer_ends_with_the_connection(self) -> None:
        protocol, _transport = self.raw()
        protocol.connectionLost(None)
        self.assertEqual(self.harness.clock.getDelayedCalls(), [])


class ScramLoginTests(HarnessTestCase):
    """SCRAM-SHA-256 through the JSON login dialogue, with ``scramp`` as the client."""

    def start(self, connection: Any, username: str, client_first: str) -> dict[str, Any]:
        connection.send_json(
            {"type": "salt", "mechanism": "SCRAM-SHA-256", "message": client_first, "id": "s"}
        )
        (reply,) = connection.json()
        return reply

    def finish(self, connection: Any, client_final: str) -> dict[str, Any]:
        connection.send_json(
            {"type": "login", "mechanism": "SCRAM-SHA-256", "message": client_final, "id": "l"}
        )
        (reply,) = connection.json()
        return reply

    def scramp_login(self, connection: Any, username: str, password: str) -> tuple[dict[str, Any], Any]:
        client = scramp.ScramClient(["SCRAM-SHA-256"], username, password)
        challenge = self.start(connection, username, client.get_client_first())
        self.assertEqual(challenge["type"], "salt")
        self.assertEqual(challenge["iterations"], 4096)
        self.assertIn(f"s={challenge['salt']}", challenge["message"])
        client.set_server_first(challenge["message"])
        return self.finish(connection, client.get_client_final()), client

    def test_scramp_client_logs_in(self) -> None:
        connection = self.connect()
        reply, client = self.scramp_login(connection, "yoda", "wise")
        self.assertEqual((reply["type"], reply["success"], reply["user"]), ("login", True, "yoda"))
        client.set_server_final(reply["server_final"])  # raises if the signature is wrong
        self.assertIn("yoda", self.harness.state.sessions)
        connection.send_json({"type": "whoelse", "id": 3})
        self.assertEqual(connection.json()[0]["type"], "userlist")

    def test_our_client_logs_in_and_checks_the_server(self) -> None:
        connection = self.connect()
        exchange = ScramClientExchange("hans", "falcon")
        challenge = self.start(connection, "hans", exchange.first())
        reply = self.finish(connection, exchange.final(challenge["message"]))
        exchange.verify_server(reply["server_final"])
        self.assertIn("hans", self.harness.state.sessions)

    def test_the_password_never_crosses_the_wire(self) -> None:
        connection = self.connect()
        self.scramp_login(connection, "luke", "jedi")
        sent = b"".join(connection.sent_lines)
        self.assertNotIn(b"jedi", sent)
        self.assertIn(b"salt", sent)

    def test_wrong_password_is_refused_and_counts_toward_the_lock_out(self) -> None:
        connection = self.connect()
        replies = [self.scramp_login(connection, "yoda", f"wrong{i}")[0] for i in range(3)]
        self.assertEqual(
            [(r["success"], r["reason"]) for r in replies],
            [(False, "wrong_password"), (False, "wrong_password"), (False, "locked")],
        )
        self.assertTrue(connection.closed, "the failure that locks closes the connection")
        host = connection.transport.getPeer().host
        same = self.harness.connect(host=host)
        self.connections.append(same)
        client = scramp.ScramClient(["SCRAM-SHA-256"], "yoda", "wise")
        reply = self.start(same, "yoda", client.get_client_first())
        self.assertEqual((reply["type"], reply["reason"]), ("login", "address_blocked"))
        self.assertGreater(reply["retry_after"], 0)
        # The owner, from another address, is not locked out.
        owner = self.connect()
        reply, _client = self.scramp_login(owner, "yoda", "wise")
        self.assertEqual((reply["success"], reply["user"]), (True, "yoda"))

    def test_unknown_user(self) -> None:
        connection = self.connect()
        client = scramp.ScramClient(["SCRAM-SHA-256"], "vader", "dark")
        reply = self.start(connection, "vader", client.get_client_first())
        self.assertEqual((reply["type"], reply["success"], reply["reason"]), ("login", False, "unknown_user"))

    def test_account_hashed_before_scram_falls_back_then_gets_keys(self) -> None:
        secret, _keys = hash_and_derive("sith")
        self.harness.store.add_account("vader", secret, None)
        connection = self.connect()
        client = scramp.ScramClient(["SCRAM-SHA-256"], "vader", "sith")
        reply = self.start(connection, "vader", client.get_client_first())
        self.assertEqual((reply["type"], reply["reason"]), ("login", "scram_unavailable"))
        connection.login_json("vader", "sith")  # the password login adds the keys
        account = self.harness.account("vader")
        assert account is not None
        self.assertIsNotNone(account.scram)
        connection.drop()
        again = self.connect()
        reply, _client = self.scramp_login(again, "vader", "sith")
        self.assertTrue(reply["success"])

    def test_protocol_errors(self) -> None:
        connection = self.connect()
        connection.send_json({"type": "login", "mechanism": "SCRAM-SHA-256", "message": "c=biws,r=x,p=eA==", "id": 1})
        connection.send_json({"type": "salt", "mechanism": "MD5", "message": "n,,n=yoda,r=abc", "id": 2})
        connection.send_json({"type": "salt", "message": "p=tls-unique,,n=yoda,r=abc", "id": 3})
        connection.send_json({"type": "salt", "message": "garbage", "id": 4})
        self.assertEqual(
            [(r["type"], r["code"], r["id"]) for r in connection.json()],
            [
                ("error", "scram_failed", 1),
                ("error", "unsupported_mechanism", 2),
                ("error", "scram_failed", 3),
                ("error", "scram_failed", 4),
            ],
        )

    def test_a_tampered_nonce_is_refused_before_counting(self) -> None:
        connection = self.connect()
        exchange = ScramClientExchange("yoda", "wise")
        challenge = self.start(connection, "yoda", exchange.first())
        final = exchange.final(challenge["message"]).replace("r=", "r=x", 1)
        connection.send_json({"type": "login", "mechanism": "SCRAM-SHA-256", "message": final, "id": 9})
        (reply,) = connection.json()
        self.assertEqual((reply["type"], reply["code"]), ("error", "scram_failed"))
        self.assertIsNone(self.harness.lockout.locked_for("yoda"))


class LoginRejectionTests(unittest.TestCase):
    """Every way a login can fail has a reason for programs and words for people."""

    def test_every_expected_error_is_worded(self) -> None:
        cases = {
            errors.UnknownUser("x"): "unknown_user",
            errors.WrongPassword("x"): "wrong_password",
            errors.InvalidUsername("too long"): "invalid_username",
            errors.UsernameTaken("x"): "username_taken",
            errors.AccountLocked(5.0): "blocked",
            errors.AccountLocked(5.0, just_locked=True): "locked",
            errors.AddressLocked(5.0): "address_blocked",
            errors.AddressLocked(5.0, just_locked=True): "address_locked",
            errors.GuestsNotAllowed(): "unavailable",
            errors.ScramUnavailable("x"): "scram_unavailable",
            errors.LoginUnavailable(): "unavailable",
            AlreadyLoggedIn("x"): "already_logged_in",
            errors.Banned("Error. You are banned."): "banned",
        }
        covered = {type(error) for error in cases}
        for expected in EXPECTED_ERRORS:
            self.assertIn(expected, covered)
        for error, reason in cases.items():
            rejection = login_rejection(error, "yoda")
            self.assertEqual(rejection.reason, reason, error)
            self.assertTrue(rejection.message, error)
        self.assertEqual(login_rejection(errors.AccountLocked(7.5), "yoda").retry_after, 7.5)
        self.assertIn("too long", login_rejection(errors.InvalidUsername("too long"), "x").message)
        banned = login_rejection(errors.Banned("Error. You are banned until then.", 60.0), "x")
        self.assertEqual((banned.message, banned.retry_after), ("Error. You are banned until then.", 60.0))


class ClosedConnectionTests(HarnessTestCase):
    """What a closing connection still receives is dropped; its timers end with it."""

    harness_options = {"max_connections": 1, "greeting_delay": 0.25}

    def test_input_after_close_is_not_kept(self) -> None:
        (yoda,) = self.online("yoda")
        refused = self.harness.factory.buildProtocol(IPv4Address("TCP", "10.8.8.8", 1))
        transport = StringTransport()
        refused.makeConnection(transport)
        self.addCleanup(lambda: refused.connectionLost(None))
        self.assertIn(b"server_full", transport.value())
        for _ in range(100):  # a TLS peer may go on sending until it reads the close
            refused.dataReceived(b"x" * 10_000 + b"\n")
        self.assertEqual(refused._lines.first_byte(), b"")
        self.assertFalse(refused._lines.has_line())

    def test_no_greeting_after_a_disconnect(self) -> None:
        self.harness.close_all()
        self.harness = ChatHarness(**self.harness_options)
        connection = self.connect()
        connection.connection.disconnect(events.Disconnected("shutdown", "Going down."))
        clock = self.harness.clock
        # No timer outlives the close but its deadline (an abort if it never completes).
        (deadline,) = clock.getDelayedCalls()
        self.assertEqual(deadline.getTime() - clock.seconds(), self.harness.policy.close_deadline)
        clock.advance(1)
        self.assertEqual(connection.output(), '{"type":"shutdown","message":"Going down."}\n')


class FormatChoiceEdgeTests(HarnessTestCase):
    """The first bytes decide the format once; the greeting is sent at most once."""

    harness_options = {"greeting_delay": 0.25}

    def test_enter_first_greets_once(self) -> None:
        connection = self.connect()
        connection.send("")
        self.harness.clock.advance(1)
        connection.send("y")
        output = connection.output()
        self.assertEqual(output.count("Welcome to chatservice"), 1, output)

    def test_blank_line_then_json_is_json_only(self) -> None:
        connection = self.connect()
        connection.send(b'\n{"type": "help", "id": 1}', b"\n")
        output = connection.output()
        self.assertTrue(output.startswith('{"type":"help"'), output)
        for line in output.splitlines():
            json.loads(line)

    def test_errors_before_the_first_json_line_are_json(self) -> None:
        connection = self.connect()
        connection.send(b"{" + b"x" * 9000, b"\n")
        self.harness.clock.advance(1)
        (reply,) = connection.json()
        self.assertEqual(reply["code"], "line_too_long")
        self.assertEqual(connection.output(), "")


class UnexpectedLoginFailureTests(HarnessTestCase):
    """A login that fails for no expected reason is still answered (and logged)."""

    def break_checkers(self) -> None:
        def broken(*args: Any) -> Any:
            raise RuntimeError("the accounts are on fire")

        for checker in self.harness.chat.gate.portal.checkers.values():
            self.patch(checker, "requestAvatarId", broken)

    def test_text(self) -> None:
        self.break_checkers()
        connection = self.connect()
        connection.send("yoda")
        connection.send("wise")
        self.assertEqual(
            connection.output(),
            "Password: Error. Logging in is not possible right now; please try again.\r\n"
            "Username: ",
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_json(self) -> None:
        self.break_checkers()
        connection = self.connect()
        connection.send_json({"type": "login", "user": "yoda", "password": "wise", "id": 1})
        (reply,) = connection.json()
        self.assertEqual((reply["reason"], reply["id"]), ("unavailable", 1))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class SlowReaderInFanOutTests(HarnessTestCase):
    """A slow reader given up on in the middle of a broadcast does not break the broadcast."""

    harness_options = {"output_soft_limit": 1024, "output_hard_limit": 1024}

    def test_the_broadcast_reaches_the_others_and_the_sender_stays(self) -> None:
        connections = self.online("yoda", "hans", "luke", "leia", "obiwan")
        yoda, *others = connections
        for slow in others[:2]:
            slow.connection.writer.pauseProducing()
            slow.connection.writer._counted = 1000
        yoda.send("broadcast " + "x" * 100)
        self.assertFalse(yoda.closed)
        self.assertTrue(yoda.output().startswith("Broadcast message, #"))
        for reader in others[2:]:
            self.assertIn("[broadcast] yoda: ", reader.output())
        for slow in others[:2]:
            self.assertTrue(slow.closed)
        self.harness.clock.advance(0)  # the slow readers are logged out after the turn
        self.assertEqual(sorted(self.harness.state.sessions), ["leia", "obiwan", "yoda"])


class StartingTests(HarnessTestCase):
    """Until the chat service has loaded its state, connections are told to come back."""

    def test_refused_with_a_reason_while_starting(self) -> None:
        self.harness.factory.registry.ready = False
        protocol = self.harness.factory.buildProtocol(IPv4Address("TCP", "10.6.6.6", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.addCleanup(lambda: protocol.connectionLost(None))
        (reply,) = [json.loads(line) for line in transport.value().splitlines()]
        self.assertEqual((reply["type"], reply["reason"]), ("disconnect", "starting"))
        self.assertTrue(transport.disconnecting)
