"""Server JSON messages read back as events (:mod:`chatservice.wire.json_events`).

1. A property (hypothesis), for every event class of :mod:`chatservice.events`:
   an event sent as a JSON line and decoded renders, through the server's text
   renderer, to exactly the text of the event itself.  So a JSON client that
   shows what it decodes reads like ``telnet``.
2. Tolerance: unknown types and missing or ill-typed fields give ``None`` (or
   an event with neutral defaults for fields that only qualify), never an
   exception.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from chatservice import events
from chatservice.commands import MAX_EPOCH_SECONDS
from chatservice.wire import jsonlines, text
from chatservice.wire.json_events import STATUSES, decode_event
from tests.test_properties import examples

# Strategies ------------------------------------------------------------------------------

words = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
"""Any text JSON can carry (no lone surrogates)."""
names = st.lists(words, max_size=4).map(tuple)
count = st.integers(0, 2**40)
when = st.floats(0, 2**33)
"""Seconds since the epoch (to the year 2242)."""
seconds = st.floats(allow_nan=False, allow_infinity=False)
pairs = st.lists(st.tuples(words, words), max_size=3).map(tuple)
port = st.integers(1, 65535)
clock = st.floats(1e9, 2e9)
"""Two times in this range are within a factor of two, so their difference is
exact in floating point (``status`` sends ``now`` as a difference)."""

EVENTS: dict[type[events.Event], st.SearchStrategy[events.Event]] = {
    events.ErrorReply: st.builds(events.ErrorReply, words, words),
    events.Greeting: st.builds(events.Greeting, words),
    events.LoginSucceeded: st.builds(
        events.LoginSucceeded, words, st.booleans(), st.none() | words
    ),
    events.ScramChallenge: st.builds(events.ScramChallenge, words, words, st.integers(0, 10**6)),
    events.UsernameStatus: st.builds(events.UsernameStatus, words, st.booleans()),
    events.RegisterStatus: st.builds(
        events.RegisterStatus, st.booleans(), words, st.none() | words, words
    ),
    events.PasswordChanged: st.builds(events.PasswordChanged),
    events.LoginRejected: st.builds(
        events.LoginRejected,
        st.sampled_from(["wrong_password", "locked", "username_taken", "unavailable"]) | words,
        words,
        st.none() | st.floats(0, 1e6),
    ),
    events.DirectMessage: st.builds(events.DirectMessage, words, words, when, st.booleans()),
    events.BroadcastMessage: st.builds(events.BroadcastMessage, words, words, when, count),
    events.RoomMessage: st.builds(events.RoomMessage, count, words, words, when, count),
    events.Presence: st.builds(events.Presence, words, st.booleans()),
    events.UserList: st.builds(
        events.UserList, names, st.none() | seconds, st.booleans(), names
    ),
    events.TypingNotice: st.builds(events.TypingNotice, words, st.booleans()),
    events.Done: st.builds(events.Done, words),
    events.MessageSent: st.builds(
        events.MessageSent, words, st.booleans(), st.booleans(), st.none() | words
    ),
    events.BroadcastSent: st.builds(events.BroadcastSent, count, count, count, when, pairs),
    events.SendReport: st.builds(events.SendReport, names, names, pairs, pairs),
    events.StatusChanged: st.builds(
        events.StatusChanged, st.sampled_from(STATUSES), st.none() | words, count, count
    ),
    events.StatusReport: st.builds(
        events.StatusReport, st.booleans(), st.none() | words, st.booleans(), clock, clock
    ),
    events.ActiveList: st.builds(
        events.ActiveList,
        st.lists(st.tuples(words, words, st.none() | port, when), max_size=3).map(tuple),
    ),
    events.HistoryList: st.builds(
        events.HistoryList,
        when,
        st.lists(
            st.tuples(st.sampled_from(["broadcast", "room:2"]) | words, count, words, words, when),
            max_size=3,
        ).map(tuple),
    ),
    events.RoomCreated: st.builds(events.RoomCreated, count, names, st.booleans()),
    events.RoomJoined: st.builds(events.RoomJoined, count, words, names),
    events.RoomPosted: st.builds(events.RoomPosted, count, count, when, count, count),
    events.RoomList: st.builds(
        events.RoomList, st.lists(st.tuples(count, names), max_size=3).map(tuple)
    ),
    events.RoomLeft: st.builds(events.RoomLeft, count, words, st.booleans()),
    events.BlockChanged: st.builds(events.BlockChanged, words, st.booleans()),
    events.BlockList: st.builds(events.BlockList, names),
    events.MissedSince: st.builds(events.MissedSince, count, when, st.booleans()),
    # The text renderer needs at least one command (the server has many).
    events.HelpText: st.builds(
        events.HelpText,
        st.lists(st.tuples(words, words), min_size=1, max_size=3).map(tuple),
        st.dictionaries(words, words, max_size=3).map(lambda d: tuple(d.items())),
        st.none() | words,
    ),
    events.PeerAddress: st.builds(
        events.PeerAddress, st.sampled_from(["private", "file"]), words, words, port, words
    ),
    events.PrivateRequest: st.builds(events.PrivateRequest, words, words),
    events.FileIncoming: st.builds(
        events.FileIncoming, words, words, st.none() | count, words
    ),
    events.ServerNotice: st.builds(events.ServerNotice, words, words, when),
    events.OperatorDone: st.builds(
        events.OperatorDone,
        st.sampled_from(["kick", "ban", "unban", "mute", "unmute", "announce"]) | words,
        words,
        count,
        st.none() | when,
        st.none() | count,
        st.sampled_from(["user", "address", "network"]),
        words,
    ),
    events.BanReport: st.builds(
        events.BanReport,
        st.lists(
            st.tuples(count, words, words, words, when, st.none() | when, words), max_size=3
        ).map(tuple),
    ),
    events.WhoisReport: st.builds(
        events.WhoisReport,
        words, words, when, st.none() | st.floats(0, 1e6),
        st.sampled_from(["text", "telnet", "json", "web"]) | words,
        st.none() | st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
        st.none() | words,
    ),
    events.RehashReport: st.builds(events.RehashReport, names),
    events.Disconnected: st.builds(
        events.Disconnected,
        st.sampled_from(
            ["logout", "timeout", "locked", "shutdown", "banned", "kicked", "outdated_client"]
        )
        | words,
        words,
        st.none() | words,
    ),
}
"""Every event class a JSON client can be sent, with the values the server gives."""

NOT_SENT_AS_JSON = (events.Prompt,)
"""Event classes JSON clients are never sent."""


def event_classes() -> set[type[events.Event]]:
    """The event classes of :mod:`chatservice.events`."""
    return {
        value
        for value in vars(events).values()
        if isinstance(value, type)
        and issubclass(value, events.Event)
        and value is not events.Event
        and value.__module__ == events.__name__
    }


def through_the_wire(event: events.Event) -> events.Event | None:
    """``event`` sent as a JSON line and decoded again."""
    line = jsonlines.encode(event, "req-1")
    assert line is not None
    return decode_event(json.loads(line))


def _round_trip_test(
    strategy: st.SearchStrategy[events.Event],
) -> Callable[[RoundTripTests], None]:
    @examples(150)
    @given(strategy)
    def test(self: RoundTripTests, event: events.Event) -> None:
        decoded = through_the_wire(event)
        assert decoded is not None, event
        self.assertEqual(text.render(decoded), text.render(event))

    return test


class RoundTripTests(unittest.TestCase):
    """For every event class: the text of the decoded event is the event's text."""

    def test_every_event_class_has_a_strategy(self) -> None:
        missing = event_classes() - set(EVENTS) - set(NOT_SENT_AS_JSON)
        self.assertEqual(sorted(cls.__name__ for cls in missing), [])

    def test_not_sent_as_json(self) -> None:
        self.assertIsNone(jsonlines.encode(events.Prompt(events.Prompt.USERNAME)))

    def test_same_event_where_the_shape_is_not_ambiguous(self) -> None:
        event = events.RoomMessage(2, "luke", "yo", 1_700_000_000.5, 7)
        self.assertEqual(
            dataclasses.astuple(through_the_wire(event)), dataclasses.astuple(event)
        )

    def test_ambiguous_shapes(self) -> None:
        decoded: Callable[[events.Event], Any] = through_the_wire
        taken = decoded(events.LoginRejected("username_taken", "Taken.", 5.0))
        self.assertEqual((taken.reason, taken.message, taken.retry_after), ("username_taken", "Taken.", None))
        for reason in ("shutdown", "banned", "logout"):
            goodbye = decoded(events.Disconnected(reason, "Bye."))
            self.assertIsInstance(goodbye, events.Disconnected)
            self.assertEqual((goodbye.reason, goodbye.message), (reason, "Bye."))
        outdated = decoded(events.Disconnected("outdated_client", "Upgrade.", "2.0"))
        self.assertEqual(outdated.server_version, "2.0")
        address = decoded(events.PeerAddress("file", "hans", "127.0.0.1", 6000, "t"))
        self.assertEqual(address.purpose, "file")
        registered = decoded(events.RegisterStatus(True, "hans", "code", "unused"))
        self.assertEqual((registered.code, registered.message), (None, ""))


for _cls, _strategy in EVENTS.items():
    setattr(RoundTripTests, f"test_round_trip_{_cls.__name__}", _round_trip_test(_strategy))


# Tolerance -------------------------------------------------------------------------------

def sample_events() -> list[events.Event]:
    """Events that the server sends in every JSON shape there is."""
    return [
        events.ErrorReply("invalid_user", "Error. Invalid user."),
        events.Greeting("1.0"),
        events.LoginSucceeded("yoda", server_final="v=c2ln"),
        events.ScramChallenge("r=abc,s=c2FsdA==,i=4096", "c2FsdA==", 4096),
        events.LoginRejected("wrong_password", "Invalid Password.", 1.5),
        events.LoginRejected("username_taken", "Taken."),
        events.UsernameStatus("yoda", True),
        events.RegisterStatus(False, "yoda", "weak", "Too short."),
        events.PasswordChanged(),
        events.DirectMessage("hans", "hi", 1_700_000_000.0, True),
        events.BroadcastMessage("hans", "all", 1_700_000_000.0, 3),
        events.RoomMessage(2, "hans", "yo", 1_700_000_000.0, 1),
        events.Presence("hans", True),
        events.UserList(("hans",), 60.0, True, ("hans",)),
        events.TypingNotice("hans", True),
        events.Done("typing"),
        events.MessageSent("hans", True, True, "brb"),
        events.BroadcastSent(1, 1, 3, 1_700_000_000.0, (("luke", "away"),)),
        events.SendReport(("a",), ("b",), (("c", "blocked"),), (("a", "x"),)),
        events.StatusChanged("busy", "brb"),
        events.StatusReport(True, "brb", False, 1_700_000_000.0, 1_700_003_725.0),
        events.ActiveList((("hans", "127.0.0.1", 6666, 1_700_000_000.0),)),
        events.HistoryList(1.0, (("broadcast", 3, "yoda", "hi", 1_700_000_000.0),)),
        events.RoomCreated(2, ("hans", "yoda"), False),
        events.RoomJoined(2, "yoda", ("hans", "yoda")),
        events.RoomPosted(2, 5, 1_700_000_000.0, 1, 0),
        events.RoomList(((2, ("hans", "yoda")),)),
        events.RoomLeft(2, "hans", True),
        events.BlockChanged("hans", True),
        events.BlockList(("hans", "luke")),
        events.MissedSince(3, 1_700_000_000.0),
        events.HelpText((("whoelse", "who is on"),), (("who", "whoelse"),), "who"),
        events.PeerAddress("private", "hans", "127.0.0.1", 6000, "tok"),
        events.PeerAddress("file", "hans", "127.0.0.1", 6000, "tok"),
        events.PrivateRequest("hans", "tok"),
        events.FileIncoming("hans", "a.txt", 10, "tok"),
        events.Disconnected("logout", "Goodbye."),
        events.Disconnected("shutdown", "Going down."),
        events.Disconnected("banned", "Banned."),
        events.Disconnected("outdated_client", "Upgrade.", "2.0"),
        events.Disconnected("kicked", "Kicked by yoda."),
        events.ServerNotice("yoda", "Restart at ten.", 1_700_000_000.0),
        events.OperatorDone("ban", "10.0.0.0/8", 2, 1_700_000_060.0, 3, "network", "spam"),
        events.OperatorDone("kick", "hans", 1),
        events.BanReport(((3, "network", "10.0.0.0/8", "yoda", 1_700_000_000.0, None, "spam"),)),
        events.WhoisReport("hans", "10.0.0.2", 1_700_000_000.0, 5.0, "json", False, False, False, False, False, "a"),
        events.RehashReport(("ban file: unchanged",)),
    ]


def samples() -> list[dict[str, Any]]:
    """One well-formed message of every JSON type the server sends."""
    return [jsonlines.render(event) for event in sample_events()]


ODD_VALUES = (None, True, -1, 1.5, float("nan"), float("inf"), 1e300, "x", [], [1, "a", None], {}, {"a": 1})
"""Values of the wrong type, out of range, or non-finite, for any field."""


class ToleranceTests(unittest.TestCase):
    """Messages from servers of other versions: no exception, and ``None`` or a
    best-effort event that the text renderer can show."""

    def assertRenderable(self, event: events.Event | None) -> None:
        if event is not None:
            text.render(event)

    def test_samples_cover_every_event_class(self) -> None:
        self.assertEqual({type(event) for event in sample_events()}, set(EVENTS))

    def test_not_an_object_or_no_type(self) -> None:
        for obj in (None, [], "login", 3, {}, {"type": None}, {"type": 3}, {"type": ["login"]}, {"type": {}}):
            self.assertIsNone(decode_event(obj))

    def test_unknown_type(self) -> None:
        self.assertIsNone(decode_event({"type": "future_thing", "message": "Something new."}))

    def test_only_the_type(self) -> None:
        for message in samples():
            self.assertRenderable(decode_event({"type": message["type"]}))

    def test_every_field_missing_or_odd(self) -> None:
        for message in samples():
            for name in message:
                if name == "type":
                    continue
                without = {k: v for k, v in message.items() if k != name}
                self.assertRenderable(decode_event(without))
                for value in ODD_VALUES:
                    self.assertRenderable(decode_event(dict(message, **{name: value})))

    def test_odd_list_entries_skipped(self) -> None:
        event = decode_event(
            {"type": "active", "users": [
                5, {"user": "hans"}, {"user": "luke", "host": "h", "p2p_port": "x", "since": 1.0},
                {"user": "yoda", "host": "h", "p2p_port": 6000, "since": 1e300},
                {"user": "leia", "host": "h", "since": 2.0}]}
        )
        assert isinstance(event, events.ActiveList)
        self.assertEqual(event.users, (("luke", "h", None, 1.0), ("leia", "h", None, 2.0)))
        event = decode_event({"type": "userlist", "users": ["hans", 3, None, "luke"], "guests": "x"})
        assert isinstance(event, events.UserList)
        self.assertEqual((event.users, event.guests, event.online, event.since), (("hans", "luke"), (), True, None))

    def test_required_fields(self) -> None:
        """Without who or what, there is no event."""
        for message in (
            {"type": "message", "message": "hi"},
            {"type": "message", "from": "hans", "message": "hi", "offline": True},
            {"type": "room_message", "room": "2", "from": "hans", "message": "yo"},
            {"type": "login", "success": True},
            {"type": "login", "success": False, "reason": "wrong_password"},
            {"type": "user_notification", "user": "hans"},
            {"type": "broadcast_status", "delivered": 0, "skipped": 0},
            {"type": "userlist", "onlinetype": True},
            {"type": "status_changed", "status": "away"},
            {"type": "private_address", "user": "hans", "host": "h", "port": 70000, "token": "t"},
            {"type": "file_incoming", "from": "hans", "filename": "a", "size": 1},
            {"type": "help", "commands": [{"usage": 5, "summary": "x"}]},
        ):
            self.assertIsNone(decode_event(message), message)

    def test_qualifying_fields_default(self) -> None:
        """A missing flag, count, sequence number or unshown time means nothing special."""
        self.assertEqual(
            text.render(decode_event({"type": "room_message", "room": 2, "from": "luke", "message": "yo"})),
            "[room 2] luke: yo\r\n",
        )
        self.assertEqual(
            text.render(decode_event({"type": "message", "from": "hans", "message": "hi"})),
            "hans: hi\r\n",
        )
        self.assertEqual(
            text.render(decode_event({"type": "message_status", "to": "hans"})),
            "Message delivered to hans.\r\n",
        )
        goodbye = decode_event({"type": "shutdown"})
        assert isinstance(goodbye, events.Disconnected)
        self.assertEqual((goodbye.reason, goodbye.message), ("shutdown", ""))
        error = decode_event({"type": "error", "code": 5})
        assert isinstance(error, events.ErrorReply)
        self.assertEqual((error.code, error.message), ("", ""))

    def test_times_must_be_showable(self) -> None:
        for bad in (-1, 1e300, MAX_EPOCH_SECONDS + 1, float("nan"), "01 Jan 2024 00:00:00"):
            self.assertIsNone(
                decode_event({"type": "room_posted", "room": 2, "seq": 1, "timestamp": bad})
            )

    def test_request_id_ignored(self) -> None:
        event = decode_event({"type": "block_status", "user": "hans", "blocked": False, "id": [1]})
        self.assertEqual(text.render(event), "hans is unblocked.\r\n")
