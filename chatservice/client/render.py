"""Server JSON messages as the lines a person reads.

The wording follows the server's own text format (what a ``telnet`` user
sees, see docs/protocol.rst), so the client and ``telnet`` read alike.
:data:`RENDERERS` maps a message ``type`` to a function returning its lines;
a type the server gains later is one entry here (until then it is shown by
its ``message`` field, or as compact JSON).  Pure functions: no I/O.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Iterable

from chatservice.timefmt import format_timestamp

Message = dict[str, Any]


def _text(message: Message, name: str, default: str = "") -> str:
    value = message.get(name, default)
    return value if isinstance(value, str) else str(value)


def _number(message: Message, name: str) -> float | None:
    value = message.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _time(message: Message, name: str = "timestamp") -> str:
    seconds = _number(message, name)
    return format_timestamp(seconds) if seconds is not None else "?"


def _list(message: Message, name: str) -> list[Any]:
    value = message.get(name)
    return value if isinstance(value, list) else []


def _names(names: Iterable[Any]) -> str:
    return ", ".join(str(name) for name in names)


def _auto_replies(message: Message) -> list[str]:
    return [
        f"Auto-reply from {_text(entry, 'user')}: {_text(entry, 'message')}"
        for entry in _list(message, "auto_replies")
        if isinstance(entry, dict)
    ]


# Login and accounts ------------------------------------------------------------


def _login(message: Message) -> list[str]:
    if message.get("success"):
        guest = " (guest)" if message.get("guest") else ""
        return [
            f"Welcome to chatservice, {_text(message, 'user')}{guest}!"
            " Type help for the list of commands."
        ]
    return [_text(message, "message", "Login failed.")]


def _username_status(message: Message) -> list[str]:
    taken = "is taken" if message.get("taken") else "is free"
    return [f"The user name {_text(message, 'user')} {taken}."]


def _register_status(message: Message) -> list[str]:
    if message.get("status"):
        return [f"Account {_text(message, 'user')} created."]
    return [_text(message, "additional_info", "The account could not be created.")]


# Messages ----------------------------------------------------------------------------


def _message(message: Message) -> list[str]:
    sender, text = _text(message, "from"), _text(message, "message")
    if message.get("offline") and _number(message, "timestamp") is not None:
        return [f"[offline {_time(message)}] {sender}: {text}"]
    return [f"{sender}: {text}"]


def _broadcast(message: Message) -> list[str]:
    return [f"[broadcast] {_text(message, 'from')}: {_text(message, 'message')}"]


def _room_message(message: Message) -> list[str]:
    return [
        f"[room {_text(message, 'room')}] {_text(message, 'from')}: {_text(message, 'message')}"
    ]


def _message_status(message: Message) -> list[str]:
    to = _text(message, "to")
    lines = []
    if message.get("busy"):
        lines.append(f"{to} is busy; your message will be delivered when they are available.")
    elif message.get("stored"):
        lines.append(f"{to} is offline; your message will be delivered when they log in.")
    if isinstance(message.get("auto_reply"), str):
        lines.append(f"Auto-reply from {to}: {message['auto_reply']}")
    return lines


def _broadcast_status(message: Message) -> list[str]:
    lines = []
    if _number(message, "seq") is not None:
        lines.append(
            f"Broadcast message, #{_text(message, 'seq')} broadcast at {_time(message)}"
        )
    if message.get("skipped"):
        lines.append(
            "Your broadcast could not be delivered to some recipients"
            " as they have blocked you."
        )
    return lines + _auto_replies(message)


def _send_status(message: Message) -> list[str]:
    lines = []
    if _list(message, "delivered"):
        lines.append(f"Sent to {_names(_list(message, 'delivered'))}.")
    if _list(message, "stored"):
        lines.append(
            f"Kept for {_names(_list(message, 'stored'))} (offline or busy) until they are back."
        )
    failed = [entry for entry in _list(message, "failed") if isinstance(entry, dict)]
    if failed:
        reasons = ", ".join(f"{_text(e, 'user')} ({_text(e, 'reason')})" for e in failed)
        lines.append(f"Could not send to {reasons}.")
    return lines + _auto_replies(message)


def _history(message: Message) -> list[str]:
    entries = [entry for entry in _list(message, "messages") if isinstance(entry, dict)]
    if not entries:
        return ["no new message"]
    lines = []
    for entry in entries:
        channel = _text(entry, "channel")
        channel = "broadcast" if channel == "broadcast" else channel.replace(":", " ")
        lines.append(
            f"#{_text(entry, 'seq')} {channel}, {_text(entry, 'from')}:"
            f" {_text(entry, 'message')}, posted at {_time(entry)}"
        )
    return lines


# Users --------------------------------------------------------------------------------


def _presence(message: Message) -> list[str]:
    return [f"{_text(message, 'user')} logged {'in' if message.get('status') else 'out'}"]


def _userlist(message: Message) -> list[str]:
    users = _list(message, "users")
    if users:
        guests = set(_list(message, "guests"))
        return [f"{user} (guest)" if user in guests else str(user) for user in users]
    if message.get("onlinetype") is False:
        return ["Every other user is online."]
    since = _number(message, "since")
    if since is not None:
        return [f"No other users were online in the last {since:.0f} seconds."]
    return ["No other users are online."]


def _active(message: Message) -> list[str]:
    users = [entry for entry in _list(message, "users") if isinstance(entry, dict)]
    if not users:
        return ["no other active user"]
    return [
        f"{_text(e, 'user')}, {_text(e, 'host')}, {e.get('p2p_port') or '-'},"
        f" active since {_time(e, 'since')}"
        for e in users
    ]


def _block_status(message: Message) -> list[str]:
    user = _text(message, "user")
    return [f"{user} is now blocked." if message.get("blocked") else f"{user} is unblocked."]


def _typing(message: Message) -> list[str]:
    user = _text(message, "user")
    return [f"{user} is typing..." if message.get("status") else f"{user} stopped typing"]


# Status -------------------------------------------------------------------------------


def _status_changed(message: Message) -> list[str]:
    status = message.get("status")
    if status == "busy":
        return [f"You are busy. Auto-reply: {_text(message, 'auto_reply')}"]
    if status == "available":
        return [
            f"You are available again. {_text(message, 'kept', '0')} direct message(s)"
            f" were kept for you (shown above); you missed {_text(message, 'missed', '0')}"
            " broadcast or room message(s) (see read)."
        ]
    if status == "hidden":
        return ["You are hidden: other users do not see you online."]
    return ["You are visible again."]


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s"


def _status(message: Message) -> list[str]:
    if message.get("busy"):
        busy = f"busy (auto-reply: {_text(message, 'auto_reply')})"
    else:
        busy = "available"
    visible = "hidden" if message.get("hidden") else "visible"
    return [
        f"You are {busy} and {visible}; logged in since {_time(message, 'logged_in_at')}"
        f" ({_duration(_number(message, 'online_for') or 0)})."
    ]


# Rooms --------------------------------------------------------------------------------


def _room_created(message: Message) -> list[str]:
    room, members = _text(message, "room"), _names(_list(message, "members"))
    if message.get("existed"):
        return [f"Room {room} already exists with {members}; use it."]
    return [f"Room {room} created with {members}."]


def _room_joined(message: Message) -> list[str]:
    return [
        f"{_text(message, 'by')} added you to room {_text(message, 'room')}"
        f" with {_names(_list(message, 'members'))}."
    ]


def _room_posted(message: Message) -> list[str]:
    lines = [f"Room {_text(message, 'room')} message, #{_text(message, 'seq')} sent at {_time(message)}"]
    if message.get("skipped"):
        lines.append("Your message could not be delivered to some members as they have blocked you.")
    return lines


def _rooms(message: Message) -> list[str]:
    rooms = [entry for entry in _list(message, "rooms") if isinstance(entry, dict)]
    if not rooms:
        return ["You are in no rooms."]
    return [f"Room {_text(r, 'room')}: {_names(_list(r, 'members'))}" for r in rooms]


def _room_left(message: Message) -> list[str]:
    removed = " The room was removed as it is empty." if message.get("removed") else ""
    return [f"{_text(message, 'user')} left room {_text(message, 'room')}.{removed}"]


# Peer-to-peer introductions (normally handled by the client, not shown) ----------------


def _peer_address(message: Message) -> list[str]:
    what = "Private chat" if message.get("type") == "private_address" else "File transfer"
    return [
        f"{what} with {_text(message, 'user')}: {_text(message, 'host')}:{_text(message, 'port')}"
    ]


# The rest -----------------------------------------------------------------------------


def _help(message: Message) -> list[str]:
    entries = []
    for entry in _list(message, "commands"):
        if isinstance(entry, dict):
            entries.append((_text(entry, "usage"), _text(entry, "summary")))
    return help_lines(entries)


def _error(message: Message) -> list[str]:
    text = _text(message, "message")
    return [text or f"Error. {_text(message, 'code', 'unknown error')}"]


def _by_message_field(message: Message) -> list[str]:
    text = _text(message, "message")
    return [text] if text else []


def _silent(message: Message) -> list[str]:
    return []


RENDERERS: dict[str, Callable[[Message], list[str]]] = {
    "login": _login,
    "username_register_status": _username_status,
    "register_status": _register_status,
    "passwd_status": lambda m: ["Your password has been changed."],
    "username_taken": _by_message_field,
    "message": _message,
    "broadcast": _broadcast,
    "room_message": _room_message,
    "message_status": _message_status,
    "broadcast_status": _broadcast_status,
    "send_status": _send_status,
    "history": _history,
    "user_notification": _presence,
    "userlist": _userlist,
    "active": _active,
    "block_status": _block_status,
    "typing": _typing,
    "status_changed": _status_changed,
    "status": _status,
    "room_created": _room_created,
    "room_joined": _room_joined,
    "room_posted": _room_posted,
    "rooms": _rooms,
    "room_left": _room_left,
    "private_address": _peer_address,
    "file_address": _peer_address,
    "help": _help,
    "error": _error,
    "disconnect": _by_message_field,
    "shutdown": _by_message_field,
    "banned": _by_message_field,
    "outdated_client": _by_message_field,
    "hello": _silent,
    "ok": _silent,
}


def render(message: Message) -> list[str]:
    """The lines that show ``message`` (possibly none)."""
    renderer = RENDERERS.get(_text(message, "type"))
    if renderer is not None:
        return renderer(message)
    if isinstance(message.get("message"), str):
        return [message["message"]]
    rest = {k: v for k, v in message.items() if k not in ("type", "id")}
    return [f"[{_text(message, 'type')}] {json.dumps(rest, ensure_ascii=False, sort_keys=True)}"]


def help_lines(entries: Iterable[tuple[str, str]]) -> list[str]:
    """``Commands:`` and one aligned ``usage  summary`` line per command."""
    entries = list(entries)
    if not entries:
        return ["Commands:"]
    width = max(len(usage) for usage, _summary in entries)
    return ["Commands:"] + [f"  {usage.ljust(width)}  {summary}" for usage, summary in entries]


def format_size(size: float) -> str:
    """A byte count for people: ``512 bytes``, ``1.5 kB``, ``20.0 MB``."""
    if size < 1000:
        return f"{int(size)} byte{'s' if int(size) != 1 else ''}"
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} TB"
