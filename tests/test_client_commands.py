"""Typed lines become JSON requests (server commands) or client actions."""

from __future__ import annotations

from twisted.trial import unittest

from chatservice.client.commands import CLIENT_COMMANDS, ClientCommand, CommandTable, json_request
from chatservice.commands import COMMANDS, TEXT, Argument, CommandError
from chatservice.timefmt import parse_timestamp


class ServerCommandTests(unittest.TestCase):
    def setUp(self) -> None:
        self.table = CommandTable()

    def request(self, line: str) -> dict:
        typed = self.table.parse(line)
        assert typed is not None
        self.assertIsNone(typed.command)
        return typed.request

    def test_simple_commands(self) -> None:
        self.assertEqual(self.request("whoelse"), {"type": "whoelse"})
        self.assertEqual(self.request("WHOELSE"), {"type": "whoelse"})
        self.assertEqual(self.request("logout"), {"type": "logout"})
        self.assertEqual(self.request("help"), {"type": "help"})

    def test_words_and_text(self) -> None:
        self.assertEqual(
            self.request("message hans Hey   Dude "),
            {"type": "message", "to": "hans", "message": "Hey   Dude"},
        )
        self.assertEqual(self.request("block hans"), {"type": "block", "target": "hans"})
        self.assertEqual(self.request("broadcast dinner at eight"), {"type": "broadcast", "message": "dinner at eight"})

    def test_numbers(self) -> None:
        self.assertEqual(self.request("whoelsesince 60"), {"type": "whoelsesince", "seconds": 60.0})

    def test_aliases_and_optional_arguments(self) -> None:
        self.assertEqual(self.request("bcm hi all"), {"type": "broadcast", "message": "hi all"})
        self.assertEqual(self.request("busy"), {"type": "busy"})
        self.assertEqual(self.request("busy back soon"), {"type": "busy", "message": "back soon"})

    def test_commands_the_server_added(self) -> None:
        self.assertEqual(
            self.request("room create hans luke"),
            {"type": "room_create", "members": ["hans", "luke"]},
        )
        self.assertEqual(
            self.request("send (hans luke) hi there"),
            {"type": "send", "to": ["hans", "luke"], "message": "hi there"},
        )
        self.assertEqual(self.request("users offline"), {"type": "users", "onlinetype": "offline"})
        self.assertEqual(
            self.request("read 1 Jun 2022 16:00:00"),
            {"type": "read", "since": parse_timestamp("1 Jun 2022 16:00:00")},
        )

    def test_every_server_command_is_understood(self) -> None:
        ours = {c.name for c in CLIENT_COMMANDS}
        for command in COMMANDS:
            if command.name in ours:
                continue
            words = [command.name]
            for argument in command.arguments:
                if argument.choices:
                    words.append(argument.choices[0])
                elif argument.kind in ("seconds", "count"):
                    words.append("5")
                elif argument.kind == "timestamp":
                    words.append("1 Jun 2022 16:00:00")
                elif argument.kind == "cursor":
                    words.append("1654092000.0/broadcast/3")
                elif argument.kind == "duration":
                    words.append("10m")
                else:
                    words.append("hans")
            with self.subTest(command=command.name):
                request = self.request(" ".join(words))
                self.assertEqual(request["type"], command.name.replace(" ", "_"))

    def test_unknown_command_sends_nothing(self) -> None:
        with self.assertRaises(CommandError) as caught:
            self.table.parse("dance with me")
        self.assertEqual(caught.exception.message, "Error. Invalid command (type help for the list)")

    def test_usage_errors(self) -> None:
        with self.assertRaises(CommandError) as caught:
            self.table.parse("message hans")
        self.assertEqual(caught.exception.message, "Error. Usage: message <user> <text>")
        with self.assertRaises(CommandError):
            self.table.parse("whoelsesince soon")
        with self.assertRaises(CommandError):
            self.table.parse("whoelse now")

    def test_blank_lines(self) -> None:
        self.assertIsNone(self.table.parse(""))
        self.assertIsNone(self.table.parse("   "))


class ClientCommandTests(unittest.TestCase):
    def setUp(self) -> None:
        self.table = CommandTable()

    def test_private_commands(self) -> None:
        typed = self.table.parse("startprivate hans")
        self.assertEqual((typed.command.handler, typed.arguments), ("start_private", {"target": "hans"}))
        typed = self.table.parse("private hans this goes straight  to hans")
        self.assertEqual(
            (typed.command.handler, typed.arguments),
            ("send_private", {"to": "hans", "message": "this goes straight  to hans"}),
        )
        typed = self.table.parse("StopPrivate hans")
        self.assertEqual((typed.command.handler, typed.arguments), ("stop_private", {"target": "hans"}))

    def test_sendfile_and_its_alias(self) -> None:
        for word in ("sendfile", "UPD", "upd"):
            typed = self.table.parse(f"{word} hans my lecture 1.mp4")
            self.assertEqual(
                (typed.command.handler, typed.arguments),
                ("send_file", {"to": "hans", "path": "my lecture 1.mp4"}),
            )

    def test_client_usage_errors(self) -> None:
        with self.assertRaises(CommandError) as caught:
            self.table.parse("private hans")
        self.assertEqual(caught.exception.message, "Error. Usage: private <user> <text>")
        with self.assertRaises(CommandError):
            self.table.parse("startprivate hans luke")
        with self.assertRaises(CommandError):
            self.table.parse("sendfile")

    def test_adding_a_command_is_one_entry(self) -> None:
        table = CommandTable(
            CLIENT_COMMANDS
            + (ClientCommand("shout", (Argument("message", "text", TEXT),), "shout", "shout"),)
        )
        typed = table.parse("shout hello")
        self.assertEqual((typed.command.handler, typed.arguments), ("shout", {"message": "hello"}))
        self.assertIn(("shout <text>", "shout"), table.client_help())

    def test_help_entries(self) -> None:
        usages = [usage for usage, _summary in self.table.client_help()]
        self.assertEqual(
            usages,
            [
                "startprivate <user>", "private <user> <text>", "stopprivate <user>",
                "sendfile <user> <path>", "accept [<user>]", "decline [<user>]",
            ],
        )


class JsonRequestTests(unittest.TestCase):
    def test_shape(self) -> None:
        self.assertEqual(
            json_request("room send", {"room": 2, "message": "hi", "extra": None}),
            {"type": "room_send", "room": 2, "message": "hi"},
        )
        self.assertEqual(json_request("send", {"to": ("a", "b")}), {"type": "send", "to": ["a", "b"]})
