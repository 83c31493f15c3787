"""The two wire formats, behind one interface: :data:`TEXT` and :data:`JSON`.

A connection picks its :class:`WireFormat` once, from its first line, and
from then on renders every event and parses every command through it.  The
formats themselves live in :mod:`~chatservice.wire.text` (telnet-compatible
lines for people) and :mod:`~chatservice.wire.jsonlines` (one JSON object a
line, for programs); this module names what both offer.  Pure parsing and
rendering: no I/O.
"""

from __future__ import annotations

from chatservice.wire.format import WireFormat
from chatservice.wire.jsonlines import JSON
from chatservice.wire.text import TEXT
from chatservice.wire.websocket import WEBSOCKET

__all__ = ["JSON", "TEXT", "WEBSOCKET", "WireFormat"]
