"""The input line on a terminal: what you type survives whatever is printed meanwhile.

When standard input and output are both a terminal, ``chat-client`` puts
the terminal in raw mode (:class:`RawTerminal`) and runs
:class:`InputLine`, a :class:`twisted.conch.recvline.HistoricRecvLine`
behind :class:`twisted.conch.insults.insults.ServerProtocol` over
``StandardIO`` (as Twisted's ``conch.stdio`` manhole does).  The bottom of
the screen is the *live region*: one line per running file transfer (its
progress bar), then the prompt and the line being typed.  Every line
printed (:meth:`InputLine.print_line`) goes above it: the live region is
erased, the line written, and the live region drawn again with the cursor
where it was, so a half-typed line is never lost or mixed with output.

Keys: the usual editing keys (Left, Right, Home/Ctrl-A, End/Ctrl-E,
Backspace, Delete, Ctrl-U, Ctrl-K, Ctrl-W), Up/Down for the history of
lines typed (never the password, nor a ``passwd`` line), Tab to complete
the word before the cursor (:attr:`InputLine.complete` says with what),
Ctrl-L to clear the screen, Ctrl-C to drop the line being typed (on an
empty line: quit, as Ctrl-C did before), Ctrl-D on an empty line to end
the input (log out).

Lines entered while the client waits for an answer (:meth:`InputLine.pause`)
are shown at once and handed over, in order, on :meth:`InputLine.resume`.
"""

from __future__ import annotations

import codecs
import os
import unicodedata
from typing import Callable, Sequence

from twisted.conch import recvline
from twisted.internet import defer
from twisted.python.failure import Failure

from chatservice.client.style import Style
from chatservice.commands import remove_control_characters

try:
    import termios
    import tty
except ImportError:  # pragma: no cover - not POSIX
    termios = tty = None  # type: ignore[assignment]

Completer = Callable[[str, bool], Sequence[str]]
"""``complete(word, first)``: the candidates for ``word``; ``first`` when it is the line's first word."""

CTRL_A, CTRL_C, CTRL_D, CTRL_E = b"\x01", b"\x03", b"\x04", b"\x05"
CTRL_H, CTRL_K, CTRL_L, CTRL_U, CTRL_W = b"\x08", b"\x0b", b"\x0c", b"\x15", b"\x17"
MIN_WIDTH = 10


def columns(text: str) -> int:
    """How many terminal columns ``text`` takes (wide East Asian characters take two)."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def common_prefix(words: Sequence[str]) -> str:
    """The longest start that all ``words`` share (``""`` for none)."""
    if not words:
        return ""
    first, last = min(words), max(words)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]


def terminal_size(fd: int = 1) -> tuple[int, int]:
    """(columns, rows) of the terminal at ``fd``; 80x24 when it cannot tell."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 80, 24
    return size.columns or 80, size.lines or 24


class InputLine(recvline.HistoricRecvLine):
    """The line editor and the bottom of the screen.

    :param line_entered: called with each line entered (a ``str``).
    :param input_ended: called once when input ends (Ctrl-D, or standard input closed).
    :param interrupted: called for Ctrl-C on an empty line.
    :param size: returns the terminal's (columns, rows).
    :param style: how own lines look (dimmed, with colours).
    """

    def __init__(
        self,
        line_entered: Callable[[str], None],
        input_ended: Callable[[], None],
        interrupted: Callable[[], None],
        size: Callable[[], tuple[int, int]] = terminal_size,
        style: Style = Style(False),
    ) -> None:
        self.line_entered = line_entered
        self.input_ended = input_ended
        self.interrupted = interrupted
        self.size = size
        self.style = style
        self.complete: Completer | None = None
        self.prompt = ""
        self.secret = False
        self.statuses: dict[object, str] = {}
        self.paused = False
        self.waiting: list[str] = []
        self.lost = False
        self._ended = False
        self._cursor_row = 0
        self._drawn = False
        self._draft = b""
        """The line being typed when Up went into the history."""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._closed: defer.Deferred[None] = defer.Deferred()

    # Connection ----------------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        t = self.terminal
        self.keyHandlers.update(
            {
                CTRL_A: self.handle_HOME,
                CTRL_E: self.handle_END,
                CTRL_H: self.handle_BACKSPACE,
                CTRL_C: self.handle_CTRL_C,
                CTRL_D: self.handle_CTRL_D,
                CTRL_K: self.handle_CTRL_K,
                CTRL_L: self.handle_CTRL_L,
                CTRL_U: self.handle_CTRL_U,
                CTRL_W: self.handle_CTRL_W,
                t.INSERT: lambda: None,
            }
        )

    def initializeScreen(self) -> None:
        """Draw the prompt where the cursor is: the screen above is left as it was."""
        self.mode = "insert"
        self._paint()

    def terminalSize(self, width: int, height: int) -> None:
        self._redraw()

    def resized(self) -> None:
        """The terminal changed size (``SIGWINCH``): draw the live region again for it."""
        self._redraw()

    def connectionLost(self, reason: Failure = None) -> None:
        self.lost = True
        self._end()
        if not self._closed.called:
            self._closed.callback(None)

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self.input_ended()

    def close(self) -> defer.Deferred[None]:
        """Close standard input and output (once written); fires when done."""
        self._ended = True
        if not self.lost and self.terminal is not None:
            # Not terminal.loseConnection(): that resets (clears) the screen.
            self.terminal.transport.loseConnection()
        elif not self._closed.called:
            self._closed.callback(None)
        return self._closed

    # What the client shows -----------------------------------------------------------

    def print_line(self, text: str) -> None:
        """Print ``text`` (already styled) above the live region, and draw that again."""
        if self.lost:
            return
        self._erase()
        self.terminal.write(text.encode("utf-8", "replace") + b"\n")
        self._paint()

    def set_prompt(self, prompt: str, secret: bool = False) -> None:
        """Show ``prompt`` before the line; with ``secret`` the typed text is not shown."""
        self.prompt, self.secret = prompt, secret
        self._redraw()

    def set_status(self, key: object, text: str | None) -> None:
        """Show (or with ``None`` remove) one status line above the prompt."""
        if text is None:
            if self.statuses.pop(key, None) is None:
                return
        else:
            self.statuses[key] = text
        self._redraw()

    def finish(self) -> None:
        """Erase the live region: the cursor is left at the start of an empty line."""
        self.statuses.clear()
        self.prompt = ""
        self.lineBuffer, self.lineBufferIndex = [], 0
        if not self.lost and self._drawn:
            self._erase()
        self._drawn = False

    def pause(self) -> None:
        """Hold the lines entered from now on (they are still shown)."""
        self.paused = True

    def resume(self) -> None:
        """Hand over the lines held, in order, until one pauses the input again."""
        self.paused = False
        while self.waiting and not self.paused and not self._ended:
            self.line_entered(self.waiting.pop(0))

    # Drawing -------------------------------------------------------------------------

    def _width(self) -> int:
        return max(MIN_WIDTH, self.size()[0])

    def _typed(self) -> tuple[str, str]:
        """The text before and after the cursor, as shown."""
        if self.secret:
            return "", ""
        before, after = self.currentLineBuffer()
        return before.decode("utf-8", "replace"), after.decode("utf-8", "replace")

    def _erase(self) -> None:
        """Move to the top of the live region and erase it and below."""
        if self._cursor_row:
            self.terminal.cursorUp(self._cursor_row)
        self.terminal.write(b"\r")
        self.terminal.eraseToDisplayEnd()
        self._cursor_row = 0

    def _redraw(self) -> None:
        if self.lost or self.terminal is None:
            return
        self._erase()
        self._paint()

    def _paint(self) -> None:
        """Draw the live region from the start of the current row; put the cursor in place."""
        if self.lost or self.terminal is None:
            return
        t = self.terminal
        width = self._width()
        rows = 0
        for status in self.statuses.values():
            shown = status
            while columns(shown) > width - 1:
                shown = shown[:-1]
            t.write(shown.encode("utf-8", "replace") + b"\n")
            rows += 1
        before, after = self._typed()
        t.write((self.prompt + before + after).encode("utf-8", "replace"))
        total = columns(self.prompt + before + after)
        cursor = columns(self.prompt + before)
        end_row = (total - 1) // width if total else 0
        row, column = divmod(cursor, width)
        t.write(b"\r")
        if row > end_row:
            t.write(b"\n")
        elif end_row > row:
            t.cursorUp(end_row - row)
        if column:
            t.cursorForward(column)
        self._cursor_row = rows + row
        self._drawn = True

    # Keys ----------------------------------------------------------------------------

    def keystrokeReceived(self, keyID: bytes, modifier: object) -> None:
        handler = self.keyHandlers.get(keyID)
        if handler is not None:
            handler()
        elif isinstance(keyID, bytes) and len(keyID) == 1 and (keyID >= b" " or keyID == b"\t"):
            if keyID == b"\x7f":
                self.handle_BACKSPACE()
                return
            text = self._decoder.decode(keyID)
            for char in remove_control_characters(text):
                self._insert(char)
            if text:
                self._redraw()

    def characterReceived(self, ch: bytes, moreCharactersComing: bool) -> None:
        # HistoricRecvLine delivers a history line through here, a byte at a time.
        text = self._decoder.decode(ch)
        for char in text:
            self._insert(char)
        if not moreCharactersComing:
            self._redraw()

    def _insert(self, char: str) -> None:
        self.lineBuffer.insert(self.lineBufferIndex, char.encode("utf-8"))
        self.lineBufferIndex += 1

    def handle_LEFT(self) -> None:
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            self._redraw()

    def handle_RIGHT(self) -> None:
        if self.lineBufferIndex < len(self.lineBuffer):
            self.lineBufferIndex += 1
            self._redraw()

    def handle_HOME(self) -> None:
        self.lineBufferIndex = 0
        self._redraw()

    def handle_END(self) -> None:
        self.lineBufferIndex = len(self.lineBuffer)
        self._redraw()

    def handle_BACKSPACE(self) -> None:
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            del self.lineBuffer[self.lineBufferIndex]
            self._redraw()

    def handle_DELETE(self) -> None:
        if self.lineBufferIndex < len(self.lineBuffer):
            del self.lineBuffer[self.lineBufferIndex]
            self._redraw()

    def handle_UP(self) -> None:
        if self.secret or self.historyPosition == 0:
            return
        if self.historyPosition == len(self.historyLines):
            self._draft = b"".join(self.lineBuffer)
        self.historyPosition -= 1
        self._show(self.historyLines[self.historyPosition])

    def handle_DOWN(self) -> None:
        if self.secret or self.historyPosition >= len(self.historyLines):
            return
        self.historyPosition += 1
        if self.historyPosition == len(self.historyLines):
            self._show(self._draft)
        else:
            self._show(self.historyLines[self.historyPosition])

    def _show(self, text: bytes) -> None:
        """Put ``text`` (a history line, or the draft) in the line, the cursor at its end."""
        line = text.decode("utf-8", "replace")
        self.lineBuffer = [char.encode("utf-8") for char in line]
        self.lineBufferIndex = len(self.lineBuffer)
        self._redraw()

    def handle_CTRL_K(self) -> None:
        del self.lineBuffer[self.lineBufferIndex:]
        self._redraw()

    def handle_CTRL_U(self) -> None:
        del self.lineBuffer[: self.lineBufferIndex]
        self.lineBufferIndex = 0
        self._redraw()

    def handle_CTRL_W(self) -> None:
        start = self.lineBufferIndex
        while start > 0 and self.lineBuffer[start - 1] == b" ":
            start -= 1
        while start > 0 and self.lineBuffer[start - 1] != b" ":
            start -= 1
        del self.lineBuffer[start: self.lineBufferIndex]
        self.lineBufferIndex = start
        self._redraw()

    def handle_CTRL_L(self) -> None:
        self.terminal.eraseDisplay()
        self.terminal.cursorHome()
        self._cursor_row = 0
        self._paint()

    def handle_CTRL_C(self) -> None:
        if self.lineBuffer:
            self.lineBuffer, self.lineBufferIndex = [], 0
            self.historyPosition = len(self.historyLines)
            self._redraw()
        else:
            self.interrupted()

    def handle_CTRL_D(self) -> None:
        if self.lineBuffer:
            self.handle_DELETE()
        else:
            self._end()

    def handle_TAB(self) -> None:
        if self.complete is None or self.secret:
            return
        before = b"".join(self.lineBuffer[: self.lineBufferIndex]).decode("utf-8", "replace")
        start = len(before) - len(before.split(" ")[-1])
        word = before[start:]
        first = not before[:start].strip()
        candidates = sorted(set(self.complete(word, first)))
        if not candidates:
            return
        if len(candidates) == 1:
            addition = candidates[0][len(word):] + " "
        else:
            addition = common_prefix(candidates)[len(word):]
            if not addition:
                self.print_line("  ".join(candidates))
                return
        for char in addition:
            self._insert(char)
        self._redraw()

    def handle_RETURN(self) -> None:
        line = b"".join(self.lineBuffer).decode("utf-8", "replace")
        if not self.secret and line and not line.lower().startswith("passwd"):
            self.historyLines.append(line.encode("utf-8"))
        self.historyPosition = len(self.historyLines)
        shown = self.prompt + ("" if self.secret else line)
        self.lineBuffer, self.lineBufferIndex = [], 0
        self.print_line(self.style.own(shown))
        if self.paused:
            self.waiting.append(line)
        else:
            self.line_entered(line)


class RawTerminal:
    """Puts the terminal at ``fd`` in raw mode (every key read as typed, no echo) and back.

    :param fd: standard input.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list | None = None

    def start(self) -> None:
        """Raw mode; :meth:`restore` undoes it."""
        if termios is None:
            return
        self._saved = termios.tcgetattr(self.fd)
        tty.setraw(self.fd, termios.TCSANOW)

    def restore(self) -> None:
        """The terminal as it was before :meth:`start`."""
        saved, self._saved = self._saved, None
        if saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)
            except termios.error:
                pass


class TerminalOutput:
    """The screen as :class:`~chatservice.client.console.Output` shows it, on an :class:`InputLine`.

    :param line: the input line.
    :param style: colours.
    """

    terminal = True
    interactive = True

    def __init__(self, line: InputLine, style: Style) -> None:
        self.input = line
        self.style = style

    def line(self, text: str) -> None:
        """Print ``text`` (each of its lines; control characters removed; errors in red)."""
        for part in text.split("\n"):
            self.input.print_line(self.style.plain(remove_control_characters(part)))

    def message(self, stamp: str, sender: str, text: str) -> None:
        """Print a chat message line after its time, the sender's name in its colour."""
        for part in text.split("\n"):
            self.input.print_line(
                self.style.message(stamp, sender, remove_control_characters(part))
            )

    def question(self, text: str) -> None:
        """Print a question for the user (accept or decline)."""
        self.input.print_line(self.style.highlight(remove_control_characters(text)))

    def prompt(self, text: str, secret: bool = False) -> None:
        self.input.set_prompt(text, secret)

    def input_taken(self) -> None:
        """Nothing to do: the input line shows what was entered itself."""

    def status(self, key: object, text: str | None) -> None:
        self.input.set_status(key, text)

    def finish(self) -> None:
        self.input.finish()
