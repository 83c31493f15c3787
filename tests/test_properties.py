"""Property-based tests (hypothesis): what no client input can break.

Issue 6 asks for proof that one bad client cannot crash the server or hurt the
others.  These properties drive the whole server (:class:`ChatHarness`: the
real factory, protocol, login gate and chat state on a fake clock) through
``StringTransport`` connections, in both wire formats (text, and JSON after a
first line starting with ``{``):

1. Arbitrary bytes (telnet IAC sequences, invalid UTF-8, NULs, over-long
   lines, command and JSON lines), split at arbitrary points, fed before and
   after login: no exception escapes ``dataReceived`` or the clock, nothing is
   logged as an error, every write is whole UTF-8, text output carries no
   control characters, JSON output is only complete JSON object lines, and a
   second logged-in user still gets the right ``whoelse`` answer.
2. At most one reply per line: counted by JSON ``id`` (exactly one for a
   well-formed request while the connection lives, in request order), and by
   instrumenting the protocol: while one received line is handled, at most
   one reply event (prompts aside; deliveries to the connection are not
   replies) is written.
3. State consistency under random sequences of connects, logins, commands,
   drops, server-side closes, slow readers and clock advances
   (:mod:`hypothesis.stateful`): a user has a session iff exactly one live
   connection is logged in as that user; the factory tracks exactly the live
   connections; once everything is closed no timer is left.

Known bugs found here are kept as ``todo`` regression tests at the end.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterable, NamedTuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    initialize,
    run_state_machine_as_test,
)
from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from chatservice import events
from chatservice.commands import COMMANDS
from chatservice.server.connection import ChatConnection
from chatservice.server.protocol import ChatProtocol
from chatservice.version import SERVER_VERSION
from chatservice.wire import JSON, jsonlines, text
from tests.support import SAMPLE_ACCOUNTS, ChatHarness, strip_negotiation

KNOWN_BUGS_FIXED = True
"""The bugs these properties found are fixed (see :class:`KnownBugTests`, now
regression tests), so the strategies include their inputs: integers too large
for a float in JSON arguments, version strings with non-ASCII digits, and
floods long enough to be cut off.  Setting this to ``False`` leaves them out."""

MAX_LINE = 64
"""A small line limit, so that over-long lines are common."""
line_limit = st.sampled_from([MAX_LINE, 1024])
"""The small limit, or one that lets long JSON requests through."""


def flood_limit(seconds: float) -> float:
    """``seconds`` of throttling before a flooder is cut off (never, while the bug lasts)."""
    return seconds if KNOWN_BUGS_FIXED else 1e9


FLOOD = {"flood_burst": 5, "flood_rate": 5.0, "flood_limit": flood_limit(4.0)}
"""Flood limits low enough that random input is throttled, and sometimes cut off."""

GREETING = (
    text.encode(events.Greeting(SERVER_VERSION))
    + text.encode(events.Prompt(events.Prompt.USERNAME))
).decode("utf-8")
TEXT_CONTROL = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]")
"""Control characters a text client must never receive (tab, CR and LF aside)."""


def examples(count: int) -> settings:
    """``count`` examples, no deadline (the first example imports), no example database."""
    return settings(
        max_examples=count,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# Connections that keep everything --------------------------------------------------


class RecordingTransport(StringTransport):
    """A ``StringTransport`` that also keeps each ``write`` separately.

    Like a TCP transport (and unlike ``StringTransport``), it lets the
    protocol pause or resume reading after ``loseConnection``: what the
    protocol does then is part of what is tested.
    """

    def __init__(self, peerAddress: IPv4Address) -> None:
        super().__init__(peerAddress=peerAddress)
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def _checkState(self) -> None:
        pass


class InspectableConnection(ChatConnection):
    """A :class:`ChatConnection` whose methods a test may wrap (it has an instance dict)."""


class Client:
    """One connection to a harness, with its whole output kept from the greeting on.

    :param harness: the server.
    :param host: the client's address.
    """

    def __init__(self, harness: ChatHarness, host: str) -> None:
        address = IPv4Address("TCP", host, 40000)
        self.harness = harness
        self.protocol: ChatProtocol = harness.factory.buildProtocol(address)
        self.protocol.connection_type = InspectableConnection
        self.transport = RecordingTransport(address)
        self.protocol.makeConnection(self.transport)
        self.lost = False
        self.said = False
        self.checked = 0

    def feed(self, data: bytes, cuts: Iterable[int] = ()) -> None:
        """Deliver ``data``, split at ``cuts``, as the reactor would; stop once closed."""
        self.said = self.said or bool(data)
        start = 0
        for end in [*sorted(set(cuts)), len(data)]:
            if start < end <= len(data) and not self.transport.disconnecting:
                self.protocol.dataReceived(data[start:end])
                start = end

    def send_line(self, line: bytes | str, eol: bytes = b"\n") -> None:
        self.feed((line.encode("utf-8") if isinstance(line, str) else line) + eol)

    def send_json(self, obj: dict[str, Any]) -> None:
        self.send_line(json_bytes(obj))

    def output(self) -> bytes:
        """Everything written so far."""
        return b"".join(self.transport.writes)

    def take(self) -> bytes:
        """What was written since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return data

    def take_json(self) -> list[dict[str, Any]]:
        # Not splitlines(): raw U+0085 or U+2028 may appear inside JSON strings.
        return [json.loads(line) for line in self.take().decode("utf-8").split("\n") if line]

    @property
    def connection(self) -> ChatConnection:
        """The server side of this connection."""
        assert self.protocol.connection is not None
        return self.protocol.connection

    @property
    def json(self) -> bool:
        return self.connection.wire is JSON

    def drop(self) -> None:
        """The connection is gone (client vanished, or the reactor finished a close)."""
        self.lost = True
        self.protocol.connectionLost(Failure(error.ConnectionLost()))

    def check_new_writes(self) -> None:
        """Every write since the last check is whole UTF-8 (telnet negotiation aside)."""
        for data in self.transport.writes[self.checked :]:
            strip_negotiation(data).decode("utf-8")
        self.checked = len(self.transport.writes)

    def check_output(self) -> None:
        """Every write is whole UTF-8, and the whole output has the connection's format."""
        self.check_new_writes()
        check_output(self.output(), self.json, self.harness.policy.max_line_length)


def overflow_error(max_length: int) -> str:
    """The text error an over-long line gets (before the format is known)."""
    return text.encode(
        events.ErrorReply(
            "line_too_long",
            f"Error. Lines are limited to {max_length} bytes; that one was discarded.",
        )
    ).decode("utf-8")


def check_output(data: bytes, json_mode: bool, max_length: int) -> None:
    """Check a connection's whole output.

    Text: UTF-8 besides telnet negotiation (``IAC WILL ECHO`` ...), starting
    with the greeting, no control characters but tab, CR, LF.  JSON: the text
    greeting (and the errors of over-long lines sent before the first line,
    and what a telnet command got: the prompt again after ``IAC IP``,
    ``[yes]`` to ``IAC AYT``), the one ``"\\n"`` that ends the text prompt's
    line, then only complete JSON object lines with a string ``type``, and no
    telnet; or only JSON lines when the connection was refused before the
    greeting.
    """
    if json_mode:
        json_start = data.find(b"\n{")
        assert json_start < 0 or b"\xff" not in data[json_start:], f"telnet in JSON mode: {data!r}"
    decoded = strip_negotiation(data).decode("utf-8")
    if not json_mode:
        assert decoded.startswith(GREETING), decoded[:200]
        bad = TEXT_CONTROL.search(decoded)
        assert bad is None, f"control character {bad.group()!r} in {decoded!r}"
        return
    if decoded.startswith("{"):
        body = decoded  # refused at once (server full, banned): JSON only
    else:
        assert decoded.startswith(GREETING), decoded[:200]
        rest = decoded[len(GREETING) :]
        text_replies = (overflow_error(max_length), "\r\nUsername: ", "\r\n[yes]\r\n")
        while rest.startswith(text_replies):
            rest = rest[len(next(r for r in text_replies if rest.startswith(r))) :]
        assert rest.startswith("\n"), f"JSON mode without the leading newline: {rest[:200]!r}"
        body = rest[1:]
    assert body == "" or body.endswith("\n"), f"unfinished JSON line: {body[-200:]!r}"
    for line in body.split("\n")[:-1]:
        obj = json.loads(line)
        assert isinstance(obj, dict) and isinstance(obj.get("type"), str), line


class ErrorWatch:
    """Collects what is logged as an error while it is on (trial fails a test on these)."""

    def __init__(self) -> None:
        self.logged: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if (
            event.get("log_failure") is not None
            or event.get("isError")
            or event.get("log_level") in (LogLevel.error, LogLevel.critical)
        ):
            self.logged.append(event)

    def __enter__(self) -> ErrorWatch:
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        globalLogPublisher.removeObserver(self)

    def check(self) -> None:
        if self.logged:
            event = self.logged[0]
            failure = event.get("log_failure")
            detail = failure.getTraceback() if failure is not None else ""
            raise AssertionError(f"logged an error: {formatEvent(event)}\n{detail}")


def check_sessions(harness: ChatHarness, live: list[Client], gone: list[Client]) -> None:
    """A user is online iff exactly one live connection is logged in as that user.

    *Live*: ``connectionLost`` not called yet.  A live connection that is not
    closing and holds a session is logged in: its session must be the
    user's one in the chat state.  A closing connection (the server asked to
    close it; ``connectionLost`` is yet to come) may or may not have been
    logged out already.  Every session in the chat state must be held by
    exactly one live connection, which it sends to; a closed connection holds
    none; and the factory counts exactly the live connections.
    """
    sessions = harness.state.sessions
    assert harness.factory.connections == {c.connection for c in live}
    for name, session in sessions.items():
        assert session.username == name
        holders = [c for c in live if c.connection.session is session]
        assert len(holders) == 1, f"{name} is online, held by {len(holders)} live connections"
        assert session.client is holders[0].connection
    for client in live:
        session = client.connection.session
        if session is not None and not client.connection.writer.closed:
            assert sessions.get(session.username) is session, (
                f"a connection logged in as {session.username} is not online"
            )
    for client in gone:
        assert client.connection.session is None


def new_harness(**options: Any) -> ChatHarness:
    merged: dict[str, Any] = {"max_line_length": MAX_LINE, **FLOOD}
    merged.update(options)
    return ChatHarness(**merged)


def settle(
    harness: ChatHarness, clients: Iterable[Client], step: float = 0.5, rounds: int = 400
) -> None:
    """Advance the clock until no open connection is paused by flood control."""
    clients = list(clients)
    for _ in range(rounds):
        if not any(
            c.connection._paused and not c.lost and not c.transport.disconnecting for c in clients
        ):
            return
        harness.clock.advance(step)


def finish(harness: ChatHarness, clients: Iterable[Client]) -> None:
    """Drop every connection, stop the lock-outs; no timer may be left."""
    for client in clients:
        if not client.lost:
            client.drop()
    harness.close_all()
    assert harness.state.sessions == {}, harness.state.sessions
    assert harness.factory.connections == set()
    assert harness.clock.getDelayedCalls() == [], harness.clock.getDelayedCalls()


# Strategies ------------------------------------------------------------------------

NAMES = ["yoda", "hans", "luke", "obiwan", "leia", "vader", "Yoda", "r2"]
TEXT_COMMANDS = sorted(
    {c.name for c in COMMANDS}
    | {alias for c in COMMANDS for alias in c.aliases}
    | {"room", "ROOM", "Who", "bogus", "guest"}
)
JSON_TYPES = sorted(
    set(TEXT_COMMANDS) | {"login", "guest", "register", "salt", "hello", "disconnect", "LOGIN"}
)
FIELDS = [
    "to", "message", "target", "members", "room", "seconds", "minutes", "since",
    "status", "onlinetype", "old", "new", "filename", "size", "user", "password",
    "version", "p2p_port", "udp_port",
]  # fmt: skip
SPECIAL_WORDS = NAMES + list(SAMPLE_ACCOUNTS.values()) + [
    "on", "off", "online", "offline", "true", "0", "1", "2", "-1", "3.5", "1e400",
    "nan", "inf", "(hans luke)", "(hans", ")", "1 Jun 2022 16:00:00", "create", "send",
    "leave", "yes", "no", "\x1b[31m", "a\bb", "x\x7f", "\u202e", "é",
]  # fmt: skip

DIGIT_LIKE = "0123456789\u0661\uff11x"  # int() reads Arabic-Indic and full-width digits
if KNOWN_BUGS_FIXED:
    DIGIT_LIKE += "\u00b2\u00b3\u2460"  # isdigit(), yet int() refuses them
digit_like = st.text(st.sampled_from(DIGIT_LIKE), max_size=2)
version_like = st.one_of(
    st.builds(lambda *parts: ".".join(parts), digit_like, digit_like),
    st.builds(lambda *parts: ".".join(parts), digit_like, digit_like, digit_like),
    st.text(st.sampled_from("0123456789.x"), max_size=6),
)
"""Version strings of digit-like characters (``"²"`` is a digit to ``str.isdigit``)."""
word = st.one_of(st.sampled_from(SPECIAL_WORDS), st.text(max_size=8), version_like)
text_line = st.builds(
    lambda command, args: " ".join([command, *args]).replace("\n", " "),
    st.sampled_from(TEXT_COMMANDS),
    st.lists(word, max_size=4),
)
"""A text command line (without its newline), well-formed or not."""

EXTREME_NUMBERS = [0, 1, 65535, 65536, -1, 2**63, 2**1023, 1e308]
if KNOWN_BUGS_FIXED:
    EXTREME_NUMBERS += [10**400, -(10**400)]  # float() raises OverflowError
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.one_of(st.integers(), st.sampled_from(EXTREME_NUMBERS), st.floats()),
    word,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
json_request = st.one_of(
    st.builds(
        lambda kind, fields: {"type": kind, **fields},
        st.sampled_from(JSON_TYPES),
        st.dictionaries(st.sampled_from(FIELDS), json_value, max_size=3),
    ),
    # Numbers where the commands expect them, and versions in hello.
    st.builds(
        lambda kind_field, value: {"type": kind_field[0], kind_field[1]: value},
        st.sampled_from(
            [
                ("whoelsesince", "seconds"), ("last", "minutes"), ("read", "since"),
                ("room leave", "room"), ("room_send", "room"), ("users", "onlinetype"),
            ]
        ),  # fmt: skip
        json_scalar,
    ),
    st.builds(
        lambda version: {"type": "hello", "version": version}, st.one_of(version_like, word)
    ),
)
"""A JSON request object (no ``id``), well-formed or not."""

login_text = st.sampled_from(
    [f"{user}\n{password}" for user, password in SAMPLE_ACCOUNTS.items()]
    + ["yoda\nnope", "vader\nx", "guest r2", "\n"]
)
login_json = st.one_of(
    st.builds(
        lambda user, password: {"type": "login", "user": user, "password": password},
        st.sampled_from(NAMES),
        st.sampled_from(list(SAMPLE_ACCOUNTS.values()) + ["nope"]),
    ),
    st.sampled_from(
        [{"type": "login", "user": user, "password": pw} for user, pw in SAMPLE_ACCOUNTS.items()]
    ),
)
"""JSON logins, right or wrong."""


def json_bytes(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


fragment = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"\xff\xfb\x01", b"\xff\xfd\x03", b"\xff\xfa\x18\x01\xff\xf0", b"\xff\xfa\x18",
            b"\xff\xf4", b"\xff\xff", b"\xff", b"\r\x00", b"\x00", b"\r\n", b"\n", b"\r",
            b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80",
            b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x1b[2J", b"{", b"}", b"\\ud800",
        ]
    ),  # fmt: skip
    text_line.map(lambda line: line.encode("utf-8") + b"\r\n"),
    json_request.map(lambda obj: json_bytes(obj) + b"\n"),
    login_text.map(lambda lines: lines.encode("utf-8") + b"\n"),
    login_json.map(lambda obj: json_bytes(obj) + b"\n"),
    st.integers(MAX_LINE - 2, 4 * MAX_LINE).map(lambda n: b"x" * n),
    st.binary(min_size=MAX_LINE, max_size=3 * MAX_LINE),
)
payload = st.lists(fragment, max_size=25).map(b"".join)
cuts = st.lists(st.integers(0, 10_000), max_size=10)


# 1. Arbitrary bytes ----------------------------------------------------------------


def login(client: Client, user: str, json_mode: bool) -> None:
    if json_mode:
        client.send_json({"type": "login", "user": user, "password": SAMPLE_ACCOUNTS[user]})
    else:
        client.send_line(user, b"\r\n")
        client.send_line(SAMPLE_ACCOUNTS[user], b"\r\n")
    assert client.connection.session is not None


def expected_whoelse(harness: ChatHarness, viewer: str) -> list[str]:
    """What ``viewer``'s whoelse must show: the others online, unless hidden or blocking it."""
    state = harness.state
    return sorted(
        name
        for name, session in state.sessions.items()
        if name != viewer and not session.hidden and not state.has_blocked(name, viewer)
    )


class ArbitraryBytesTests(unittest.TestCase):
    """Property 1: garbage in, before or after login, in either format."""

    def check_garbage(
        self, start: str, victim_json: bool, data: bytes, cut_points: list[int], limit: int
    ) -> None:
        """Feed ``data`` to an attacker in ``start`` state while hans watches.

        :param start: ``fresh`` (the bytes choose the format), ``fresh-text``
            (a blank first line), ``fresh-json`` (a JSON ``help`` first line),
            ``text`` or ``json`` (logged in as yoda).
        """
        harness = new_harness(max_line_length=limit, allow_register=True, allow_guests=True)
        clients: list[Client] = []
        with ErrorWatch() as watch:
            victim = Client(harness, "10.0.0.1")
            clients.append(victim)
            login(victim, "hans", victim_json)
            attacker = Client(harness, "10.0.0.2")
            clients.append(attacker)
            if start == "fresh-text":
                attacker.send_line(b"", b"\r\n")
            elif start == "fresh-json":
                attacker.send_json({"type": "help"})
            elif start in ("text", "json"):
                login(attacker, "yoda", start == "json")
            harness.clock.advance(2)  # the bucket refills after the login lines

            attacker.feed(data, (c % (len(data) + 1) for c in cut_points))
            settle(harness, clients)
            watch.check()
            if start in ("fresh-text", "text"):
                self.assertFalse(attacker.json)
            if start in ("fresh-json", "json"):
                self.assertTrue(attacker.json)
            attacker.check_output()
            victim.check_output()

            # The server's view is consistent, and hans is unaffected.
            check_sessions(harness, clients, [])
            self.assertIn("hans", harness.state.sessions)
            self.assertFalse(victim.transport.disconnecting)
            expected = expected_whoelse(harness, "hans")
            victim.take()
            guests = [name for name in expected if harness.state.guest_online(name)]
            if victim_json:
                victim.send_json({"type": "whoelse", "id": "check"})
                reply: dict[str, Any] = {"type": "userlist", "users": expected, "onlinetype": True}
                if guests:
                    reply["guests"] = guests
                self.assertEqual(victim.take_json(), [{**reply, "id": "check"}])
            else:
                victim.send_line(b"whoelse", b"\r\n")
                listed = "".join(
                    f"{name} (guest)\r\n" if name in guests else f"{name}\r\n" for name in expected
                )
                self.assertEqual(
                    victim.take().decode("utf-8"), listed or "No other users are online.\r\n"
                )
            # When the attacker's connection ends, so does its session.
            attacker.drop()
            self.assertEqual(set(harness.state.sessions), {"hans"})
            victim.check_output()
            finish(harness, clients)
            watch.check()

    @examples(250)
    @given(
        start=st.sampled_from(["fresh", "fresh-text", "fresh-json"]),
        victim_json=st.booleans(),
        data=payload,
        cut_points=cuts,
        limit=line_limit,
    )
    def test_garbage_before_login(
        self, start: str, victim_json: bool, data: bytes, cut_points: list[int], limit: int
    ) -> None:
        self.check_garbage(start, victim_json, data, cut_points, limit)

    @examples(250)
    @given(
        start=st.sampled_from(["text", "json"]),
        victim_json=st.booleans(),
        data=payload,
        cut_points=cuts,
        limit=line_limit,
    )
    def test_garbage_logged_in(
        self, start: str, victim_json: bool, data: bytes, cut_points: list[int], limit: int
    ) -> None:
        self.check_garbage(start, victim_json, data, cut_points, limit)


# 2. At most one reply per line ---------------------------------------------------------


class ReplyCounter:
    """Counts the replies a protocol writes while it handles each received line.

    A *line* is one ``lineReceived`` call, or one ``lineLengthExceeded`` call
    (an over-long line).  A *reply* is an event passed to ``send`` that
    renders to some bytes, other than a prompt (the text format's "your
    turn", never sent in JSON) and other than what arrives through
    ``deliver`` (unsolicited events such as kept messages shown at login or
    on ``idle``).  Events written outside line handling (timeouts) are not
    counted.
    """

    def __init__(self, protocol: ChatProtocol) -> None:
        connection = protocol.connection
        assert isinstance(connection, InspectableConnection)
        self.connection = connection
        self.lines: list[tuple[bytes, list[events.Event]]] = []
        self._current: list[events.Event] | None = None
        self._delivering = 0
        send, deliver = connection.send, connection.deliver
        line_received, too_long = connection._line, connection._line_too_long

        def counting_send(event: events.Event, request_id: Any = None) -> None:
            if (
                self._current is not None
                and not self._delivering
                and not isinstance(event, events.Prompt)
                and connection.wire.encode(event, request_id)
            ):
                self._current.append(event)
            send(event, request_id)

        def counting_deliver(event: events.Event) -> None:
            self._delivering += 1
            try:
                deliver(event)
            finally:
                self._delivering -= 1

        def wrap(handler: Callable[..., Any], label: bytes) -> Callable[..., Any]:
            def handle(*line: bytes) -> Any:
                assert self._current is None, "lines handled re-entrantly"
                self._current = []
                self.lines.append((label or line[0], self._current))
                try:
                    return handler(*line)
                finally:
                    self._current = None

            return handle

        connection.send = counting_send  # type: ignore[method-assign]
        connection.deliver = counting_deliver
        connection._line = wrap(line_received, b"")  # type: ignore[method-assign]
        connection._line_too_long = wrap(  # type: ignore[method-assign]
            too_long, b"<over-long line>"
        )

    def check(self) -> None:
        for line, replies in self.lines:
            assert len(replies) <= 1, f"{len(replies)} replies to {line[:80]!r}: {replies}"


request_line = st.one_of(
    st.tuples(st.just("request"), json_request),
    st.tuples(st.just("request"), st.sampled_from(JSON_TYPES).map(lambda kind: {"type": kind})),
    st.tuples(st.just("request"), login_json),
    st.tuples(st.just("long"), json_request),
    st.tuples(st.just("bad_type"), json_value),
    st.tuples(st.just("truncated"), json_request),
    st.tuples(st.just("not_object"), json_value),
    st.tuples(st.just("raw"), st.lists(fragment, max_size=3).map(b"".join)),
)
"""(kind, material) for one JSON-mode line; the test adds the ``id``."""


def render_request(kind: str, material: Any, request_id: str, limit: int) -> tuple[bytes, bool]:
    """The line for one generated request, and whether it must get exactly one reply."""
    if kind == "request":
        line = json_bytes({**material, "id": request_id})
        return line, len(line) <= limit
    if kind == "long":
        return json_bytes({**material, "id": request_id, "pad": "p" * limit}), False
    if kind == "bad_type":
        line = json_bytes({"type": material, "id": request_id})
        return line, isinstance(material, str) and len(line) <= limit
    if kind == "truncated":
        line = json_bytes({**material, "id": request_id})
        return line[: max(1, len(line) - 2)], False
    if kind == "not_object":
        return json.dumps(material).encode("utf-8"), False
    return material.replace(b"\n", b" "), False


class OneReplyTests(unittest.TestCase):
    """Property 2: no line gets more than one reply."""

    @examples(120)
    @given(
        items=st.integers(0, 40).flatmap(
            lambda n: st.lists(request_line, min_size=n, max_size=n)
        ),
        cut_points=cuts,
        settle_between=st.booleans(),
        limit=line_limit,
    )
    def test_json_at_most_one_reply_per_id(
        self,
        items: list[tuple[str, Any]],
        cut_points: list[int],
        settle_between: bool,
        limit: int,
    ) -> None:
        """Each id is answered at most once, in request order; exactly once while open."""
        # A short flood limit cuts long bursts off.
        harness = new_harness(max_line_length=limit, flood_limit=flood_limit(1.0))
        with ErrorWatch() as watch:
            client = Client(harness, "10.0.0.2")
            counter = ReplyCounter(client.protocol)
            client.send_json({"type": "login", "user": "yoda", "password": "wise", "id": "login"})
            harness.clock.advance(2)
            lines, must_answer = [], ["login"]
            for index, (kind, material) in enumerate(items):
                line, must = render_request(kind, material, f"q{index}", limit)
                lines.append(line + b"\n")
                if must:
                    must_answer.append(f"q{index}")
            data = b"".join(lines)
            if settle_between:
                for line in lines:
                    client.feed(line)
                    settle(harness, [client])
            else:
                client.feed(data, (c % (len(data) + 1) for c in cut_points))
                settle(harness, [client])
            watch.check()
            client.check_output()
            counter.check()

            sent = ["login"] + [f"q{index}" for index in range(len(items))]
            body = client.output().decode("utf-8")[len(GREETING) + 1 :]
            answered = [
                obj["id"] for obj in map(json.loads, filter(None, body.split("\n"))) if "id" in obj
            ]
            self.assertTrue(set(answered) <= set(sent), answered)
            self.assertEqual(len(answered), len(set(answered)), f"answered twice: {answered}")
            self.assertEqual(answered, sorted(answered, key=sent.index), "replies out of order")
            if not client.transport.disconnecting:
                self.assertEqual(set(must_answer) - set(answered), set())
            finish(harness, [client])
            watch.check()

    @examples(300)
    @given(request=json_request, logged_in=st.booleans())
    def test_json_request_gets_exactly_one_reply(
        self, request: dict[str, Any], logged_in: bool
    ) -> None:
        """Any one JSON request object, before or after login: exactly one reply, with its id."""
        harness = new_harness(max_line_length=4096)
        with ErrorWatch() as watch:
            client = Client(harness, "10.0.0.2")
            counter = ReplyCounter(client.protocol)
            if logged_in:
                client.send_json({"type": "login", "user": "yoda", "password": "wise"})
            else:
                client.send_json({"type": "help"})
            client.take()
            client.send_json({**request, "id": "the-id"})
            watch.check()
            counter.check()
            client.check_output()
            replies = client.take_json()
            ids = [obj.get("id") for obj in replies if "id" in obj]
            self.assertEqual(ids, ["the-id"], replies)
            finish(harness, [client])
            watch.check()

    @examples(250)
    @given(
        logged_in=st.booleans(),
        lines=st.lists(
            st.one_of(
                st.one_of(text_line, login_text, word).map(lambda line: line.encode("utf-8")),
                st.binary(max_size=2 * MAX_LINE),
                fragment,
            ),
            max_size=30,
        ),
        cut_points=cuts,
        limit=line_limit,
    )
    def test_text_at_most_one_reply_per_line(
        self, logged_in: bool, lines: list[bytes], cut_points: list[int], limit: int
    ) -> None:
        """In the text format, before or after login: one reply (and maybe a prompt) per line."""
        harness = new_harness(
            allow_guests=True, max_line_length=limit, flood_limit=flood_limit(1.0)
        )
        with ErrorWatch() as watch:
            peer = Client(harness, "10.0.0.1")
            login(peer, "hans", False)
            client = Client(harness, "10.0.0.2")
            counter = ReplyCounter(client.protocol)
            client.send_line(b"", b"\r\n")  # the first line decides: text
            if logged_in:
                login(client, "yoda", False)
            harness.clock.advance(2)
            data = b"".join(line + b"\r\n" for line in lines)
            client.feed(data, (c % (len(data) + 1) for c in cut_points))
            settle(harness, [client])
            watch.check()
            self.assertFalse(client.json)
            client.check_output()
            peer.check_output()
            counter.check()
            finish(harness, [client, peer])
            watch.check()


# 3. State consistency ------------------------------------------------------------------

command_line = st.one_of(
    text_line.map(lambda line: line.encode("utf-8")),
    json_request.map(json_bytes),
    login_json.map(json_bytes),
)
"""A random line, in either format, well-formed or not."""


class UserRef(NamedTuple):
    """A user named by the chat rule when it runs: online users first, then other names."""

    index: int


user_name = st.builds(UserRef, st.integers(0, 9))
chat_request = st.one_of(
    st.builds(lambda n: ("broadcast", {"message": "b" * n}), st.integers(1, 200)),
    st.builds(
        lambda to, n: ("message", {"to": to, "message": "m" * n}), user_name, st.integers(1, 200)
    ),
    st.builds(
        lambda members: ("room create", {"members": members}),
        st.lists(user_name, min_size=1, max_size=3),
    ),
    st.builds(lambda room: ("room send", {"room": room, "message": "r"}), st.integers(1, 3)),
    st.builds(lambda room: ("room leave", {"room": room}), st.integers(1, 3)),
    st.builds(lambda target: ("block", {"target": target}), user_name),
    st.builds(lambda target: ("unblock", {"target": target}), user_name),
    st.builds(
        lambda status, to: ("typing", {"status": status, "to": to}),
        st.sampled_from(["on", "off"]),
        st.one_of(st.none(), user_name),
    ),
    st.just(("read", {"since": "1 Jan 2000 00:00:00"})),
    st.sampled_from(
        [
            ("busy", {}), ("idle", {}), ("hide", {}), ("appear", {}), ("whoelse", {}),
            ("rooms", {}), ("status", {}), ("users", {"onlinetype": "offline"}), ("logout", {}),
        ]
    ),  # fmt: skip
)
"""(command, arguments) of a well-formed request, for chatting between online users."""


def render_chat(command: str, arguments: dict[str, Any], json_mode: bool) -> bytes:
    """One ``chat_request`` as a line in either format."""
    if json_mode:
        fields = {name: value for name, value in arguments.items() if value is not None}
        return json_bytes({"type": command, **fields})
    words = [command]
    for value in arguments.values():
        if isinstance(value, list):
            words.extend(value)
        elif value is not None:
            words.append(str(value))
    return " ".join(words).encode("utf-8")


class ChatMachine(RuleBasedStateMachine):
    """Several connections doing random things to one server.

    Rules: connect (some from one shared address, capped at 3), log in
    (either format, right or wrong password), register, guest, well-formed
    chat requests, random lines, bursts, garbage bytes, the client vanishing,
    the server closing one connection or all of them (shutdown), the reactor
    completing a close, a client that stops (or resumes) reading, and the
    clock moving on (timeouts, lock-out expiry, un-throttling).
    """

    def __init__(self) -> None:
        super().__init__()
        self.harness = new_harness(
            flood_limit=flood_limit(3.0),
            allow_guests=True,
            allow_register=True,
            login_deadline=20,
            timeout=120,
            block_duration=30,
            max_connections_per_address=3,
            max_line_length=256,  # room for the chat rule's messages
            output_soft_limit=400,
            output_hard_limit=1500,
        )
        self.live: list[Client] = []
        self.gone: list[Client] = []
        self.hosts = 0
        self.shut_down = False
        self.passwords = dict(SAMPLE_ACCOUNTS)
        self.watch = ErrorWatch().__enter__()

    def teardown(self) -> None:
        """Clean up after a run (checks belong in rules and invariants)."""
        self.watch.__exit__()
        for client in self.live:
            client.drop()
        self.harness.close_all()

    def pick(self, index: int) -> Client:
        return self.live[index % len(self.live)]

    @initialize(
        users=st.lists(st.sampled_from(sorted(SAMPLE_ACCOUNTS)), max_size=4, unique=True),
        formats=st.lists(st.booleans(), min_size=4, max_size=4),
    )
    def start_online(self, users: list[str], formats: list[bool]) -> None:
        """Begin with a few users online, in either format."""
        for user, json_mode in zip(users, formats):
            self.connect(shared_address=False)
            login(self.live[-1], user, json_mode)

    # Connections come and go.

    @precondition(lambda self: len(self.live) < 6)
    @rule(shared_address=st.booleans())
    def connect(self, shared_address: bool) -> None:
        if shared_address:
            host = "10.9.9.9"
        else:
            self.hosts += 1
            host = f"10.1.0.{self.hosts}"
        self.live.append(Client(self.harness, host))

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 5))
    def drop(self, index: int) -> None:
        """The client vanishes (or the reactor finishes closing it)."""
        client = self.pick(index)
        self.live.remove(client)
        client.drop()
        self.gone.append(client)
        client.check_output()

    @precondition(lambda self: any(c.transport.disconnecting for c in self.live))
    @rule(index=st.integers(0, 5))
    def reactor_closes(self, index: int) -> None:
        """A close the server asked for takes effect."""
        closing = [c for c in self.live if c.transport.disconnecting]
        self.drop(self.live.index(closing[index % len(closing)]))

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 5))
    def server_closes(self, index: int) -> None:
        self.pick(index).connection.disconnect(events.Disconnected("shutdown", "Going down."))

    @precondition(lambda self: self.live and not self.shut_down)
    @rule()
    def shutdown(self) -> None:
        """The service stops (once: ``disconnect_all`` is not meant to be called twice)."""
        self.shut_down = True
        self.harness.factory.disconnect_all(events.Disconnected("shutdown", "Going down."))

    @precondition(lambda self: self.live)
    @rule()
    def close_everything(self) -> None:
        """Everything closes; nothing is online and no timer is left."""
        for client in self.live:
            client.drop()
            client.check_output()
        self.gone.extend(self.live)
        self.live = []
        self.harness.lockout.stop()
        self.harness.address_lockout.stop()
        self.harness.slowdown.stop()
        assert self.harness.state.sessions == {}
        assert self.harness.clock.getDelayedCalls() == [], self.harness.clock.getDelayedCalls()

    # What clients say.

    def speaks_json(self, client: Client, json_mode: bool) -> bool:
        """The client's format; ``json_mode`` chooses it for one that has said nothing yet."""
        if client.json:
            return True
        return json_mode and not client.said

    @precondition(lambda self: self.live)
    @rule(
        index=st.integers(0, 5),
        user=st.sampled_from(NAMES),
        right=st.booleans(),
        json_mode=st.booleans(),
    )
    def login(self, index: int, user: str, right: bool, json_mode: bool) -> None:
        """Log in, with the right password or a wrong one, in the connection's format."""
        client = self.pick(index)
        password = self.passwords.get(user, "x") if right else "nope"
        if self.speaks_json(client, json_mode):
            client.send_json({"type": "login", "user": user, "password": password})
        else:
            client.send_line(user, b"\r\n")
            client.send_line(password, b"\r\n")

    @precondition(lambda self: self.live)
    @rule(
        index=st.integers(0, 5),
        user=st.sampled_from(["vader", "r2", "c3po", "yoda", "x y"]),
        json_mode=st.booleans(),
    )
    def register(self, index: int, user: str, json_mode: bool) -> None:
        """Create an account (text: answer yes and give the password twice)."""
        client = self.pick(index)
        password = f"{user}-secret"
        if self.speaks_json(client, json_mode):
            client.send_json({"type": "register", "user": user, "password": password})
        else:
            for line in (user, "yes", password, password):
                client.send_line(line, b"\r\n")
        if user not in self.passwords and self.harness.accounts.exists(user):
            self.passwords[user] = password

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 5), request=chat_request, json_mode=st.booleans())
    def chat(self, index: int, request: tuple[str, dict[str, Any]], json_mode: bool) -> None:
        """A well-formed request, in the connection's format."""
        client = self.pick(index)
        command, arguments = request
        names = sorted(self.harness.state.sessions) + NAMES[:6]

        def resolve(value: Any) -> Any:
            if isinstance(value, UserRef):
                return names[value.index % len(names)]
            if isinstance(value, list):
                return [resolve(item) for item in value]
            return value

        arguments = {name: resolve(value) for name, value in arguments.items()}
        client.send_line(render_chat(command, arguments, self.speaks_json(client, json_mode)))

    @precondition(lambda self: self.live)
    @rule(
        index=st.integers(0, 5),
        name=st.sampled_from(["r2", "c3po", "yoda", "x y"]),
        json_mode=st.booleans(),
    )
    def guest(self, index: int, name: str, json_mode: bool) -> None:
        client = self.pick(index)
        if json_mode:
            client.send_json({"type": "guest", "user": name})
        else:
            client.send_line(f"guest {name}", b"\r\n")

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 5), line=command_line)
    def command(self, index: int, line: bytes) -> None:
        self.pick(index).send_line(line)

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 5), lines=st.lists(command_line, min_size=5, max_size=30))
    def burst(self, index: int, lines: list[bytes]) -> None:
        """Many lines at once: flood control throttles, and may cut the connection off."""
        self.pick(index).feed(b"".join(line + b"\n" for line in lines))

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 5), data=payload, cut_points=cuts)
    def garbage(self, index: int, data: bytes, cut_points: list[int]) -> None:
        self.pick(index).feed(data, (c % (len(data) + 1) for c in cut_points))

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 5), reading=st.booleans())
    def slow_reader(self, index: int, reading: bool) -> None:
        """The transport says the client stopped (or resumed) reading."""
        producer = self.pick(index).transport.producer
        if producer is not None:
            (producer.resumeProducing if reading else producer.pauseProducing)()

    @rule(seconds=st.sampled_from([0, 0.1, 0.2, 0.5, 1, 2, 5, 21, 31, 121]))
    def advance(self, seconds: float) -> None:
        self.harness.clock.advance(seconds)

    # What must always hold.

    @invariant()
    def online_iff_one_live_connection(self) -> None:
        self.watch.check()
        check_sessions(self.harness, self.live, self.gone)

    @invariant()
    def output_well_formed(self) -> None:
        """Every write is whole UTF-8 (the whole output's format is checked at the end)."""
        for client in self.live:
            client.check_new_writes()


class StateMachineTests(unittest.TestCase):
    """Property 3."""

    def test_state_consistency(self) -> None:
        run_state_machine_as_test(
            ChatMachine,
            settings=settings(
                max_examples=150,
                stateful_step_count=50,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            ),
        )


# Bugs the properties found -------------------------------------------------------------


class KnownBugTests(unittest.TestCase):
    """Minimal failing examples of the bugs found above, kept as ``todo`` tests.

    When one is fixed, remove its ``todo``; when all are, set
    :data:`KNOWN_BUGS_FIXED` so the properties generate their inputs again.
    """

    def setUp(self) -> None:
        self.harness = new_harness(max_line_length=4096)
        self.addCleanup(self.harness.close_all)

    def json_client(self, user: str | None = "yoda") -> Client:
        client = Client(self.harness, "10.0.0.2")
        if user is None:
            client.send_json({"type": "help"})
        else:
            client.send_json({"type": "login", "user": user, "password": SAMPLE_ACCOUNTS[user]})
        client.take()
        return client

    def assert_one_error_reply(self, client: Client, request: dict[str, Any]) -> None:
        """``request`` (sent with an id) gets exactly one reply, an error echoing the id."""
        client.send_json({**request, "id": 7})
        replies = client.take_json()
        self.assertEqual(len(replies), 1, replies)
        self.assertEqual((replies[0]["type"], replies[0].get("id")), ("error", 7), replies)

    def test_integer_too_large_for_a_float(self) -> None:
        """Property 1/2 found: ``OverflowError`` escapes ``dataReceived``.

        ``commands.convert`` calls ``float(value)`` (seconds) and
        ``math.isfinite(value)`` (timestamps) on a JSON integer, and neither
        catches ``OverflowError``; Python's ``json`` reads any integer.
        """
        client = self.json_client()
        for request in (
            {"type": "whoelsesince", "seconds": 10**400},
            {"type": "last", "minutes": 10**400},
            {"type": "read", "since": -(10**400)},
        ):
            self.assert_one_error_reply(client, request)


    def test_hello_version_with_non_ascii_digits(self) -> None:
        """Property 2 found: ``ValueError`` escapes ``dataReceived``.

        ``version._parts`` checks ``str.isdigit()``, which is true for
        ``"²"``, then calls ``int()``, which refuses it.
        """
        client = self.json_client(user=None)
        client.send_json({"type": "hello", "version": "0.\u00b2", "id": 7})
        replies = client.take_json()
        self.assertEqual([(r["type"], r.get("id")) for r in replies], [("outdated_client", 7)])


    def flood(self, client: Client, line: bytes) -> list[events.Event]:
        """Send ``line`` 20 times at once, with a 1 s flood limit, and let the clock run.

        Returns what the line that tripped the limit was answered.
        """
        counter = ReplyCounter(client.protocol)
        self.harness.clock.advance(10)
        client.feed((line + b"\n") * 20)
        settle(self.harness, [client], step=0.1)
        self.assertTrue(client.transport.disconnecting)
        cut_off = [
            replies
            for _, replies in counter.lines
            if any(isinstance(reply, events.Disconnected) for reply in replies)
        ]
        self.assertEqual(len(cut_off), 1)
        return cut_off[0]

    def flooder(self, user: str | None) -> Client:
        self.harness = new_harness(flood_limit=1.0)
        self.addCleanup(self.harness.close_all)
        if user is not None:
            return self.json_client(user)
        client = Client(self.harness, "10.0.0.2")
        client.send_line(b"", b"\r\n")  # text
        return client

    def test_nothing_follows_the_flood_disconnect_json(self) -> None:
        """Property 2 (ids, reply counts) found: the line that trips the flood limit is handled.

        ``lineReceived`` calls ``_throttle``, which may ``disconnect``, and then
        ``_handle_line`` anyway.  The connection is closed (not ONLINE), so in
        JSON the line is taken as a request before login and answered after
        what was meant to be the last line.
        """
        client = self.flooder("yoda")
        replies = self.flood(client, json_bytes({"type": "whoelse", "id": 1}))
        self.assertEqual([type(reply) for reply in replies], [events.Disconnected], replies)


    def test_nothing_follows_the_flood_disconnect_text(self) -> None:
        """Property 2 (reply counts, text) found: the same, with a line that is not UTF-8."""
        client = self.flooder(None)
        replies = self.flood(client, b"\x80")
        self.assertEqual([type(reply) for reply in replies], [events.Disconnected], replies)


    def test_no_login_on_a_connection_cut_off_for_flooding(self) -> None:
        """The same bug: a login that trips the flood limit succeeds on the closed connection.

        The phase goes from CLOSED back to ONLINE and luke is online (others
        are told so) until the close completes.  Before 6ab675a the closed
        connection also kept yoda's session forever (an online user with no
        connection: yoda could never log in again).
        """
        client = self.flooder("yoda")
        self.flood(client, json_bytes({"type": "login", "user": "luke", "password": "jedi"}))
        self.assertNotIn("luke", self.harness.state.sessions)
        self.assertTrue(client.connection.writer.closed)


    def test_closed_connection_stays_closed(self) -> None:
        """Property 3 (state machine) found: a failed login reopens a flood-closed connection.

        The tripping line is a login with a wrong password: the refusal sets
        the phase from CLOSED back to USERNAME, while ``protocol.session``
        still holds yoda's ended session.
        """
        client = self.flooder("yoda")
        self.flood(client, json_bytes({"type": "login", "user": "yoda", "password": "nope"}))
        self.assertTrue(client.connection.writer.closed)
        check_sessions(self.harness, [client], [])

