"""Line separators and bidirectional controls in text output (issue 15, item 12).

A message may carry U+2028/U+2029 (which some terminals take as line breaks)
or the bidirectional embeddings, overrides and isolates (U+202A-U+202E,
U+2066-U+2069), which reorder what follows them on the line: the line that
carries the sender's name.  The text format shows each as ``<U+XXXX>``,
wherever it appears (message text, user names, room member lists, file
names); JSON keeps the text as it was sent.
"""

from __future__ import annotations

import json

from twisted.trial import unittest

from chatservice import events
from chatservice.wire import jsonlines, text
from tests.test_protocol import HarnessTestCase

T = 1_700_000_000.0
UNSAFE = "\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
"""Every character the text format neutralises."""
SHOWN = "".join(f"<U+{ord(c):04X}>" for c in UNSAFE)


class RenderTests(unittest.TestCase):
    def rendered(self, event: events.Event) -> str:
        data = text.encode(event)
        assert data is not None
        return data.decode("utf-8")

    def test_message_text(self) -> None:
        for event, prefix in (
            (events.DirectMessage("yoda", f"a{UNSAFE}b", T), "yoda: "),
            (events.BroadcastMessage("yoda", f"a{UNSAFE}b", T, 1), "[broadcast] yoda: "),
            (events.RoomMessage(2, "yoda", f"a{UNSAFE}b", T, 1), "[room 2] yoda: "),
        ):
            self.assertEqual(self.rendered(event), f"{prefix}a{SHOWN}b\r\n")

    def test_a_reversed_name_stays_in_place(self) -> None:
        """The attack: text that makes ``evil: hi`` read as if another user said it."""
        line = self.rendered(events.DirectMessage("evil", "\u202eadoy :ih\u2028yoda: pay me", T))
        self.assertEqual(line, "evil: <U+202E>adoy :ih<U+2028>yoda: pay me\r\n")
        self.assertFalse(set(line) & set(UNSAFE))

    def test_names_lists_and_history(self) -> None:
        name = "a\u202eb"
        for event in (
            events.Presence(name, True),
            events.UserList((name, "hans"), None),
            events.RoomList(((2, (name, "yoda")),)),
            events.RoomCreated(2, (name, "yoda"), existed=False),
            events.HistoryList(0, (("room:2", 1, name, "x\u2029y", T),)),
            events.FileIncoming("yoda", "report\u202etxt.exe", None, "t"),
            events.TypingNotice(name, True),
        ):
            line = self.rendered(event)
            self.assertFalse(set(line) & set(UNSAFE), line)
            self.assertIn("<U+", line)

    def test_other_text_untouched(self) -> None:
        for message in ("שלום עולם", "مرحبا", "e\u0301 \u200d \u00e9 tab\there"):
            self.assertEqual(self.rendered(events.DirectMessage("yoda", message, T)), f"yoda: {message}\r\n")

    def test_json_keeps_the_text(self) -> None:
        data = jsonlines.encode(events.DirectMessage("yoda", f"a{UNSAFE}b", T))
        assert data is not None
        self.assertEqual(json.loads(data)["message"], f"a{UNSAFE}b")


class ServerTests(HarnessTestCase):
    """Through the server: a text reader sees the controls neutralised, a JSON reader the text."""

    def test_message_to_text_and_json_readers(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        luke = self.connect()
        luke.login_json("luke")
        hans.output()
        yoda.send("message hans \u202eolleh\u2066x\u2069")
        self.assertEqual(hans.lines(), ["yoda: <U+202E>olleh<U+2066>x<U+2069>"])
        yoda.send("broadcast a\u2028b")
        self.assertEqual(hans.lines(), ["[broadcast] yoda: a<U+2028>b"])
        # Not Connection.json(): its splitlines() would split at U+2028.
        received = [json.loads(line) for line in luke.output().split("\n") if line]
        (broadcast,) = [m for m in received if m["type"] == "broadcast"]
        self.assertEqual(broadcast["message"], "a\u2028b")
