"""The human wire format: telnet-compatible text lines.

Requests are ``command arg ... text`` lines; replies and notices are
CRLF-terminated lines of plain text.  Prompts end without a newline, as a
telnet server's do.  Pure parsing and rendering: no I/O.

What others typed (messages, names, file names) cannot split or reorder the
line that shows it: :func:`encode` shows line and paragraph separators and
the bidirectional embeddings, overrides and isolates as ``<U+XXXX>``
(:func:`neutralise`).  Control characters never reach this far (the
commands remove them).
"""

from __future__ import annotations

import math
import re
import textwrap
from functools import singledispatch
from typing import Any

from chatservice import events
from chatservice.commands import (
    DURATION,
    Argument,
    RECIPIENTS,
    TEXT as REST_OF_LINE,
    TIMESTAMP,
    WORDS,
    CommandError,
    Request,
    convert,
    lookup,
)
from chatservice.timefmt import format_timestamp, parse_duration
from chatservice.wire.format import WireFormat

NAME = "text"
EOL = "\r\n"
_ERASE = "\b\x7f"
_LINE_OR_ORDER = re.compile("[\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR, and the bidirectional
embeddings and overrides (U+202A-U+202E) and isolates (U+2066-U+2069)."""


def decode_line(raw: bytes) -> str:
    """Turn one received line into text: NUL bytes (sent after a bare CR), CR and erased characters removed.

    Telnet commands never reach this far: the connection's telnet layer
    (:mod:`chatservice.server.telnet`) takes them out of the stream.

    :raises CommandError: ``invalid_utf8`` when the bytes are not UTF-8.
    """
    raw = raw.replace(b"\x00", b"")
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


def parse_request(line: str, defer_operator_problems: bool = False) -> Request | None:
    """Parse a command line such as ``message hans Hey Dude``; ``None`` for a blank line.

    :param defer_operator_problems: for an operator command, put bad
        arguments in :attr:`Request.problem` instead of raising (the server:
        see :mod:`chatservice.commands`).
    :raises CommandError: for an unknown command or missing/bad arguments.
    """
    words = line.split(None, 2)
    if not words:
        return None
    command, used_subcommand = lookup(words[0], words[1] if len(words) > 1 else None)
    consumed = 2 if used_subcommand else 1
    parts = line.split(None, consumed)
    rest_text = parts[consumed] if len(parts) > consumed else ""
    arguments = {}
    try:
        for argument in command.arguments:
            value, rest_text = _take(argument, rest_text)
            arguments[argument.name] = convert(command, argument, value)
        if rest_text.strip():
            raise CommandError("bad_argument", f"Error. Usage: {command.usage}")
    except CommandError as problem:
        if not (command.operator and defer_operator_problems):
            raise
        return Request(command.name, problem=problem)
    return Request(command.name, arguments)


def _take(argument: Argument, rest: str) -> tuple[str | list[str], str]:
    """Split one ``argument`` off the front of ``rest``."""
    kind = argument.kind
    rest = rest.lstrip()
    if kind == DURATION and not argument.required:
        # Optional: only a word that is a duration (else it starts the reason).
        parts = rest.split(None, 1)
        if not parts or not _is_duration(parts[0]):
            return "", rest
    if kind in (REST_OF_LINE, TIMESTAMP):
        return rest.strip(), ""
    if kind == WORDS:
        return rest.split(), ""
    if kind == RECIPIENTS and rest.startswith("("):
        end = rest.find(")")
        if end < 0:
            return [], rest
        return rest[1:end].split(), rest[end + 1 :]
    parts = rest.split(None, 1)
    return (parts[0] if parts else ""), (parts[1] if len(parts) > 1 else "")


def _is_duration(word: str) -> bool:
    """Whether ``word`` is a length of time with its unit (``10m``)."""
    try:
        parse_duration(word, unit_required=True)
    except ValueError:
        return False
    return True


class TextFormat(WireFormat):
    """The human format: :func:`encode` and :func:`parse_request` behind :class:`WireFormat`."""

    name = NAME

    def encode(self, event: events.Event, request_id: Any = None) -> bytes | None:
        return encode(event)

    def parse_command(self, raw: bytes, username: str) -> Request | None:
        return parse_request(decode_line(raw), defer_operator_problems=True)


TEXT = TextFormat()
"""The human format."""


def encode(event: events.Event, request_id: Any = None) -> bytes | None:
    """Render ``event`` as UTF-8 bytes, or ``None`` when text clients are not told it.

    ``request_id`` is accepted for symmetry with the JSON format and unused.
    """
    text = render(event)
    return None if text is None else neutralise(text).encode("utf-8")


def neutralise(text: str) -> str:
    """``text`` with each character that could split or reorder its line shown as ``<U+XXXX>``.

    Those are U+2028 and U+2029 (line and paragraph separators, which some
    terminals break lines at) and the bidirectional embeddings, overrides
    and isolates (U+202A-U+202E, U+2066-U+2069), with which a message could
    make its sender's name read as another's.
    """
    if _LINE_OR_ORDER.search(text) is None:
        return text
    return _LINE_OR_ORDER.sub(lambda found: f"<U+{ord(found.group()):04X}>", text)


@singledispatch
def render(event: events.Event) -> str | None:
    """Render ``event`` as text (lines end with CRLF; prompts have no newline)."""
    raise NotImplementedError(f"no text rendering for {type(event).__name__}")


def _lines(*lines: str) -> str:
    return EOL.join(lines) + EOL if lines else ""


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
    return _PROMPTS[event.field_name]


_PROMPTS = {
    events.Prompt.USERNAME: "Username: ",
    events.Prompt.PASSWORD: "Password: ",
    events.Prompt.CREATE: "Create a new account with that name? (yes/no) ",
    events.Prompt.NEW_PASSWORD: "New password: ",
    events.Prompt.REPEAT_PASSWORD: "Repeat the password: ",
    events.Prompt.OLD_PASSWORD: "Old password: ",
}


@render.register
def _(event: events.ScramChallenge) -> None:
    return None  # a JSON login mechanism: never sent in text


@render.register
def _(event: events.LoginSucceeded) -> str:
    guest = " (guest)" if event.guest else ""
    return _lines(
        f"Welcome to chatservice, {event.username}{guest}!"
        " Type help for the list of commands."
    )


@render.register
def _(event: events.UsernameStatus) -> str:
    taken = "is taken" if event.taken else "is free"
    return _lines(f"The user name {event.username} {taken}.")


@render.register
def _(event: events.RegisterStatus) -> str:
    if event.success:
        return _lines(f"Account {event.username} created.")
    return _lines(event.message)


@render.register
def _(event: events.PasswordChanged) -> str:
    return _lines("Your password has been changed.")


@render.register
def _(event: events.LoginRejected) -> str:
    message = event.message
    if event.retry_after is not None and message.endswith(" later"):
        # A lock-out's "Please try again later": say when (JSON has retry_after).
        message = f"{message[: -len('later')]}in {time_left(event.retry_after)}."
    return _lines(message)


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}" + ("" if number == 1 else "s")


def time_left(seconds: float) -> str:
    """``seconds`` to wait, rounded up, for a person: ``40 seconds``, ``3 minutes``, ``1 hour 5 minutes``."""
    whole = max(1, math.ceil(seconds))
    if whole < 60:
        return _count(whole, "second")
    minutes = math.ceil(whole / 60)
    if minutes < 60:
        return _count(minutes, "minute")
    hours, minutes = divmod(minutes, 60)
    return _count(hours, "hour") + (f" {_count(minutes, 'minute')}" if minutes else "")


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
        guests = set(event.guests)
        return _lines(*(f"{u} (guest)" if u in guests else u for u in event.users))
    if not event.online:
        return _lines("Every other user is online.")
    if event.since is None:
        return _lines("No other users are online.")
    return _lines(f"No other users were online in the last {event.since:.0f} seconds.")


def _auto_replies(replies: tuple[tuple[str, str], ...]) -> list[str]:
    return [f"Auto-reply from {user}: {text}" for user, text in replies]


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names)


@render.register
def _(event: events.MessageSent) -> str:
    lines = []
    if event.busy:
        lines.append(
            f"{event.recipient} is busy; your message will be delivered"
            " when they are available."
        )
    elif event.stored:
        lines.append(
            f"{event.recipient} is offline; your message will be delivered"
            " when they log in."
        )
    else:
        lines.append(f"Message delivered to {event.recipient}.")
    if event.auto_reply is not None:
        lines += _auto_replies(((event.recipient, event.auto_reply),))
    return _lines(*lines)


@render.register
def _(event: events.BroadcastSent) -> str:
    lines = [
        f"Broadcast message, #{event.seq} broadcast at {format_timestamp(event.sent_at)}"
    ]
    if event.skipped:
        lines.append(
            "Your broadcast could not be delivered to some recipients"
            " as they have blocked you."
        )
    lines += _unreached(event.unreached)
    return _lines(*lines, *_auto_replies(event.auto_replies))


def _unreached(count: int) -> list[str]:
    if not count:
        return []
    return [
        f"{count} recipient(s) on other servers of this chat service could not be"
        " reached (their link is down); they can find it with read."
    ]


@render.register
def _(event: events.SendReport) -> str:
    lines = []
    if event.delivered:
        lines.append(f"Sent to {_names(event.delivered)}.")
    if event.stored:
        lines.append(
            f"Kept for {_names(event.stored)} (offline or busy) until they are back."
        )
    if event.failed:
        reasons = ", ".join(f"{user} ({reason})" for user, reason in event.failed)
        lines.append(f"Could not send to {reasons}.")
    return _lines(*lines, *_auto_replies(event.auto_replies))


@render.register
def _(event: events.StatusChanged) -> str:
    if event.status == "busy":
        return _lines(f"You are busy. Auto-reply: {event.auto_reply}")
    if event.status == "available":
        return _lines(
            f"You are available again. {event.kept} direct message(s) were kept"
            f" for you (shown above); you missed {event.missed} broadcast or room"
            " message(s) (see read)."
        )
    if event.status == "hidden":
        return _lines("You are hidden: other users do not see you online.")
    return _lines("You are visible again.")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s"


@render.register
def _(event: events.StatusReport) -> str:
    busy = f"busy (auto-reply: {event.auto_reply})" if event.busy else "available"
    visible = "hidden" if event.hidden else "visible"
    return _lines(
        f"You are {busy} and {visible}; logged in since"
        f" {format_timestamp(event.logged_in_at)}"
        f" ({_duration(event.now - event.logged_in_at)})."
    )


@render.register
def _(event: events.ActiveList) -> str:
    if not event.users:
        return _lines("No other users are active.")
    return _lines(
        *(
            f"{user}, {host}, {port if port else '-'}, active since {format_timestamp(since)}"
            for user, host, port, since in event.users
        )
    )


def _channel_name(channel: str) -> str:
    return "broadcast" if channel == "broadcast" else channel.replace(":", " ")


@render.register
def _(event: events.HistoryList) -> str:
    lines = [
        f"#{seq} {_channel_name(channel)}, {sender}: {text}, posted at"
        f" {format_timestamp(sent_at)}"
        for channel, seq, sender, text, sent_at in event.entries
    ]
    if event.next is not None:
        lines.append(f"More messages: type read next {event.next}")
    return _lines(*lines) if lines else _lines("No new messages.")


@render.register
def _(event: events.MissedSince) -> str:
    since = f"Since your last logout ({format_timestamp(event.since)}):"
    if not event.count:
        return _lines(f"{since} no broadcast or room messages.")
    count = f"{event.count} or more" if event.more else f"{event.count}"
    return _lines(f"{since} {count} broadcast or room message(s); type read to see them.")


@render.register
def _(event: events.RoomMessage) -> str:
    return _lines(f"[room {event.room_id}] {event.sender}: {event.text}")


@render.register
def _(event: events.RoomCreated) -> str:
    if event.existed:
        return _lines(
            f"Room {event.room_id} already exists with {_names(event.members)};"
            " use it."
        )
    return _lines(f"Room {event.room_id} created with {_names(event.members)}.")


@render.register
def _(event: events.RoomJoined) -> str:
    return _lines(
        f"{event.creator} added you to room {event.room_id}"
        f" with {_names(event.members)}."
    )


@render.register
def _(event: events.RoomPosted) -> str:
    lines = [
        f"Room {event.room_id} message, #{event.seq} sent at"
        f" {format_timestamp(event.sent_at)}"
    ]
    if event.skipped:
        lines.append(
            "Your message could not be delivered to some members"
            " as they have blocked you."
        )
    return _lines(*lines, *_unreached(event.unreached))


@render.register
def _(event: events.RoomList) -> str:
    if not event.rooms:
        return _lines("You are in no rooms.")
    return _lines(*(f"Room {room}: {_names(members)}" for room, members in event.rooms))


@render.register
def _(event: events.RoomLeft) -> str:
    removed = " The room was removed as it is empty." if event.removed else ""
    return _lines(f"{event.username} left room {event.room_id}.{removed}")


@render.register
def _(event: events.BlockChanged) -> str:
    if event.blocked:
        return _lines(f"{event.username} is now blocked.")
    return _lines(f"{event.username} is unblocked.")


@render.register
def _(event: events.BlockList) -> str:
    if not event.users:
        return _lines("You have blocked nobody.")
    return _lines(f"You have blocked {_names(event.users)}.")


WIDTH = 80
"""The columns the server's own lines fit in (``help``)."""
_KEEP = "\x00"
"""Stands for a space that wrapping must not break at (no text shown contains NUL)."""
_USAGE_WIDTH = 24
"""The usage column of ``help``: a longer usage has its summary on the next line."""


def _wrapped(text: str, indent: int, first: str = "") -> list[str]:
    """``text`` after ``first`` (padded to ``indent``), wrapped to :data:`WIDTH`."""
    lead = first.ljust(indent) if len(first) <= indent else None
    lines = [] if lead is not None else [first.rstrip()]
    lines += textwrap.wrap(
        text,
        WIDTH,
        initial_indent=lead if lead is not None else " " * indent,
        subsequent_indent=" " * indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [lead or ""]
    return lines


@render.register
def _(event: events.HelpText) -> str:
    named: dict[str, list[str]] = {}
    for alias, command in event.aliases:
        named.setdefault(command, []).append(alias)
    if event.topic is not None:
        lines: list[str] = []
        for usage, summary in event.commands:
            lines.append(usage)
            lines += _wrapped(summary, 4)
            others = next((names for name, names in named.items() if usage.startswith(name)), [])
            if others:
                lines += _wrapped("Also: " + ", ".join(others) + ".", 4)
        return _lines(*lines)
    lines = ["Commands:"]
    width = min(max(len(usage) for usage, _summary in event.commands), _USAGE_WIDTH)
    for usage, summary in event.commands:
        lines += _wrapped(summary, width + 4, "  " + usage + "  ")
    if event.aliases:
        # Each "alias = command" kept on one line: its spaces are not break points.
        others = "; ".join(
            f"{alias} = {command}".replace(" ", _KEEP) for alias, command in event.aliases
        )
        lines += (
            line.replace(_KEEP, " ")
            for line in textwrap.wrap(
                f"Other names: {others}.", WIDTH, subsequent_indent="  ", break_long_words=False
            )
        )
        lines.append("Type help COMMAND for one command and its other names.")
    return _lines(*lines)


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
def _(event: events.TypingNotice) -> str:
    return _lines(f"{event.username} is typing..." if event.typing else f"{event.username} stopped typing")


@render.register
def _(event: events.Done) -> None:
    return None


@render.register
def _(event: events.Disconnected) -> str:
    return _lines(event.message)


# Operators ----------------------------------------------------------------------------


@render.register
def _(event: events.ServerNotice) -> str:
    return _lines(f"*** Server notice from {event.sender}: {event.text}")


def _until(until: float | None) -> str:
    return "for good" if until is None else f"until {format_timestamp(until)}"


def _because(reason: str) -> str:
    return f" (reason: {reason})" if reason else ""


def _sessions(count: int) -> str:
    return f"{count} session{'' if count == 1 else 's'} ended"


@render.register
def _(event: events.OperatorDone) -> str:
    action, target, because = event.action, event.target, _because(event.reason)
    if action == "kick":
        return _lines(f"Kicked {target}{because}.")
    if action == "ban":
        return _lines(
            f"Ban #{event.ban_id}: {event.kind} {target} is banned {_until(event.until)}"
            f"{because}; {_sessions(event.count)}."
        )
    if action == "unban":
        return _lines(f"Removed {_count(event.count, 'ban')} of {target}.")
    if action == "mute":
        return _lines(f"{target} is muted {_until(event.until)}{because}.")
    if action == "unmute":
        return _lines(f"{target} is no longer muted.")
    if action == "announce":
        return _lines(f"Server notice sent to {_count(event.count, 'user')} online.")
    return _lines(f"{action} {target}: done.")


@render.register
def _(event: events.BanReport) -> str:
    if not event.bans:
        return _lines("No bans are in force.")
    return _lines(
        *(
            f"#{ban_id} {kind} {target}, by {set_by} at {format_timestamp(set_at)},"
            f" {_until(expires_at)}{_because(reason)}"
            for ban_id, kind, target, set_by, set_at, expires_at, reason in event.bans
        )
    )


@render.register
def _(event: events.WhoisReport) -> str:
    client = event.client or "unknown client"
    if event.tls is not None:
        client += ", TLS" if event.tls else ", not encrypted"
    idle = "idle time unknown" if event.idle is None else f"idle {_duration(event.idle)}"
    state = ", ".join(
        word
        for word, on in (
            ("busy", event.busy), ("hidden", event.hidden), ("guest", event.guest),
            ("operator", event.operator),
        )
        if on
    ) or "available, visible"
    lines = [
        f"{event.username} from {event.host} ({client})",
        f"  logged in at {format_timestamp(event.logged_in_at)}, {idle}; {state}",
    ]
    if event.node is not None:
        lines.append(f"  on node {event.node}")
    return _lines(*lines)


@render.register
def _(event: events.RehashReport) -> str:
    return _lines("Configuration reloaded:", *(f"  {line}" for line in event.lines))
