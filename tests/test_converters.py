"""Every argument converter, and both request parsers, over all of Unicode (issue 15, item 7).

``commands.convert`` turns each argument of a request into its handler's type.
Numbers are read strictly: ASCII digits only, and a bounded length, so that
neither ``str.isdigit`` characters that ``int`` refuses (``"²"``) nor digit
strings too long for ``int`` (5000 digits) can raise anything but a
:class:`~chatservice.commands.CommandError`.  The properties feed every
argument of every command, and whole text lines and JSON objects, with
arbitrary Unicode text (lone surrogates included) and arbitrary JSON values:
the only exception allowed out is a ``CommandError``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from chatservice.commands import (
    COMMANDS,
    COUNT,
    MAX_COUNT,
    MAX_SECONDS,
    SECONDS,
    Argument,
    Command,
    CommandError,
    Request,
    convert,
)
from chatservice.wire import jsonlines, text
from tests.test_properties import examples
from tests.test_protocol import HarnessTestCase

ARGUMENTS = [(command, argument) for command in COMMANDS for argument in command.arguments]
"""Every argument of every command."""

any_character = st.characters(blacklist_categories=())
"""Any code point, surrogates included."""
any_text = st.text(any_character, max_size=30)
digit_like = st.text(
    st.sampled_from("0123456789\u00b2\u00b3\u00b9\u2460\u0661\u06f1\u0967\uff11\U0001d7ce_ +-.e"),
    min_size=1,
    max_size=25,
)
"""Strings of characters that ``str.isdigit``, ``int`` or ``float`` take for digits."""
json_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([10**400, -(10**400), 2**63, 2**63 - 1, 2**64]),
        st.floats(),
        any_text,
        digit_like,
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=5,
)
"""Any value a JSON request may carry in a field."""


def check_converted(command: Command, argument: Argument, value: Any) -> None:
    """``convert`` returns a value of the argument's kind, or raises ``CommandError``."""
    try:
        converted = convert(command, argument, value)
    except CommandError as e:
        assert e.code == "bad_argument", e.code
        return
    if converted is None:
        assert not argument.required
    elif argument.kind == COUNT:
        assert type(converted) is int and 0 <= converted <= MAX_COUNT, converted
    elif argument.kind == SECONDS:
        assert type(converted) is float and math.isfinite(converted), converted
        assert 0 <= converted <= MAX_SECONDS


class StrictNumberTests(unittest.TestCase):
    """Whole numbers (room numbers, sizes) and seconds: ASCII digits, bounded length."""

    def refused(self, line: str) -> CommandError:
        return self.assertRaises(CommandError, text.parse_request, line)

    def test_digit_like_characters_refused(self) -> None:
        for line in ("room send \u00b2 hi", "sendfile hans f \u00b2", "room leave \u2460"):
            self.assertEqual(self.refused(line).code, "bad_argument", line)

    def test_non_ascii_digits_refused(self) -> None:
        """``int`` and ``float`` read Arabic-Indic and full-width digits; the protocol does not."""
        for line in ("room leave \u0661", "room leave \uff11", "whoelsesince \u0661\u0662"):
            self.assertEqual(self.refused(line).code, "bad_argument", line)

    def test_very_long_numbers_refused(self) -> None:
        for line in ("room leave " + "9" * 5000, "sendfile hans f " + "1" * 5000,
                     "whoelsesince " + "9" * 5000, "room leave " + "9" * 20):
            self.assertEqual(self.refused(line).code, "bad_argument", line[:20])

    def test_largest_whole_number(self) -> None:
        self.assertEqual(
            text.parse_request(f"room leave {MAX_COUNT}").arguments["room"], MAX_COUNT
        )
        self.refused(f"room leave {MAX_COUNT + 1}")
        self.assertEqual(text.parse_request("room leave 007").arguments["room"], 7)

    def test_python_number_syntax_refused(self) -> None:
        for line in ("room leave 1_000", "room leave +1", "whoelsesince 1_0", "whoelsesince +5",
                     "whoelsesince inf", "whoelsesince nan", "whoelsesince 0x10"):
            self.assertEqual(self.refused(line).code, "bad_argument", line)

    def test_ordinary_seconds_still_read(self) -> None:
        for written, seconds in (("60", 60.0), ("1.5e1", 15.0), ("0.5", 0.5), (".5", 0.5), ("5.", 5.0)):
            request = text.parse_request(f"whoelsesince {written}")
            self.assertEqual(request.arguments["seconds"], seconds, written)

    def test_json_numbers(self) -> None:
        room_send = next(c for c in COMMANDS if c.name == "room send")
        room = room_send.arguments[0]
        self.assertEqual(convert(room_send, room, 12), 12)
        self.assertEqual(convert(room_send, room, "12"), 12)
        for bad in ("\u00b2", "1" * 5000, 10**400, MAX_COUNT + 1, -1, 1.0, True, "", " 1"):
            with self.assertRaises(CommandError, msg=repr(bad)[:20]):
                convert(room_send, room, bad)

    def test_json_durations(self) -> None:
        """A duration in JSON: seconds as a number, or text with a unit; a huge int is refused, not an overflow."""
        mute = next(c for c in COMMANDS if c.name == "mute")
        duration = mute.arguments[1]
        self.assertEqual(convert(mute, duration, 90), 90.0)
        self.assertEqual(convert(mute, duration, "10m"), 600.0)
        for bad in (10**400, -10**400, MAX_SECONDS + 1, 0, -1, math.nan, math.inf, True, "10", "1e400s"):
            with self.assertRaises(CommandError, msg=repr(bad)[:20]):
                convert(mute, duration, bad)


class ConnectionStaysTests(HarnessTestCase):
    """The requests of the issue get an error reply; the connection goes on."""

    def test_text(self) -> None:
        (yoda,) = self.online("yoda")
        for line in ("room send \u00b2 hi", "sendfile hans f \u00b2", "room leave " + "5" * 5000):
            yoda.send(line)
            (reply,) = yoda.lines()
            self.assertTrue(reply.startswith("Error. <"), reply)
        self.assertFalse(yoda.closed)
        yoda.send("whoelse")
        self.assertEqual(yoda.lines(), ["No other users are online."])

    def test_json(self) -> None:
        yoda = self.connect()
        yoda.login_json("yoda")
        for request in ({"type": "room_send", "room": "\u00b2", "message": "hi"},
                        {"type": "sendfile", "to": "hans", "filename": "f", "size": "9" * 5000}):
            yoda.send_json({**request, "id": 3})
            (reply,) = yoda.json()
            self.assertEqual((reply["type"], reply["code"], reply["id"]), ("error", "bad_argument", 3))
        self.assertFalse(yoda.closed)


class ConverterProperties(unittest.TestCase):
    """No value of any argument makes ``convert`` raise anything but ``CommandError``."""

    @examples(400)
    @given(st.sampled_from(ARGUMENTS), st.one_of(any_text, digit_like))
    def test_any_text(self, command_argument: tuple[Command, Argument], value: str) -> None:
        check_converted(*command_argument, value)

    @examples(400)
    @given(st.sampled_from(ARGUMENTS), json_value)
    def test_any_json_value(self, command_argument: tuple[Command, Argument], value: Any) -> None:
        check_converted(*command_argument, value)


command_word = st.sampled_from(
    sorted({c.name for c in COMMANDS} | {a for c in COMMANDS for a in c.aliases} | {"room", "x"})
)
text_line = st.one_of(
    any_text,
    st.builds(
        lambda command, words: " ".join([command, *words]),
        command_word,
        st.lists(st.one_of(any_text, digit_like), max_size=4),
    ),
)
"""A request line: any text, or a command name followed by any words."""


class ParserProperties(unittest.TestCase):
    """Whole requests, in text and JSON, over all of Unicode."""

    @examples(500)
    @given(text_line)
    def test_text_lines(self, line: str) -> None:
        try:
            request = text.parse_request(line)
        except CommandError:
            return
        assert request is None or isinstance(request, Request)

    @examples(300)
    @given(st.binary(max_size=60) | text_line.map(lambda line: line.encode("utf-8", "surrogatepass")))
    def test_text_bytes(self, raw: bytes) -> None:
        try:
            text.TEXT.parse_command(raw, "yoda")
        except CommandError:
            pass

    @examples(500)
    @given(
        st.one_of(command_word, any_text),
        st.dictionaries(
            st.one_of(st.sampled_from(sorted({a.name for _c, a in ARGUMENTS} | {"id", "user"})), any_text),
            json_value,
            max_size=4,
        ),
    )
    def test_json_requests(self, kind: str, fields: dict[str, Any]) -> None:
        raw = json.dumps({**fields, "type": kind}).encode("utf-8")
        try:
            request = jsonlines.JSON.parse_command(raw, "yoda")
        except CommandError:
            return
        assert isinstance(request, Request)
