"""The terminal input line: editing, history, Tab, Ctrl keys, and output that never erases it.

As Twisted's own ``twisted/conch/test/test_recvline.py`` does, the
:class:`~chatservice.client.inputline.InputLine` runs behind
``insults.ServerProtocol`` on a ``StringTransport``; the bytes it writes are
fed to ``insults.helper.TerminalBuffer`` (an in-memory terminal emulator,
through ``insults.ClientProtocol``), so the tests read the screen a person
would see, and where its cursor is.
"""

from __future__ import annotations

import os
import time

from twisted.conch.insults import helper, insults
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from chatservice.client.console import Output
from chatservice.client.inputline import InputLine, TerminalOutput, columns, common_prefix
from chatservice.client.style import DIM, RED, RESET, Style, colours_wanted, name_colour, timestamp

LEFT = b"\x1b[D"
UP = b"\x1b[A"
DOWN = b"\x1b[B"


class Terminal:
    """An :class:`InputLine` on a fake terminal of ``width`` x ``height``."""

    def __init__(self, width: int = 40, height: int = 12, style: Style = Style(False)) -> None:
        self.entered: list[str] = []
        self.ended: list[bool] = []
        self.interrupts: list[bool] = []
        self.width, self.height = width, height
        self.input = InputLine(
            self.entered.append,
            lambda: self.ended.append(True),
            lambda: self.interrupts.append(True),
            size=lambda: (self.width, self.height),
            style=style,
        )
        self.written = b""
        """Every byte written to the terminal."""
        self.server = insults.ServerProtocol(lambda: self.input)
        self.transport = StringTransport()
        self.server.makeConnection(self.transport)

        class Buffer(helper.TerminalBuffer):
            pass

        Buffer.width, Buffer.height = width, height
        self.buffer = Buffer()
        self.emulator = insults.ClientProtocol(lambda: self.buffer)
        self.emulator.makeConnection(StringTransport())

    def sync(self) -> None:
        data = self.transport.value()
        self.transport.clear()
        self.written += data
        self.emulator.dataReceived(data)

    def type(self, keys: bytes | str) -> None:
        self.server.dataReceived(keys.encode("utf-8") if isinstance(keys, str) else keys)
        self.sync()

    def screen(self) -> list[str]:
        """The rows of the screen, without the empty rows at its end."""
        self.sync()
        rows = [row.rstrip() for row in bytes(self.buffer).decode("utf-8").split("\n")]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def cursor(self) -> tuple[int, int]:
        self.sync()
        return self.buffer.x, self.buffer.y


class InputSurvivesOutputTests(unittest.TestCase):
    def setUp(self) -> None:
        self.t = Terminal()
        self.t.input.set_prompt("> ")

    def test_half_typed_line_survives_a_message(self) -> None:
        self.t.type("message hans I am typ")
        self.t.input.print_line("hans: hi")
        self.assertEqual(self.t.screen(), ["hans: hi", "> message hans I am typ"])
        self.assertEqual(self.t.cursor(), (len("> message hans I am typ"), 1))
        self.t.type("ing\r")
        self.assertEqual(self.t.entered, ["message hans I am typing"])
        self.assertEqual(
            self.t.screen(), ["hans: hi", "> message hans I am typing", ">"]
        )

    def test_cursor_inside_the_line_stays_where_it_was(self) -> None:
        self.t.type("abc" + (LEFT * 2).decode())
        self.t.input.print_line("luke logged in")
        self.assertEqual(self.t.cursor(), (3, 1))
        self.t.type("Z\r")
        self.assertEqual(self.t.entered, ["aZbc"])

    def test_a_line_longer_than_the_terminal(self) -> None:
        t = Terminal(width=20)
        t.input.set_prompt("> ")
        typed = "message hans " + "x" * 30  # 45 columns with the prompt: three rows
        t.type(typed)
        for number in range(3):
            t.input.print_line(f"line {number}")
        self.assertEqual(
            t.screen(),
            ["line 0", "line 1", "line 2", ("> " + typed)[:20], ("> " + typed)[20:40], ("> " + typed)[40:]],
        )
        self.assertEqual(t.cursor(), (5, 5))
        t.type(LEFT * 6)
        self.assertEqual(t.cursor(), (19, 4))
        t.input.print_line("line 3")
        self.assertEqual(t.screen()[3:], ["line 3", ("> " + typed)[:20], ("> " + typed)[20:40], ("> " + typed)[40:]])
        self.assertEqual(t.cursor(), (19, 5))
        t.type("\r")
        self.assertEqual(t.entered, [typed])

    def test_a_line_that_fills_its_last_row_exactly(self) -> None:
        t = Terminal(width=20)
        t.input.set_prompt("> ")
        t.type("y" * 18)
        self.assertEqual(t.cursor(), (0, 1))
        t.input.print_line("hi")
        self.assertEqual(t.screen(), ["hi", "> " + "y" * 18])
        self.assertEqual(t.cursor(), (0, 2))

    def test_status_lines_sit_above_the_prompt(self) -> None:
        self.t.type("send")
        self.t.input.set_status("a", "[####----]  50% big.iso to hans")
        self.assertEqual(self.t.screen(), ["[####----]  50% big.iso to hans", "> send"])
        self.t.input.print_line("hans: hi")
        self.t.input.set_status("a", "[########]  99% big.iso to hans")
        self.assertEqual(
            self.t.screen(), ["hans: hi", "[########]  99% big.iso to hans", "> send"]
        )
        self.assertEqual(self.t.cursor(), (6, 2))
        self.t.input.set_status("a", None)
        self.assertEqual(self.t.screen(), ["hans: hi", "> send"])

    def test_a_long_status_is_cut_to_the_width(self) -> None:
        t = Terminal(width=20)
        t.input.set_status("a", "s" * 50)
        self.assertEqual(t.screen(), ["s" * 19])

    def test_finish_erases_the_live_region(self) -> None:
        self.t.type("half")
        self.t.input.set_status("a", "bar")
        self.t.input.print_line("last words")
        self.t.input.finish()
        self.assertEqual(self.t.screen(), ["last words"])
        self.assertEqual(self.t.cursor(), (0, 1))


class KeyTests(unittest.TestCase):
    def setUp(self) -> None:
        self.t = Terminal()
        self.t.input.set_prompt("> ")

    def test_history_up_and_down(self) -> None:
        self.t.type("one\rtwo\r")
        self.t.type("thr")
        self.t.type(UP)
        self.assertEqual(self.t.screen()[-1], "> two")
        self.t.type(UP)
        self.assertEqual(self.t.screen()[-1], "> one")
        self.t.type(UP)
        self.assertEqual(self.t.screen()[-1], "> one")
        self.t.type(DOWN)
        self.assertEqual(self.t.screen()[-1], "> two")
        self.t.type(DOWN)
        self.assertEqual(self.t.screen()[-1], "> thr")
        self.t.type(DOWN)
        self.assertEqual(self.t.screen()[-1], "> thr")
        self.t.type(UP + b"\r")
        self.t.type(UP)
        self.assertEqual(self.t.screen()[-1], "> two")
        self.assertEqual(self.t.entered, ["one", "two", "two"])

    def test_passwords_stay_out_of_the_history_and_off_the_screen(self) -> None:
        self.t.input.set_prompt("Password: ", secret=True)
        self.t.type("sesame")
        self.assertEqual(self.t.screen(), ["Password:"])
        self.t.type("\r")
        self.t.input.set_prompt("> ")
        self.t.type("passwd sesame open\r")
        self.t.type(UP)
        self.assertEqual(self.t.entered, ["sesame", "passwd sesame open"])
        self.assertNotIn("sesame", "\n".join(self.t.screen()[:1]))
        self.assertEqual(self.t.screen()[-1], ">")
        self.assertEqual(self.t.input.historyLines, [])

    def test_editing_keys(self) -> None:
        self.t.type("hello wide world")
        self.t.type(b"\x17")  # Ctrl-W: the word before the cursor
        self.assertEqual(self.t.input.lineBuffer[-1], b" ")
        self.assertEqual(self.t.screen()[-1], "> hello wide")
        self.t.type(b"\x01")  # Ctrl-A
        self.t.type(b"\x1b[3~")  # Delete
        self.t.type(b"\x05X")  # Ctrl-E, then X
        self.t.type(b"\x7f\x7f")  # Backspace twice: X and the space
        self.assertEqual(self.t.screen()[-1], "> ello wide")
        self.t.type(LEFT * 3 + b"\x0b")  # Ctrl-K
        self.assertEqual(self.t.screen()[-1], "> ello w")
        self.t.type(b"\x15")  # Ctrl-U
        self.assertEqual(self.t.screen()[-1], ">")

    def test_ctrl_c_drops_the_line_then_quits(self) -> None:
        self.t.type("oops")
        self.t.type(b"\x03")
        self.assertEqual(self.t.screen(), [">"])
        self.assertEqual(self.t.interrupts, [])
        self.t.type(b"\x03")
        self.assertEqual(self.t.interrupts, [True])
        self.assertEqual(self.t.entered, [])

    def test_ctrl_d_on_an_empty_line_ends_the_input(self) -> None:
        self.t.type("ab" + LEFT.decode() + "\x04")
        self.assertEqual(self.t.screen()[-1], "> a")
        self.assertEqual(self.t.ended, [])
        self.t.type(b"\x15\x04")
        self.assertEqual(self.t.ended, [True])

    def test_ctrl_l_clears_the_screen_and_keeps_the_line(self) -> None:
        for number in range(5):
            self.t.input.print_line(f"line {number}")
        self.t.type("half")
        self.t.type(b"\x0c")
        self.assertEqual(self.t.screen(), ["> half"])
        self.assertEqual(self.t.cursor(), (6, 0))

    def test_non_ascii_input(self) -> None:
        self.t.type("gr\u00fc\u00dfe \u65e5\u672c\r")
        self.assertEqual(self.t.entered, ["gr\u00fc\u00dfe \u65e5\u672c"])

    def test_lines_entered_while_paused_wait_in_order(self) -> None:
        self.t.input.pause()
        self.t.type("first\rsecond\r")
        self.assertEqual(self.t.entered, [])
        self.assertEqual(self.t.screen(), ["> first", "> second", ">"])
        self.t.input.resume()
        self.assertEqual(self.t.entered, ["first", "second"])

    def test_resume_stops_when_a_line_pauses_again(self) -> None:
        self.t.input.line_entered = lambda line: (self.t.entered.append(line), self.t.input.pause())
        self.t.input.pause()
        self.t.type("a\rb\r")
        self.t.input.resume()
        self.assertEqual(self.t.entered, ["a"])
        self.t.input.resume()
        self.assertEqual(self.t.entered, ["a", "b"])


class CompletionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.t = Terminal()
        self.t.input.set_prompt("> ")
        self.asked: list[tuple[str, bool]] = []

        def complete(word: str, first: bool) -> list[str]:
            self.asked.append((word, first))
            pool = ["message", "messages", "block", "broadcast"] if first else ["hans", "hanna", "luke"]
            return [w for w in pool if w.startswith(word)]

        self.t.input.complete = complete

    def test_a_unique_command(self) -> None:
        self.t.type("bl\t")
        self.assertEqual(self.t.screen(), ["> block"])
        self.assertEqual(self.asked, [("bl", True)])

    def test_a_user_name(self) -> None:
        self.t.type("message l\t")
        self.assertEqual(self.t.screen(), ["> message luke"])
        self.assertEqual(self.asked, [("l", False)])

    def test_several_candidates_extend_to_their_common_start_then_are_listed(self) -> None:
        self.t.type("message h\t")
        self.assertEqual(self.t.screen(), ["> message han"])
        self.t.type("\t")
        self.assertEqual(self.t.screen(), ["hanna  hans", "> message han"])
        self.t.type("s\t\r")
        self.assertEqual(self.t.entered, ["message hans "])

    def test_nothing_to_complete(self) -> None:
        self.t.type("zz\t")
        self.assertEqual(self.t.screen(), ["> zz"])

    def test_no_completion_of_a_password(self) -> None:
        self.t.input.set_prompt("Password: ", secret=True)
        self.t.type("bl\t")
        self.assertEqual(self.asked, [])


class StyleTests(unittest.TestCase):
    def test_colours_only_on_a_terminal_without_no_color(self) -> None:
        self.assertTrue(colours_wanted({}, False, True))
        self.assertFalse(colours_wanted({"NO_COLOR": ""}, False, True))
        self.assertFalse(colours_wanted({}, True, True))
        self.assertFalse(colours_wanted({}, False, False))

    def test_a_name_keeps_its_colour(self) -> None:
        self.assertEqual(name_colour("hans"), name_colour("hans"))
        names = ["hans", "yoda", "luke", "leia", "obiwan", "vader", "han", "chewie"]
        self.assertGreater(len({name_colour(n) for n in names}), 3)

    def test_timestamp_is_the_local_hour_and_minute(self) -> None:
        old = os.environ.get("TZ")
        os.environ["TZ"] = "UTC"
        time.tzset()
        try:
            self.assertEqual(timestamp(1_795_282_200 + 90), "[17:31]")
        finally:
            if old is None:
                del os.environ["TZ"]
            else:
                os.environ["TZ"] = old
            time.tzset()

    def test_coloured_lines(self) -> None:
        style = Style(True)
        self.assertEqual(
            style.message("[13:30]", "hans", "hans: hi hans"),
            f"{DIM}[13:30]{RESET} {name_colour('hans')}hans{RESET}: hi hans",
        )
        self.assertEqual(style.plain("Error. No."), f"{RED}Error. No.{RESET}")
        self.assertEqual(style.plain("Fine."), "Fine.")
        self.assertEqual(style.own("> hi"), f"{DIM}> hi{RESET}")

    def test_no_colours(self) -> None:
        style = Style(False)
        self.assertEqual(style.message("[13:30]", "hans", "hans: hi"), "[13:30] hans: hi")
        self.assertEqual(style.plain("Error. No."), "Error. No.")
        self.assertEqual(style.own("> hi"), "> hi")

    def test_terminal_output_colours_and_cleans(self) -> None:
        t = Terminal(style=Style(True))
        output = TerminalOutput(t.input, Style(True))
        output.line("Error. \x1b[31mfake\x07")
        output.message("[13:30]", "hans", "hans: hi")
        written = t.transport.value()
        self.assertIn(f"{RED}Error. [31mfake{RESET}".encode(), written)
        self.assertIn(f"{name_colour('hans')}hans{RESET}: hi".encode(), written)
        self.assertEqual(t.screen(), ["Error. [31mfake", "[13:30] hans: hi"])

    def test_own_lines_are_dim(self) -> None:
        t = Terminal(style=Style(True))
        t.input.set_prompt("> ")
        t.type("hello\r")
        self.assertIn(f"{DIM}> hello{RESET}".encode(), t.written)

    def test_pipe_output_has_time_stamps_and_no_colours(self) -> None:
        written: list[bytes] = []
        output = Output(written.append, terminal=False, interactive=False, style=Style(False))
        output.message("[13:30]", "hans", "hans: hi")
        output.line("Error. No.")
        self.assertEqual(b"".join(written), b"[13:30] hans: hi\nError. No.\n")


class HelperTests(unittest.TestCase):
    def test_columns(self) -> None:
        self.assertEqual(columns("abc"), 3)
        self.assertEqual(columns("\u65e5\u672c"), 4)
        self.assertEqual(columns("e\u0301"), 1)

    def test_common_prefix(self) -> None:
        self.assertEqual(common_prefix(["hans", "hanna"]), "han")
        self.assertEqual(common_prefix([]), "")
        self.assertEqual(common_prefix(["a", "b"]), "")
