"""Telnet for a person's text connection: :class:`TelnetInput`.

A ``telnet`` client sends commands and option negotiation inside the byte
stream.  :class:`TelnetInput` is :class:`twisted.conch.telnet.Telnet` (its
parser and its option state machine, RFC 854 and RFC 1143) with the
server's few answers:

* ``DO TIMING-MARK`` is answered ``WILL TIMING-MARK`` every time (RFC 860).
  ``telnet`` sends it after ``IP`` on Ctrl-C and discards all output until
  the answer comes: unanswered, the session looked frozen for good.
* ``IP`` (interrupt process, Ctrl-C), ``BRK`` and ``EL`` (erase line) cancel
  the line being received; ``AYT`` is answered ``[yes]``.
* ``ECHO`` is the one option the server performs, on request of the
  connection: ``WILL ECHO`` while a password is typed, so the client does
  not echo it, and ``WONT ECHO`` after (:meth:`TelnetInput.hide_input`,
  :meth:`TelnetInput.show_input`).  A client that never answers (``nc``)
  gets the offer once and nothing more: the option stays in negotiation.
* Every other option either side proposes is refused (``WONT``/``DONT``,
  the state machine's default); sub-negotiations are ignored (one that
  runs past :data:`MAX_SUBNEGOTIATION` bytes is dropped there, with the rest
  of its packet).
* At most :data:`MAX_COMMANDS_PER_PACKET` commands of a packet are handled
  (the rest of a packet with more is dropped), and only the commands go
  through Twisted's parser, which reads a byte at a time in Python: data
  goes straight to the line buffer.

Received bytes go on to a :class:`~chatservice.server.lines.LineBuffer`;
bytes without ``IAC`` skip the parser (the common case, and every JSON
client).  What the server answers goes through the connection's writer,
in order with the rest of its output.
"""

from __future__ import annotations

import re
from typing import Callable, Final

from twisted.conch import telnet
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from chatservice.server.lines import LineBuffer

IAC: Final = telnet.IAC
TIMING_MARK: Final = b"\x06"
"""The TIMING-MARK option (RFC 860)."""

_COMMANDS: Final = frozenset(range(0xEF, 0x100)) - {0xF0}
"""The bytes that may follow ``IAC`` outside a sub-negotiation (after another, ``IAC`` and it are dropped:
:class:`~twisted.conch.telnet.Telnet` would raise)."""


MAX_SUBNEGOTIATION = 512
"""Bytes of one sub-negotiation at most (Twisted's default is 4096): a terminal type or a window
size takes a few; what runs longer is dropped (:meth:`TelnetInput._subnegotiationLengthExceeded`)."""
MAX_COMMANDS_PER_PACKET = 64
"""Telnet commands of one packet handled at most; the rest of a packet with more is dropped.
A client negotiates a few options at a time; text in UTF-8 never holds the byte ``IAC``."""
_TOKEN = re.compile(
    rb"[^\xff]+"  # data
    rb"|\xff\xfa(?:[^\xff]|\xff[^\xf0]){0,%d}\xff\xf0" % MAX_SUBNEGOTIATION  # a sub-negotiation
    + rb"|\xff[\xfb-\xfe][\x00-\xff]"  # an option negotiation
    rb"|\xff[^\xfa-\xfe]",  # any other command (IAC IAC: a data byte 255)
    re.DOTALL,
)
"""A packet's pieces: a run of data, or one whole telnet command."""


class TelnetInput(telnet.Telnet):
    """The telnet layer of one text connection.

    :param lines: where the data bytes go.
    :param write: writes answers after what the connection wrote before.
    :param interrupted: called when the client cancelled its line (Ctrl-C).
    :param offer_echo: whether ``WILL ECHO`` may be offered (not to a client
        that left an earlier offer unanswered: ``nc``).
    """

    def __init__(
        self,
        lines: LineBuffer,
        write: Callable[[bytes], None],
        interrupted: Callable[[], None],
        offer_echo: bool = True,
    ) -> None:
        super().__init__()
        self._lines = lines
        self._write_out = write
        self._interrupted = interrupted
        self._hidden = False
        """Whether the connection wants the client not to echo (a password prompt)."""
        self._refused = not offer_echo
        """The client refused ``WILL ECHO`` (or never answered it): not offered again."""
        self._cut = False
        """A sub-negotiation was dropped at the cap: the rest of its packet goes too."""
        for command in (telnet.IP, telnet.BRK, telnet.EL):
            self.commandMap[command] = self._cancel_line
        self.commandMap[telnet.AYT] = self._are_you_there

    # Input -----------------------------------------------------------------------

    _MAX_SUBNEGOTIATION_LENGTH = MAX_SUBNEGOTIATION

    def dataReceived(self, data: bytes) -> None:
        """Take bytes as received: data to the line buffer, commands answered.

        Twisted's parser goes through a packet a byte at a time in Python
        (about 25 ms for 64 KiB): it is given the commands only, one at a
        time, and at most :data:`MAX_COMMANDS_PER_PACKET` of a packet (the
        rest of a packet with more is dropped), so that no client can hold
        the server for others with bytes that are not lines (``IAC NOP``
        without end, random bytes without a newline); the data between the
        commands goes to the line buffer as it is.
        """
        if self.state == "data" and IAC not in data:
            self._lines.feed(data)
            return
        if self.state == "escaped" and data and data[0] not in _COMMANDS:
            self.state, data = "data", data[1:]
        position = self._finish_command(data)
        commands = 0
        while position < len(data):
            token = _TOKEN.match(data, position)
            if token is None:
                # A command cut off by the end of the packet (or a sub-negotiation
                # past the cap): the parser keeps its state for the next packet.
                self._parse(data[position:])
                return
            position = token.end()
            if data[token.start()] != IAC[0]:
                self._lines.feed(token.group())
                continue
            commands += 1
            if commands > MAX_COMMANDS_PER_PACKET:
                return  # no client's packet: the rest of it is dropped
            command = token.group()
            if len(command) == 2 and command[1] not in _COMMANDS:
                continue  # IAC and no telnet command: dropped (the parser would raise)
            self._parse(command)

    def _finish_command(self, data: bytes) -> int:
        """Hand the parser, a byte at a time, the end of a command an earlier packet began;
        where the rest of ``data`` starts (a sub-negotiation is at most
        :data:`MAX_SUBNEGOTIATION` bytes, so this is bounded)."""
        position = 0
        self._cut = False
        while self.state != "data" and position < len(data):
            self._parse(data[position : position + 1])
            position += 1
        return len(data) if self._cut else position

    def _parse(self, data: bytes) -> None:
        """Twisted's parser on ``data``."""
        try:
            super().dataReceived(data)
        except ValueError:
            # No telnet command after IAC, inside a sub-negotiation: dropped.
            self.state = "data"

    def _subnegotiationLengthExceeded(self) -> None:
        """A sub-negotiation past :data:`MAX_SUBNEGOTIATION` bytes without ``IAC SE``: dropped.

        Sub-negotiations are ignored anyway; this one ends here, with the rest
        of its packet (Twisted's parser stops reading it), and the connection
        goes on in data.  Twisted's own answer closes the connection through
        ``self.transport``, which this layer has not (it is a parser on a
        connection's input): its assertion escaped as an unhandled error.
        """
        self.state = "data"
        self.__dict__.pop("commands", None)
        self._cut = True

    def applicationDataReceived(self, data: bytes) -> None:
        self._lines.feed(data)

    def _write(self, data: bytes) -> None:
        self._write_out(data)

    def _cancel_line(self, argument: object) -> None:
        self._lines.drop_partial()
        self._interrupted()

    def _are_you_there(self, argument: object) -> None:
        self._write(b"\r\n[yes]\r\n")

    def telnet_DO(self, option: bytes) -> None:
        if option == TIMING_MARK:
            # Answered each time, the option never "on": the mark is the answer.
            self._will(option)
            return
        super().telnet_DO(option)

    # Options ------------------------------------------------------------------------

    def negotiate(self, data: list[bytes]) -> None:
        """A whole sub-negotiation: ignored (Twisted's would fail on an empty one, ``IAC SB IAC SE``)."""

    def _do_while_switching_off(self, state: telnet._OptionState, option: bytes) -> None:
        """``DO`` for an option this side is switching off (``WONT`` sent, no answer yet): ignored.

        The ``DONT`` asked for may still come.  Twisted's state machine holds
        this case for impossible and asserts (an unhandled error that cost the
        connection), but a client can send anything.
        """

    doMap = {**telnet.Telnet.doMap, ("yes", True): _do_while_switching_off}

    def enableLocal(self, option: bytes) -> bool:
        return option == telnet.ECHO

    def disableLocal(self, option: bytes) -> None:
        """``ECHO`` was switched off (the only option that can be on)."""

    # Echo -------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Whether nothing is under way: between commands, every option off, echo not hidden.

        An offer the client never answered (``nc``) does not count: it never will.
        """
        return (
            self.state == "data"
            and not self._hidden
            and all(
                option.us.state == "no" and option.him.state == "no"
                for option in self.options.values()
            )
        )

    @property
    def ignores_echo(self) -> bool:
        """Whether ``WILL ECHO`` was refused or is still unanswered (``nc`` never answers)."""
        return self._refused or self.getOptionState(telnet.ECHO).us.negotiating

    @property
    def echoing(self) -> bool:
        """Whether the client agreed that the server echoes (so the client does not)."""
        return self.getOptionState(telnet.ECHO).us.state == "yes"

    def hide_input(self) -> None:
        """Ask the client not to echo what is typed (``WILL ECHO``)."""
        self._hidden = True
        self._settle()

    def show_input(self) -> None:
        """Let the client echo again (``WONT ECHO``)."""
        self._hidden = False
        self._settle()

    def line_ended(self) -> None:
        """A line was typed unechoed: end it on the screen (the client did not show the newline)."""
        if self.echoing:
            self._write(b"\r\n")

    def _settle(self, result: object = None) -> None:
        """Negotiate towards what the connection wants, one exchange at a time."""
        option = self.getOptionState(telnet.ECHO).us
        if option.negotiating or (option.state == "yes") == self._hidden:
            return
        if self._hidden and self._refused:
            return
        d: Deferred[bool] = self.will(telnet.ECHO) if self._hidden else self.wont(telnet.ECHO)
        d.addBoth(self._settled)

    def _settled(self, result: bool | Failure) -> None:
        if isinstance(result, Failure):
            if not result.check(telnet.OptionRefused):
                return  # the connection is gone
            self._refused = True
        self._settle()
