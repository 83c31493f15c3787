"""End-to-end tests: the real ``twistd chat`` server in a subprocess, driven over TCP.

Each test class starts one server (a class-scoped fixture) with short
``--timeout``, ``--block-duration`` and ``--max-failures`` values, and talks
to it as a telnet user (CRLF text lines) or a program (JSON lines) would,
with blocking sockets whose every read has a deadline.

Tests in a class share their server, so each test uses its own user names,
and after every test the ``clients`` fixture closes its sockets and waits
until the server has logged every user out, so presence notices of one test
never reach the next.  When a class is done, the fixture checks that the
server is still running, logged no traceback, and exits cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import re
import signal
import time
from typing import Any, Iterator

import pytest

from chatservice import __version__
from tests.e2e_support import (
    ADDRESS_LOCKED,
    GREETING,
    INVALID_COMMAND,
    JUST_LOCKED,
    LOCKED,
    PASSWORD_PROMPT,
    USERNAME_PROMPT,
    WRONG_PASSWORD,
    ChatServer,
    assert_refused,
    LineClient,
    loopback_source,
    served_cleanly,
    unknown_user,
    welcome,
)

USERS = (
    # TestLogin
    "yoda luke obiwan hans leia anakin padme qui mace dooku",
    # TestSlowdown
    "sa sb sc",
    # TestChat
    "a1 a2 b1 b2 c1 c2 d1 d2 d3 e1 e2 e3 f1 f2 f3 g1 g2 g3 h1 h2 k1",
    # TestWhoElse
    "w1 w2 w3 w4",
    # TestInactivity
    "i1 i2 i3",
    # TestRobustness
    "r1 r2 r3 r4 zoë",
    # TestJson
    "t1 t2 t3 j1 j2 j3 j4",
    # TestShutdown
    "s1 s2",
    # TestFirstBytes
    "p1 p2 p3",
)
ACCOUNTS: dict[str, str] = {
    name: f"pw-{name}" for line in USERS for name in line.split()
}
ACCOUNTS["zoë"] = "pässwörd"
PROBE = "probe"
ACCOUNTS[PROBE] = "pw-probe"

NO_OTHER_USERS = "No other users are online."
# Failed logins also lock the client's address: the lock-out tests connect from
# other loopback addresses so that their locks do not reach other tests.
needs_loopback_sources = pytest.mark.skipif(
    not all(loopback_source(f"127.0.0.{n}") for n in range(2, 30)),
    reason="cannot connect from 127.0.0.2-29 on this host",
)
TIMESTAMP = r"\d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d"
LINE_TOO_LONG = "Error. Lines are limited to 8192 bytes; that one was discarded."
NOT_UTF8 = "Error. That line was not valid UTF-8 and was ignored."
BLOCKED_MESSAGE = "Your message could not be delivered as the recipient has blocked you."
BLOCKED_BROADCAST = (
    "Your broadcast could not be delivered to some recipients as they have blocked you."
)
NOT_LOGGED_IN = (
    'Log in first: {"type": "login", "user": "NAME", "password": "PASSWORD"}.'
)


def assert_broadcast_receipt(line: str) -> None:
    """``line`` is the sender's receipt for a broadcast."""
    assert re.fullmatch(rf"Broadcast message, #\d+ broadcast at {TIMESTAMP}", line), line


def offline_note(recipient: str) -> str:
    """The reply to a message kept for an offline user."""
    return f"{recipient} is offline; your message will be delivered when they log in."


class Clients:
    """The connections of one test, all closed at its end.

    :param server: the running server to connect to.
    """

    def __init__(self, server: ChatServer) -> None:
        self.server = server
        self.opened: list[LineClient] = []

    def connect(self, source: str | None = None) -> LineClient:
        """A new connection (greeting unread), from loopback address ``source`` if given."""
        client = self.server.connect(source=source)
        self.opened.append(client)
        return client

    def login(self, username: str, source: str | None = None) -> LineClient:
        """A new text connection logged in as ``username`` (later lines unread)."""
        client = self.connect(source)
        client.login(username, ACCOUNTS[username])
        return client

    def login_json(self, username: str, request_id: Any = None) -> LineClient:
        """A new JSON connection logged in as ``username`` (later objects unread)."""
        client = self.connect()
        client.login_json(username, ACCOUNTS[username], request_id)
        return client

    def online(self, *usernames: str) -> list[LineClient]:
        """Log in ``usernames`` over text, in order, checking and consuming the presence lines.

        Each user is told of exactly the users who logged in after them.
        """
        clients = [self.login(username) for username in usernames]
        for index, client in enumerate(clients):
            expected = [f"{later} logged in" for later in usernames[index + 1 :]]
            assert client.sync() == expected
        return clients

    def close_all(self) -> None:
        """Close every connection, then wait until the server has no user online."""
        for client in self.opened:
            client.close()
        self.opened.clear()
        wait_until_nobody_online(self.server)


def is_missed_note(line: str) -> bool:
    """Whether ``line`` is the login's count of broadcasts and room messages since the last logout."""
    return line.startswith("Since your last logout (")


def wait_until_nobody_online(server: ChatServer, timeout: float = 5.0) -> None:
    """Poll ``whoelse`` as :data:`PROBE` until nobody else is online (bounded)."""
    deadline = time.monotonic() + timeout
    with server.connect() as probe:
        probe.login(PROBE, ACCOUNTS[PROBE])
        while True:
            probe.send("whoelse")
            lines = probe.sync()
            others = [
                line
                for line in lines
                if not line.endswith((" logged in", " logged out")) and not is_missed_note(line)
            ]
            if others == [NO_OTHER_USERS]:
                break
            assert time.monotonic() < deadline, f"users still online: {lines}"
            time.sleep(0.05)
        probe.send("logout")
        assert probe.read_line() == f"Goodbye, {PROBE}!"
        assert probe.wait_closed() == b""


@pytest.fixture(scope="class")
def server(request: pytest.FixtureRequest) -> Iterator[ChatServer]:
    """One real server per test class; options from the class's ``server_options``."""
    options: dict[str, Any] = getattr(request.cls, "server_options", {})
    yield from served_cleanly(ChatServer(ACCOUNTS, **options).start())


@pytest.fixture
def clients(server: ChatServer) -> Iterator[Clients]:
    """This test's connections to the class's server."""
    opened = Clients(server)
    try:
        yield opened
    finally:
        opened.close_all()


def assert_server_still_serves(server: ChatServer, username: str) -> None:
    """A brand new connection can still log in, run a command and log out."""
    assert server.running(), server.log()
    with server.connect() as client:
        client.login(username, ACCOUNTS[username])
        client.send("whoelse")
        lines = [line for line in client.sync() if not is_missed_note(line)]
        assert lines == [NO_OTHER_USERS]
        client.send("logout")
        assert client.read_line() == f"Goodbye, {username}!"
        assert client.wait_closed() == b""


class TestLogin:
    """Greeting, prompts, refused logins, the lock-out and its end."""

    server_options = {"timeout": 3, "block_duration": 2, "max_failures": 3}

    def test_greeting_then_username_prompt(self, clients: Clients) -> None:
        client = clients.connect()
        assert client.read_line() == (
            f"Welcome to chatservice {__version__}. Please log in"
            " (programs: send a JSON object to use the JSON interface)."
        )
        # The prompt has no newline, as a telnet server's prompt.
        assert client.read_until(USERNAME_PROMPT) == "Username: "
        assert client.buffer == b""

    def test_unknown_user_is_asked_again(self, clients: Clients) -> None:
        client = clients.connect()
        client.greeted()
        client.send("darth")
        assert client.read_line() == "Error. Unknown user darth. Please try again."
        assert client.read_until(USERNAME_PROMPT) == USERNAME_PROMPT
        # User names are case-sensitive.
        client.send("Yoda")
        assert client.read_line() == unknown_user("Yoda")
        assert client.read_until(USERNAME_PROMPT) == USERNAME_PROMPT
        client.send("yoda")
        assert client.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        client.send("pw-yoda")
        assert client.read_line() == welcome("yoda")

    def test_blank_and_invalid_user_names(self, clients: Clients) -> None:
        client = clients.connect()
        client.greeted()
        client.send("   ")
        assert client.read_until(USERNAME_PROMPT) == USERNAME_PROMPT
        client.send("two words")
        assert client.read_line() == (
            "Error. Invalid user name: a user name cannot contain spaces or control characters."
        )
        assert client.read_until(USERNAME_PROMPT) == USERNAME_PROMPT
        client.send("x" * 33)
        assert client.read_line() == (
            "Error. Invalid user name: a user name has at most 32 characters."
        )
        assert client.read_until(USERNAME_PROMPT) == USERNAME_PROMPT

    def test_wrong_password_is_asked_again(self, clients: Clients) -> None:
        client = clients.connect()
        client.greeted()
        client.send("luke")
        assert client.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        client.send("pw-LUKE")
        assert client.read_line() == "Invalid Password. Please try again"
        assert client.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        client.send("")
        assert client.read_line() == WRONG_PASSWORD
        assert client.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        client.send("pw-luke")
        assert client.read_line() == welcome("luke")
        client.send("logout")
        assert client.read_line() == "Goodbye, luke!"
        assert client.wait_closed() == b""

        # The successful login forgot the two failures: two more do not lock.
        again = clients.connect()
        again.greeted()
        again.send("luke")
        assert again.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        for _ in range(2):
            again.send("nope")
            assert again.read_line() == WRONG_PASSWORD
            assert again.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        again.send("pw-luke")
        assert again.read_line() == welcome("luke")

    @needs_loopback_sources
    def test_lockout_and_its_end(self, clients: Clients) -> None:
        # Two wrong passwords for obiwan from 127.0.0.2, then leia logs in
        # there (which forgets the address's failures, not obiwan's there).
        client = clients.connect(source="127.0.0.2")
        client.greeted()
        client.send("obiwan")
        assert client.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        for _ in range(2):
            client.send("bad")
            assert client.read_line() == WRONG_PASSWORD
            assert client.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        clients.login("leia", source="127.0.0.2")
        locked_at = time.monotonic()
        client.send("bad")
        assert_refused(client.read_line(), JUST_LOCKED)
        assert client.wait_closed() == b""

        # From that address the name is refused before the password.
        other = clients.connect(source="127.0.0.2")
        other.greeted()
        other.send("obiwan")
        assert_refused(other.read_line(), LOCKED)
        assert other.read_until(USERNAME_PROMPT) == USERNAME_PROMPT

        # The right password does not help there (JSON sends both at once).
        program = clients.connect(source="127.0.0.2")
        program.greeted()
        program.send_json(
            {"type": "login", "user": "obiwan", "password": "pw-obiwan", "id": 7}
        )
        assert program.read_line() == ""
        refusal = program.read_json()
        retry_after = refusal.pop("retry_after")
        assert refusal == {
            "type": "login",
            "success": False,
            "reason": "blocked",
            "message": LOCKED,
            "id": 7,
        }
        assert 0 < retry_after <= 2

        # The address is not locked: other names log in from it.
        clients.login("padme", source="127.0.0.2")
        # The owner, from another address, logs in at once: a lock caused
        # from one address does not lock the owner out.
        owner = clients.login("obiwan", source="127.0.0.3")
        owner.send("logout")
        assert owner.read_line() == "Goodbye, obiwan!"
        assert owner.wait_closed() == b""

        # Once the block duration has passed, the right password works there too.
        deadline = locked_at + 2 + 5
        while True:
            other.send("obiwan")
            line = other.read_until(": ")
            if line == PASSWORD_PROMPT:
                break
            assert_refused(line.removesuffix("\r\n" + USERNAME_PROMPT), LOCKED)
            assert line.endswith("\r\n" + USERNAME_PROMPT), line
            assert time.monotonic() < deadline, "obiwan is still locked"
            time.sleep(0.1)  # few lines: the server throttles floods
        assert time.monotonic() - locked_at >= 2 - 0.05
        other.send("pw-obiwan")
        assert other.read_line() == welcome("obiwan")

    @needs_loopback_sources
    def test_failures_on_separate_connections_add_up(self, clients: Clients) -> None:
        for attempt in range(3):
            client = clients.connect(source="127.0.0.4")
            client.greeted()
            client.send("hans")
            assert client.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
            client.send(f"guess-{attempt}")
            if attempt < 2:
                assert client.read_line() == WRONG_PASSWORD
                assert client.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
            else:
                assert_refused(client.read_line(), JUST_LOCKED)
                assert client.wait_closed() == b""
        # That address is locked (three failures from it) ...
        same = clients.connect(source="127.0.0.4")
        same.greeted()
        same.send("hans")
        assert_refused(same.read_line(), ADDRESS_LOCKED)
        assert same.read_until(USERNAME_PROMPT) == USERNAME_PROMPT
        # ... hans, from another, is not.
        clients.login("hans", source="127.0.0.5")

    @needs_loopback_sources
    def test_failures_from_one_address_lock_the_address(self, clients: Clients) -> None:
        for attempt, user in enumerate(["qui", "mace", "dooku"]):
            client = clients.connect(source="127.0.0.6")
            client.greeted()
            client.send(user)
            assert client.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
            client.send("guess")
            if attempt < 2:
                assert client.read_line() == WRONG_PASSWORD
                assert client.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
            else:
                assert_refused(
                    client.read_line(),
                    "Invalid Password. Your address has been blocked after too many"
                    " failures. Please try again later",
                )
                assert client.wait_closed() == b""
        # Any user name from that address is refused; the accounts are not locked.
        same = clients.connect(source="127.0.0.6")
        same.greeted()
        same.send("qui")
        assert_refused(same.read_line(), ADDRESS_LOCKED)
        assert same.read_until(USERNAME_PROMPT) == USERNAME_PROMPT
        clients.login("dooku", source="127.0.0.7")

    @needs_loopback_sources
    def test_unknown_user_names_lock_the_address(self, clients: Clients) -> None:
        """Trying names counts like trying passwords (text prompt and JSON alike)."""
        client = clients.connect(source="127.0.0.8")
        client.greeted()
        for name in ("vader", "maul"):
            client.send(name)
            assert client.read_line() == unknown_user(name)
            assert client.read_until(USERNAME_PROMPT) == USERNAME_PROMPT
        program = clients.connect(source="127.0.0.8")
        program.greeted()
        program.send_json({"type": "login", "user": "dooku2", "password": "x", "id": 1})
        assert program.read_line() == ""
        refusal = program.read_json()
        assert (refusal["reason"], refusal["id"]) == ("address_locked", 1), refusal
        assert program.wait_closed() == b""
        same = clients.connect(source="127.0.0.8")
        same.greeted()
        same.send("yoda")
        assert_refused(same.read_line(), ADDRESS_LOCKED)
        # Another address is not affected.
        other = clients.connect(source="127.0.0.9")
        other.greeted()
        other.send("vader")
        assert other.read_line() == unknown_user("vader")

    def test_second_login_of_online_user_is_refused(self, clients: Clients) -> None:
        first = clients.login("anakin")
        second = clients.connect()
        second.greeted()
        second.send("anakin")
        assert second.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        second.send("pw-anakin")
        assert second.read_line() == "Error. anakin is already logged in elsewhere."
        assert second.read_until(USERNAME_PROMPT) == USERNAME_PROMPT

        program = clients.connect()
        program.greeted()
        program.send_json({"type": "login", "user": "anakin", "password": "pw-anakin"})
        assert program.read_line() == ""
        assert program.read_json() == {
            "type": "login",
            "success": False,
            "reason": "already_logged_in",
            "message": "Error. anakin is already logged in elsewhere.",
        }

        # The first session was neither told nor disturbed.
        first.send("whoelse")
        assert first.sync() == [NO_OTHER_USERS]

        # The refused connection can log in as someone else.
        second.send("padme")
        assert second.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        second.send("pw-padme")
        assert second.read_line() == welcome("padme")
        assert first.sync() == ["padme logged in"]

    def test_server_still_serves(self, server: ChatServer) -> None:
        assert_server_still_serves(server, "yoda")


class TestSlowdown:
    """Guessing one name from many addresses: its logins are answered later and later."""

    server_options = {
        "timeout": 30, "block_duration": 30, "max_failures": 3, "options": ["--name-failures", "4"],
    }

    @needs_loopback_sources
    def test_guessing_one_name_from_many_addresses_is_slowed(self, clients: Clients) -> None:
        sa, sb = clients.online("sa", "sb")
        # One wrong password from each of four addresses: no lock-out, answered at once.
        for n in range(20, 24):
            guesser = clients.connect(source=f"127.0.0.{n}")
            guesser.greeted()
            guesser.send("sc")
            assert guesser.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
            started = time.monotonic()
            guesser.send("guess")
            assert guesser.read_line() == WRONG_PASSWORD
            assert time.monotonic() - started < 0.9
        # Now every login of sc waits: 1 s ...
        guesser = clients.connect(source="127.0.0.24")
        guesser.greeted()
        guesser.send("sc")
        assert guesser.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        started = time.monotonic()
        guesser.send("guess")
        # ... while everyone else goes on as ever.
        sa.send("message sb are you there")
        assert sb.read_line() == "sa: are you there"
        assert time.monotonic() - started < 0.9
        assert guesser.read_line(timeout=5) == WRONG_PASSWORD
        assert time.monotonic() - started >= 0.95
        # ... then 2 s, for the owner too (from another address): slowed, not locked out.
        owner = clients.connect()
        owner.greeted()
        owner.send("sc")
        assert owner.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        started = time.monotonic()
        owner.send("pw-sc")
        assert owner.read_line(timeout=10) == welcome("sc")
        assert time.monotonic() - started >= 1.95


class TestChat:
    """Presence, messages (online and offline), broadcasts, blocks, logout."""

    server_options = {"timeout": 3, "block_duration": 2, "max_failures": 3}

    def test_presence_of_login_logout_and_dropped_connection(self, clients: Clients) -> None:
        a1 = clients.login("a1")
        assert a1.sync() == []
        a2 = clients.login("a2")
        assert a1.sync() == ["a2 logged in"]
        assert a2.sync() == []  # nobody is told of their own login
        a2.send("logout")
        assert a2.read_line() == "Goodbye, a2!"
        assert a2.wait_closed() == b""
        assert a1.read_line() == "a2 logged out"

        again = clients.login("a2")
        assert a1.read_line() == "a2 logged in"
        again.abort()  # a TCP reset, no logout command
        assert a1.read_line() == "a2 logged out"
        # The dropped session is gone: the name can log in again.
        clients.login("a2")
        assert a1.read_line() == "a2 logged in"
        assert a1.sync() == []

    def test_message_to_online_user(self, clients: Clients) -> None:
        b1, b2 = clients.online("b1", "b2")
        b1.send("message b2 Hey Dude")
        assert b2.read_line() == "b1: Hey Dude"
        assert b1.sync() == ["Message delivered to b2."]
        b2.send("MESSAGE b1   grüße ✓  spaced  ")
        assert b1.read_line() == "b2: grüße ✓  spaced"  # the text is stripped
        b1.send("message b1 hello me")
        assert b1.sync() == ["Error. You cannot do that to yourself."]
        b1.send("message nobody hello")
        assert b1.sync() == ["Error. Invalid user nobody."]
        b1.send("message b2")
        assert b1.sync() == ["Error. Usage: message <user> <text>"]
        b1.send("frobnicate b2")
        assert b1.sync() == [INVALID_COMMAND]
        assert b2.sync() == ["Message delivered to b1."]

    def test_offline_message_is_delivered_at_next_login(self, clients: Clients) -> None:
        (c1,) = clients.online("c1")
        c1.send("message c2 first")
        assert c1.read_line() == offline_note("c2")
        c1.send("message c2 second one")
        assert c1.read_line() == offline_note("c2")
        sent = time.time()

        c2 = clients.login("c2")
        lines = c2.sync()
        assert len(lines) == 2, lines
        for line, text in zip(lines, ["first", "second one"]):
            match = re.fullmatch(rf"\[offline ({TIMESTAMP})\] c1: {text}", line)
            assert match, line
            stamp = time.mktime(time.strptime(match.group(1), "%d %b %Y %H:%M:%S"))
            assert abs(stamp - sent) < 5, (line, sent)
        assert c1.sync() == ["c2 logged in"]

        # Delivered once only.
        c2.send("logout")
        assert c2.read_line() == "Goodbye, c2!"
        assert c2.wait_closed() == b""
        assert c1.read_line() == "c2 logged out"
        c2 = clients.login("c2")
        assert c2.sync() == []

    def test_broadcast(self, clients: Clients) -> None:
        d1, d2, d3 = clients.online("d1", "d2", "d3")
        d1.send("broadcast Hello everyone!")
        assert d2.read_line() == "[broadcast] d1: Hello everyone!"
        assert d3.read_line() == "[broadcast] d1: Hello everyone!"
        (receipt,) = d1.sync()  # a receipt; no copy and no warning
        assert_broadcast_receipt(receipt)
        d1.send("broadcast")
        assert d1.sync() == ["Error. Usage: broadcast <text>"]
        assert d2.sync() == []
        assert d3.sync() == []

    def test_block_and_unblock(self, clients: Clients) -> None:
        e1, e2, e3 = clients.online("e1", "e2", "e3")
        e1.send("block e2")
        assert e1.read_line() == "e2 is now blocked."
        e1.send("block e2")
        assert e1.read_line() == "Error. e2 is already blocked."
        e1.send("block e1")
        assert e1.read_line() == "Error. You cannot do that to yourself."
        e1.send("block nobody")
        assert e1.read_line() == "Error. Invalid user nobody."
        assert e2.sync() == []  # the blocked user is not told

        # Messages from e2 to e1 are refused with the exact sentence.
        e2.send("message e1 are you there?")
        assert e2.read_line() == (
            "Your message could not be delivered as the recipient has blocked you."
        )
        # Broadcasts reach everyone but e1, and e2 is told.
        e2.send("broadcast hi all")
        assert e3.read_line() == "[broadcast] e2: hi all"
        assert_broadcast_receipt(e2.read_line())
        assert e2.read_line() == (
            "Your broadcast could not be delivered to some recipients as they have"
            " blocked you."
        )
        assert e1.sync() == []
        # The block is one-way: e1 can still write to e2.
        e1.send("message e2 I can still talk")
        assert e2.read_line() == "e1: I can still talk"
        assert e1.read_line() == "Message delivered to e2."

        # e1 is hidden from e2's whoelse, not from e3's.
        e2.send("whoelse")
        assert e2.sync() == ["e3"]
        e3.send("whoelse")
        assert e3.sync() == ["e1", "e2"]

        # e1's logout and login are hidden from e2.
        e1.send("logout")
        assert e1.read_line() == "Goodbye, e1!"
        assert e1.wait_closed() == b""
        assert e3.read_line() == "e1 logged out"
        assert e2.sync() == []
        # Offline, the block still holds (the message is refused, not kept).
        e2.send("message e1 now?")
        assert e2.read_line() == BLOCKED_MESSAGE
        e1 = clients.login("e1")
        assert e3.read_line() == "e1 logged in"
        assert e2.sync() == []
        assert e1.sync() == []  # nothing was kept for e1

        # Unblock: everything flows again.
        e1.send("unblock e2")
        assert e1.read_line() == "e2 is unblocked."
        e1.send("unblock e2")
        assert e1.read_line() == "Error. e2 was not blocked."
        e2.send("message e1 finally")
        assert e1.read_line() == "e2: finally"
        assert e2.sync() == ["Message delivered to e1."]
        e2.send("broadcast hello again")
        assert e1.read_line() == "[broadcast] e2: hello again"
        assert e3.read_line() == "[broadcast] e2: hello again"
        (receipt,) = e2.sync()  # no warning this time
        assert_broadcast_receipt(receipt)
        e2.send("whoelse")
        assert e2.sync() == ["e1", "e3"]
        e1.send("logout")
        assert e1.read_line() == "Goodbye, e1!"
        assert e2.read_line() == "e1 logged out"
        assert e3.read_line() == "e1 logged out"

    def test_dropped_connection_of_a_blocker_is_hidden(self, clients: Clients) -> None:
        g1, g2, g3 = clients.online("g1", "g2", "g3")
        g1.send("block g2")
        assert g1.read_line() == "g2 is now blocked."
        g1.abort()
        assert g3.read_line() == "g1 logged out"
        assert g2.sync() == []

    def test_drop_before_login_announces_nothing(self, clients: Clients) -> None:
        (f1,) = clients.online("f1")
        half = clients.connect()
        half.greeted()
        half.send("f2")
        assert half.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        half.abort()
        # f2 never logged in: f3 logging in is the first thing f1 hears.
        clients.login("f3")
        assert f1.read_line() == "f3 logged in"
        assert f1.sync() == []

    def test_logout_says_goodbye_and_closes(self, clients: Clients) -> None:
        h1, h2 = clients.online("h1", "h2")
        # Lines after logout in the same packet are ignored.
        h1.send_raw(b"logout\r\nmessage h2 too late\r\n")
        assert h1.read_line() == "Goodbye, h1!"
        assert h1.wait_closed() == b""
        assert h2.read_line() == "h1 logged out"
        assert h2.sync() == []
        # 'disconnect' is an alias, in any case.
        h2.send("DISCONNECT")
        assert h2.read_line() == "Goodbye, h2!"
        assert h2.wait_closed() == b""

    def test_argument_errors(self, clients: Clients) -> None:
        (k1,) = clients.online("k1")
        k1.send("whoelsesince soon")
        k1.send("whoelsesince -1")
        k1.send("whoelse now")
        k1.send("block")
        k1.send("block two words")
        assert k1.sync() == [
            "Error. <seconds> must be a non-negative number. Usage: whoelsesince <seconds>",
            "Error. <seconds> must be a non-negative number. Usage: whoelsesince <seconds>",
            "Error. Usage: whoelse",
            "Error. Usage: block <user>",
            "Error. Usage: block <user>",
        ]

    def test_server_still_serves(self, server: ChatServer) -> None:
        assert_server_still_serves(server, "a1")


class TestWhoElse:
    """``whoelse`` and ``whoelsesince`` (own server: last-seen times are server-wide)."""

    server_options = {"timeout": 3, "block_duration": 2, "max_failures": 3}

    def test_whoelse_and_whoelsesince(self, clients: Clients) -> None:
        (w1,) = clients.online("w1")
        w1.send("whoelse")
        w1.send("whoelsesince 30")
        assert w1.sync() == [
            NO_OTHER_USERS,
            "No other users were online in the last 30 seconds.",
        ]

        w3 = clients.login("w3")
        w2 = clients.login("w2")
        assert w1.sync() == ["w3 logged in", "w2 logged in"]
        assert w3.sync() == ["w2 logged in"]
        w1.send("whoelse")
        assert w1.sync() == ["w2", "w3"]  # sorted
        w2.send("userlist")  # the JSON name works as a text alias
        assert w2.sync() == ["w1", "w3"]

        w3.send("logout")
        assert w3.read_line() == "Goodbye, w3!"
        assert w3.wait_closed() == b""
        assert w1.read_line() == "w3 logged out"
        assert w2.read_line() == "w3 logged out"
        w1.send("whoelse")
        assert w1.sync() == ["w2"]
        w1.send("whoelsesince 60")
        assert w1.sync() == ["w2", "w3"]  # w4 never logged in
        w1.send("whoelsesince 0")
        assert w1.sync() == ["w2"]
        w1.send("whoelsesince 1.5e1")
        assert w1.sync() == ["w2", "w3"]

        # A user who blocked w1 is hidden from both lists, online or not.
        w2.send("block w1")
        assert w2.read_line() == "w1 is now blocked."
        w1.send("whoelse")
        assert w1.sync() == [NO_OTHER_USERS]
        w2.send("logout")
        assert w2.read_line() == "Goodbye, w2!"
        assert w2.wait_closed() == b""
        w1.send("whoelsesince 60")
        assert w1.sync() == ["w3"]

    def test_server_still_serves(self, server: ChatServer) -> None:
        assert_server_still_serves(server, "w4")


class TestInactivity:
    """The inactivity timeout, before and after logging in."""

    server_options = {"timeout": 2, "block_duration": 2, "max_failures": 3}

    def test_idle_users_are_logged_out(self, clients: Clients) -> None:
        observer = clients.login("i2")
        # The server starts each timer after these times.
        idle_since = time.monotonic()
        idle = clients.login("i1")
        chatty_since = time.monotonic()
        chatty = clients.login("i3")
        silent_since = time.monotonic()
        silent = clients.connect()  # never logs in
        assert silent.read_line() == GREETING
        assert observer.sync() == ["i1 logged in", "i3 logged in"]

        # The observer stays active (whoelse is a valid command) and watches; i3
        # only sends invalid commands, which do not count as activity.
        online_at: list[tuple[float, list[str]]] = []  # (reply time, whoelse)
        gone_at: dict[str, float] = {}
        deadline = time.monotonic() + 2 + 5
        while len(gone_at) < 2:
            assert time.monotonic() < deadline, (online_at, gone_at)
            if time.monotonic() - chatty_since < 1.5:
                chatty.send("not-a-command")
                assert chatty.read_line() == INVALID_COMMAND
            observer.send("whoelse")
            lines = observer.sync()
            now = time.monotonic()
            for line in lines:
                if line.endswith(" logged out"):
                    gone_at.setdefault(line.split()[0], now)
            users = [line for line in lines if not line.endswith((" in", " out"))]
            online_at.append((now, users))
            time.sleep(0.2)  # stays within the flood burst

        # Nobody was logged out early: every reply before a user's 2 seconds
        # were up still listed them, and replies came often enough to tell.
        for user, since in (("i1", idle_since), ("i3", chatty_since)):
            before = [users for at, users in online_at if at < since + 2]
            assert before and all(user in users for users in before), (user, online_at)
            assert any(at > since + 1.5 for at, _ in online_at)
            assert gone_at[user] < since + 2 + 3
        assert sorted(gone_at) == ["i1", "i3"]
        assert online_at[-1][1] == [NO_OTHER_USERS]

        # i1 and i3 time out within milliseconds of each other, so each may or
        # may not hear of the other's logout, and possibly after its own final
        # line (see test_nothing_follows_the_final_line in TestShutdown).
        timed_out = "You have been logged out after 2 seconds of inactivity."
        assert idle.read_line() == "i3 logged in"
        idle_rest = idle.wait_closed().decode("utf-8").split("\r\n")
        assert sorted(idle_rest) in (
            sorted(["", timed_out]),
            sorted(["", "i3 logged out", timed_out]),
        )
        chatty_rest = chatty.wait_closed().decode("utf-8").split("\r\n")
        assert sorted(chatty_rest) in (
            sorted(["", timed_out]),
            sorted(["", "i1 logged out", timed_out]),
        )
        assert silent.read_until(USERNAME_PROMPT) == USERNAME_PROMPT
        assert silent.read_line() == "Login timed out after 2 seconds."
        assert silent.wait_closed() == b""
        assert time.monotonic() - silent_since >= 2

        # The active observer outlived the timeout, and i1 can log in again.
        assert observer.sync() == []
        clients.login("i1")
        assert observer.read_line() == "i1 logged in"

    def test_timer_starts_again_at_login(self, clients: Clients) -> None:
        """Regression: the password line used not to reset the timer (fixed in 9d7d192)."""
        slow = clients.connect()
        slow.greeted()
        slow.send("i3")
        assert slow.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        time.sleep(1.2)  # typing the password
        logged_in_at = time.monotonic()
        slow.send("pw-i3")
        assert slow.read_line() == welcome("i3")
        line = slow.read_line(timeout=2 + 3)
        assert line == "You have been logged out after 2 seconds of inactivity."
        # Logged out 2 seconds after logging in, not 2 seconds after the user name.
        assert time.monotonic() - logged_in_at >= 2 - 0.05

    def test_server_still_serves(self, server: ChatServer) -> None:
        assert_server_still_serves(server, "i1")


class TestRobustness:
    """Over-long lines, invalid UTF-8, telnet bytes and control characters."""

    server_options = {"timeout": 3, "block_duration": 2, "max_failures": 3}

    def test_over_long_lines_are_refused_and_the_connection_goes_on(
        self, clients: Clients
    ) -> None:
        r1, r2 = clients.online("r1", "r2")
        # In one packet with the next command.
        r1.send_raw(b"message r2 " + b"x" * 10_000 + b"\r\nwhoelse\r\n")
        assert r1.sync() == [LINE_TOO_LONG, "r2"]
        # Much longer than a socket read: one error only.
        r1.send_raw(b"y" * 200_000 + b"\r\n")
        r1.send("whoelse")
        assert r1.sync() == [LINE_TOO_LONG, "r2"]
        # In pieces: the end of the long line is discarded too.
        r1.send_raw(b"message r2 " + b"z" * 6_000)
        r1.send_raw(b"z" * 6_000)
        r1.send_raw(b"z" * 100 + b"\r\nwhoelse\r\n")
        assert r1.sync() == [LINE_TOO_LONG, "r2"]
        assert r2.sync() == []
        # The limit is 8192 bytes, the LF excluded.
        fits = "message r2 " + "a" * (8192 - len("message r2 "))
        r1.send(fits, b"\n")
        assert r2.read_line() == "r1: " + "a" * (8192 - len("message r2 "))
        r1.send(fits + "a", b"\n")
        assert r1.sync() == ["Message delivered to r2.", LINE_TOO_LONG]
        assert r2.sync() == []

    def test_pipelined_login_and_commands(self, clients: Clients) -> None:
        # Everything in one packet: lines after the password wait for the
        # (threaded) password check and are then handled in order.
        client = clients.connect()
        client.send_raw(b"r4\r\npw-r4\r\nwhoelse\r\nmessage r4 me\r\nlogout\r\nwhoelse\r\n")
        assert client.read_line() == GREETING
        assert client.read_until(USERNAME_PROMPT + PASSWORD_PROMPT) == (
            USERNAME_PROMPT + PASSWORD_PROMPT
        )
        assert client.read_line() == welcome("r4")
        assert client.read_line() == NO_OTHER_USERS
        assert client.read_line() == "Error. You cannot do that to yourself."
        assert client.read_line() == "Goodbye, r4!"
        assert client.wait_closed() == b""

    def test_over_long_line_before_login(self, clients: Clients) -> None:
        client = clients.connect()
        client.greeted()
        client.send_raw(b"u" * 9_000 + b"\r\nr3\r\n")
        assert client.read_line() == LINE_TOO_LONG
        assert client.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        client.send("pw-r3")
        assert client.read_line() == welcome("r3")

    def test_invalid_utf8_is_refused_and_the_connection_goes_on(
        self, clients: Clients
    ) -> None:
        r1, r2 = clients.online("r1", "r2")
        r1.send_raw(b"message r2 caf\xc3\x28 \xe9t\xe9\r\n")
        assert r1.sync() == [NOT_UTF8]
        assert r2.sync() == []
        r1.send("message r2 café ✓ 😀")
        assert r2.read_line() == "r1: café ✓ 😀"
        assert r1.read_line() == "Message delivered to r2."

        # Before login: the line is refused, and the next one is the user name.
        client = clients.connect()
        client.greeted()
        client.send_raw(b"\xc0\xaf\r\n")
        assert client.read_line() == NOT_UTF8
        client.send("zoë")
        assert client.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        client.send_raw(b"p\xe4sswort\r\n")  # Latin-1, not UTF-8
        assert client.read_line() == NOT_UTF8
        client.send("pässwörd")
        assert client.read_line() == welcome("zoë")
        assert r1.sync() == ["zoë logged in"]
        client.send("message r1 hej från zoë")
        assert r1.read_line() == "zoë: hej från zoë"

    def test_telnet_bytes_are_ignored(self, clients: Clients) -> None:
        # Negotiation before the user name, as a telnet client sends it.
        client = clients.connect()
        client.greeted()
        client.send_raw(b"\xff\xfb\x18\xff\xfd\x03\xff\xfa\x18\x00xterm\xff\xf0r4\r\n")
        assert client.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        client.send_raw(b"\xff\xfd\x01pw-r4\r\n")
        # DO ECHO: this client stopped echoing, so the server ends the line.
        assert client.read_line() == ""
        assert client.read_line() == welcome("r4")
        # Interrupt (Ctrl-C) alone on a line: a new line, and the empty line is nothing.
        client.send_raw(b"\xff\xf4\xff\xfd\x06\r\n")
        assert client.sync() == [""]
        # Inside a command: removed, and so are NUL bytes.
        client.send_raw(b"who\xff\xf1else\x00\r\n")
        assert client.sync() == [NO_OTHER_USERS]
        # A lone IAC at the end of the line.
        client.send_raw(b"whoelse\xff\r\n")
        assert client.sync() == [NO_OTHER_USERS]

    def test_erase_and_control_characters(self, clients: Clients) -> None:
        r1, r2 = clients.online("r1", "r2")
        r1.send_raw(b"whoelsx\x7fe\r\n")  # DEL erases the x
        assert r1.sync() == ["r2"]
        r1.send_raw(b"mesage\b\b\bsage r2 hi\r\n")  # backspaces
        assert r2.read_line() == "r1: hi"
        # Control characters cannot reach another user's terminal.
        r1.send_raw(b"message r2 \x1b[2Jred\x07alert\tok\r\n")
        assert r2.read_line() == "r1: [2Jredalert\tok"
        # A bare CR inside the line does not end it.
        r1.send_raw(b"message r2 one\rtwo\r\n")
        assert r2.read_line() == "r1: onetwo"
        assert r1.sync() == ["Message delivered to r2."] * 3

    def test_server_still_serves(self, server: ChatServer) -> None:
        assert_server_still_serves(server, "r1")


class TestJson:
    """A program speaking JSON lines, alone and with text users."""

    server_options = {"timeout": 3, "block_duration": 2, "max_failures": 3}

    def test_json_user_chats_with_text_user(self, clients: Clients) -> None:
        (t1,) = clients.online("t1")
        j1 = clients.login_json("j1", request_id=1)
        assert t1.read_line() == "j1 logged in"
        assert j1.sync_json() == []

        j1.send_json({"type": "message", "to": "t1", "message": "hi from JSON", "id": "m1"})
        assert j1.read_json() == {
            "type": "message_status",
            "to": "t1",
            "stored": False,
            "id": "m1",
        }
        assert t1.read_line() == "j1: hi from JSON"

        sent = time.time()
        t1.send("message j1 hello program ✓")
        assert t1.read_line() == "Message delivered to j1."
        obj = j1.read_json()
        timestamp = obj.pop("timestamp")
        assert obj == {
            "type": "message",
            "from": "t1",
            "message": "hello program ✓",
            "offline": False,
        }
        assert abs(timestamp - sent) < 5

        j1.send_json({"type": "whoelse", "id": 2})
        assert j1.read_json() == {
            "type": "userlist",
            "users": ["t1"],
            "onlinetype": True,
            "id": 2,
        }
        j1.send_json({"type": "whoelsesince", "seconds": 60, "id": 2.5})
        assert j1.read_json() == {
            "type": "userlist",
            "users": ["t1"],
            "onlinetype": True,
            "since": 60,
            "id": 2.5,
        }

        j1.send_json({"type": "broadcast", "message": "to all", "id": "b"})
        obj = j1.read_json()
        assert isinstance(obj.pop("seq"), int)
        assert abs(obj.pop("timestamp") - time.time()) < 5
        assert obj == {
            "type": "broadcast_status",
            "delivered": 1,
            "skipped": 0,
            "auto_replies": [],
            "id": "b",
        }
        assert t1.read_line() == "[broadcast] j1: to all"
        t1.send("broadcast back at you")
        (receipt,) = t1.sync()
        assert_broadcast_receipt(receipt)
        obj = j1.read_json()
        assert isinstance(obj.pop("seq"), int)
        assert abs(obj.pop("timestamp") - time.time()) < 5
        assert obj == {"type": "broadcast", "from": "t1", "message": "back at you"}

        j1.send_json({"type": "message", "to": "t2", "message": "later", "id": 3})
        assert j1.read_json() == {"type": "message_status", "to": "t2", "stored": True, "id": 3}

        t1.send("block j1")
        assert t1.read_line() == "j1 is now blocked."
        j1.send_json({"type": "message", "to": "t1", "message": "hm", "id": 4})
        assert j1.read_json() == {
            "type": "error",
            "code": "blocked",
            "message": BLOCKED_MESSAGE,
            "id": 4,
        }
        j1.send_json({"type": "broadcast", "message": "anyone?", "id": 5})
        obj = j1.read_json()
        assert isinstance(obj.pop("seq"), int)
        assert abs(obj.pop("timestamp") - time.time()) < 5
        assert obj == {
            "type": "broadcast_status",
            "delivered": 0,
            "skipped": 1,
            "auto_replies": [],
            "id": 5,
        }
        t1.send("unblock j1")
        assert t1.read_line() == "j1 is unblocked."
        assert t1.sync() == []

        t1.send("logout")
        assert t1.read_line() == "Goodbye, t1!"
        assert j1.read_json() == {"type": "user_notification", "user": "t1", "status": False}
        t2 = clients.login("t2")
        assert j1.read_json() == {"type": "user_notification", "user": "t2", "status": True}
        lines = t2.sync()
        assert len(lines) == 1 and re.fullmatch(
            rf"\[offline {TIMESTAMP}\] j1: later", lines[0]
        ), lines

        j1.send_json({"type": "logout", "id": 9})
        assert j1.read_json() == {
            "type": "disconnect",
            "reason": "logout",
            "message": "Goodbye, j1!",
            "id": 9,
        }
        assert j1.wait_closed() == b""
        assert t2.read_line() == "j1 logged out"

    def test_offline_messages_to_json_user(self, clients: Clients) -> None:
        (t3,) = clients.online("t3")
        t3.send("message j4 kept for you")
        assert t3.read_line() == offline_note("j4")
        j4 = clients.login_json("j4")
        obj = j4.read_json()
        assert abs(obj.pop("timestamp") - time.time()) < 5
        assert obj == {
            "type": "message",
            "from": "t3",
            "message": "kept for you",
            "offline": True,
        }
        assert j4.sync_json() == []
        assert t3.sync() == ["j4 logged in"]

    def test_json_errors_keep_the_connection_usable(self, clients: Clients) -> None:
        j2 = clients.connect()
        j2.greeted()
        j2.send(b"{oops", b"\n")
        assert j2.read_line() == ""  # the prompt's line is ended
        malformed = {
            "type": "error",
            "code": "invalid_json",
            "message": "Malformed JSON: send one object per line.",
        }
        assert j2.read_json() == malformed
        j2.send(b'{"type": "login", "user": "j2", "password": "\xff\xfe"}', b"\n")
        assert j2.read_json() == malformed
        j2.send_json([1, 2])
        not_object = {
            "type": "error",
            "code": "invalid_json",
            "message": 'Each line must be a JSON object with a string "type".',
        }
        assert j2.read_json() == not_object
        j2.send_json({"type": 3, "id": "x"})
        assert j2.read_json() == not_object
        j2.send_json({"type": "whoelse", "id": "w"})
        assert j2.read_json() == {
            "type": "error",
            "code": "not_logged_in",
            "message": NOT_LOGGED_IN,
            "id": "w",
        }
        j2.send_json({"type": "login", "user": "j2", "id": "l"})
        assert j2.read_json() == {
            "type": "error",
            "code": "missing_field",
            "message": '"login" needs a string field "password".',
            "id": "l",
        }
        j2.send_json({"type": "login", "user": "j2", "password": "nope", "id": "l"})
        assert j2.read_json() == {
            "type": "login",
            "success": False,
            "reason": "wrong_password",
            "message": WRONG_PASSWORD,
            "id": "l",
        }
        j2.send_json({"type": "login", "user": "nobody", "password": "x", "id": "l"})
        assert j2.read_json() == {
            "type": "login",
            "success": False,
            "reason": "unknown_user",
            "message": unknown_user("nobody"),
            "id": "l",
        }
        # An id that is not a string or number is not echoed.
        j2.send_json({"type": "login", "user": "j2", "password": "pw-j2", "id": True})
        assert j2.read_json() == {
            "type": "login",
            "success": True,
            "user": "j2",
            "guest": False,
        }

        j2.send(b"{still not json", b"\n")
        assert j2.read_json() == malformed
        j2.send_json({"type": "message", "to": "t1", "id": 1})
        assert j2.read_json() == {
            "type": "error",
            "code": "missing_field",
            "message": '"message" needs the field "message".',
            "id": 1,
        }
        j2.send_json({"type": "whoelse", "user": "j3", "id": 2})
        assert j2.read_json() == {
            "type": "error",
            "code": "user_mismatch",
            "message": 'The "user" field must be your own user name (j2).',
            "id": 2,
        }
        j2.send_json({"type": "login", "user": "j2", "password": "pw-j2", "id": 3})
        assert j2.read_json() == {
            "type": "error",
            "code": "already_logged_in",
            "message": "You are already logged in.",
            "id": 3,
        }
        j2.send_json({"type": "whoelsesince", "seconds": -5, "id": 4})
        assert j2.read_json() == {
            "type": "error",
            "code": "bad_argument",
            "message": "Error. <seconds> must be a non-negative number."
            " Usage: whoelsesince <seconds>",
            "id": 4,
        }
        j2.send_raw(b"\n \r\n")  # blank lines are ignored
        j2.send_json({"type": "whoelse", "user": "j2", "id": 5})
        assert j2.read_json() == {
            "type": "userlist",
            "users": [],
            "onlinetype": True,
            "id": 5,
        }
        # Over-long lines are refused in JSON too.
        j2.send_raw(b'{"type": "broadcast", "message": "' + b"m" * 9_000 + b'"}\n')
        assert j2.read_json() == {
            "type": "error",
            "code": "line_too_long",
            "message": LINE_TOO_LONG,
        }
        assert j2.sync_json() == []

    def test_json_text_users_see_json_users_presence(self, clients: Clients) -> None:
        j3 = clients.login_json("j3")
        t3 = clients.login("t3")
        assert j3.read_json() == {"type": "user_notification", "user": "t3", "status": True}
        j3.abort()
        assert t3.read_line() == "j3 logged out"

    def test_server_still_serves(self, server: ChatServer) -> None:
        assert_server_still_serves(server, "t1")
        with server.connect() as program:
            program.login_json("j1", ACCOUNTS["j1"], "again")
            program.send_json({"type": "logout"})
            reply = program.read_json()
            if reply["type"] == "missed":  # broadcasts since j1's last logout, counted at login
                reply = program.read_json()
            assert reply == {
                "type": "disconnect",
                "reason": "logout",
                "message": "Goodbye, j1!",
            }
            assert program.wait_closed() == b""


class TestFirstBytes:
    """Programs that speak JSON first get nothing but JSON; people are greeted at once."""

    def test_a_program_that_speaks_first_never_sees_text(self, clients: Clients) -> None:
        (text_user,) = clients.online("p1")
        program = clients.connect()
        # The original design's requests, sent the moment the socket is open.
        program.send_json({"user": "p2", "type": "login", "password": ACCOUNTS["p2"]})
        program.send_json({"user": "p2", "type": "userlist", "onlinetype": "true", "id": 1})
        program.send_json({"user": "p2", "type": "typing", "status": "true", "id": 2})
        program.send_json({"user": "p2", "type": "message", "message": "hello room", "id": 3})
        replies = [program.read_json() for _ in range(4)]
        assert replies[0] == {"type": "login", "success": True, "user": "p2", "guest": False}
        assert replies[1] == {"type": "userlist", "users": ["p1"], "onlinetype": True, "id": 1}
        assert replies[2] == {"type": "ok", "command": "typing", "id": 2}
        assert (replies[3]["type"], replies[3]["delivered"], replies[3]["id"]) == (
            "broadcast_status", 1, 3,
        )
        assert text_user.read_line() == "p2 logged in"
        assert text_user.read_line() == "p2 is typing..."
        assert text_user.read_line() == "[broadcast] p2: hello room"
        # Every byte the program received was a JSON line.
        program.send_json({"type": "logout", "id": 4})
        rest = program.wait_closed()
        assert program.buffer == b""
        for line in rest.decode("utf-8").splitlines():
            json.loads(line)

    def test_a_person_is_greeted_within_half_a_second(self, clients: Clients) -> None:
        started = time.monotonic()
        person = clients.connect()
        assert person.read_line(timeout=2) == GREETING
        assert time.monotonic() - started < 0.5
        person.send("p3")
        assert person.read_until("Password: ", timeout=2).endswith("Username: Password: ")


class TestShutdown:
    """Stopping the server (SIGTERM) tells online users and exits cleanly."""

    def test_data_dir_is_created(self, server: ChatServer) -> None:
        assert server.data_dir.is_dir()

    def test_sigterm_tells_online_users(self) -> None:
        chat = ChatServer(ACCOUNTS).start()
        try:
            with chat.connect() as text_user, chat.connect() as program:
                text_user.login("s1", ACCOUNTS["s1"])
                program.login_json("s2", ACCOUNTS["s2"])
                assert text_user.read_line() == "s2 logged in"
                assert chat.stop() == -signal.SIGTERM
                assert text_user.read_line() == "The server is shutting down."
                assert program.read_json() == {
                    "type": "shutdown",
                    "message": "The server is shutting down.",
                }
                # Logouts during the shutdown are announced to whoever is still
                # connected (docs/protocol.rst, "Presence"), so one of the two
                # may hear of the other's logout before its connection closes.
                text_rest = text_user.wait_closed()
                json_rest = program.wait_closed()
        finally:
            chat.stop()
        assert (text_rest, json_rest) in (
            (b"", b""),
            (b"s2 logged out\r\n", b""),
            (b"", b'{"type":"user_notification","user":"s1","status":false}\n'),
        )
        log = chat.log()
        assert "Server Shut Down." in log
        assert "Traceback" not in log, log

    def test_nothing_follows_the_final_line(self) -> None:
        chat = ChatServer(ACCOUNTS).start()
        try:
            with chat.connect() as text_user, chat.connect() as program:
                text_user.login("s1", ACCOUNTS["s1"])
                program.login_json("s2", ACCOUNTS["s2"])
                assert text_user.read_line() == "s2 logged in"
                chat.stop()
                assert text_user.read_line() == "The server is shutting down."
                assert program.read_json()["message"] == "The server is shutting down."
                after = (text_user.wait_closed(), program.wait_closed())
        finally:
            chat.stop()
        assert after == (b"", b"")
