"""The connection protocol, driven line by line over StringTransport on a fake clock."""

from __future__ import annotations

import json
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.trial import unittest
from zope.interface import implementer

from chatservice.auth.errors import WrongPassword
from chatservice.auth.login import LockoutChecker, LoginGate
from chatservice.auth.realm import ChatRealm
from chatservice.server.factory import ChatFactory
from chatservice.timefmt import format_timestamp
from tests.support import SAMPLE_ACCOUNTS, ChatHarness, Connection

START = format_timestamp(1_700_000_000)


class HarnessTestCase(unittest.TestCase):
    """Builds a :class:`ChatHarness`; every test ends with no pending timers."""

    harness_options: dict[str, Any] = {}

    def setUp(self) -> None:
        self.harness = ChatHarness(**self.harness_options)
        self.connections: list[Connection] = []

    def tearDown(self) -> None:
        self.harness.close_all(*self.connections)
        self.assertEqual(self.harness.clock.getDelayedCalls(), [])

    def connect(self) -> Connection:
        connection = self.harness.connect()
        self.connections.append(connection)
        return connection

    def online(self, *usernames: str) -> list[Connection]:
        connections = self.harness.online(*usernames)
        self.connections.extend(connections)
        return connections


class TextLoginTests(HarnessTestCase):
    """The prompt flow a telnet user sees."""

    def test_greeting_and_username_prompt(self) -> None:
        connection = self.harness.factory.buildProtocol(None)
        from twisted.internet.testing import StringTransport

        transport = StringTransport()
        connection.makeConnection(transport)
        output = transport.value().decode()
        self.assertTrue(output.startswith("Welcome to chatservice "))
        self.assertTrue(output.endswith("\r\nUsername: "))
        connection.connectionLost(None)

    def test_successful_login(self) -> None:
        yoda = self.connect()
        yoda.send("yoda")
        self.assertEqual(yoda.output(), "Password: ")
        yoda.send("wise")
        self.assertEqual(
            yoda.lines(),
            ["Welcome to chatservice, yoda! Type help for the list of commands."],
        )
        self.assertIn("yoda", self.harness.state.sessions)

    def test_lf_only_line_endings(self) -> None:
        yoda = self.connect()
        yoda.send("yoda", b"\n")
        yoda.send("wise", b"\n")
        self.assertIn("yoda", self.harness.state.sessions)

    def test_unknown_user_asks_again(self) -> None:
        connection = self.connect()
        connection.send("vader")
        self.assertEqual(
            connection.output(),
            "Error. Unknown user vader. Please try again.\r\nUsername: ",
        )
        self.assertFalse(connection.closed)

    def test_user_names_are_case_sensitive(self) -> None:
        connection = self.connect()
        connection.send("Yoda")
        self.assertIn("Unknown user Yoda", connection.output())

    def test_blank_username_prompts_again(self) -> None:
        connection = self.connect()
        connection.send("   ")
        self.assertEqual(connection.output(), "Username: ")

    def test_wrong_password_asks_for_password_again(self) -> None:
        connection = self.connect()
        connection.send("yoda")
        connection.output()
        connection.send("nope")
        self.assertEqual(
            connection.output(), "Invalid Password. Please try again\r\nPassword: "
        )
        connection.send("wise")
        self.assertIn("Welcome", connection.output())

    def test_lockout_after_max_failures_closes_connection(self) -> None:
        connection = self.connect()
        connection.send("yoda")
        for _ in range(2):
            connection.send("nope")
        connection.output()
        connection.send("nope")
        self.assertEqual(
            connection.lines(),
            [
                "Invalid Password. Your account has been blocked after too many"
                " failures. Please try again in 1 minute."
            ],
        )
        self.assertTrue(connection.closed)

    def connect_from(self, host: str) -> Connection:
        connection = self.harness.connect(host=host)
        self.connections.append(connection)
        return connection

    def test_locked_user_refused_from_that_address_until_expiry(self) -> None:
        first = self.connect_from("192.0.2.50")
        first.send("yoda")
        for _ in range(3):
            first.send("nope")
        other = self.connect_from("192.0.2.50")
        other.send("yoda")
        self.assertEqual(
            other.output(),
            "Your address is blocked due to multiple login failures."
            " Please try again in 1 minute.\r\nUsername: ",
        )
        self.harness.clock.advance(59)
        later = self.connect_from("192.0.2.50")
        later.send("yoda")
        # The time left, rounded up.
        self.assertIn("Please try again in 1 second.", later.output())
        self.harness.clock.advance(1)
        last = self.connect_from("192.0.2.50")
        last.send("yoda")
        last.send("wise")
        self.assertIn("Welcome to chatservice, yoda!", last.output())

    def test_a_lock_from_one_address_does_not_lock_the_owner_out(self) -> None:
        """Three wrong passwords from one address lock the name there, not from the owner's address."""
        attacker = self.connect_from("192.0.2.50")
        attacker.send("yoda")
        for _ in range(3):
            attacker.send("nope")
        self.assertTrue(attacker.closed)
        owner = self.connect_from("192.0.2.51")
        owner.send("yoda")
        self.assertEqual(owner.output(), "Password: ")
        owner.send("wise")
        self.assertIn("Welcome to chatservice, yoda!", owner.output())
        self.assertIn("yoda", self.harness.state.sessions)

    def test_lock_is_checked_again_after_the_password(self) -> None:
        """A connection that got past the user name prompt is still refused once locked."""
        waiting = self.connect_from("192.0.2.50")
        waiting.send("yoda")
        attacker = self.connect_from("192.0.2.50")
        attacker.send("yoda")
        for _ in range(3):
            attacker.send("nope")
        waiting.output()
        waiting.send("wise")
        self.assertIn("blocked due to multiple login failures", waiting.output())
        self.assertNotIn("yoda", self.harness.state.sessions)

    def test_failures_of_one_user_do_not_lock_another(self) -> None:
        connection = self.connect()
        connection.send("yoda")
        for _ in range(3):
            connection.send("nope")
        hans = self.connect()
        hans.send("hans")
        hans.send("falcon")
        self.assertIn("Welcome to chatservice, hans!", hans.output())

    def test_second_login_refused(self) -> None:
        self.online("yoda")
        again = self.connect()
        again.send("yoda")
        again.output()
        again.send("wise")
        self.assertEqual(
            again.output(),
            "Error. yoda is already logged in elsewhere.\r\nUsername: ",
        )

    def test_welcome_then_offline_messages(self) -> None:
        (hans,) = self.online("hans")
        hans.send("message yoda Hey Dude")
        self.assertEqual(
            hans.lines(),
            ["yoda is offline; your message will be delivered when they log in."],
        )
        yoda = self.connect()
        yoda.send("yoda")
        yoda.send("wise")
        lines = yoda.lines()
        self.assertEqual(lines[0], "Password: Welcome to chatservice, yoda! Type help for the list of commands.")
        self.assertEqual(len(lines), 2)
        self.assertTrue(lines[1].startswith("[offline "))
        self.assertTrue(lines[1].endswith("] hans: Hey Dude"))
        # Forgotten once written (at the end of the turn), not before.
        self.assertEqual(len(self.harness.store.offline_messages("yoda")), 1)
        self.harness.run_due()
        self.assertEqual(self.harness.store.offline_messages("yoda"), [])


class PresenceTests(HarnessTestCase):
    """Every login and logout is announced, however it happens."""

    def test_login_and_logout_announced(self) -> None:
        (hans,) = self.online("hans")
        (yoda,) = self.online("yoda")
        self.assertEqual(hans.lines(), ["yoda logged in"])
        yoda.send("logout")
        self.assertEqual(yoda.lines(), ["Goodbye, yoda!"])
        self.assertTrue(yoda.closed)
        yoda.drop()
        self.assertEqual(hans.lines(), ["yoda logged out"])

    def test_dropped_connection_logs_out(self) -> None:
        hans, yoda = self.online("hans", "yoda")
        hans.output()
        yoda.drop()
        self.assertEqual(hans.lines(), ["yoda logged out"])
        self.assertNotIn("yoda", self.harness.state.sessions)
        again = self.connect()
        again.login("yoda")
        self.assertIn("yoda", self.harness.state.sessions)


class TimeoutTests(HarnessTestCase):
    """The inactivity timeout."""

    harness_options = {"timeout": 30}

    def test_idle_user_logged_out_and_others_told(self) -> None:
        hans, yoda = self.online("hans", "yoda")
        self.harness.clock.advance(10)
        hans.send("whoelse")
        hans.output()
        self.harness.clock.advance(19)
        self.assertFalse(yoda.closed)
        self.harness.clock.advance(1)
        self.assertEqual(
            yoda.lines(), ["You have been logged out after 30 seconds of inactivity."]
        )
        self.assertTrue(yoda.closed)
        yoda.drop()
        self.assertEqual(hans.lines(), ["yoda logged out"])

    def test_valid_command_resets_timer_invalid_does_not(self) -> None:
        (yoda,) = self.online("yoda")
        self.harness.clock.advance(20)
        yoda.send("whoelse")
        self.harness.clock.advance(20)
        self.assertFalse(yoda.closed)
        yoda.send("dance")
        self.harness.clock.advance(10)
        self.assertTrue(yoda.closed)

    def test_failed_command_still_counts_as_activity(self) -> None:
        (yoda,) = self.online("yoda")
        self.harness.clock.advance(20)
        yoda.send("message vader hi")
        self.harness.clock.advance(20)
        self.assertFalse(yoda.closed)

    def test_unauthenticated_connection_closed(self) -> None:
        connection = self.connect()
        self.harness.clock.advance(30)
        self.assertEqual(connection.lines(), ["Login timed out after 30 seconds."])
        self.assertTrue(connection.closed)

    def test_json_timeout_notice(self) -> None:
        connection = self.connect()
        connection.login_json("yoda")
        self.harness.clock.advance(30)
        self.assertEqual(
            connection.json(),
            [
                {
                    "type": "disconnect",
                    "reason": "timeout",
                    "message": "You have been logged out after 30 seconds of inactivity.",
                }
            ],
        )


class CommandTests(HarnessTestCase):
    """Commands in the text format."""

    def test_help_lists_every_command(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("help")
        text = yoda.output()
        for usage in (
            "whoelse",
            "whoelsesince <seconds>",
            "message <user> <text>",
            "broadcast <text>",
            "block <user>",
            "unblock <user>",
            "logout",
            "help",
        ):
            self.assertIn(f"  {usage} ", text)

    def test_invalid_command_keeps_session(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("dance now")
        self.assertEqual(
            yoda.lines(), ["Error. Invalid command (type help for the list)"]
        )
        yoda.send("whoelse")
        self.assertEqual(yoda.lines(), ["No other users are online."])

    def test_blank_line_ignored(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("")
        self.assertEqual(yoda.output(), "")

    def test_message_and_broadcast(self) -> None:
        yoda, hans, luke = self.online("yoda", "hans", "luke")
        hans.send("message yoda Hey Dude")
        self.assertEqual(yoda.lines(), ["hans: Hey Dude"])
        self.assertEqual(hans.lines(), ["Message delivered to yoda."])
        hans.send("broadcast hello all")
        self.assertEqual(yoda.lines(), ["[broadcast] hans: hello all"])
        self.assertEqual(luke.lines(), ["[broadcast] hans: hello all"])
        self.assertEqual(
            hans.lines(), [f"Broadcast message, #1 broadcast at {START}"]
        )

    def test_block_flow(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("block hans")
        self.assertEqual(yoda.lines(), ["hans is now blocked."])
        hans.send("message yoda hi")
        self.assertEqual(
            hans.lines(),
            ["Your message could not be delivered as the recipient has blocked you."],
        )
        hans.send("broadcast hi")
        self.assertEqual(
            hans.lines(),
            [
                f"Broadcast message, #1 broadcast at {START}",
                "Your broadcast could not be delivered to some recipients"
                " as they have blocked you.",
            ],
        )
        self.assertEqual(yoda.output(), "")
        hans.send("whoelse")
        self.assertEqual(hans.lines(), ["No other users are online."])
        yoda.send("unblock hans")
        self.assertEqual(yoda.lines(), ["hans is unblocked."])
        hans.send("message yoda hi again")
        self.assertEqual(yoda.lines(), ["hans: hi again"])

    def test_control_characters_do_not_reach_other_terminals(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        hans.send("message yoda \x1b[2Jgotcha\x07")
        self.assertEqual(yoda.lines(), ["hans: [2Jgotcha"])


class BadInputTests(HarnessTestCase):
    """Over-long lines, invalid UTF-8 and telnet bytes never hurt the connection."""

    harness_options = {"max_line_length": 64}

    def test_long_line_discarded_following_line_kept(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.protocol.dataReceived(b"x" * 100 + b"\r\nwhoelse\r\n")
        self.assertEqual(
            yoda.lines(),
            [
                "Error. Lines are limited to 64 bytes; that one was discarded.",
                "No other users are online.",
            ],
        )
        self.assertFalse(yoda.closed)

    def test_long_line_in_pieces(self) -> None:
        (yoda,) = self.online("yoda")
        for _ in range(10):
            yoda.protocol.dataReceived(b"y" * 50)
        yoda.protocol.dataReceived(b"yyy\r\nwhoel")
        yoda.protocol.dataReceived(b"se\r\n")
        self.assertEqual(
            yoda.lines(),
            [
                "Error. Lines are limited to 64 bytes; that one was discarded.",
                "No other users are online.",
            ],
        )

    def test_invalid_utf8(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send(b"message hans \xc3\x28")
        self.assertEqual(
            yoda.lines(), ["Error. That line was not valid UTF-8 and was ignored."]
        )

    def test_telnet_negotiation_ignored(self) -> None:
        connection = self.connect()
        connection.send(b"\xff\xfd\x03\xff\xfb\x18yoda")
        self.assertEqual(connection.output(), "Password: ")
        connection.send(b"wi\xff\xf1se")  # IAC NOP inside the line
        self.assertIn("Welcome", connection.output())

    def test_unicode_messages(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        hans.send("message yoda ¿qué tal? 🚀")
        self.assertEqual(yoda.lines(), ["hans: ¿qué tal? 🚀"])


class JsonTests(HarnessTestCase):
    """The JSON-lines format on the same port."""

    def test_first_json_line_switches_for_good(self) -> None:
        connection = self.connect()
        connection.send_json({"type": "login", "user": "yoda", "password": "wise", "id": 7})
        output = connection.output()
        self.assertTrue(output.startswith("\n{"))
        self.assertEqual(
            json.loads(output),
            {"type": "login", "success": True, "user": "yoda", "guest": False, "id": 7},
        )
        connection.send("whoelse", b"\n")
        self.assertEqual(connection.json()[0]["code"], "invalid_json")

    def test_only_first_line_switches(self) -> None:
        connection = self.connect()
        connection.send("yoda")
        connection.send('{"type":"x"}')
        self.assertIn("Invalid Password", connection.output())

    def test_login_failures(self) -> None:
        connection = self.connect()
        connection.send_json({"type": "login", "user": "vader", "password": "x"})
        connection.send_json({"type": "login", "user": "yoda", "password": "x", "id": "a"})
        replies = connection.json()
        self.assertEqual(
            [(r["success"], r["reason"]) for r in replies],
            [(False, "unknown_user"), (False, "wrong_password")],
        )
        self.assertEqual(replies[1]["id"], "a")

    def test_lockout_reply_has_retry_after_and_closes(self) -> None:
        connection = self.connect()
        for _ in range(3):
            connection.send_json({"type": "login", "user": "yoda", "password": "x"})
        last = connection.json()[-1]
        self.assertEqual((last["reason"], last["retry_after"]), ("locked", 60))
        self.assertTrue(connection.closed)

    def test_requests_before_login(self) -> None:
        connection = self.connect()
        connection.send_json({"type": "whoelse", "id": 1})
        connection.send_json({"type": "help", "id": 2})
        replies = connection.json()
        self.assertEqual((replies[0]["code"], replies[0]["id"]), ("not_logged_in", 1))
        self.assertEqual((replies[1]["type"], replies[1]["id"]), ("help", 2))
        connection.send_json({"type": "disconnect"})
        self.assertEqual(connection.json()[0]["reason"], "logout")
        self.assertTrue(connection.closed)

    def test_messages_between_json_and_text(self) -> None:
        (yoda,) = self.online("yoda")
        hans = self.connect()
        hans.login_json("hans")
        self.assertEqual(yoda.lines(), ["hans logged in"])
        hans.send_json({"type": "message", "to": "yoda", "message": "hi", "id": 3})
        self.assertEqual(
            hans.json(), [{"type": "message_status", "to": "yoda", "stored": False, "id": 3}]
        )
        self.assertEqual(yoda.lines(), ["hans: hi"])
        yoda.send("broadcast hello")
        (received,) = hans.json()
        self.assertEqual(
            (received["type"], received["from"], received["message"]),
            ("broadcast", "yoda", "hello"),
        )
        self.assertNotIn("id", received)
        yoda.send("logout")
        yoda.drop()
        self.assertEqual(
            hans.json(), [{"type": "user_notification", "user": "yoda", "status": False}]
        )

    def test_each_command(self) -> None:
        (yoda,) = self.online("yoda")
        hans = self.connect()
        hans.login_json("hans")
        for request, expected in [
            ({"type": "whoelse"}, {"type": "userlist", "users": ["yoda"], "onlinetype": True}),
            ({"type": "userlist"}, {"type": "userlist", "users": ["yoda"], "onlinetype": True}),
            (
                {"type": "whoelsesince", "seconds": 60},
                {"type": "userlist", "users": ["yoda"], "onlinetype": True, "since": 60},
            ),
            (
                {"type": "broadcast", "message": "x"},
                {
                    "type": "broadcast_status",
                    "seq": 1,
                    "timestamp": 1_700_000_000,
                    "delivered": 1,
                    "skipped": 0,
                    "auto_replies": [],
                },
            ),
            ({"type": "block", "target": "yoda"}, {"type": "block_status", "user": "yoda", "blocked": True}),
            ({"type": "unblock", "target": "yoda"}, {"type": "block_status", "user": "yoda", "blocked": False}),
        ]:
            hans.send_json(dict(request, id=request["type"]))
            self.assertEqual(hans.json(), [dict(expected, id=request["type"])])

    def test_errors_keep_connection_usable(self) -> None:
        connection = self.connect()
        connection.login_json("yoda")
        connection.send(b"{not json", b"\n")
        connection.send_json({"type": "message", "to": "hans", "id": 5})
        connection.send_json({"type": "fly", "id": 6})
        connection.send_json({"type": "message", "to": "vader", "message": "x", "id": 7})
        connection.send(b'{"type":"whoelse","id":8}\xff', b"\n")
        connection.send_json({"type": "whoelse", "id": 9})
        replies = connection.json()
        self.assertEqual(
            [(r["type"], r.get("code"), r.get("id")) for r in replies],
            [
                ("error", "invalid_json", None),
                ("error", "missing_field", 5),
                ("error", "invalid_command", 6),
                ("error", "invalid_user", 7),
                ("error", "invalid_json", None),
                ("userlist", None, 9),
            ],
        )

    def test_user_field_is_checked_not_trusted(self) -> None:
        yoda, = self.online("yoda")
        hans = self.connect()
        hans.login_json("hans")
        yoda.output()
        hans.send_json({"type": "message", "user": "yoda", "to": "yoda", "message": "x", "id": 1})
        self.assertEqual(hans.json()[0]["code"], "user_mismatch")
        self.assertEqual(yoda.output(), "")
        hans.send_json({"type": "message", "user": "hans", "to": "yoda", "message": "x"})
        self.assertEqual(yoda.lines(), ["hans: x"])

    def test_second_login_request_refused(self) -> None:
        connection = self.connect()
        connection.login_json("yoda")
        connection.send_json({"type": "login", "user": "hans", "password": "falcon"})
        self.assertEqual(connection.json()[0]["code"], "already_logged_in")
        self.assertNotIn("hans", self.harness.state.sessions)


@implementer(ICredentialsChecker)
class ManualChecker:
    """A checker whose answers the test gives by firing Deferreds."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self) -> None:
        self.pending: list[tuple[str, defer.Deferred[str]]] = []

    def requestAvatarId(self, credentials: IUsernamePassword) -> defer.Deferred[str]:
        d: defer.Deferred[str] = defer.Deferred()
        self.pending.append((credentials.username, d))
        return d


class SlowLoginTests(HarnessTestCase):
    """Password checks that take time (as hashing in a thread will)."""

    def setUp(self) -> None:
        super().setUp()
        self.checker = ManualChecker()
        harness = self.harness
        gate = LoginGate(
            Portal(ChatRealm(harness.state), [LockoutChecker(self.checker, harness.lockout)]),
            harness.accounts,
            harness.lockout,
        )
        harness.factory = ChatFactory(gate, harness.clock, harness.policy)

    def test_lines_wait_for_the_login(self) -> None:
        connection = self.connect()
        connection.protocol.dataReceived(
            b'{"type":"login","user":"yoda","password":"wise"}\n{"type":"whoelse","id":1}\n'
        )
        self.assertEqual(connection.json(), [])
        self.assertEqual(connection.transport.producerState, "paused")
        (_, d), = self.checker.pending
        d.callback("yoda")
        replies = connection.json()
        self.assertEqual([r["type"] for r in replies], ["login", "userlist"])
        self.assertEqual(connection.transport.producerState, "producing")

    def test_text_login_checked_later_keeps_no_telnet_layer(self) -> None:
        """The login ends after the last line arrived: the idle connection lets its telnet layer go all the same."""
        connection = self.connect()
        connection.send("yoda")
        connection.send("wise")
        self.assertIsNotNone(connection.protocol._telnet)  # made at the password prompt
        (_, d), = self.checker.pending
        d.callback("yoda")
        self.assertIn("Welcome to chatservice, yoda!", connection.output())
        self.assertIsNone(connection.protocol._telnet)

    def test_connection_lost_during_check(self) -> None:
        connection = self.connect()
        connection.send("yoda")
        connection.send("wise")
        connection.drop()
        (_, d), = self.checker.pending
        d.callback("yoda")
        self.assertEqual(self.harness.state.sessions, {})

    def test_failure_after_drop_is_quiet(self) -> None:
        connection = self.connect()
        connection.send("yoda")
        connection.send("nope")
        connection.drop()
        (_, d), = self.checker.pending
        d.errback(WrongPassword("yoda"))
        self.assertEqual(self.harness.state.sessions, {})


class PeerIntroductionTests(HarnessTestCase):
    """startprivate and sendfile hand out peer addresses and one-time tokens."""

    def json_user(self, username: str, **ports: int) -> Connection:
        connection = self.connect()
        connection.send_json(
            dict(
                {"type": "login", "user": username, "password": SAMPLE_ACCOUNTS[username]},
                **ports,
            )
        )
        self.assertTrue(connection.json()[0]["success"])
        return connection

    def test_startprivate_gives_both_sides_the_token(self) -> None:
        hans = self.json_user("hans", p2p_port=5001, udp_port=5002)
        yoda = self.json_user("yoda", p2p_port=6001)
        hans.json()
        yoda.send_json({"type": "startprivate", "target": "hans", "id": 1})
        (reply,) = yoda.json()
        (request,) = hans.json()
        self.assertEqual(
            {k: reply[k] for k in ("type", "user", "host", "port", "id")},
            {"type": "private_address", "user": "hans", "host": hans.protocol.connection.host, "port": 5001, "id": 1},
        )
        self.assertEqual(request, {"type": "private_request", "from": "yoda", "token": reply["token"]})
        self.assertEqual(len(reply["token"]), 32)
        yoda.send_json({"type": "startprivate", "target": "hans", "id": 2})
        self.assertNotEqual(yoda.json()[0]["token"], reply["token"])

    def test_sendfile_gives_receiver_the_offer(self) -> None:
        hans = self.json_user("hans", p2p_port=5001, udp_port=5002)
        yoda = self.json_user("yoda")
        hans.json()
        yoda.send_json({"type": "sendfile", "to": "hans", "filename": "a.mp4", "size": 20, "id": 1})
        (reply,) = yoda.json()
        (offer,) = hans.json()
        self.assertEqual((reply["type"], reply["port"]), ("file_address", 5002))
        self.assertEqual(
            offer,
            {"type": "file_incoming", "from": "yoda", "filename": "a.mp4", "size": 20, "token": reply["token"]},
        )

    def test_errors(self) -> None:
        hans = self.json_user("hans")
        yoda = self.json_user("yoda", p2p_port=6001, udp_port=6002)
        hans.json()
        cases = [
            ({"type": "startprivate", "target": "hans"}, "no_peer_port"),
            ({"type": "sendfile", "to": "hans", "filename": "f"}, "no_udp_port"),
            ({"type": "startprivate", "target": "luke"}, "offline"),
            ({"type": "startprivate", "target": "vader"}, "invalid_user"),
            ({"type": "startprivate", "target": "yoda"}, "self"),
            ({"type": "sendfile", "to": "hans", "filename": "f", "size": -1}, "bad_argument"),
        ]
        for request, code in cases:
            yoda.send_json(request)
            self.assertEqual(yoda.json()[0]["code"], code, request)
        yoda.send_json({"type": "block", "target": "hans"})
        hans.send_json({"type": "startprivate", "target": "yoda"})
        self.assertEqual(hans.json()[0]["code"], "blocked")
        self.assertEqual([m["type"] for m in yoda.json()], ["block_status"])

    def test_bad_port_in_login(self) -> None:
        connection = self.connect()
        connection.send_json({"type": "login", "user": "yoda", "password": "wise", "p2p_port": 70000})
        self.assertEqual(connection.json()[0]["code"], "bad_argument")
        self.assertNotIn("yoda", self.harness.state.sessions)

    def test_text_users_get_the_address_as_a_line(self) -> None:
        hans = self.json_user("hans", p2p_port=5001)
        (yoda,) = self.online("yoda")
        yoda.send("startprivate hans")
        (line,) = yoda.lines()
        self.assertTrue(
            line.startswith(f"Private chat with hans: connect to {hans.protocol.connection.host}:5001 with token ")
        )

