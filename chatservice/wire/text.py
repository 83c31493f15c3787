"""The human wire format: telnet-compatible text lines.

Requests are ``command arg ... text`` lines; replies and notices are
CRLF-terminated lines of plain text.  Prompts end without a newline, as a
telnet server's do.  Pure parsing and rendering: no I/O.
"""

from __future__ import annotations

from functools import singledispatch
from typing import Any

from chatservice import events
from chatservice.commands import (
    TEXT,
    CommandError,
    Request,
    convert,
    lookup,
)
from chatservice.timefmt import format_timestamp
from chatservice.wire.telnet import strip_telnet

NAME = "text"
EOL = "\r\n"
_ERASE = "\b\x7f"


def decode_line(raw: bytes) -> str:
    """Turn one received line into text: telnet bytes, CR and erased characters removed.

    :raises CommandError: ``invalid_utf8`` when the bytes are not UTF-8.
    """
    raw = strip_telnet(raw)
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(
            "invalid_utf8", "Error. That line was not valid UTF-8 and was ignored."
        ) from None
    if "\b" in line or "\x7f" in line:
        kept: list[str] = []
        for character in line:
            if character in _ERASE:
                if kept:
                    kept.pop()
            else:
                kept.append(character)
        line = "".join(kept)
    return line.strip("\r")


def parse_request(line: str) -> Request | None:
    """Parse a command line such as ``message hans Hey Dude``; ``None`` for a blank line.

    :raises CommandError: for an unknown command or missing/bad arguments.
    """
    words = line.split(None, 1)
    if not words:
        return None
    command = lookup(words[0])
    rest = words[1] if len(words) > 1 else ""
    arguments = {}
    for argument in command.arguments:
        if argument.kind == TEXT:
            value, rest = rest.strip(), ""
        else:
            parts = rest.split(None, 1)
            value = parts[0] if parts else ""
            rest = parts[1] if len(parts) > 1 else ""
        arguments[argument.name] = convert(command, argument, value)
    if rest.strip():
        raise CommandError("bad_argument", f"Error. Usage: {command.usage}")
    return Request(command.name, arguments)


def encode(event: events.Event, request_id: Any = None) -> bytes | None:
    """Render ``event`` as UTF-8 bytes, or ``None`` when text clients are not told it.

    ``request_id`` is accepted for symmetry with the JSON format and unused.
    """
    text = render(event)
    return None if text is None else text.encode("utf-8")


@singledispatch
def render(event: events.Event) -> str | None:
    """Render ``event`` as text (lines end with CRLF; prompts have no newline)."""
    raise NotImplementedError(f"no text rendering for {type(event).__name__}")


def _lines(*lines: str) -> str:
    return "".join(line + EOL for line in lines)


@render.register
def _(event: events.ErrorReply) -> str | None:
    return _lines(event.message) if event.message else None


@render.register
def _(event: events.Greeting) -> str:
    return _lines(
        f"Welcome to chatservice {event.version}. Please log in"
        " (programs: send a JSON object to use the JSON interface)."
    )


@render.register
def _(event: events.Prompt) -> str:
    return "Username: " if event.field_name == events.Prompt.USERNAME else "Password: "


@render.register
def _(event: events.LoginSucceeded) -> str:
    return _lines(
        f"Welcome to chatservice, {event.username}!"
        " Type help for the list of commands."
    )


@render.register
def _(event: events.LoginRejected) -> str:
    return _lines(event.message)


@render.register
def _(event: events.DirectMessage) -> str:
    if event.offline:
        return _lines(
            f"[offline {format_timestamp(event.sent_at)}] {event.sender}: {event.text}"
        )
    return _lines(f"{event.sender}: {event.text}")


@render.register
def _(event: events.BroadcastMessage) -> str:
    return _lines(f"[broadcast] {event.sender}: {event.text}")


@render.register
def _(event: events.Presence) -> str:
    return _lines(f"{event.username} logged {'in' if event.online else 'out'}")


@render.register
def _(event: events.UserList) -> str:
    if event.users:
        return _lines(*event.users)
    if event.since is None:
        return _lines("No other users are online.")
    return _lines(f"No other users were online in the last {event.since:g} seconds.")


@render.register
def _(event: events.MessageSent) -> str | None:
    if event.stored:
        return _lines(
            f"{event.recipient} is offline; your message will be delivered"
            " when they log in."
        )
    return None


@render.register
def _(event: events.BroadcastSent) -> str | None:
    if event.skipped:
        return _lines(
            "Your broadcast could not be delivered to some recipients"
            " as they have blocked you."
        )
    return None


@render.register
def _(event: events.BlockChanged) -> str:
    if event.blocked:
        return _lines(f"{event.username} is now blocked.")
    return _lines(f"{event.username} is unblocked.")


@render.register
def _(event: events.HelpText) -> str:
    width = max(len(usage) for usage, _summary in event.commands)
    return _lines(
        "Commands:",
        *(f"  {usage.ljust(width)}  {summary}" for usage, summary in event.commands),
    )


@render.register
def _(event: events.PeerAddress) -> str:
    what = "Private chat" if event.purpose == "private" else "File transfer"
    return _lines(
        f"{what} with {event.username}: connect to {event.host}:{event.port}"
        f" with token {event.token}"
    )


@render.register
def _(event: events.PrivateRequest) -> str:
    return _lines(f"{event.sender} will start a private chat with token {event.token}")


@render.register
def _(event: events.FileIncoming) -> str:
    return _lines(
        f"{event.sender} will send you {event.filename} with token {event.token}"
    )


@render.register
def _(event: events.Disconnected) -> str:
    return _lines(event.message)
