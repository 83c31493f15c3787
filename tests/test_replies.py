"""The server's replies a person reads (issue 14): through the text and JSON paths users hit."""

from __future__ import annotations

import time

from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from chatservice.history import PAGE_ENTRIES
from chatservice.timefmt import format_timestamp

from tests.support import SAMPLE_ACCOUNTS, ChatHarness, Connection


class RepliesTestCase(unittest.TestCase):
    harness_options: dict = {}

    def setUp(self) -> None:
        self.harness = ChatHarness(**self.harness_options)
        self.connections: list[Connection] = []

    def tearDown(self) -> None:
        self.harness.close_all(*self.connections)
        self.harness.clock.advance(3600)
        self.assertEqual(self.harness.clock.getDelayedCalls(), [])

    def online(self, *names: str) -> list[Connection]:
        connections = self.harness.online(*names)
        self.connections += connections
        return connections

    def connect(self) -> Connection:
        connection = self.harness.connect()
        self.connections.append(connection)
        return connection


class HelpTests(RepliesTestCase):
    def test_the_list_fits_80_columns_and_names_the_aliases(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("help")
        lines = yoda.lines()
        self.assertEqual(lines[0], "Commands:")
        self.assertEqual([line for line in lines if len(line) > 80], [])
        other_names = " ".join(line for line in lines if "=" in line)
        for alias, command in (("who", "whoelse"), ("bcm", "broadcast"), ("srb", "room create")):
            self.assertIn(f"{alias} = {command}", other_names)
        self.assertEqual(lines[-1], "Type help COMMAND for one command and its other names.")

    def test_one_command_by_any_name(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("help who")
        self.assertEqual(
            yoda.lines(), ["whoelse", "    list the other users online now", "    Also: who."]
        )
        yoda.send("help BROADCAST")
        self.assertEqual(
            yoda.lines(),
            ["broadcast <text>", "    send <text> to every other online user", "    Also: bcm."],
        )
        yoda.send("help room")
        lines = yoda.lines()
        self.assertEqual(
            [line for line in lines if not line.startswith(" ")],
            ["room create <user> [<user> ...]", "room send <id> <text>", "room leave <id>"],
        )
        yoda.send("help room leave")
        self.assertEqual(yoda.lines()[0], "room leave <id>")

    def test_unknown_command(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("help fly")
        self.assertEqual(yoda.lines(), ["Error. There is no command fly (type help for the list)."])

    def test_json(self) -> None:
        connection = self.connect()
        connection.login_json("yoda")
        connection.send_json({"type": "help", "command": "who", "id": 1})
        (reply,) = connection.json()
        self.assertEqual(
            reply,
            {
                "type": "help",
                "commands": [{"usage": "whoelse", "summary": "list the other users online now"}],
                "aliases": {"who": "whoelse"},
                "topic": "who",
                "id": 1,
            },
        )
        connection.send_json({"type": "help", "id": 2})
        (reply,) = connection.json()
        self.assertEqual(reply["aliases"]["rdm"], "read")


class ReadTests(RepliesTestCase):
    harness_options = {"timeout": 10**6}
    def post_at(self, sender: Connection, offset: float, text: str) -> None:
        """``sender`` broadcasts ``text`` ``offset`` seconds from now, then the clock moves on."""
        self.harness.clock.advance(offset)
        sender.send(f"broadcast {text}")
        sender.output()

    def test_relative_times(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        self.post_at(hans, 0, "three hours ago")
        self.post_at(hans, 3600, "two hours ago")
        self.post_at(hans, 3600 * 2 - 300, "five minutes ago")
        self.harness.clock.advance(300)
        yoda.output()
        yoda.send("read 10m")
        self.assertEqual([line.split(", posted")[0] for line in yoda.lines()], ["#3 broadcast, hans: five minutes ago"])
        yoda.send("read 2.5h")
        self.assertEqual(len(yoda.lines()), 2)
        yoda.send("rdm 4 h")
        self.assertEqual(len(yoda.lines()), 3)
        yoda.send("read 1s")
        self.assertEqual(yoda.lines(), ["No new messages."])

    def test_today_and_yesterday_are_from_midnight(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        self.post_at(hans, 0, "now")
        yoda.output()
        now = self.harness.clock.seconds()
        day = time.localtime(now)
        midnight = time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, 0, 0, -1))
        yoda.send("read today")
        self.assertEqual(len(yoda.lines()), 1)
        # A day later the broadcast is yesterday's.
        self.harness.clock.advance(midnight + 86400 + 60 - now)
        yoda.send("read today")
        self.assertEqual(yoda.lines(), ["No new messages."])
        yoda.send("read yesterday")
        self.assertEqual(len(yoda.lines()), 1)

    def test_bare_read_is_since_the_last_logout(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("read")
        self.assertEqual(
            yoda.lines(),
            [
                "Error. There is no earlier logout of yours to read from; give a time"
                " (read 10m, read today, read 1 Jun 2022 16:00:00)."
            ],
        )
        self.post_at(hans, 10, "before")
        yoda.send("logout")
        yoda.drop()
        self.post_at(hans, 10, "while away")
        self.post_at(hans, 10, "also while away")
        again = self.connect()
        again.login("yoda")
        again.send("read")
        self.assertEqual(
            [line.split(", posted")[0] for line in again.lines()],
            ["#2 broadcast, hans: while away", "#3 broadcast, hans: also while away"],
        )

    def test_json_relative_and_bare(self) -> None:
        (hans,) = self.online("hans")
        self.post_at(hans, 0, "hi")
        yoda = self.connect()
        yoda.login_json("yoda")
        yoda.send_json({"type": "read", "since": "5m", "id": 1})
        (reply,) = yoda.json()
        self.assertEqual((reply["type"], len(reply["messages"])), ("history", 1))
        self.assertEqual(reply["after"], self.harness.clock.seconds() - 300)
        yoda.send_json({"type": "read", "id": 2})
        (reply,) = yoda.json()
        self.assertEqual((reply["type"], reply["code"]), ("error", "bad_argument"))


    def test_chat_client_sends_the_relative_time_on(self) -> None:
        """chat-client parses typed lines with the server's parser and sends them as JSON."""
        import json

        from chatservice.client.commands import CommandTable

        typed = CommandTable().parse("read 10m")
        assert typed is not None
        self.assertEqual(json.loads(json.dumps(typed.request)), {"type": "read", "since": "10m"})


class LoginSummaryTests(RepliesTestCase):
    def test_counted_after_the_kept_messages(self) -> None:
        yoda, hans, luke = self.online("yoda", "hans", "luke")
        hans.send("room create luke")
        hans.output()
        yoda.send("logout")
        yoda.drop()
        logged_out = self.harness.clock.seconds()
        self.harness.clock.advance(5)
        hans.send("broadcast one")
        hans.send("room send 1 not for yoda")
        hans.send("message yoda kept")
        luke.send("broadcast two")
        again = self.connect()
        again.send("yoda")
        again.send("wise")
        self.harness.run_due()  # the summary follows once the kept message is written
        lines = again.lines()
        self.assertTrue(lines[0].startswith("Password: Welcome to chatservice, yoda!"), lines)
        self.assertTrue(lines[1].endswith("] hans: kept"), lines)
        self.assertEqual(
            lines[2],
            f"Since your last logout ({format_timestamp(logged_out)}): 2 broadcast or room"
            " message(s); type read to see them.",
        )
        self.assertEqual(len(lines), 3)

    def test_none_at_the_first_login_or_for_a_guest(self) -> None:
        connection = self.connect()
        connection.login("yoda")
        self.assertEqual(connection.lines(), [])

    def test_nothing_when_nothing_was_posted(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("logout")
        yoda.drop()
        again = self.connect()
        again.send("yoda")
        again.send("wise")
        self.assertEqual(
            again.lines(), ["Password: Welcome to chatservice, yoda! Type help for the list of commands."]
        )

    def test_json(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("logout")
        yoda.drop()
        logged_out = self.harness.clock.seconds()
        self.harness.clock.advance(1)  # read counts from the next whole second
        hans.send("broadcast hi")
        again = self.connect()
        again.send_json({"type": "login", "user": "yoda", "password": "wise"})
        login, missed = again.json()
        self.assertEqual(login["type"], "login")
        self.assertEqual(missed, {"type": "missed", "count": 1, "since": logged_out})


class LongAbsenceSummaryTests(RepliesTestCase):
    harness_options = {"flood_burst": 1000, "flood_rate": 1000}

    def test_more_than_a_page_says_or_more(self) -> None:
        """Counted on read's first page: past it, "at least" (text and JSON)."""
        yoda, luke, hans = self.online("yoda", "luke", "hans")
        for leaving in (yoda, luke):
            leaving.send("logout")
            leaving.drop()
        logged_out = self.harness.clock.seconds()
        self.harness.clock.advance(1)
        for number in range(PAGE_ENTRIES + 1):
            hans.send(f"broadcast {number}")
        again = self.connect()
        again.send("yoda")
        again.send("wise")
        self.assertEqual(
            again.lines()[-1],
            f"Since your last logout ({format_timestamp(logged_out)}): {PAGE_ENTRIES} or more"
            " broadcast or room message(s); type read to see them.",
        )
        json_client = self.connect()
        json_client.send_json({"type": "login", "user": "luke", "password": SAMPLE_ACCOUNTS["luke"]})
        missed = json_client.json()[-1]
        self.assertEqual(
            missed, {"type": "missed", "count": PAGE_ENTRIES, "since": logged_out, "more": True}
        )


class BlocksTests(RepliesTestCase):
    def test_list(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("blocks")
        self.assertEqual(yoda.lines(), ["You have blocked nobody."])
        yoda.send("block luke")
        yoda.send("block hans")
        yoda.output()
        yoda.send("blocks")
        self.assertEqual(yoda.lines(), ["You have blocked hans, luke."])
        yoda.send("unblock luke")
        yoda.output()
        yoda.send("blocks")
        self.assertEqual(yoda.lines(), ["You have blocked hans."])

    def test_json(self) -> None:
        yoda = self.connect()
        yoda.login_json("yoda")
        yoda.send_json({"type": "block", "target": "hans", "id": 1})
        yoda.send_json({"type": "blocks", "id": 2})
        self.assertEqual(yoda.json()[-1], {"type": "blocks", "users": ["hans"], "id": 2})


class MessageConfirmTests(RepliesTestCase):
    def test_delivered_in_one_line(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("message hans hi")
        self.assertEqual(yoda.lines(), ["Message delivered to hans."])
        self.assertEqual(hans.lines(), ["yoda: hi"])


class HiddenLooksOfflineTests(RepliesTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.yoda, self.hans = self.online("yoda", "hans")
        self.hans.send("busy gone fishing")
        self.hans.send("hide")
        self.hans.output()

    def test_message_and_send(self) -> None:
        self.yoda.send("message hans hi")
        self.assertEqual(
            self.yoda.lines(), ["hans is offline; your message will be delivered when they log in."]
        )
        self.yoda.send("send (hans luke) hi")
        self.assertEqual(self.yoda.lines(), ["Kept for hans, luke (offline or busy) until they are back."])

    def test_room_private_typing(self) -> None:
        for command in ("room create hans", "startprivate hans", "typing on hans"):
            self.yoda.send(command)
            self.assertEqual(self.yoda.lines(), ["Error. hans is offline."], command)

    def test_json_message(self) -> None:
        luke = self.connect()
        luke.login_json("luke")
        luke.send_json({"type": "message", "to": "hans", "message": "hi", "id": 1})
        self.assertEqual(
            luke.json(), [{"type": "message_status", "to": "hans", "stored": True, "id": 1}]
        )

    def test_visible_again(self) -> None:
        self.hans.send("appear")
        self.hans.send("idle")
        self.hans.output()
        self.yoda.send("message hans hi")
        self.assertEqual(self.yoda.lines(), ["Message delivered to hans."])


class RoomTests(RepliesTestCase):
    def test_same_members_after_a_leave_listed_once_and_reused(self) -> None:
        yoda, hans, luke = self.online("yoda", "hans", "luke")
        yoda.send("room create hans")
        yoda.send("room create hans luke")
        self.assertEqual(
            yoda.lines(),
            ["Room 1 created with hans, yoda.", "Room 2 created with hans, luke, yoda."],
        )
        luke.send("room leave 2")  # room 2 now has room 1's members
        yoda.output()
        hans.output()
        for who in (yoda, hans):
            who.send("rooms")
            self.assertEqual(who.lines(), ["Room 1: hans, yoda"])
        for _ in range(2):
            hans.send("room create yoda")
            self.assertEqual(hans.lines(), ["Room 1 already exists with hans, yoda; use it."])
        # The other number still works for whoever uses it.
        yoda.send("room send 2 still here")
        self.assertEqual(hans.lines(), ["[room 2] yoda: still here"])

    def test_room_alone_prints_its_usage(self) -> None:
        (yoda,) = self.online("yoda")
        for line in ("room", "room fly", "ROOM"):
            yoda.send(line)
            self.assertEqual(
                yoda.lines(),
                ["Error. Use room create, room send or room leave (help room shows how)."],
                line,
            )


class ServerLogTests(RepliesTestCase):
    """One log line each for logins, logouts, timeouts, lock-outs, registrations and refusals."""

    harness_options = {"allow_register": True, "timeout": 30}

    def logged(self, events: list[dict]) -> list[str]:
        return [formatEvent(event) for event in events if event.get("log_namespace", "").startswith("chatservice.server")]

    def test_each_kind_with_the_address_and_no_password(self) -> None:
        with capturedLogs() as events:
            yoda = self.connect()
            yoda.login("yoda")
            yoda.send("logout")
            yoda.drop()
            intruder = self.harness.connect(host="192.0.2.9")
            self.connections.append(intruder)
            intruder.send("hans")
            for guess in ("guess-one", "guess-two", "guess-three"):
                intruder.send(guess)
            typo = self.connect()
            typo.send("falcon")  # a password typed at the user name prompt
            typo.send("no")
            newbie = self.connect()
            newbie.send("newbie")
            newbie.send("yes")
            newbie.send("s3cret-pw")
            newbie.send("s3cret-pw")
            self.harness.clock.advance(31)
        lines = self.logged(events)
        host = yoda.connection.host
        self.assertIn(f"Login: yoda from {host} (text)", lines)
        self.assertIn(f"Logout: yoda from {host}", lines)
        self.assertIn("Refused: 'hans' from 192.0.2.9 (wrong_password)", lines)
        self.assertIn("Lock-out: 'hans' locked for 60 seconds after failures from 192.0.2.9", lines)
        self.assertIn(f"Registration: newbie from {newbie.connection.host}", lines)
        self.assertIn(f"Timeout: newbie from {newbie.connection.host} after 30 seconds of inactivity", lines)
        self.assertIn(f"Timeout: no login from {typo.connection.host} in 30 seconds", lines)
        text = "\n".join(lines)
        for secret in ("wise", "guess-", "falcon", "s3cret"):
            self.assertNotIn(secret, text)

    def test_refused_names_that_may_be_passwords_are_not_logged(self) -> None:
        with capturedLogs() as events:
            json_client = self.connect()
            json_client.send_json({"type": "login", "user": "hunter2", "password": "x"})
        lines = self.logged(events)
        self.assertEqual(
            lines, [f"Refused: an unknown name from {json_client.connection.host} (unknown_user)"]
        )
