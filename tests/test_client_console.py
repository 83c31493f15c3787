"""The keyboard and screen: Output on a terminal and in a pipe, Console, password echo."""

from __future__ import annotations

import os
import termios

from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from chatservice.client.console import CLEAR_LINE, Console, Output, TerminalEcho


class PipeOutputTests(unittest.TestCase):
    def setUp(self) -> None:
        self.written: list[bytes] = []
        self.output = Output(self.written.append, terminal=False, interactive=False)

    def text(self) -> str:
        return b"".join(self.written).decode("utf-8")

    def test_lines_only(self) -> None:
        self.output.prompt("Username: ")
        self.output.line("hello")
        self.output.status("bar", "[####] 40%")
        self.output.line("two\nlines")
        self.assertEqual(self.text(), "hello\ntwo\nlines\n")

    def test_control_characters_are_removed(self) -> None:
        self.output.line("\x1b[2Jred\x07 and\ttab")
        self.assertEqual(self.text(), "[2Jred and\ttab\n")

    def test_unicode(self) -> None:
        self.output.line("héllo ✓")
        self.assertEqual(self.text(), "héllo ✓\n")


class InteractivePipeOutputTests(unittest.TestCase):
    """Standard input a terminal, standard output a pipe: prompts, no redrawing."""

    def test_prompts_are_written_once(self) -> None:
        written: list[bytes] = []
        output = Output(written.append, terminal=False, interactive=True)
        output.prompt("Username: ")
        output.line("message")
        self.assertEqual(b"".join(written), b"Username: message\n")


class TerminalOutputTests(unittest.TestCase):
    def setUp(self) -> None:
        self.written: list[bytes] = []
        self.output = Output(self.written.append, terminal=True, interactive=True)

    def take(self) -> str:
        text = b"".join(self.written).decode("utf-8")
        self.written.clear()
        return text

    def test_prompt_stays_below_lines(self) -> None:
        self.output.prompt("> ")
        self.assertEqual(self.take(), CLEAR_LINE + "> ")
        self.output.line("hans: hi")
        self.assertEqual(self.take(), CLEAR_LINE + "hans: hi\n> ")

    def test_status_replaces_the_prompt_until_removed(self) -> None:
        self.output.prompt("> ")
        self.take()
        self.output.status("a", "[##--] 50% x to hans")
        self.assertEqual(self.take(), CLEAR_LINE + "[##--] 50% x to hans")
        self.output.status("b", "[#---] 25% y from luke")
        self.assertEqual(self.take(), CLEAR_LINE + "[##--] 50% x to hans | [#---] 25% y from luke")
        self.output.line("news")
        self.assertEqual(self.take(), CLEAR_LINE + "news\n[##--] 50% x to hans | [#---] 25% y from luke")
        self.output.status("a", None)
        self.output.status("b", None)
        self.assertTrue(self.take().endswith(CLEAR_LINE + "> "))
        self.output.status("gone", None)
        self.assertEqual(self.take(), "")

    def test_after_enter_the_line_is_empty(self) -> None:
        self.output.prompt("> ")
        self.output.input_taken()
        self.take()
        self.output.line("reply")
        self.assertEqual(self.take(), CLEAR_LINE + "reply\n> ")

    def test_no_prompt_when_not_interactive(self) -> None:
        output = Output(self.written.append, terminal=True, interactive=False)
        output.prompt("> ")
        output.line("x")
        self.assertEqual(self.take(), CLEAR_LINE + "x\n")


class ConsoleTests(unittest.TestCase):
    def setUp(self) -> None:
        self.lines: list[str] = []
        self.ended: list[bool] = []
        self.console = Console(self.lines.append, lambda: self.ended.append(True))
        self.transport = StringTransport()
        self.console.makeConnection(self.transport)

    def test_lines(self) -> None:
        self.console.dataReceived(b"yoda\r\nwise\npart")
        self.assertEqual(self.lines, ["yoda", "wise"])
        self.console.dataReceived(b"ial\n\xff\n")
        self.assertEqual(self.lines, ["yoda", "wise", "partial", "\ufffd"])

    def test_pause_keeps_lines_waiting(self) -> None:
        self.console.pause()
        self.assertEqual(self.transport.producerState, "paused")
        self.console.dataReceived(b"one\ntwo\n")
        self.assertEqual(self.lines, [])
        self.console.resume()
        self.assertEqual(self.lines, ["one", "two"])
        self.assertEqual(self.transport.producerState, "producing")

    def test_pausing_inside_a_line_stops_the_next(self) -> None:
        def take(line: str) -> None:
            self.lines.append(line)
            self.console.pause()

        self.console.line_entered = take
        self.console.dataReceived(b"a\nb\nc\n")
        self.assertEqual(self.lines, ["a"])
        self.console.resume()
        self.assertEqual(self.lines, ["a", "b"])

    def test_end_of_input(self) -> None:
        self.console.readConnectionLost()
        self.console.readConnectionLost()
        self.assertEqual(self.ended, [True])

    def test_stdout_gone_ends_too(self) -> None:
        self.console.writeConnectionLost()
        self.assertEqual(self.ended, [True])

    def test_close_waits_for_the_connection_to_go(self) -> None:
        closed = self.console.close()
        self.assertTrue(self.transport.disconnecting)
        self.assertNoResult(closed)
        self.console.connectionLost(None)
        self.assertIsNone(self.successResultOf(closed))
        self.assertEqual(self.ended, [])

    def test_overlong_line_is_dropped(self) -> None:
        self.console.dataReceived(b"x" * (Console.MAX_LENGTH + 1))
        self.console.dataReceived(b"\nok\n")
        self.assertEqual(self.lines[-1], "ok")


class TerminalEchoTests(unittest.TestCase):
    def setUp(self) -> None:
        self.master, self.slave = os.openpty()
        self.addCleanup(os.close, self.master)
        self.addCleanup(os.close, self.slave)

    def echoing(self) -> bool:
        return bool(termios.tcgetattr(self.slave)[3] & termios.ECHO)

    def test_hide_and_restore_on_a_terminal(self) -> None:
        echo = TerminalEcho(self.slave, isatty=os.isatty(self.slave))
        self.assertTrue(self.echoing())
        echo.hide()
        self.assertFalse(self.echoing())
        self.assertTrue(termios.tcgetattr(self.slave)[3] & termios.ECHONL)
        echo.hide()
        echo.restore()
        self.assertTrue(self.echoing())
        echo.restore()
        self.assertTrue(self.echoing())

    def test_nothing_happens_in_a_pipe(self) -> None:
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        self.addCleanup(os.close, write)
        echo = TerminalEcho(read, isatty=os.isatty(read))
        echo.hide()
        echo.restore()
        self.assertFalse(echo.enabled)


class FinishTests(unittest.TestCase):
    def test_terminal_clears_the_live_line(self) -> None:
        written: list[bytes] = []
        output = Output(written.append, terminal=True, interactive=True)
        output.prompt("> ")
        written.clear()
        output.finish()
        output.finish()
        self.assertEqual(written, [CLEAR_LINE.encode()])

    def test_prompt_in_a_pipe_gets_its_line_ended(self) -> None:
        written: list[bytes] = []
        output = Output(written.append, terminal=False, interactive=True)
        output.prompt("Password: ")
        output.finish()
        self.assertEqual(b"".join(written), b"Password: \n")
        written.clear()
        output.line("x")
        output.finish()
        self.assertEqual(written, [b"x\n"])
