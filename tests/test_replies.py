"""The server's replies a person reads (issue 14): through the text and JSON paths users hit."""

from __future__ import annotations

from twisted.trial import unittest

from tests.support import ChatHarness, Connection


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
