"""Server JSON messages as the lines a person reads, in the server's own words.

A message is read back into the server's event
(:func:`chatservice.wire.json_events.decode_event`) and worded by the server's
text format (:func:`chatservice.wire.text.render`), so the client and
``telnet`` read alike.  What the client does differently:

* the greeting (``hello``) is not shown: the client logs in by itself;
* an error without a message shows its code;
* a message it cannot read (a type the server gained later, or one missing a
  field it needs) is shown by its ``message`` field, or else as compact JSON.

Pure functions: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from chatservice import events
from chatservice.wire import text
from chatservice.wire.json_events import decode_event


def render(message: dict[str, Any]) -> list[str]:
    """The lines that show the server's ``message`` (possibly none)."""
    event = decode_event(message)
    return unreadable(message) if event is None else lines(event)


def lines(event: events.Event) -> list[str]:
    """The lines that show ``event`` (possibly none)."""
    if isinstance(event, events.Greeting):
        return []
    if isinstance(event, events.ErrorReply):
        return [error_line(event.code, event.message)]
    shown = text.render(event)
    if shown is None or not shown.strip():
        return []
    return shown.removesuffix(text.EOL).split(text.EOL)


def error_line(code: str, message: str) -> str:
    """An error reply's message, or its ``code`` when it has none."""
    return message or f"Error. {code or 'unknown error'}"


def unreadable(message: dict[str, Any]) -> list[str]:
    """A message the client cannot read: its ``message`` field, or compact JSON."""
    if isinstance(message.get("message"), str):
        return [message["message"]]
    rest = {k: v for k, v in message.items() if k not in ("type", "id")}
    return [f"[{message.get('type')}] {json.dumps(rest, ensure_ascii=False, sort_keys=True)}"]
