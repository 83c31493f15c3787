"""Splitting a byte stream into lines: :class:`LineBuffer`.

A stream transport (TCP, TLS) delivers bytes in arbitrary pieces; the
connection wants whole lines, one at a time, so that it can stop between two
of them (flood control, fair turns, a password check) and leave the rest
waiting.  A message transport (a WebSocket) has its lines already and
offers the same two calls.
"""

from __future__ import annotations

from typing import Final, Protocol

TOO_LONG: Final = b"\n"
"""What :meth:`LineBuffer.pop` returns for a line over the limit (a line never contains LF)."""


class LineSource(Protocol):
    """Where a connection takes its next line from."""

    def pop(self) -> bytes | None:
        """The next whole line without its LF, :data:`TOO_LONG`, or ``None`` for none yet."""

    def has_line(self) -> bool:
        """Whether a whole line is waiting."""

    def first_byte(self) -> bytes:
        """The first byte waiting that is not white space, or ``b""`` (none yet)."""


class LineBuffer:
    """LF-terminated lines of at most ``max_length`` bytes, from bytes fed in any pieces.

    A line over the limit is given once as :data:`TOO_LONG`; its bytes up
    to the next LF are discarded, whenever they arrive, and the lines after
    it are given as usual.

    :param max_length: longest line, in bytes, without its LF.
    """

    __slots__ = ("max_length", "_data", "_start", "_discarding")

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._data = b""
        self._start = 0
        self._discarding = False

    def feed(self, data: bytes) -> None:
        """Add bytes received."""
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return
            self._discarding = False
            data = data[end + 1 :]
        if self._start:
            self._data = self._data[self._start :] + data
            self._start = 0
        else:
            self._data += data

    def drop_partial(self) -> None:
        """Forget the line being received (not the whole lines waiting): the client cancelled it."""
        end = self._data.rfind(b"\n", self._start)
        if end < 0:
            self._data, self._start = b"", 0
        else:
            self._data = self._data[: end + 1]
        self._discarding = False

    def clear(self) -> None:
        """Forget everything received and not yet taken."""
        self._data, self._start, self._discarding = b"", 0, False

    def pop(self) -> bytes | None:
        data, start = self._data, self._start
        end = data.find(b"\n", start)
        if end < 0:
            if len(data) - start > self.max_length:
                self._data, self._start, self._discarding = b"", 0, True
                return TOO_LONG
            return None
        if end + 1 == len(data):
            self._data, self._start = b"", 0
        else:
            self._start = end + 1
        if end - start > self.max_length:
            return TOO_LONG
        return data[start:end]

    def has_line(self) -> bool:
        return self._data.find(b"\n", self._start) >= 0

    def first_byte(self) -> bytes:
        waiting = self._data[self._start :].lstrip()
        return waiting[:1]
