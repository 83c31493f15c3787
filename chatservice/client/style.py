"""How a line looks on the screen: its time stamp and its colours.

Every chat message (direct, broadcast, room, private) is shown after the
time the client received it, ``[13:30] hans: hi``, read from the clock the
client is given (:func:`timestamp`).

:class:`Style` colours a line with ANSI SGR codes: each user name in a colour
of its own that stays the same for that name (a hash of it picks one of
:data:`NAME_COLOURS`), errors in red, and what the user typed dimmed.  Colours
are on only when standard output is a terminal, ``NO_COLOR`` is not set (any
value, https://no-color.org) and ``--no-color`` was not given
(:func:`colours_wanted`); without them :class:`Style` returns the text as is.

Pure functions: the text given is already free of control characters.
"""

from __future__ import annotations

import time
import zlib
from typing import Mapping

RESET = "\x1b[0m"
DIM = "\x1b[2m"
RED = "\x1b[31m"
BOLD = "\x1b[1m"
NAME_COLOURS = ("\x1b[32m", "\x1b[33m", "\x1b[34m", "\x1b[35m", "\x1b[36m", "\x1b[92m",
                "\x1b[93m", "\x1b[94m", "\x1b[95m", "\x1b[96m")
"""The colours names are shown in (green, yellow, blue, magenta, cyan, and their bright forms)."""

ERROR_PREFIX = "Error."


def timestamp(seconds: float) -> str:
    """``[13:30]``: the local time of ``seconds`` since the epoch."""
    return time.strftime("[%H:%M]", time.localtime(seconds))


def colours_wanted(environ: Mapping[str, str], no_color_option: bool, terminal: bool) -> bool:
    """Whether to colour: a terminal, no ``NO_COLOR`` in ``environ``, no ``--no-color``."""
    return terminal and not no_color_option and "NO_COLOR" not in environ


def name_colour(name: str) -> str:
    """The SGR code of ``name``'s colour: the same for the same name, every time."""
    return NAME_COLOURS[zlib.crc32(name.encode("utf-8", "replace")) % len(NAME_COLOURS)]


class Style:
    """Colours lines, or leaves them alone.

    :param colour: whether to colour at all.
    """

    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def message(self, stamp: str, sender: str, line: str) -> str:
        """``line`` after its time ``stamp``, the first ``sender`` in it in the sender's colour."""
        if self.colour and sender:
            at = line.find(sender)
            if at >= 0:
                line = (
                    line[:at] + name_colour(sender) + sender + RESET + line[at + len(sender):]
                )
        if not stamp:
            return line
        return f"{DIM}{stamp}{RESET} {line}" if self.colour else f"{stamp} {line}"

    def plain(self, line: str) -> str:
        """A line of the server or the client: red when it is an error."""
        if self.colour and line.startswith(ERROR_PREFIX):
            return f"{RED}{line}{RESET}"
        return line

    def own(self, line: str) -> str:
        """What the user typed, shown back dimmed."""
        return f"{DIM}{line}{RESET}" if self.colour else line

    def highlight(self, line: str) -> str:
        """A question for the user (accept or decline): bold."""
        return f"{BOLD}{line}{RESET}" if self.colour else line
