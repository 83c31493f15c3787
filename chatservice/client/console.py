"""The keyboard and the screen: standard input lines in, readable lines out.

:class:`Console` is the ``LineReceiver`` that ``StandardIO`` feeds with
standard input; :class:`Output` writes to standard output.  Both work on a
terminal and in a pipe:

* on a terminal (standard output is a tty) the last line of the screen is
  live: it shows the prompt, or the progress bars of file transfers, and
  is redrawn below every line printed;
* in a pipe, every line is printed once and nothing is redrawn, so a script
  or a test reads clean lines;
* prompts (``Username:``, ``Password:``, ``>``) appear only when standard
  input is a terminal: a script sees no prompt echo.

:class:`TerminalEcho` turns echo off while a password is typed on a terminal
(and does nothing when standard input is a pipe).
"""

from __future__ import annotations

from typing import Callable, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatservice.client.style import Style
from chatservice.commands import remove_control_characters

try:
    import termios
except ImportError:  # pragma: no cover - not POSIX
    termios = None  # type: ignore[assignment]

CLEAR_LINE = "\r\x1b[K"


class Screen(Protocol):
    """Where the client shows things: :class:`Output` (pipes), or
    :class:`~chatservice.client.inputline.TerminalOutput` (the input line on a terminal)."""

    terminal: bool
    """Standard output is a terminal: progress bars on the live region."""
    interactive: bool

    def line(self, text: str) -> None: ...

    def message(self, stamp: str, sender: str, text: str) -> None: ...

    def question(self, text: str) -> None: ...

    def prompt(self, text: str, secret: bool = False) -> None: ...

    def input_taken(self) -> None: ...

    def status(self, key: object, text: str | None) -> None: ...

    def finish(self) -> None: ...


class Output:
    """Writes lines for a person to read.

    :param write: writes bytes to standard output.
    :param terminal: standard output is a terminal: keep a live last line.
    :param interactive: standard input is a terminal: show prompts.
    :param style: colours (none unless standard output is a terminal).
    """

    def __init__(
        self,
        write: Callable[[bytes], object],
        *,
        terminal: bool,
        interactive: bool,
        style: Style = Style(False),
    ) -> None:
        self._write = write
        self.style = style
        self.terminal = terminal
        self.interactive = interactive
        self._prompt = ""
        self._statuses: dict[object, str] = {}
        self._shown = ""
        self._mid_line = False

    def line(self, text: str) -> None:
        """Print ``text`` (each of its lines; control characters removed; errors in red)."""
        self._print([self.style.plain(remove_control_characters(part)) for part in text.split("\n")])

    def _print(self, shown: list[str]) -> None:
        clean = "\n".join(shown)
        if self.terminal:
            self._emit(CLEAR_LINE + clean + "\n" + self._live())
        else:
            self._emit(clean + "\n")

    def message(self, stamp: str, sender: str, text: str) -> None:
        """Print a chat message after its time stamp (``[13:30] hans: hi``), the name in colour."""
        self._print(
            [self.style.message(stamp, sender, remove_control_characters(part)) for part in text.split("\n")]
        )

    def question(self, text: str) -> None:
        """Print a question for the user (accept or decline)."""
        self.line(text)

    def prompt(self, text: str, secret: bool = False) -> None:
        """Ask for input with ``text`` (e.g. ``Username: ``); shown only to a person typing.

        :param secret: a password is typed (:class:`TerminalEcho` hides it here).
        """
        self._prompt = text
        if not self.interactive:
            return
        if self.terminal:
            self._redraw()
        else:
            self._emit(text)

    def input_taken(self) -> None:
        """The user pressed Enter: the cursor is at the start of an empty line."""
        self._shown = ""
        self._mid_line = False

    def status(self, key: object, text: str | None) -> None:
        """Set (or with ``None`` remove) one live status, e.g. a progress bar; terminal only."""
        if text is None:
            if self._statuses.pop(key, None) is None:
                return
        else:
            self._statuses[key] = text
        if self.terminal:
            self._redraw()

    def finish(self) -> None:
        """Leave the screen tidy for whatever runs next: no prompt or status left over."""
        self._statuses.clear()
        self._prompt = ""
        if self.terminal:
            if self._shown:
                self._emit(CLEAR_LINE)
                self._shown = ""
        elif self._mid_line:
            self._emit("\n")

    def _live(self) -> str:
        if self._statuses:
            live = " | ".join(self._statuses.values())
        elif self.interactive:
            live = self._prompt
        else:
            live = ""
        self._shown = live
        return live

    def _redraw(self) -> None:
        before = self._shown
        live = self._live()
        if live != before or live:
            self._emit(CLEAR_LINE + live)

    def _emit(self, text: str) -> None:
        self._mid_line = not text.endswith("\n")
        self._write(text.encode("utf-8", "replace"))


@implementer(IHalfCloseableProtocol)
class Console(LineReceiver):
    """Standard input, one line at a time.

    :param line_entered: called with each line (decoded, without line end).
    :param input_ended: called once when standard input ends (Ctrl-D, end of a script).
    """

    delimiter = b"\n"
    MAX_LENGTH = 1 << 16

    def __init__(
        self, line_entered: Callable[[str], None], input_ended: Callable[[], None]
    ) -> None:
        self.line_entered = line_entered
        self.input_ended = input_ended
        self._ended = False
        self._closed: defer.Deferred[None] = defer.Deferred()
        self.lost = False

    def lineReceived(self, line: bytes) -> None:
        self.line_entered(line.rstrip(b"\r").decode("utf-8", "replace"))

    def lineLengthExceeded(self, line: bytes) -> None:
        # Pasting a novel is not a command: drop it and go on.
        self.clearLineBuffer()

    def readConnectionLost(self) -> None:
        self._end()

    def writeConnectionLost(self) -> None:
        """Standard output is gone (its reader quit): nobody can see us; stop."""
        self._end()

    def connectionLost(self, reason: Failure = None) -> None:
        self.lost = True
        self._end()
        if not self._closed.called:
            self._closed.callback(None)

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self.input_ended()

    def pause(self) -> None:
        """Stop reading input (lines already typed wait)."""
        self.pauseProducing()

    def resume(self) -> None:
        """Read input again, starting with the lines that waited."""
        if self.paused and not self.lost:
            self.resumeProducing()

    def close(self) -> defer.Deferred[None]:
        """Flush standard output and close; fires once it is written."""
        if self.transport is not None and not self.lost:
            self._ended = True
            self.transport.loseConnection()
        else:
            self.lost = True
            if not self._closed.called:
                self._closed.callback(None)
        return self._closed


class TerminalEcho:
    """Turns off the echo of typed characters on a terminal, for passwords.

    :param fd: the standard input file descriptor.
    :param isatty: whether ``fd`` is a terminal.
    """

    def __init__(self, fd: int, isatty: bool) -> None:
        self.fd = fd
        self.enabled = isatty and termios is not None
        self._saved: list | None = None

    def hide(self) -> None:
        """Stop echoing typed characters (the Enter key still moves to a new line)."""
        if not self.enabled or self._saved is not None:
            return
        try:
            attributes = termios.tcgetattr(self.fd)
            self._saved = [list(a) if isinstance(a, list) else a for a in attributes]
            attributes[3] = (attributes[3] & ~termios.ECHO) | termios.ECHONL
            termios.tcsetattr(self.fd, termios.TCSADRAIN, attributes)
        except termios.error:
            self._saved = None

    def restore(self) -> None:
        """Echo again, as before :meth:`hide`."""
        saved, self._saved = self._saved, None
        if saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)
            except termios.error:
                pass
