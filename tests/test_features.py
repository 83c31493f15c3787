"""Status, rooms, history, active users and address lock-out, through the protocol."""

from __future__ import annotations

import re

from chatservice.commands import BAD_TIME
from chatservice.session import DEFAULT_AUTO_REPLY
from chatservice.timefmt import format_timestamp
from tests.support import Connection
from tests.test_protocol import START, HarnessTestCase


class BusyTests(HarnessTestCase):
    """busy / idle: messages kept, auto-reply once per sender per busy period."""

    def test_busy_keeps_messages_and_replies_once(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("busy in a meeting")
        self.assertEqual(yoda.lines(), ["You are busy. Auto-reply: in a meeting"])
        hans.send("message yoda one")
        self.assertEqual(
            hans.lines(),
            [
                "yoda is busy; your message will be delivered when they are available.",
                "Auto-reply from yoda: in a meeting",
            ],
        )
        hans.send("message yoda two")
        self.assertEqual(
            hans.lines(),
            ["yoda is busy; your message will be delivered when they are available."],
        )
        hans.send("broadcast everyone")
        self.assertEqual(hans.lines(), [f"Broadcast message, #1 broadcast at {START}"])
        self.assertEqual(yoda.output(), "")
        yoda.send("idle")
        self.harness.run_due()  # the kept messages written and forgotten: the reply
        lines = yoda.lines()
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[0].endswith("] hans: one"))
        self.assertTrue(lines[1].endswith("] hans: two"))
        self.assertEqual(
            lines[2],
            "You are available again. 2 direct message(s) were kept for you (shown"
            " above); you missed 1 broadcast or room message(s) (see read).",
        )
        hans.send("message yoda three")
        self.assertEqual(yoda.lines(), ["hans: three"])

    def test_new_busy_period_replies_again_with_default(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        for _ in range(2):
            yoda.send("busy")
            hans.send("message yoda x")
            self.assertIn(f"Auto-reply from yoda: {DEFAULT_AUTO_REPLY}", hans.lines())
            yoda.send("available")
            self.harness.run_due()  # its reply, once the kept message is written
        yoda.send("idle")
        self.assertIn("Error. You are not busy.", yoda.lines())

    def test_busy_user_logging_out_gets_kept_messages_next_time(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("busy")
        hans.send("message yoda later")
        yoda.send("logout")
        yoda.drop()
        again = self.connect()
        again.send("yoda")
        again.send("wise")
        self.assertTrue(again.lines()[-1].endswith("] hans: later"))
        self.harness.run_due()  # written: forgotten
        self.assertEqual(self.harness.store.offline_messages("yoda"), [])

    def test_json_busy_flow(self) -> None:
        (hans,) = self.online("hans")
        yoda = self.connect()
        yoda.login_json("yoda")
        yoda.send_json({"type": "busy", "message": "away", "id": 1})
        self.assertEqual(
            yoda.json(),
            [{"type": "status_changed", "status": "busy", "auto_reply": "away", "id": 1}],
        )
        hans.send("message yoda hi")
        yoda.send_json({"type": "idle", "id": 2})
        self.harness.run_due()
        kept, status = yoda.json()
        self.assertEqual((kept["type"], kept["offline"], kept["message"]), ("message", True, "hi"))
        self.assertEqual(
            status, {"type": "status_changed", "status": "available", "kept": 1, "missed": 0, "id": 2}
        )


class HideTests(HarnessTestCase):
    """hide / appear: left out of every list and presence notice."""

    harness_options = {"timeout": 100_000}

    def test_hidden_user_in_no_list_but_gets_messages(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("hide")
        self.assertEqual(yoda.lines(), ["You are hidden: other users do not see you online."])
        self.harness.clock.advance(100)
        for command, empty in [
            ("whoelse", "No other users are online."),
            ("who", "No other users are online."),
            ("whoelsesince 10", "No other users were online in the last 10 seconds."),
            ("last 1", "No other users were online in the last 60 seconds."),
            ("active", "No other users are active."),
        ]:
            hans.send(command)
            self.assertEqual(hans.lines(), [empty], command)
        hans.send("message yoda still there?")
        self.assertEqual(yoda.lines(), ["hans: still there?"])
        # Delivered, but hans is told what an offline user's sender is told.
        self.assertEqual(
            hans.lines(), ["yoda is offline; your message will be delivered when they log in."]
        )
        yoda.send("logout")
        yoda.drop()
        self.assertEqual(hans.output(), "")

    def test_hidden_user_was_visible_until_hiding(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        self.harness.clock.advance(50)
        yoda.send("hide")
        self.harness.clock.advance(50)
        hans.send("whoelsesince 60")
        self.assertEqual(hans.lines(), ["yoda"])
        hans.send("whoelsesince 40")
        self.assertEqual(hans.lines(), ["No other users were online in the last 40 seconds."])

    def test_hidden_login_of_others_and_appear(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("hide")
        yoda.send("appear")
        self.assertEqual(yoda.lines()[-1], "You are visible again.")
        hans.send("whoelse")
        self.assertEqual(hans.lines(), ["yoda"])

    def test_status(self) -> None:
        (yoda,) = self.online("yoda")
        self.harness.clock.advance(3725)
        yoda.send("status")
        self.assertEqual(
            yoda.lines(),
            [f"You are available and visible; logged in since {START} (1h 02m 05s)."],
        )
        yoda.send("busy brb")
        yoda.send("hide")
        yoda.output()
        yoda.send("status")
        self.assertTrue(yoda.lines()[0].startswith("You are busy (auto-reply: brb) and hidden;"))


class SendTests(HarnessTestCase):
    """send to one or several users, one report."""

    def test_send_to_many(self) -> None:
        yoda, hans, luke, leia = self.online("yoda", "hans", "luke", "leia")
        luke.send("block yoda")
        leia.send("busy off")
        yoda.send("send (hans luke leia obiwan vader yoda) hello there")
        self.assertEqual(
            yoda.lines(),
            [
                "Sent to hans.",
                "Kept for leia, obiwan (offline or busy) until they are back.",
                "Could not send to luke (has blocked you), vader (no such user),"
                " yoda (that is you).",
                "Auto-reply from leia: off",
            ],
        )
        self.assertEqual(hans.lines(), ["yoda: hello there"])

    def test_send_to_one(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("send hans hi you")
        self.assertEqual(yoda.lines(), ["Sent to hans."])
        self.assertEqual(hans.lines(), ["yoda: hi you"])

    def test_send_json_list(self) -> None:
        yoda = self.connect()
        yoda.login_json("yoda")
        yoda.send_json({"type": "send", "to": ["hans", "vader"], "message": "m", "id": 4})
        self.assertEqual(
            yoda.json(),
            [
                {
                    "type": "send_status",
                    "delivered": [],
                    "stored": ["hans"],
                    "failed": [{"user": "vader", "reason": "no such user"}],
                    "auto_replies": [],
                    "id": 4,
                }
            ],
        )

    def test_bad_send(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("send (hans luke hi")
        self.assertTrue(yoda.lines()[0].startswith("Error. Usage: send"))


class RoomTests(HarnessTestCase):
    """room create / send / leave and rooms."""

    def test_room_life(self) -> None:
        yoda, hans, luke = self.online("yoda", "hans", "luke")
        yoda.send("room create hans luke")
        self.assertEqual(yoda.lines(), ["Room 1 created with hans, luke, yoda."])
        self.assertEqual(hans.lines(), ["yoda added you to room 1 with hans, luke, yoda."])
        luke.output()
        hans.send("SRB luke yoda")
        self.assertEqual(
            hans.lines(), ["Room 1 already exists with hans, luke, yoda; use it."]
        )
        hans.send("room send 1 hello room")
        self.assertEqual(hans.lines(), [f"Room 1 message, #1 sent at {START}"])
        self.assertEqual(yoda.lines(), ["[room 1] hans: hello room"])
        self.assertEqual(luke.lines(), ["[room 1] hans: hello room"])
        luke.send("srm 1 second")
        self.assertEqual(luke.lines(), [f"Room 1 message, #2 sent at {START}"])
        yoda.send("rooms")
        self.assertEqual(yoda.lines()[-1], "Room 1: hans, luke, yoda")
        luke.send("room leave 1")
        self.assertEqual(luke.lines(), ["luke left room 1."])
        self.assertEqual(yoda.lines(), ["luke left room 1."])
        luke.send("room send 1 x")
        self.assertEqual(luke.lines(), ["Error. You are not in room 1."])
        hans.send("room leave 1")
        yoda.send("room leave 1")
        self.assertEqual(
            yoda.lines(), ["hans left room 1.", "yoda left room 1. The room was removed as it is empty."]
        )
        yoda.send("room send 1 x")
        self.assertEqual(yoda.lines(), ["Error. Room 1 does not exist."])

    def test_room_create_errors(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        for command, error in [
            ("room create yoda", "Error. A room needs at least one other user."),
            ("room create vader", "Error. Invalid user vader."),
            ("room create luke", "Error. luke is offline."),
            ("room create", "Error. Usage: room create <user> [<user> ...]"),
        ]:
            yoda.send(command)
            self.assertEqual(yoda.lines(), [error], command)
        hans.send("block yoda")
        yoda.send("room create hans")
        self.assertEqual(yoda.lines(), ["Error. hans has blocked you."])

    def test_room_json(self) -> None:
        (hans,) = self.online("hans")
        yoda = self.connect()
        yoda.login_json("yoda")
        hans.output()
        yoda.send_json({"type": "room_create", "members": ["hans"], "id": 1})
        self.assertEqual(
            yoda.json(),
            [{"type": "room_created", "room": 1, "members": ["hans", "yoda"], "existed": False, "id": 1}],
        )
        hans.send("room send 1 hi")
        self.assertEqual(
            yoda.json(),
            [
                {
                    "type": "room_message",
                    "room": 1,
                    "from": "hans",
                    "message": "hi",
                    "timestamp": 1_700_000_000,
                    "seq": 1,
                }
            ],
        )
        yoda.send_json({"type": "rooms", "id": 2})
        self.assertEqual(
            yoda.json(), [{"type": "rooms", "rooms": [{"room": 1, "members": ["hans", "yoda"]}], "id": 2}]
        )


class HistoryTests(HarnessTestCase):
    """read: broadcasts and your rooms' messages strictly after a time."""

    def test_read_strictly_after(self) -> None:
        yoda, hans, luke = self.online("yoda", "hans", "luke")
        hans.send("broadcast first")
        self.harness.clock.advance(1.5)
        yoda.send("room create hans")
        hans.send("room send 1 in room")
        luke.send("room create hans")
        hans.send("room send 2 not for yoda")
        self.harness.clock.advance(1)
        hans.send("BCM third")
        for connection in (yoda, hans, luke):
            connection.output()
        t0, t1, t2 = (format_timestamp(1_700_000_000 + d) for d in (0, 1.5, 2.5))
        yoda.send(f"read {START}")
        self.assertEqual(
            yoda.lines(),
            [
                f"#1 room 1, hans: in room, posted at {t1}",
                f"#2 broadcast, hans: third, posted at {t2}",
            ],
        )
        yoda.send(f"RDM {format_timestamp(1_700_000_000 - 1)}")
        self.assertEqual(len(yoda.lines()), 3)
        yoda.send(f"read {t2}")
        self.assertEqual(yoda.lines(), ["No new messages."])
        yoda.send("read tomorrow")
        self.assertEqual(yoda.lines(), [BAD_TIME])

    def test_read_accepts_single_digit_day(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("read 1 Jun 2022 16:00:00")
        self.assertEqual(yoda.lines(), ["No new messages."])

    def test_read_respects_blocks(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("block hans")
        hans.send("broadcast hidden from yoda")
        yoda.output()
        yoda.send(f"read {format_timestamp(1_699_999_000)}")
        self.assertEqual(yoda.lines(), ["No new messages."])


class ActiveTests(HarnessTestCase):
    """active: other users with address, peer port and since when."""

    def test_active(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("ATU")
        self.assertEqual(yoda.lines(), ["No other users are active."])
        self.harness.clock.advance(5)
        hans = self.connect()
        hans.send_json({"type": "login", "user": "hans", "password": "falcon", "p2p_port": 6666})
        (luke,) = self.online("luke")
        yoda.output()
        yoda.send("active")
        since = format_timestamp(1_700_000_005)
        self.assertEqual(
            yoda.lines(),
            [
                f"hans, {hans.protocol.connection.host}, 6666, active since {since}",
                f"luke, {luke.protocol.connection.host}, -, active since {since}",
            ],
        )


class AliasTests(HarnessTestCase):
    """The upper-case words of the older design, in any case."""

    def test_aliases(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("bcm hi")
        self.assertEqual(hans.lines(), ["[broadcast] yoda: hi"])
        yoda.send("Who")
        self.assertEqual(yoda.lines()[-1], "hans")
        yoda.send("OUT")
        self.assertEqual(yoda.lines()[-1], "Goodbye, yoda!")
        self.assertTrue(yoda.closed)

    def test_help_lists_everything(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("help")
        text = yoda.output()
        for usage in (
            "busy [<auto-reply>]",
            "idle",
            "hide",
            "appear",
            "status",
            "last <minutes>",
            "active",
            "send <user|(user1 user2 ...)> <text>",
            "read [<when>]",
            "room create <user> [<user> ...]",
            "room send <id> <text>",
            "room leave <id>",
            "rooms",
            "blocks",
        ):
            # The usage, then its summary (on the next line for a long usage).
            self.assertRegex(text, rf"\r\n  {re.escape(usage)}(  |\r\n)")


class AddressLockoutTests(HarnessTestCase):
    """An address with too many failed logins in a row is refused for a while."""

    def fail_login(self, connection: Connection, username: str) -> None:
        connection.send(username)
        connection.send("wrong")

    def test_failures_across_user_names_lock_the_address(self) -> None:
        for username in ("yoda", "hans"):
            attempt = self.harness.connect(host="192.0.2.7")
            self.connections.append(attempt)
            self.fail_login(attempt, username)
        first = self.harness.connect(host="192.0.2.7")
        self.connections.append(first)
        first.send("luke")
        first.output()
        first.send("wrong")
        self.assertEqual(
            first.lines(),
            [
                "Invalid Password. Your address has been blocked after too many"
                " failures. Please try again in 1 minute."
            ],
        )
        self.assertTrue(first.closed)
        again = self.harness.connect(host="192.0.2.7")
        self.connections.append(again)
        again.send("obiwan")
        self.assertEqual(
            again.lines(),
            ["Your address is blocked due to multiple login failures. Please try again in 1 minute."],
        )
        other = self.harness.connect(host="192.0.2.8")
        self.connections.append(other)
        other.login("obiwan")
        self.assertIn("obiwan", self.harness.state.sessions)
        self.harness.clock.advance(60)
        after = self.harness.connect(host="192.0.2.7")
        self.connections.append(after)
        after.send("leia")
        after.send("princess")
        self.assertIn("Welcome to chatservice, leia!", after.output())

    def test_success_resets_the_address_count(self) -> None:
        connection = self.harness.connect(host="192.0.2.9")
        self.connections.append(connection)
        connection.send("yoda")
        connection.send("bad")
        connection.send("bad")
        connection.send("wise")
        connection.send("logout")
        connection.drop()
        second = self.harness.connect(host="192.0.2.9")
        self.connections.append(second)
        second.send("hans")
        second.send("bad")
        second.send("bad")
        second.send("falcon")
        self.assertIn("Welcome to chatservice, hans!", second.output())

    def test_loopback_is_not_exempt(self) -> None:
        connection = self.harness.connect(host="127.0.0.1")
        self.connections.append(connection)
        for name in ("yoda", "hans", "luke"):
            self.fail_login(connection, name)
        self.assertIsNotNone(self.harness.address_lockout.locked_for("127.0.0.1"))
