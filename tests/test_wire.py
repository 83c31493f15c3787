"""Tests for the wire formats: :mod:`chatservice.wire.text`, :mod:`chatservice.wire.jsonlines`
and the render cache of :class:`chatservice.wire.WireFormat`.

Pure functions: lines in, requests out; events in, bytes out.  Timestamps are
rendered in local time, so the tests that show them run with ``TZ=UTC``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from twisted.trial import unittest

from chatservice import events
from chatservice.server.replies import JUST_LOCKED, WRONG_PASSWORD
from chatservice.commands import BAD_TIME, COMMANDS, CommandError, Request
from chatservice.timefmt import format_timestamp
from chatservice.wire import JSON, TEXT, jsonlines, text

T = 1_700_000_000.0
"""14 Nov 2023 22:13:20 UTC."""
T_TEXT = "14 Nov 2023 22:13:20"


def use_utc(test: unittest.TestCase) -> None:
    """Run ``test`` with the local time zone set to UTC, restored afterwards."""
    previous = os.environ.get("TZ")

    def restore() -> None:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()

    os.environ["TZ"] = "UTC"
    time.tzset()
    test.addCleanup(restore)


def reject_constant(name: str) -> Any:
    """A ``parse_constant`` for :func:`json.loads` that refuses NaN and Infinity (strict JSON)."""
    raise ValueError(f"not JSON: {name}")


class CommandErrorMixin:
    """assertCommandError for trial test cases."""

    assertRaises: Callable[..., Any]
    assertEqual: Callable[..., Any]

    def assertCommandError(
        self, code: str, message: str | None, f: Callable[..., Any], *args: Any
    ) -> CommandError:
        error: CommandError = self.assertRaises(CommandError, f, *args)
        self.assertEqual(error.code, code)
        if message is not None:
            self.assertEqual(error.message, message)
        return error


# text.decode_line -------------------------------------------------------------


class TextDecodeLineTests(CommandErrorMixin, unittest.TestCase):
    """text.decode_line: what is left of a received line (without its LF)."""

    def test_crlf(self) -> None:
        self.assertEqual(text.decode_line(b"whoelse\r"), "whoelse")

    def test_lf(self) -> None:
        self.assertEqual(text.decode_line(b"whoelse"), "whoelse")

    def test_empty(self) -> None:
        self.assertEqual(text.decode_line(b""), "")
        self.assertEqual(text.decode_line(b"\r"), "")

    def test_inner_spaces_kept(self) -> None:
        self.assertEqual(text.decode_line(b"  message hans  hi \r"), "  message hans  hi ")

    def test_utf8(self) -> None:
        self.assertEqual(
            text.decode_line("message hans héllo ☃\r".encode()), "message hans héllo ☃"
        )

    def test_nul(self) -> None:
        self.assertEqual(text.decode_line(b"who\x00else\r"), "whoelse")
        self.assertEqual(text.decode_line(b"whoelse\r\x00"), "whoelse")

    def test_backspace_and_delete(self) -> None:
        self.assertEqual(text.decode_line(b"whoelsx\x08e\r"), "whoelse")
        self.assertEqual(text.decode_line(b"whoelsx\x7fe\r"), "whoelse")
        self.assertEqual(text.decode_line(b"whx\x08\x7fhoelse"), "whoelse")

    def test_erase_more_than_typed(self) -> None:
        self.assertEqual(text.decode_line(b"\x08\x08ab\x7f\x7f\x7fc"), "c")
        self.assertEqual(text.decode_line(b"ab\x08\x08\x08"), "")

    def test_erase_removes_whole_character(self) -> None:
        self.assertEqual(text.decode_line("café\x7fe".encode()), "cafe")

    def test_invalid_utf8(self) -> None:
        for raw in (b"caf\xe9\r", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"):
            self.assertCommandError(
                "invalid_utf8",
                "Error. That line was not valid UTF-8 and was ignored.",
                text.decode_line,
                raw,
            )


# text.parse_request ------------------------------------------------------------

READ_TIME = 1_654_099_200.0
"""1 Jun 2022 16:00:00 UTC."""

TEXT_REQUESTS: list[tuple[str, Request]] = [
    ("whoelse", Request("whoelse")),
    ("WhoElse", Request("whoelse")),
    ("who", Request("whoelse")),
    ("users", Request("users", {"onlinetype": None})),
    ("users offline", Request("users", {"onlinetype": "offline"})),
    ("USERLIST Online", Request("users", {"onlinetype": "online"})),
    ("typing on", Request("typing", {"status": "on", "to": None})),
    ("typing OFF hans", Request("typing", {"status": "off", "to": "hans"})),
    ("passwd wise wiser", Request("passwd", {"old": "wise", "new": "wiser"})),
    ("whoelsesince 60", Request("whoelsesince", {"seconds": 60.0})),
    ("whoelsesince 2.5", Request("whoelsesince", {"seconds": 2.5})),
    ("whoelsesince 1e3", Request("whoelsesince", {"seconds": 1000.0})),
    ("whoelsesince 0", Request("whoelsesince", {"seconds": 0.0})),
    ("last 5", Request("last", {"minutes": 5.0})),
    ("active", Request("active")),
    ("ATU", Request("active")),
    ("message hans Hey  Dude ", Request("message", {"to": "hans", "message": "Hey  Dude"})),
    ("  Message\thans\thi\tthere", Request("message", {"to": "hans", "message": "hi\tthere"})),
    ("send hans hi there", Request("send", {"to": ("hans",), "message": "hi there"})),
    (
        "send (hans luke hans) hi all",
        Request("send", {"to": ("hans", "luke"), "message": "hi all"}),
    ),
    ("send ( hans ) hi", Request("send", {"to": ("hans",), "message": "hi"})),
    ("broadcast hello world", Request("broadcast", {"message": "hello world"})),
    ("bcm hi", Request("broadcast", {"message": "hi"})),
    ("read 1 Jun 2022 16:00:00", Request("read", {"since": READ_TIME})),
    ("rdm 01 Jun 2022  16:00:00", Request("read", {"since": READ_TIME})),
    ("read next 1700000000.5/room:2/7", Request("read next", {"after": "1700000000.5/room:2/7"})),
    ("room create hans luke", Request("room create", {"members": ("hans", "luke")})),
    ("ROOM Create hans", Request("room create", {"members": ("hans",)})),
    ("srb hans luke hans", Request("room create", {"members": ("hans", "luke")})),
    ("room send 3 hi all", Request("room send", {"room": 3, "message": "hi all"})),
    ("srm 3 hi", Request("room send", {"room": 3, "message": "hi"})),
    ("room leave 3", Request("room leave", {"room": 3})),
    ("rooms", Request("rooms")),
    ("block hans", Request("block", {"target": "hans"})),
    ("unblock hans", Request("unblock", {"target": "hans"})),
    ("busy", Request("busy", {"message": None})),
    ("busy in a meeting", Request("busy", {"message": "in a meeting"})),
    ("idle", Request("idle")),
    ("available", Request("idle")),
    ("hide", Request("hide")),
    ("appear", Request("appear")),
    ("status", Request("status")),
    ("startprivate hans", Request("startprivate", {"target": "hans"})),
    (
        "sendfile hans notes.txt 1200",
        Request("sendfile", {"to": "hans", "filename": "notes.txt", "size": 1200}),
    ),
    ("upd hans notes.txt", Request("sendfile", {"to": "hans", "filename": "notes.txt", "size": None})),
    ("logout", Request("logout")),
    ("disconnect", Request("logout")),
    ("OUT", Request("logout")),
    ("help", Request("help", {"command": None})),
    ("blocks", Request("blocks")),
    ("help room create", Request("help", {"command": "room create"})),
    # Operators' (the session refuses them to anyone else).
    ("kick hans", Request("kick", {"target": "hans", "reason": None})),
    ("kick hans  too loud ", Request("kick", {"target": "hans", "reason": "too loud"})),
    ("ban hans", Request("ban", {"target": "hans", "duration": None, "reason": None})),
    ("ban hans 2h", Request("ban", {"target": "hans", "duration": 7200.0, "reason": None})),
    (
        "ban 10.0.0.0/8 7d spam from there",
        Request("ban", {"target": "10.0.0.0/8", "duration": 604800.0, "reason": "spam from there"}),
    ),
    (
        "ban hans spamming 2h ago",
        Request("ban", {"target": "hans", "duration": None, "reason": "spamming 2h ago"}),
    ),
    ("unban #3", Request("unban", {"target": "#3"})),
    ("bans", Request("bans")),
    ("mute hans 10m", Request("mute", {"target": "hans", "duration": 600.0, "reason": None})),
    ("mute hans 30s calm down", Request("mute", {"target": "hans", "duration": 30.0, "reason": "calm down"})),
    ("unmute hans", Request("unmute", {"target": "hans"})),
    ("announce Restart at 22:00", Request("announce", {"message": "Restart at 22:00"})),
    ("whois hans", Request("whois", {"target": "hans"})),
    ("rehash", Request("rehash")),
]


class TextParseRequestTests(CommandErrorMixin, unittest.TestCase):
    """text.parse_request: a command line becomes a Request or a CommandError."""

    def setUp(self) -> None:
        use_utc(self)

    def test_every_request(self) -> None:
        for line, expected in TEXT_REQUESTS:
            self.assertEqual(text.parse_request(line), expected, line)

    def test_every_command_and_alias_covered(self) -> None:
        """The table above names every command and alias (so a new one needs a test)."""
        names = {c.name for c in COMMANDS} | {a for c in COMMANDS for a in c.aliases}
        names.discard("room_create")  # JSON spellings of two-word commands
        names.discard("room_send")
        names.discard("room_leave")
        names.discard("read_next")
        covered = set()
        for line, _request in TEXT_REQUESTS:
            words = line.lower().split()
            covered.add(words[0])
            covered.add(" ".join(words[:2]))
        self.assertEqual(names - covered, set())

    def test_blank_line(self) -> None:
        self.assertIsNone(text.parse_request(""))
        self.assertIsNone(text.parse_request("  \t "))

    def test_unknown_command(self) -> None:
        for line in ("fly away", "whoelse_since 5"):
            self.assertCommandError(
                "invalid_command",
                "Error. Invalid command (type help for the list)",
                text.parse_request,
                line,
            )
        for line in ("room", "room dance 3"):
            self.assertCommandError(
                "invalid_command",
                "Error. Use room create, room send or room leave (help room shows how).",
                text.parse_request,
                line,
            )

    def test_missing_arguments(self) -> None:
        cases = {
            "message": "Error. Usage: message <user> <text>",
            "message hans": "Error. Usage: message <user> <text>",
            "message hans    ": "Error. Usage: message <user> <text>",
            "broadcast": "Error. Usage: broadcast <text>",
            "block": "Error. Usage: block <user>",
            "unblock": "Error. Usage: unblock <user>",
            "startprivate": "Error. Usage: startprivate <user>",
            "sendfile hans": "Error. Usage: sendfile <user> <file> [<bytes>]",
            "send hans": "Error. Usage: send <user|(user1 user2 ...)> <text>",
            "send () hi": "Error. Usage: send <user|(user1 user2 ...)> <text>",
            "send (hans hi": "Error. Usage: send <user|(user1 user2 ...)> <text>",
            "room create": "Error. Usage: room create <user> [<user> ...]",
            "whoelsesince": (
                "Error. <seconds> must be a non-negative number."
                " Usage: whoelsesince <seconds>"
            ),
            "last": "Error. <minutes> must be a non-negative number. Usage: last <minutes>",
            "room leave": "Error. <id> must be a whole number. Usage: room leave <id>",
        }
        for line, message in cases.items():
            self.assertCommandError("bad_argument", message, text.parse_request, line)

    def test_extra_arguments(self) -> None:
        cases = {
            "whoelse now": "Error. Usage: whoelse",
            "block hans luke": "Error. Usage: block <user>",
            "whoelsesince 10 20": "Error. Usage: whoelsesince <seconds>",
            "room leave 3 4": "Error. Usage: room leave <id>",
            "logout now": "Error. Usage: logout",
            "sendfile hans a.txt 10 more": "Error. Usage: sendfile <user> <file> [<bytes>]",
        }
        for line, message in cases.items():
            self.assertCommandError("bad_argument", message, text.parse_request, line)

    def test_bad_choices(self) -> None:
        self.assertCommandError(
            "bad_argument",
            "Error. <on|off> is one of on, off. Usage: typing <on|off> [<user>]",
            text.parse_request,
            "typing maybe",
        )
        self.assertCommandError(
            "bad_argument",
            "Error. <online|offline> is one of online, offline. Usage: users [<online|offline>]",
            text.parse_request,
            "users everyone",
        )
        self.assertCommandError(
            "bad_argument",
            "Error. <on|off> is one of on, off. Usage: typing <on|off> [<user>]",
            jsonlines.parse_request,
            {"type": "typing", "status": 1},
        )

    def test_whoelsesince_bad_numbers(self) -> None:
        message = (
            "Error. <seconds> must be a non-negative number. Usage: whoelsesince <seconds>"
        )
        for value in ("abc", "-1", "-0.5", "nan", "NaN", "inf", "-inf", "Infinity", "1e999", "0x10"):
            self.assertCommandError(
                "bad_argument", message, text.parse_request, f"whoelsesince {value}"
            )

    def test_bad_room_number(self) -> None:
        for value in ("x", "-1", "1.5"):
            self.assertCommandError(
                "bad_argument",
                "Error. <id> must be a whole number. Usage: room send <id> <text>",
                text.parse_request,
                f"room send {value} hi",
            )

    def test_bad_timestamp(self) -> None:
        for line in ("read tomorrow", "read 31 Feb 2022 00:00:00", "read 5x", "read 1 Jun 2022"):
            self.assertCommandError(
                "bad_argument",
                BAD_TIME,
                text.parse_request,
                line,
            )

    def test_control_characters_removed_from_text(self) -> None:
        request = text.parse_request("message hans \x1b[31mred\x07 alert\x7f\x9b!")
        assert request is not None
        self.assertEqual(request.arguments, {"to": "hans", "message": "[31mred alert!"})

    def test_tab_kept_in_text(self) -> None:
        request = text.parse_request("broadcast a\tb")
        assert request is not None
        self.assertEqual(request.arguments, {"message": "a\tb"})

    def test_text_of_only_control_characters(self) -> None:
        self.assertCommandError(
            "bad_argument",
            "Error. Usage: message <user> <text>",
            text.parse_request,
            "message hans \x07\x1b",
        )

    def test_control_characters_removed_from_user_name(self) -> None:
        request = text.parse_request("block ha\x00ns")
        assert request is not None
        self.assertEqual(request.arguments, {"target": "hans"})

    def test_text_requests_have_no_id(self) -> None:
        request = text.parse_request("whoelse")
        assert request is not None
        self.assertIsNone(request.request_id)


# jsonlines.decode_line ------------------------------------------------------------

MALFORMED = "Malformed JSON: send one object per line."
NOT_AN_OBJECT = 'Each line must be a JSON object with a string "type".'


class JsonDecodeLineTests(CommandErrorMixin, unittest.TestCase):
    """jsonlines.decode_line: one JSON object with a string type, or invalid_json."""

    def test_object(self) -> None:
        self.assertEqual(
            jsonlines.decode_line(b'{"type": "message", "to": "hans", "id": 3}\r'),
            {"type": "message", "to": "hans", "id": 3},
        )

    def test_utf8(self) -> None:
        self.assertEqual(
            jsonlines.decode_line('{"type":"broadcast","message":"héllo ☃"}'.encode()),
            {"type": "broadcast", "message": "héllo ☃"},
        )

    def test_malformed(self) -> None:
        for raw in (
            b"",
            b"   ",
            b"{",
            b"not json",
            b'{"type": "whoelse",}',
            b"{'type': 'whoelse'}",
            b'{"type": "whoelse"} {"type": "whoelse"}',
            b"\xff\xfe\xfd",
            b'{"type": "caf\xe9"}',
            b"\x00",
            b'{"type":"x","n":' + b"9" * 5000 + b"}",
        ):
            self.assertCommandError("invalid_json", MALFORMED, jsonlines.decode_line, raw)

    def test_deeply_nested(self) -> None:
        for raw in (
            b"[" * 100_000,
            b'{"a":' * 100_000,
            b'{"type":"x","a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        ):
            self.assertCommandError("invalid_json", MALFORMED, jsonlines.decode_line, raw)

    def test_not_an_object(self) -> None:
        for raw in (b"[]", b'["whoelse"]', b"1", b'"whoelse"', b"null", b"true", b"NaN"):
            self.assertCommandError("invalid_json", NOT_AN_OBJECT, jsonlines.decode_line, raw)

    def test_missing_or_bad_type(self) -> None:
        for raw in (
            b"{}",
            b'{"user": "yoda"}',
            b'{"type": 1}',
            b'{"type": null}',
            b'{"type": ["whoelse"]}',
            b'{"type": {"name": "whoelse"}}',
            b'{"TYPE": "whoelse"}',
        ):
            self.assertCommandError("invalid_json", NOT_AN_OBJECT, jsonlines.decode_line, raw)

    def test_lone_surrogate_rejected(self) -> None:
        """A string that cannot be written back as UTF-8 must be refused here.

        Otherwise it reaches an event, and rendering that event for the
        recipient raises UnicodeEncodeError out of the sender's
        ``lineReceived`` (the message is lost and the connection dropped; a
        stored offline message breaks every later login of its recipient).
        """
        for raw in (
            b'{"type": "message", "to": "hans", "message": "hi \\ud800"}',
            b'{"type": "message", "to": "\\udc80", "message": "hi"}',
            b'{"type": "whoelse", "id": "\\udfff"}',
        ):
            self.assertCommandError("invalid_json", None, jsonlines.decode_line, raw)



# jsonlines.parse_request --------------------------------------------------------


class JsonParseRequestTests(CommandErrorMixin, unittest.TestCase):
    """jsonlines.parse_request: fields become arguments; the id is kept for the reply."""

    def setUp(self) -> None:
        use_utc(self)

    def test_requests(self) -> None:
        cases: list[tuple[dict[str, Any], Request]] = [
            ({"type": "whoelse"}, Request("whoelse")),
            ({"type": "WhoElse", "user": "yoda"}, Request("whoelse")),
            ({"type": "userlist"}, Request("users", {"onlinetype": None})),
            ({"type": "userlist", "onlinetype": True}, Request("users", {"onlinetype": "online"})),
            ({"type": "users", "onlinetype": False}, Request("users", {"onlinetype": "offline"})),
            (
                {"type": "typing", "status": True, "to": "hans"},
                Request("typing", {"status": "on", "to": "hans"}),
            ),
            ({"type": "typing", "status": "off"}, Request("typing", {"status": "off", "to": None})),
            ({"type": "whoelsesince", "seconds": 60}, Request("whoelsesince", {"seconds": 60.0})),
            ({"type": "whoelsesince", "seconds": "2.5"}, Request("whoelsesince", {"seconds": 2.5})),
            (
                {"type": "message", "to": "hans", "message": " hi  there ", "id": 7},
                Request("message", {"to": "hans", "message": " hi  there "}, 7),
            ),
            (
                {"type": "send", "to": ["hans", "luke", "hans"], "message": "x"},
                Request("send", {"to": ("hans", "luke"), "message": "x"}),
            ),
            (
                {"type": "send", "to": "hans luke", "message": "x"},
                Request("send", {"to": ("hans", "luke"), "message": "x"}),
            ),
            ({"type": "broadcast", "message": "hi"}, Request("broadcast", {"message": "hi"})),
            ({"type": "read", "since": 1000}, Request("read", {"since": 1000.0})),
            (
                {"type": "read_next", "after": "1000.0/broadcast/3"},
                Request("read next", {"after": "1000.0/broadcast/3"}),
            ),
            (
                {"type": "read", "since": "1 Jun 2022 16:00:00"},
                Request("read", {"since": READ_TIME}),
            ),
            (
                {"type": "room_create", "members": ["hans"]},
                Request("room create", {"members": ("hans",)}),
            ),
            (
                {"type": "room send", "room": "3", "message": "hi"},
                Request("room send", {"room": 3, "message": "hi"}),
            ),
            ({"type": "room_leave", "room": 3}, Request("room leave", {"room": 3})),
            ({"type": "busy"}, Request("busy", {"message": None})),
            ({"type": "busy", "message": ""}, Request("busy", {"message": None})),
            ({"type": "busy", "message": "brb"}, Request("busy", {"message": "brb"})),
            ({"type": "block", "target": "hans"}, Request("block", {"target": "hans"})),
            (
                {"type": "sendfile", "to": "hans", "filename": "a.txt", "size": 10},
                Request("sendfile", {"to": "hans", "filename": "a.txt", "size": 10}),
            ),
            ({"type": "logout", "id": "bye"}, Request("logout", {}, "bye")),
        ]
        for obj, expected in cases:
            self.assertEqual(jsonlines.parse_request(obj), expected, obj)

    def test_unknown_type(self) -> None:
        self.assertCommandError(
            "invalid_command",
            "Error. Invalid command (type help for the list)",
            jsonlines.parse_request,
            {"type": "fly"},
        )

    def test_missing_field(self) -> None:
        cases = [
            ({"type": "message", "to": "hans"}, '"message" needs the field "message".'),
            ({"type": "send", "message": "hi"}, '"send" needs the field "to".'),
            ({"type": "whoelsesince"}, '"whoelsesince" needs the field "seconds".'),
            ({"type": "room_send", "message": "x"}, '"room send" needs the field "room".'),
            ({"type": "block"}, '"block" needs the field "target".'),
        ]
        for obj, message in cases:
            self.assertCommandError("missing_field", message, jsonlines.parse_request, obj)

    def test_message_without_to_is_a_broadcast(self) -> None:
        """The original JSON design: a ``message`` without ``to`` goes to everyone online."""
        self.assertEqual(
            jsonlines.parse_request({"type": "message", "message": "hi all", "id": 3}),
            Request("broadcast", {"message": "hi all"}, 3),
        )
        self.assertEqual(
            jsonlines.parse_request({"type": "Message", "user": "yoda", "message": "hi"}).command,
            "broadcast",
        )
        self.assertEqual(
            jsonlines.parse_request({"type": "message", "to": "hans", "message": "hi"}).command,
            "message",
        )
        self.assertCommandError(
            "missing_field", '"broadcast" needs the field "message".',
            jsonlines.parse_request, {"type": "message"},
        )

    def test_booleans_as_the_original_design_spells_them(self) -> None:
        """``"true"``/``"false"`` strings (any case) stand for JSON booleans."""
        for on, off in ((True, False), ("true", "false"), ("True", "FALSE")):
            self.assertEqual(
                jsonlines.parse_request({"type": "typing", "status": on}).arguments["status"], "on"
            )
            self.assertEqual(
                jsonlines.parse_request({"type": "typing", "status": off}).arguments["status"], "off"
            )
            self.assertEqual(
                jsonlines.parse_request({"type": "userlist", "onlinetype": off}).arguments,
                {"onlinetype": "offline"},
            )

    def test_wrong_types(self) -> None:
        usage = "Error. Usage: message <user> <text>"
        for bad in (5, None, ["hans"], {"name": "hans"}, True, "", "  ", "two words"):
            error = self.assertCommandError(
                "bad_argument", None, jsonlines.parse_request,
                {"type": "message", "to": bad, "message": "hi"},
            )
            self.assertTrue(error.message.endswith(f"Usage: {usage[14:]}"), error.message)
        for bad in (5, None, ["hi"], ""):
            self.assertCommandError(
                "bad_argument", usage, jsonlines.parse_request,
                {"type": "message", "to": "hans", "message": bad},
            )

    def test_bad_seconds(self) -> None:
        message = (
            "Error. <seconds> must be a non-negative number. Usage: whoelsesince <seconds>"
        )
        for bad in (True, False, None, "abc", -1, [], {}, "nan", "inf", 1e999):
            self.assertCommandError(
                "bad_argument", message, jsonlines.parse_request,
                {"type": "whoelsesince", "seconds": bad},
            )

    def test_bad_counts_and_recipients(self) -> None:
        for bad in (3.0, True, -1, "x", None):
            self.assertCommandError(
                "bad_argument",
                "Error. <id> must be a whole number. Usage: room leave <id>",
                jsonlines.parse_request,
                {"type": "room_leave", "room": bad},
            )
        for bad in ([], ["hans", 5], [""], 5, None, {"hans": 1}):
            self.assertCommandError(
                "bad_argument",
                "Error. Usage: send <user|(user1 user2 ...)> <text>",
                jsonlines.parse_request,
                {"type": "send", "to": bad, "message": "x"},
            )
        for bad in ("tomorrow", "-5m", "31 Feb 2022 00:00:00", "1 Jun 2022"):
            self.assertCommandError(
                "bad_argument",
                BAD_TIME,
                jsonlines.parse_request,
                {"type": "read", "since": bad},
            )

    def test_read_since_not_a_string_or_number(self) -> None:
        """``"since": true`` (a list, NaN) is a bad argument, not an AttributeError (null: since the last logout)."""
        for bad in (True, [2022], {"day": 1}, float("inf"), float("nan")):
            self.assertCommandError(
                "bad_argument",
                BAD_TIME,
                jsonlines.parse_request,
                {"type": "read", "since": bad},
            )


    def test_control_characters_removed(self) -> None:
        request = jsonlines.parse_request(
            {"type": "broadcast", "message": "a\x1b[2Jb\nc\td"}
        )
        self.assertEqual(request.arguments, {"message": "a[2Jbc\td"})

    def test_request_id_types(self) -> None:
        for value in ("abc", "", 0, 3, -7, 1.5):
            self.assertEqual(jsonlines.request_id({"type": "x", "id": value}), value)
        for value in (None, True, False, [1], {"a": 1}):
            self.assertIsNone(jsonlines.request_id({"type": "x", "id": value}), value)
        self.assertIsNone(jsonlines.request_id({"type": "x"}))
        request = jsonlines.parse_request({"type": "whoelse", "id": [1]})
        self.assertIsNone(request.request_id)

    def test_non_finite_id_not_echoed_as_invalid_json(self) -> None:
        """``"id": NaN`` (or 1e999) must not produce a reply that strict JSON parsers refuse."""
        for raw in (b'{"type": "whoelse", "id": NaN}', b'{"type": "whoelse", "id": 1e999}'):
            rid = jsonlines.request_id(jsonlines.decode_line(raw))
            reply = jsonlines.encode(events.UserList(()), rid)
            assert reply is not None
            json.loads(reply, parse_constant=reject_constant)


    def test_field(self) -> None:
        obj = {"type": "login", "user": "yoda", "password": 5}
        self.assertEqual(jsonlines.field(obj, "user"), "yoda")
        self.assertCommandError(
            "missing_field",
            '"login" needs a string field "password".',
            jsonlines.field,
            obj,
            "password",
        )
        self.assertCommandError(
            "missing_field", '"login" needs a string field "x".', jsonlines.field, obj, "x"
        )

    def test_port(self) -> None:
        self.assertIsNone(jsonlines.port({"type": "login"}, "p2p_port"))
        self.assertEqual(jsonlines.port({"type": "login", "p2p_port": 5000}, "p2p_port"), 5000)
        self.assertEqual(jsonlines.port({"type": "login", "udp_port": 65535}, "udp_port"), 65535)
        for bad in (0, 65536, -1, "80", 80.0, True):
            self.assertCommandError(
                "bad_argument",
                '"udp_port" must be a port number (1 to 65535).',
                jsonlines.port,
                {"type": "login", "udp_port": bad},
                "udp_port",
            )


# Rendering every event -------------------------------------------------------------


@dataclass
class RenderCase:
    """One event and exactly how each format renders it (``None``: not sent)."""

    name: str
    event: events.Event
    text: str | None
    json: dict[str, Any] | None


RENDER_CASES: list[RenderCase] = [
    RenderCase(
        "error",
        events.ErrorReply("invalid_user", "Error. Invalid user vader."),
        "Error. Invalid user vader.\r\n",
        {"type": "error", "code": "invalid_user", "message": "Error. Invalid user vader."},
    ),
    RenderCase(
        "error_without_message",
        events.ErrorReply("quiet", ""),
        None,
        {"type": "error", "code": "quiet", "message": ""},
    ),
    RenderCase(
        "scram_challenge",
        events.ScramChallenge("r=abc,s=c2FsdA==,i=4096", "c2FsdA==", 4096),
        None,
        {
            "type": "salt",
            "mechanism": "SCRAM-SHA-256",
            "message": "r=abc,s=c2FsdA==,i=4096",
            "salt": "c2FsdA==",
            "iterations": 4096,
        },
    ),
    RenderCase(
        "login_scram",
        events.LoginSucceeded("yoda", server_final="v=c2ln"),
        "Welcome to chatservice, yoda! Type help for the list of commands.\r\n",
        {"type": "login", "success": True, "user": "yoda", "guest": False, "server_final": "v=c2ln"},
    ),
    RenderCase(
        "greeting",
        events.Greeting("1.2.3"),
        "Welcome to chatservice 1.2.3. Please log in"
        " (programs: send a JSON object to use the JSON interface).\r\n",
        {"type": "hello", "version": "1.2.3"},
    ),
    RenderCase("prompt_username", events.Prompt(events.Prompt.USERNAME), "Username: ", None),
    RenderCase("prompt_password", events.Prompt(events.Prompt.PASSWORD), "Password: ", None),
    RenderCase(
        "prompt_create",
        events.Prompt(events.Prompt.CREATE),
        "Create a new account with that name? (yes/no) ",
        None,
    ),
    RenderCase("prompt_new_password", events.Prompt(events.Prompt.NEW_PASSWORD), "New password: ", None),
    RenderCase(
        "prompt_repeat_password",
        events.Prompt(events.Prompt.REPEAT_PASSWORD),
        "Repeat the password: ",
        None,
    ),
    RenderCase(
        "login_succeeded",
        events.LoginSucceeded("yoda"),
        "Welcome to chatservice, yoda! Type help for the list of commands.\r\n",
        {"type": "login", "success": True, "user": "yoda", "guest": False},
    ),
    RenderCase(
        "login_succeeded_guest",
        events.LoginSucceeded("rey", guest=True),
        "Welcome to chatservice, rey (guest)! Type help for the list of commands.\r\n",
        {"type": "login", "success": True, "user": "rey", "guest": True},
    ),
    RenderCase(
        "username_taken_status",
        events.UsernameStatus("yoda", True),
        "The user name yoda is taken.\r\n",
        {"type": "username_register_status", "user": "yoda", "taken": True},
    ),
    RenderCase(
        "username_free_status",
        events.UsernameStatus("rey", False),
        "The user name rey is free.\r\n",
        {"type": "username_register_status", "user": "rey", "taken": False},
    ),
    RenderCase(
        "register_succeeded",
        events.RegisterStatus(True, "rey"),
        "Account rey created.\r\n",
        {"type": "register_status", "status": True, "user": "rey"},
    ),
    RenderCase(
        "register_failed",
        events.RegisterStatus(False, "yoda", "username_taken", "Error. The name yoda is taken."),
        "Error. The name yoda is taken.\r\n",
        {
            "type": "register_status",
            "status": False,
            "user": "yoda",
            "code": "username_taken",
            "additional_info": "Error. The name yoda is taken.",
        },
    ),
    RenderCase(
        "password_changed",
        events.PasswordChanged(),
        "Your password has been changed.\r\n",
        {"type": "passwd_status", "status": True},
    ),
    RenderCase(
        "login_rejected_username_taken",
        events.LoginRejected("username_taken", "Error. The name yoda is taken; choose another."),
        "Error. The name yoda is taken; choose another.\r\n",
        {"type": "username_taken", "message": "Error. The name yoda is taken; choose another."},
    ),
    RenderCase(
        "login_rejected",
        events.LoginRejected("wrong_password", WRONG_PASSWORD),
        "Invalid Password. Please try again\r\n",
        {"type": "login", "success": False, "reason": "wrong_password", "message": WRONG_PASSWORD},
    ),
    RenderCase(
        "login_rejected_retry_after",
        events.LoginRejected("locked", JUST_LOCKED, 59.99987),
        JUST_LOCKED.removesuffix("later") + "in 1 minute.\r\n",
        {
            "type": "login",
            "success": False,
            "reason": "locked",
            "message": JUST_LOCKED,
            "retry_after": 60.0,
        },
    ),
    RenderCase(
        "direct_message",
        events.DirectMessage("yoda", "Hey Dude", T),
        "yoda: Hey Dude\r\n",
        {"type": "message", "from": "yoda", "message": "Hey Dude", "timestamp": T, "offline": False},
    ),
    RenderCase(
        "direct_message_offline",
        events.DirectMessage("yoda", "Hey Dude", T, offline=True),
        f"[offline {T_TEXT}] yoda: Hey Dude\r\n",
        {"type": "message", "from": "yoda", "message": "Hey Dude", "timestamp": T, "offline": True},
    ),
    RenderCase(
        "broadcast_message",
        events.BroadcastMessage("yoda", "hi all", T, 4),
        "[broadcast] yoda: hi all\r\n",
        {"type": "broadcast", "from": "yoda", "message": "hi all", "timestamp": T, "seq": 4},
    ),
    RenderCase(
        "room_message",
        events.RoomMessage(3, "yoda", "hi", T, 2),
        "[room 3] yoda: hi\r\n",
        {
            "type": "room_message",
            "room": 3,
            "from": "yoda",
            "message": "hi",
            "timestamp": T,
            "seq": 2,
        },
    ),
    RenderCase(
        "presence_in",
        events.Presence("yoda", True),
        "yoda logged in\r\n",
        {"type": "user_notification", "user": "yoda", "status": True},
    ),
    RenderCase(
        "presence_out",
        events.Presence("yoda", False),
        "yoda logged out\r\n",
        {"type": "user_notification", "user": "yoda", "status": False},
    ),
    RenderCase(
        "user_list",
        events.UserList(("hans", "luke")),
        "hans\r\nluke\r\n",
        {"type": "userlist", "users": ["hans", "luke"], "onlinetype": True},
    ),
    RenderCase(
        "user_list_empty",
        events.UserList(()),
        "No other users are online.\r\n",
        {"type": "userlist", "users": [], "onlinetype": True},
    ),
    RenderCase(
        "user_list_since",
        events.UserList(("hans",), 2.5),
        "hans\r\n",
        {"type": "userlist", "users": ["hans"], "onlinetype": True, "since": 2.5},
    ),
    RenderCase(
        "user_list_since_empty",
        events.UserList((), 60.0),
        "No other users were online in the last 60 seconds.\r\n",
        {"type": "userlist", "users": [], "onlinetype": True, "since": 60.0},
    ),
    RenderCase(
        "user_list_guests",
        events.UserList(("hans", "rey"), guests=("rey",)),
        "hans\r\nrey (guest)\r\n",
        {"type": "userlist", "users": ["hans", "rey"], "onlinetype": True, "guests": ["rey"]},
    ),
    RenderCase(
        "user_list_offline",
        events.UserList(("leia", "obiwan"), online=False),
        "leia\r\nobiwan\r\n",
        {"type": "userlist", "users": ["leia", "obiwan"], "onlinetype": False},
    ),
    RenderCase(
        "user_list_offline_empty",
        events.UserList((), online=False),
        "Every other user is online.\r\n",
        {"type": "userlist", "users": [], "onlinetype": False},
    ),
    RenderCase(
        "typing_on",
        events.TypingNotice("yoda", True),
        "yoda is typing...\r\n",
        {"type": "typing", "user": "yoda", "status": True},
    ),
    RenderCase(
        "typing_off",
        events.TypingNotice("yoda", False),
        "yoda stopped typing\r\n",
        {"type": "typing", "user": "yoda", "status": False},
    ),
    RenderCase("done", events.Done("typing"), None, {"type": "ok", "command": "typing"}),
    RenderCase(
        "message_sent",
        events.MessageSent("hans", False),
        "Message delivered to hans.\r\n",
        {"type": "message_status", "to": "hans", "stored": False},
    ),
    RenderCase(
        "message_stored",
        events.MessageSent("hans", True),
        "hans is offline; your message will be delivered when they log in.\r\n",
        {"type": "message_status", "to": "hans", "stored": True},
    ),
    RenderCase(
        "message_kept_busy",
        events.MessageSent("hans", True, busy=True, auto_reply="later"),
        "hans is busy; your message will be delivered when they are available.\r\n"
        "Auto-reply from hans: later\r\n",
        {"type": "message_status", "to": "hans", "stored": True, "busy": True, "auto_reply": "later"},
    ),
    RenderCase(
        "message_kept_busy_no_auto_reply",
        events.MessageSent("hans", True, busy=True),
        "hans is busy; your message will be delivered when they are available.\r\n",
        {"type": "message_status", "to": "hans", "stored": True, "busy": True},
    ),
    RenderCase(
        "broadcast_sent",
        events.BroadcastSent(2, 0, 5, T),
        f"Broadcast message, #5 broadcast at {T_TEXT}\r\n",
        {
            "type": "broadcast_status",
            "seq": 5,
            "timestamp": T,
            "delivered": 2,
            "skipped": 0,
            "auto_replies": [],
        },
    ),
    RenderCase(
        "broadcast_sent_skipped",
        events.BroadcastSent(1, 2, 6, T, (("leia", "brb"),)),
        f"Broadcast message, #6 broadcast at {T_TEXT}\r\n"
        "Your broadcast could not be delivered to some recipients as they have blocked you.\r\n"
        "Auto-reply from leia: brb\r\n",
        {
            "type": "broadcast_status",
            "seq": 6,
            "timestamp": T,
            "delivered": 1,
            "skipped": 2,
            "auto_replies": [{"user": "leia", "message": "brb"}],
        },
    ),
    RenderCase(
        "send_report",
        events.SendReport(
            ("hans", "leia"), ("luke",), (("vader", "no such user"), ("yoda", "that is you")),
            (("luke", "busy now"),),
        ),
        "Sent to hans, leia.\r\n"
        "Kept for luke (offline or busy) until they are back.\r\n"
        "Could not send to vader (no such user), yoda (that is you).\r\n"
        "Auto-reply from luke: busy now\r\n",
        {
            "type": "send_status",
            "delivered": ["hans", "leia"],
            "stored": ["luke"],
            "failed": [
                {"user": "vader", "reason": "no such user"},
                {"user": "yoda", "reason": "that is you"},
            ],
            "auto_replies": [{"user": "luke", "message": "busy now"}],
        },
    ),
    RenderCase(
        "send_report_delivered_only",
        events.SendReport(("hans",), (), ()),
        "Sent to hans.\r\n",
        {"type": "send_status", "delivered": ["hans"], "stored": [], "failed": [], "auto_replies": []},
    ),
    RenderCase(
        "status_busy",
        events.StatusChanged("busy", auto_reply="in a meeting"),
        "You are busy. Auto-reply: in a meeting\r\n",
        {"type": "status_changed", "status": "busy", "auto_reply": "in a meeting"},
    ),
    RenderCase(
        "status_available",
        events.StatusChanged("available", kept=2, missed=3),
        "You are available again. 2 direct message(s) were kept for you (shown above);"
        " you missed 3 broadcast or room message(s) (see read).\r\n",
        {"type": "status_changed", "status": "available", "kept": 2, "missed": 3},
    ),
    RenderCase(
        "status_hidden",
        events.StatusChanged("hidden"),
        "You are hidden: other users do not see you online.\r\n",
        {"type": "status_changed", "status": "hidden"},
    ),
    RenderCase(
        "status_visible",
        events.StatusChanged("visible"),
        "You are visible again.\r\n",
        {"type": "status_changed", "status": "visible"},
    ),
    RenderCase(
        "status_report",
        events.StatusReport(False, None, False, T, T + 3725),
        f"You are available and visible; logged in since {T_TEXT} (1h 02m 05s).\r\n",
        {
            "type": "status",
            "busy": False,
            "auto_reply": None,
            "hidden": False,
            "logged_in_at": T,
            "online_for": 3725.0,
        },
    ),
    RenderCase(
        "status_report_busy_hidden",
        events.StatusReport(True, "brb", True, T, T + 90061),
        f"You are busy (auto-reply: brb) and hidden; logged in since {T_TEXT} (25h 01m 01s).\r\n",
        {
            "type": "status",
            "busy": True,
            "auto_reply": "brb",
            "hidden": True,
            "logged_in_at": T,
            "online_for": 90061.0,
        },
    ),
    RenderCase(
        "active_list",
        events.ActiveList((("hans", "10.0.0.2", 5001, T), ("luke", "10.0.0.3", None, T + 60))),
        f"hans, 10.0.0.2, 5001, active since {T_TEXT}\r\n"
        "luke, 10.0.0.3, -, active since 14 Nov 2023 22:14:20\r\n",
        {
            "type": "active",
            "users": [
                {"user": "hans", "host": "10.0.0.2", "p2p_port": 5001, "since": T},
                {"user": "luke", "host": "10.0.0.3", "p2p_port": None, "since": T + 60},
            ],
        },
    ),
    RenderCase(
        "active_list_empty",
        events.ActiveList(()),
        "No other users are active.\r\n",
        {"type": "active", "users": []},
    ),
    RenderCase(
        "history_list",
        events.HistoryList(
            T - 100, (("broadcast", 1, "yoda", "hi", T), ("room:3", 2, "hans", "yo", T + 1))
        ),
        f"#1 broadcast, yoda: hi, posted at {T_TEXT}\r\n"
        "#2 room 3, hans: yo, posted at 14 Nov 2023 22:13:21\r\n",
        {
            "type": "history",
            "after": T - 100,
            "messages": [
                {"channel": "broadcast", "seq": 1, "from": "yoda", "message": "hi", "timestamp": T},
                {"channel": "room:3", "seq": 2, "from": "hans", "message": "yo", "timestamp": T + 1},
            ],
            "more": False,
        },
    ),
    RenderCase(
        "history_list_more",
        events.HistoryList(T - 100, (("broadcast", 1, "yoda", "hi", T),), f"{T!r}/broadcast/1"),
        f"#1 broadcast, yoda: hi, posted at {T_TEXT}\r\n"
        f"More messages: type read next {T!r}/broadcast/1\r\n",
        {
            "type": "history",
            "after": T - 100,
            "messages": [
                {"channel": "broadcast", "seq": 1, "from": "yoda", "message": "hi", "timestamp": T},
            ],
            "more": True,
            "next": f"{T!r}/broadcast/1",
        },
    ),
    RenderCase(
        "history_list_empty",
        events.HistoryList(T, ()),
        "No new messages.\r\n",
        {"type": "history", "after": T, "messages": [], "more": False},
    ),
    RenderCase(
        "room_created",
        events.RoomCreated(3, ("hans", "yoda"), existed=False),
        "Room 3 created with hans, yoda.\r\n",
        {"type": "room_created", "room": 3, "members": ["hans", "yoda"], "existed": False},
    ),
    RenderCase(
        "room_existed",
        events.RoomCreated(3, ("hans", "yoda"), existed=True),
        "Room 3 already exists with hans, yoda; use it.\r\n",
        {"type": "room_created", "room": 3, "members": ["hans", "yoda"], "existed": True},
    ),
    RenderCase(
        "room_joined",
        events.RoomJoined(3, "yoda", ("hans", "yoda")),
        "yoda added you to room 3 with hans, yoda.\r\n",
        {"type": "room_joined", "room": 3, "by": "yoda", "members": ["hans", "yoda"]},
    ),
    RenderCase(
        "room_posted",
        events.RoomPosted(3, 7, T, 2, 0),
        f"Room 3 message, #7 sent at {T_TEXT}\r\n",
        {"type": "room_posted", "room": 3, "seq": 7, "timestamp": T, "delivered": 2, "skipped": 0},
    ),
    RenderCase(
        "room_posted_skipped",
        events.RoomPosted(3, 8, T, 0, 1),
        f"Room 3 message, #8 sent at {T_TEXT}\r\n"
        "Your message could not be delivered to some members as they have blocked you.\r\n",
        {"type": "room_posted", "room": 3, "seq": 8, "timestamp": T, "delivered": 0, "skipped": 1},
    ),
    RenderCase(
        "room_list",
        events.RoomList(((3, ("hans", "yoda")), (5, ("luke", "yoda")))),
        "Room 3: hans, yoda\r\nRoom 5: luke, yoda\r\n",
        {
            "type": "rooms",
            "rooms": [
                {"room": 3, "members": ["hans", "yoda"]},
                {"room": 5, "members": ["luke", "yoda"]},
            ],
        },
    ),
    RenderCase(
        "room_list_empty",
        events.RoomList(()),
        "You are in no rooms.\r\n",
        {"type": "rooms", "rooms": []},
    ),
    RenderCase(
        "room_left",
        events.RoomLeft(3, "hans"),
        "hans left room 3.\r\n",
        {"type": "room_left", "room": 3, "user": "hans", "removed": False},
    ),
    RenderCase(
        "room_left_removed",
        events.RoomLeft(3, "yoda", removed=True),
        "yoda left room 3. The room was removed as it is empty.\r\n",
        {"type": "room_left", "room": 3, "user": "yoda", "removed": True},
    ),
    RenderCase(
        "blocked",
        events.BlockChanged("hans", blocked=True),
        "hans is now blocked.\r\n",
        {"type": "block_status", "user": "hans", "blocked": True},
    ),
    RenderCase(
        "unblocked",
        events.BlockChanged("hans", blocked=False),
        "hans is unblocked.\r\n",
        {"type": "block_status", "user": "hans", "blocked": False},
    ),
    RenderCase(
        "help",
        events.HelpText((("whoelse", "list"), ("message <user> <text>", "send"))),
        "Commands:\r\n"
        "  whoelse                list\r\n"
        "  message <user> <text>  send\r\n",
        {
            "type": "help",
            "commands": [
                {"usage": "whoelse", "summary": "list"},
                {"usage": "message <user> <text>", "summary": "send"},
            ],
        },
    ),
    RenderCase(
        "blocks",
        events.BlockList(("hans", "luke")),
        "You have blocked hans, luke.\r\n",
        {"type": "blocks", "users": ["hans", "luke"]},
    ),
    RenderCase(
        "blocks_none",
        events.BlockList(()),
        "You have blocked nobody.\r\n",
        {"type": "blocks", "users": []},
    ),
    RenderCase(
        "missed",
        events.MissedSince(3, 1_700_000_000.0),
        f"Since your last logout ({format_timestamp(1_700_000_000.0)}): 3 broadcast or room"
        " message(s); type read to see them.\r\n",
        {"type": "missed", "count": 3, "since": 1_700_000_000.0},
    ),
    RenderCase(
        "missed_none",
        events.MissedSince(0, 1_700_000_000.0),
        f"Since your last logout ({format_timestamp(1_700_000_000.0)}): no broadcast or room"
        " messages.\r\n",
        {"type": "missed", "count": 0, "since": 1_700_000_000.0},
    ),
    RenderCase(
        "help_with_aliases",
        events.HelpText((("whoelse", "list"),), (("who", "whoelse"),)),
        "Commands:\r\n"
        "  whoelse  list\r\n"
        "Other names: who = whoelse.\r\n"
        "Type help COMMAND for one command and its other names.\r\n",
        {
            "type": "help",
            "commands": [{"usage": "whoelse", "summary": "list"}],
            "aliases": {"who": "whoelse"},
        },
    ),
    RenderCase(
        "help_topic",
        events.HelpText((("whoelse", "list"),), (("who", "whoelse"),), "who"),
        "whoelse\r\n    list\r\n    Also: who.\r\n",
        {
            "type": "help",
            "commands": [{"usage": "whoelse", "summary": "list"}],
            "aliases": {"who": "whoelse"},
            "topic": "who",
        },
    ),
    RenderCase(
        "peer_address_private",
        events.PeerAddress("private", "hans", "10.0.0.2", 5001, "ab12"),
        "Private chat with hans: connect to 10.0.0.2:5001 with token ab12\r\n",
        {"type": "private_address", "user": "hans", "host": "10.0.0.2", "port": 5001, "token": "ab12"},
    ),
    RenderCase(
        "peer_address_file",
        events.PeerAddress("file", "hans", "10.0.0.2", 6001, "cd34"),
        "File transfer with hans: connect to 10.0.0.2:6001 with token cd34\r\n",
        {"type": "file_address", "user": "hans", "host": "10.0.0.2", "port": 6001, "token": "cd34"},
    ),
    RenderCase(
        "private_request",
        events.PrivateRequest("yoda", "ab12"),
        "yoda will start a private chat with token ab12\r\n",
        {"type": "private_request", "from": "yoda", "token": "ab12"},
    ),
    RenderCase(
        "file_incoming",
        events.FileIncoming("yoda", "notes.txt", 1200, "cd34"),
        "yoda will send you notes.txt with token cd34\r\n",
        {"type": "file_incoming", "from": "yoda", "filename": "notes.txt", "size": 1200, "token": "cd34"},
    ),
    RenderCase(
        "file_incoming_unknown_size",
        events.FileIncoming("yoda", "notes.txt", None, "cd34"),
        "yoda will send you notes.txt with token cd34\r\n",
        {"type": "file_incoming", "from": "yoda", "filename": "notes.txt", "size": None, "token": "cd34"},
    ),
    RenderCase(
        "disconnected",
        events.Disconnected("logout", "Goodbye, yoda!"),
        "Goodbye, yoda!\r\n",
        {"type": "disconnect", "reason": "logout", "message": "Goodbye, yoda!"},
    ),
    RenderCase(
        "disconnected_shutdown",
        events.Disconnected("shutdown", "The server is shutting down."),
        "The server is shutting down.\r\n",
        {"type": "shutdown", "message": "The server is shutting down."},
    ),
    RenderCase(
        "disconnected_banned",
        events.Disconnected("banned", "You are banned."),
        "You are banned.\r\n",
        {"type": "banned", "message": "You are banned."},
    ),
    RenderCase(
        "disconnected_kicked",
        events.Disconnected("kicked", "You have been kicked off this server by yoda."),
        "You have been kicked off this server by yoda.\r\n",
        {"type": "disconnect", "reason": "kicked", "message": "You have been kicked off this server by yoda."},
    ),
    RenderCase(
        "server_notice",
        events.ServerNotice("yoda", "Restart at 22:00", T),
        "*** Server notice from yoda: Restart at 22:00\r\n",
        {"type": "server_notice", "from": "yoda", "message": "Restart at 22:00", "timestamp": T},
    ),
    RenderCase(
        "operator_kick",
        events.OperatorDone("kick", "hans", 1, reason="too loud"),
        "Kicked hans (reason: too loud).\r\n",
        {"type": "operator_done", "action": "kick", "target": "hans", "count": 1, "until": None, "reason": "too loud"},
    ),
    RenderCase(
        "operator_ban",
        events.OperatorDone("ban", "10.0.0.0/8", 2, T, 3, "network", "spam"),
        f"Ban #3: network 10.0.0.0/8 is banned until {T_TEXT} (reason: spam); 2 sessions ended.\r\n",
        {
            "type": "operator_done", "action": "ban", "target": "10.0.0.0/8", "count": 2, "until": T,
            "reason": "spam", "ban_id": 3, "kind": "network",
        },
    ),
    RenderCase(
        "operator_ban_for_good",
        events.OperatorDone("ban", "hans", 1, None, 4, "user"),
        "Ban #4: user hans is banned for good; 1 session ended.\r\n",
        {
            "type": "operator_done", "action": "ban", "target": "hans", "count": 1, "until": None,
            "reason": "", "ban_id": 4, "kind": "user",
        },
    ),
    RenderCase(
        "operator_unban",
        events.OperatorDone("unban", "hans", 1),
        "Removed 1 ban of hans.\r\n",
        {"type": "operator_done", "action": "unban", "target": "hans", "count": 1, "until": None, "reason": ""},
    ),
    RenderCase(
        "operator_mute",
        events.OperatorDone("mute", "hans", until=T),
        f"hans is muted until {T_TEXT}.\r\n",
        {"type": "operator_done", "action": "mute", "target": "hans", "count": 0, "until": T, "reason": ""},
    ),
    RenderCase(
        "operator_unmute",
        events.OperatorDone("unmute", "hans"),
        "hans is no longer muted.\r\n",
        {"type": "operator_done", "action": "unmute", "target": "hans", "count": 0, "until": None, "reason": ""},
    ),
    RenderCase(
        "operator_announce",
        events.OperatorDone("announce", "", 3),
        "Server notice sent to 3 users online.\r\n",
        {"type": "operator_done", "action": "announce", "target": "", "count": 3, "until": None, "reason": ""},
    ),
    RenderCase(
        "bans",
        events.BanReport(
            ((1, "user", "vader", "yoda", T, None, ""), (2, "address", "192.0.2.7", "leia", T, T + 60, "spam"))
        ),
        f"#1 user vader, by yoda at {T_TEXT}, for good\r\n"
        f"#2 address 192.0.2.7, by leia at {T_TEXT}, until 14 Nov 2023 22:14:20 (reason: spam)\r\n",
        {
            "type": "bans",
            "bans": [
                {"id": 1, "kind": "user", "target": "vader", "by": "yoda", "since": T, "until": None, "reason": ""},
                {"id": 2, "kind": "address", "target": "192.0.2.7", "by": "leia", "since": T, "until": T + 60, "reason": "spam"},
            ],
        },
    ),
    RenderCase("bans_none", events.BanReport(()), "No bans are in force.\r\n", {"type": "bans", "bans": []}),
    RenderCase(
        "whois",
        events.WhoisReport("hans", "10.0.0.2", T, 65.0, "telnet", True, True, False, False, False, "node-b"),
        f"hans from 10.0.0.2 (telnet, TLS)\r\n  logged in at {T_TEXT}, idle 0h 01m 05s; busy\r\n"
        "  on node node-b\r\n",
        {
            "type": "whois", "target": "hans", "host": "10.0.0.2", "logged_in_at": T, "idle": 65.0,
            "client": "telnet", "tls": True, "busy": True, "hidden": False, "guest": False,
            "operator": False, "node": "node-b",
        },
    ),
    RenderCase(
        "whois_remote",
        events.WhoisReport("hans", "10.0.0.2", T, None, "", None, False, True, False, True),
        f"hans from 10.0.0.2 (unknown client)\r\n  logged in at {T_TEXT}, idle time unknown;"
        " hidden, operator\r\n",
        {
            "type": "whois", "target": "hans", "host": "10.0.0.2", "logged_in_at": T, "idle": None,
            "client": "", "tls": None, "busy": False, "hidden": True, "guest": False,
            "operator": True, "node": None,
        },
    ),
    RenderCase(
        "rehash",
        events.RehashReport(("ban file: 2 entries (was 1)", "certificates: unchanged")),
        "Configuration reloaded:\r\n  ban file: 2 entries (was 1)\r\n  certificates: unchanged\r\n",
        {"type": "rehash", "changes": ["ban file: 2 entries (was 1)", "certificates: unchanged"]},
    ),
    RenderCase(
        "disconnected_outdated_client",
        events.Disconnected("outdated_client", "Please upgrade your client.", "2.0"),
        "Please upgrade your client.\r\n",
        {"type": "outdated_client", "version": "2.0", "message": "Please upgrade your client."},
    ),
]


def _all_event_classes() -> set[type]:
    found: set[type] = set()
    pending = [events.Event]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    return found


class RenderTests(unittest.TestCase):
    """Every event class, rendered and encoded in both formats (one test per case below)."""

    def setUp(self) -> None:
        use_utc(self)

    def check(self, case: RenderCase) -> None:
        self.assertEqual(text.render(case.event), case.text)
        self.assertEqual(
            text.encode(case.event), None if case.text is None else case.text.encode("utf-8")
        )
        self.assertEqual(jsonlines.render(case.event), case.json)
        encoded = jsonlines.encode(case.event)
        if case.json is None:
            self.assertIsNone(encoded)
            return
        assert encoded is not None
        self.assertTrue(encoded.endswith(b"\n"))
        self.assertNotIn(b"\n", encoded[:-1])
        self.assertEqual(json.loads(encoded, parse_constant=reject_constant), case.json)
        self.assertEqual(
            encoded,
            json.dumps(case.json, ensure_ascii=False, separators=(",", ":")).encode() + b"\n",
        )

    def test_every_event_class_has_a_case(self) -> None:
        covered = {type(case.event) for case in RENDER_CASES}
        self.assertEqual(
            sorted(cls.__name__ for cls in _all_event_classes() - covered), []
        )

    def test_case_names_unique(self) -> None:
        names = [case.name for case in RENDER_CASES]
        self.assertEqual(len(names), len(set(names)))

    def test_exact_json_bytes(self) -> None:
        self.assertEqual(
            jsonlines.encode(events.DirectMessage("yoda", "héllo ☃", T)),
            '{"type":"message","from":"yoda","message":"héllo ☃",'
            '"timestamp":1700000000.0,"offline":false}\n'.encode(),
        )

    def test_json_id_appended(self) -> None:
        self.assertEqual(
            jsonlines.encode(events.BlockChanged("hans", True), "q1"),
            b'{"type":"block_status","user":"hans","blocked":true,"id":"q1"}\n',
        )
        self.assertEqual(
            jsonlines.encode(events.BlockChanged("hans", True), 0),
            b'{"type":"block_status","user":"hans","blocked":true,"id":0}\n',
        )

    def test_text_ignores_id(self) -> None:
        event = events.Presence("yoda", True)
        self.assertEqual(text.encode(event, "q1"), b"yoda logged in\r\n")

    def test_unknown_event_class(self) -> None:
        class Strange(events.Event):
            pass

        self.assertRaises(NotImplementedError, text.render, Strange())
        self.assertRaises(NotImplementedError, jsonlines.render, Strange())


def _render_test(case: RenderCase) -> Callable[[RenderTests], None]:
    def test(self: RenderTests) -> None:
        self.check(case)

    test.__doc__ = f"{type(case.event).__name__}: {case.name}"
    return test


for _case in RENDER_CASES:
    setattr(RenderTests, f"test_{_case.name}", _render_test(_case))
del _case


# The render cache ----------------------------------------------------------------------


class EncodeEventTests(unittest.TestCase):
    """encode_shared renders unsolicited events once per format; replies with an id are not cached."""

    def test_cached_without_id(self) -> None:
        event = events.Presence("yoda", True)
        first = TEXT.encode_shared(event)
        self.assertEqual(first, b"yoda logged in\r\n")
        self.assertIs(TEXT.encode_shared(event), first)
        self.assertEqual(event.encoded, {"text": first})

    def test_each_format_cached_separately(self) -> None:
        event = events.Presence("yoda", False)
        as_text = TEXT.encode_shared(event)
        as_json = JSON.encode_shared(event)
        self.assertEqual(as_json, b'{"type":"user_notification","user":"yoda","status":false}\n')
        self.assertIs(JSON.encode_shared(event), as_json)
        self.assertIs(TEXT.encode_shared(event), as_text)
        self.assertEqual(event.encoded, {"text": as_text, "json": as_json})

    def test_not_cached_with_id(self) -> None:
        event = events.UserList(("hans",))
        data = JSON.encode(event, "q1")
        self.assertEqual(
            data, b'{"type":"userlist","users":["hans"],"onlinetype":true,"id":"q1"}\n'
        )
        self.assertEqual(event.encoded, {})
        again = JSON.encode(event, "q2")
        self.assertEqual(
            again, b'{"type":"userlist","users":["hans"],"onlinetype":true,"id":"q2"}\n'
        )
        self.assertEqual(event.encoded, {})

    def test_falsy_id_is_an_id(self) -> None:
        event = events.UserList(())
        data = JSON.encode(event, 0)
        assert data is not None
        self.assertEqual(json.loads(data)["id"], 0)
        self.assertEqual(event.encoded, {})

    def test_cache_does_not_leak_into_replies(self) -> None:
        event = events.HelpText((("help", "show this list"),))
        unsolicited = JSON.encode_shared(event)
        reply = JSON.encode(event, 9)
        assert unsolicited is not None and reply is not None
        self.assertNotIn(b'"id"', unsolicited)
        self.assertEqual(json.loads(reply)["id"], 9)
        self.assertIs(JSON.encode_shared(event), unsolicited)
        self.assertNotIn(b'"id"', unsolicited)

    def test_nothing_to_send_is_cached_too(self) -> None:
        event = events.Prompt(events.Prompt.USERNAME)
        self.assertIsNone(JSON.encode_shared(event))
        self.assertIsNone(JSON.encode_shared(event))
        self.assertEqual(event.encoded, {"json": None})

    def test_events_do_not_share_a_cache(self) -> None:
        first = events.Presence("yoda", True)
        second = events.Presence("hans", True)
        TEXT.encode_shared(first)
        self.assertEqual(second.encoded, {})
        self.assertEqual(TEXT.encode_shared(second), b"hans logged in\r\n")


class NumbersTests(unittest.TestCase):
    """Sanity checks on the numbers the renderers are given."""

    def test_timestamp_constant(self) -> None:
        use_utc(self)
        self.assertEqual(time.strftime("%d %b %Y %H:%M:%S", time.localtime(T)), T_TEXT)
        self.assertTrue(math.isfinite(READ_TIME))
        self.assertEqual(
            time.strftime("%d %b %Y %H:%M:%S", time.localtime(READ_TIME)), "01 Jun 2022 16:00:00"
        )


class FormatTimestampTests(unittest.TestCase):
    """:func:`format_timestamp` remembers the last second it rendered, and the time zone then."""

    def test_the_same_second_again_and_the_next(self) -> None:
        use_utc(self)
        self.assertEqual(format_timestamp(T), T_TEXT)
        self.assertEqual(format_timestamp(T + 0.9), T_TEXT)
        self.assertEqual(format_timestamp(T + 1), "14 Nov 2023 22:13:21")
        self.assertEqual(format_timestamp(T - 0.1), "14 Nov 2023 22:13:19")

    def test_a_new_time_zone_renders_again(self) -> None:
        use_utc(self)
        self.assertEqual(format_timestamp(T), T_TEXT)
        os.environ["TZ"] = "XYZ-1"  # one hour east of UTC, in POSIX form (no tzdata needed)
        time.tzset()
        self.assertEqual(format_timestamp(T), "14 Nov 2023 23:13:20")
