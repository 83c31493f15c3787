"""Removing telnet protocol bytes from a received line.

A ``telnet`` client may send option negotiation (``IAC DO ...``), sub-options
(``IAC SB ... IAC SE``) and commands such as interrupt (``IAC IP``, sent on
Ctrl-C) inside the data stream.  The server negotiates nothing, so it removes
these sequences (and NUL bytes, sent after a bare CR) before decoding.
"""

from __future__ import annotations

import re

IAC = b"\xff"

# IAC SB ... IAC SE (or to the end of the line); IAC WILL/WONT/DO/DONT <option>;
# IAC <any other command byte>; a lone IAC at the end of the line.
_TELNET_SEQUENCE = re.compile(
    rb"\xff(?:\xfa.*?(?:\xff\xf0|\Z)|[\xfb-\xfe].?|.?)", re.DOTALL
)


def strip_telnet(line: bytes) -> bytes:
    """Return ``line`` without telnet command sequences and NUL bytes."""
    if IAC in line:
        line = _TELNET_SEQUENCE.sub(b"", line)
    return line.replace(b"\x00", b"")
