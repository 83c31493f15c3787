"""End to end on a terminal: the real ``chat-client`` in a pseudo-terminal against a real ``twistd chat``.

:class:`PtyClient` runs ``python -m chatservice.client`` with a pty (80x24)
as its standard input, output and error, types into it as a person would
(one keystroke at a time, ``\\r`` for Enter), and reads what it draws into
Twisted's in-memory terminal emulator (``insults.helper.TerminalBuffer``),
so the tests check the screen itself: a half-typed line that survives an
incoming message, the password never shown, history, Tab, Ctrl-L, accepting
a private chat, colours (and ``NO_COLOR``), and that the terminal is given
back as it was.  The other users are plain TCP clients (telnet-like) or a
``chat-client`` on pipes.

Every wait has a deadline; everything is on 127.0.0.1.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from twisted.conch.insults import helper, insults
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from tests.e2e_support import HOST, ChatServer, LineClient, subprocess_environment
from tests.test_client_end_to_end import ClientProcess

WAIT = 20.0
WIDTH, HEIGHT = 80, 24


class Screen(helper.TerminalBuffer):
    width, height = WIDTH, HEIGHT


class PtyClient:
    """One ``chat-client`` on a pseudo-terminal."""

    def __init__(self, port: int, directory: Path, *options: str, env: dict[str, str] | None = None) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", HEIGHT, WIDTH, 0, 0))
        self.slave_attributes = termios.tcgetattr(slave)
        self.slave_name = os.ttyname(slave)
        environment = subprocess_environment()
        environment.update(env or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatservice.client", HOST, str(port),
             "--download-dir", str(directory / "downloads"), *options],
            stdin=slave, stdout=slave, stderr=slave,
            env=environment, cwd=directory, start_new_session=True,
        )
        os.close(slave)
        self.raw = b""
        self.screen = Screen()
        self.emulator = insults.ClientProtocol(lambda: self.screen)
        self.emulator.makeConnection(StringTransport())

    def read(self, seconds: float) -> bool:
        """Read what the client draws for up to ``seconds``; ``False`` once it closed the pty."""
        ready, _, _ = select.select([self.master], [], [], max(0.0, seconds))
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:
            return False
        if not data:
            return False
        self.raw += data
        self.emulator.dataReceived(data)
        return True

    def rows(self) -> list[str]:
        rows = [row.rstrip() for row in bytes(self.screen).decode("utf-8", "replace").split("\n")]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def wait_for(self, check, what: str, timeout: float = WAIT) -> None:  # type: ignore[no-untyped-def]
        """Read until ``check(rows)`` holds."""
        deadline = time.monotonic() + timeout
        while not check(self.rows()):
            if time.monotonic() > deadline or not self.read(deadline - time.monotonic()):
                if check(self.rows()):
                    return
                raise AssertionError(f"the screen never showed {what}; it shows:\n" + "\n".join(self.rows()))

    def wait_for_text(self, text: str, timeout: float = WAIT) -> None:
        self.wait_for(lambda rows: any(text in row for row in rows), repr(text), timeout)

    def last_row(self) -> str:
        return self.rows()[-1] if self.rows() else ""

    def type(self, keys: str, settle: float = 0.0) -> None:
        """Type ``keys`` one at a time, as a person would."""
        for key in keys.encode("utf-8"):
            os.write(self.master, bytes([key]))
            self.read(0.005)
        end = time.monotonic() + settle
        while time.monotonic() < end:
            self.read(end - time.monotonic())

    def settle(self, seconds: float = 0.3) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.read(end - time.monotonic())

    def log_in(self, name: str, password: str) -> None:
        self.wait_for(lambda rows: bool(rows) and rows[-1].startswith("Username:"), "the Username: prompt")
        self.type(name + "\r")
        self.wait_for(lambda rows: rows[-1].startswith("Password:"), "the Password: prompt")
        self.type(password + "\r")
        self.wait_for_text(f"Welcome to chatservice, {name}!")
        self.wait_for(lambda rows: rows[-1] == ">", "the > prompt")

    def wait(self, timeout: float = WAIT) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            if not self.read(0.1):
                break
        return self.process.wait(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)
        os.close(self.master)


class TerminalTestCase(unittest.TestCase):
    timeout = 180
    server_options: tuple[str, ...] = ()

    def setUp(self) -> None:
        self.server = ChatServer(timeout=120, options=self.server_options)
        self.server.start()
        self.addCleanup(self.server.stop)
        temporary = tempfile.TemporaryDirectory(prefix="chat-client-pty-")
        self.addCleanup(temporary.cleanup)
        self.directory = Path(temporary.name)

    def pty_client(self, *options: str, env: dict[str, str] | None = None) -> PtyClient:
        client = PtyClient(self.server.port, self.directory, *options, env=env)
        self.addCleanup(client.close)
        return client


class InputLineTests(TerminalTestCase):
    def test_a_half_typed_line_survives_an_incoming_message(self) -> None:
        yoda = self.pty_client()
        yoda.log_in("yoda", "wise")
        self.assertNotIn("wise", "\n".join(yoda.rows()))
        with LineClient(self.server.port) as hans:
            hans.login("hans", "falcon")
            yoda.wait_for_text("hans logged in")
            yoda.type("message hans I am typ", settle=0.2)
            hans.send("message yoda hi yoda")
            yoda.wait_for_text("hans: hi yoda")
            rows = yoda.rows()
            self.assertRegex(rows[-2], r"^\[\d\d:\d\d\] hans: hi yoda$")
            self.assertEqual(rows[-1], "> message hans I am typ")
            self.assertEqual((yoda.screen.x, yoda.screen.y), (len(rows[-1]), len(rows) - 1))
            yoda.type("ing\r")
            self.assertIn("yoda: I am typing", hans.read_until("I am typing", WAIT))
            yoda.wait_for(lambda rows: rows[-1] == ">", "a fresh prompt")
            self.assertIn("> message hans I am typing", yoda.rows())
        yoda.type("\x04")  # Ctrl-D on an empty line: log out
        yoda.wait_for_text("Goodbye, yoda!")
        self.assertEqual(yoda.wait(), 0)
        # The terminal is given back as it was (cooked, echoing).
        with open(yoda.slave_name, "rb") as slave:
            self.assertEqual(termios.tcgetattr(slave.fileno())[3], yoda.slave_attributes[3])

    def test_history_tab_and_ctrl_l(self) -> None:
        yoda = self.pty_client()
        yoda.log_in("yoda", "wise")
        with LineClient(self.server.port) as hans:
            hans.login("hans", "falcon")
            yoda.wait_for_text("hans logged in")
            yoda.type("mess\t", settle=0.2)
            self.assertEqual(yoda.last_row(), "> message")
            yoda.type("ha\t", settle=0.2)
            self.assertEqual(yoda.last_row(), "> message hans")
            yoda.type("one\r")
            hans.read_until("one", WAIT)
            yoda.type("whoelse\r")
            yoda.settle()
            yoda.type("\x1b[A\x1b[A", settle=0.2)
            self.assertEqual(yoda.last_row(), "> message hans one")
            yoda.type("\x0c", settle=0.3)  # Ctrl-L
            self.assertEqual(yoda.rows(), ["> message hans one"])
            yoda.type("\x15/msg hans two\r")
            self.assertIn("yoda: two", hans.read_until("two", WAIT))
        yoda.type("/quit\r")
        yoda.wait_for_text("Goodbye, yoda!")
        self.assertEqual(yoda.wait(), 0)

    def test_accepting_a_private_chat(self) -> None:
        hans = ClientProcess("hans", self.server.port, self.directory)
        self.addCleanup(hans.kill)
        hans.log_in("falcon")
        yoda = self.pty_client()
        yoda.log_in("yoda", "wise")
        yoda.type("message hans half", settle=0.2)
        hans.send("startprivate yoda")
        yoda.wait_for_text("hans wants to chat privately with you")
        self.assertEqual(yoda.last_row(), "> message hans half")
        yoda.type("\x15accept\r")
        yoda.wait_for_text("Private messaging with hans started.")
        hans.expect("Private messaging with yoda started.")
        hans.send("private yoda psst")
        yoda.wait_for_text("hans(private): psst")
        yoda.type("exit\r")
        self.assertEqual(yoda.wait(), 0)
        self.assertEqual(hans.finish(), 0)

    def test_progress_bar_on_its_own_line_above_the_input(self) -> None:
        hans = ClientProcess("hans", self.server.port, self.directory, "--udp-loss", "0.3")
        self.addCleanup(hans.kill)
        hans.log_in("falcon")
        yoda = self.pty_client()
        yoda.log_in("yoda", "wise")
        big = self.directory / "lecture1.mp4"
        big.write_bytes(os.urandom(3_000_000))
        hans.send(f"sendfile yoda {big}")
        yoda.wait_for_text("hans is sending you lecture1.mp4 (3.0 MB): type accept or decline")
        yoda.type("accept\r")
        yoda.type("message hans thanks, wat")
        hans.send("message yoda it is the one from monday")
        bar = re.compile(r"^\[[#-]{20}\] +\d+% lecture1\.mp4 from hans$")
        yoda.wait_for(
            lambda rows: len(rows) > 2 and bool(bar.match(rows[-2])) and "monday" in rows[-3],
            "the progress bar between the messages and the input line",
            60,
        )
        self.assertEqual(yoda.last_row(), "> message hans thanks, wat")
        yoda.wait_for_text("Received lecture1.mp4 from hans", 120)
        self.assertEqual(yoda.last_row(), "> message hans thanks, wat")
        self.assertFalse(any(bar.match(row) for row in yoda.rows()))
        self.assertEqual((self.directory / "downloads" / "hans_lecture1.mp4").read_bytes(), big.read_bytes())
        yoda.type("\x15quit\r")
        self.assertEqual(yoda.wait(), 0)
        self.assertEqual(hans.finish(), 0)

    def test_colours_and_no_color(self) -> None:
        coloured = self.pty_client()
        coloured.log_in("yoda", "wise")
        coloured.type("nonsense\r")
        coloured.wait_for_text("Error. Invalid command")
        self.assertIn(b"\x1b[31mError. Invalid command", coloured.raw)
        self.assertIn(b"\x1b[2m> nonsense\x1b[0m", coloured.raw)
        coloured.type("\x04")
        self.assertEqual(coloured.wait(), 0)

        plain = self.pty_client(env={"NO_COLOR": "1"})
        plain.log_in("hans", "falcon")
        plain.type("nonsense\r")
        plain.wait_for_text("Error. Invalid command")
        self.assertIsNone(re.search(rb"\x1b\[[0-9;]*m", plain.raw))
        plain.type("\x04")
        self.assertEqual(plain.wait(), 0)


class SignUpTests(TerminalTestCase):
    server_options = ("--allow-register", "--allow-guests")

    def test_register_with_the_telnet_prompts(self) -> None:
        vader = self.pty_client()
        vader.wait_for(lambda rows: bool(rows) and rows[-1].startswith("Username:"), "Username:")
        vader.type("vader\r")
        # As telnet asks: the account first, no password for a name that has none.
        vader.wait_for(lambda rows: rows[-1].startswith("Create a new account with that name? (yes/no)"), "Create?")
        self.assertEqual(vader.rows()[-2], "There is no account vader.")
        vader.type("yes\r")
        vader.wait_for(lambda rows: rows[-1].startswith("New password:"), "New password:")
        vader.type("Dark-Side-99\r")
        vader.wait_for(lambda rows: rows[-1].startswith("Repeat the password:"), "Repeat the password:")
        vader.type("Dark-Side-99\r")
        vader.wait_for_text("Welcome to chatservice, vader!")
        self.assertNotIn("Dark-Side-99", "\n".join(vader.rows()))
        vader.type("quit\r")
        self.assertEqual(vader.wait(), 0)
        # The account is real: a telnet-like client logs in with it.
        with LineClient(self.server.port) as again:
            again.login("vader", "Dark-Side-99")

    def test_guest(self) -> None:
        han = self.pty_client()
        han.wait_for(lambda rows: bool(rows) and rows[-1].startswith("Username:"), "Username:")
        han.type("guest han\r")
        han.wait_for_text("Welcome to chatservice, han (guest)!")
        han.type("quit\r")
        self.assertEqual(han.wait(), 0)
