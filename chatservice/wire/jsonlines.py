"""The machine wire format: one JSON object per line, both ways.

Every object has a ``type``.  A request may carry an ``id``; the reply to it
echoes that ``id``.  Field names follow the original JSON design where it had
them (``login``, ``message``, ``userlist``, ``user_notification``,
``disconnect``).  Pure parsing and rendering: no I/O.
"""

from __future__ import annotations

import json
import math
from functools import singledispatch
from typing import Any

from chatservice import events
from chatservice.commands import CommandError, Request, convert, lookup
from chatservice.wire.format import WireFormat

NAME = "json"
EOL = b"\n"
SCRAM_SHA_256 = "SCRAM-SHA-256"
"""The login mechanism of ``salt`` requests (RFC 7677)."""

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_checker = json.JSONEncoder(ensure_ascii=False)


def decode_line(raw: bytes) -> dict[str, Any]:
    """Parse one received line as a JSON object with a string ``type``.

    :raises CommandError: ``invalid_json`` for anything else.
    """
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CommandError("invalid_json", "Malformed JSON: send one object per line.")
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise CommandError(
            "invalid_json", 'Each line must be a JSON object with a string "type".'
        )
    try:
        # Lone surrogates (\ud800) decode but cannot be sent on to anyone.
        _checker.encode(obj).encode("utf-8")
    except UnicodeEncodeError:
        raise CommandError("invalid_json", "Strings must be valid Unicode.") from None
    return obj


def request_id(obj: dict[str, Any]) -> Any:
    """The request's ``id``, if it is one a reply can echo (a string or a number)."""
    value = obj.get("id")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    return None


def field(obj: dict[str, Any], name: str) -> str:
    """A required string field of a request.

    :raises CommandError: ``missing_field`` when absent or not a string.
    """
    value = obj.get(name)
    if not isinstance(value, str):
        raise CommandError(
            "missing_field", f'"{obj["type"]}" needs a string field "{name}".'
        )
    return value


def port(obj: dict[str, Any], name: str) -> int | None:
    """An optional port-number field (1 to 65535) of a request.

    :raises CommandError: ``bad_argument`` when present and not a port number.
    """
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise CommandError("bad_argument", f'"{name}" must be a port number (1 to 65535).')
    return value


def parse_request(obj: dict[str, Any]) -> Request:
    """Turn a decoded object into a command request.

    A ``message`` without ``to`` is a message to everyone online (the
    original JSON design's chat room), that is a ``broadcast``.  An operator
    command's missing or bad field is put in :attr:`Request.problem`, not
    raised (see :mod:`chatservice.commands`).

    :raises CommandError: unknown ``type``, or a missing or bad field.
    """
    kind = obj["type"]
    if kind.lower() == "message" and "to" not in obj:
        kind = "broadcast"
    command, _ = lookup(kind)
    arguments = {}
    try:
        for argument in command.arguments:
            if argument.name not in obj and argument.required:
                raise CommandError(
                    "missing_field",
                    f'"{command.name}" needs the field "{argument.name}".',
                )
            arguments[argument.name] = convert(command, argument, obj.get(argument.name))
    except CommandError as problem:
        if not command.operator:
            raise
        return Request(command.name, request_id=request_id(obj), problem=problem)
    return Request(command.name, arguments, request_id(obj))


class JsonFormat(WireFormat):
    """The machine format: :func:`encode` and :func:`parse_request` behind :class:`WireFormat`."""

    name = NAME

    def encode(self, event: events.Event, request_id: Any = None) -> bytes | None:
        return encode(event, request_id)

    def parse_command(self, raw: bytes, username: str) -> Request | None:
        """Parse a request of the logged-in ``username``.

        A ``user`` field, which the original design sends with every
        request, must name ``username``: identity comes from the session.
        A blank line is no request.
        """
        if not raw.strip():
            return None
        obj = decode_line(raw)
        try:
            if obj["type"].lower() == "login":
                raise CommandError("already_logged_in", "You are already logged in.")
            claimed = obj.get("user")
            if claimed is not None and claimed != username:
                raise CommandError(
                    "user_mismatch",
                    f'The "user" field must be your own user name ({username}).',
                )
            return parse_request(obj)
        except CommandError as e:
            e.request_id = request_id(obj)
            raise


JSON = JsonFormat()
"""The machine format."""


def encode(event: events.Event, request_id: Any = None) -> bytes | None:
    """Render ``event`` as one JSON line, echoing ``request_id`` when given."""
    obj = render(event)
    if obj is None:
        return None
    if request_id is not None:
        obj["id"] = request_id
    return _encoder.encode(obj).encode("utf-8") + EOL


@singledispatch
def render(event: events.Event) -> dict[str, Any] | None:
    """Render ``event`` as a JSON-ready dict, or ``None`` when JSON clients are not told it."""
    raise NotImplementedError(f"no JSON rendering for {type(event).__name__}")


@render.register
def _(event: events.ErrorReply) -> dict[str, Any]:
    return {"type": "error", "code": event.code, "message": event.message}


@render.register
def _(event: events.Greeting) -> dict[str, Any]:
    return {"type": "hello", "version": event.version}


@render.register
def _(event: events.Prompt) -> None:
    return None


@render.register
def _(event: events.LoginSucceeded) -> dict[str, Any]:
    obj = {"type": "login", "success": True, "user": event.username, "guest": event.guest}
    if event.server_final is not None:
        obj["server_final"] = event.server_final
    return obj


@render.register
def _(event: events.ScramChallenge) -> dict[str, Any]:
    return {
        "type": "salt",
        "mechanism": SCRAM_SHA_256,
        "message": event.message,
        "salt": event.salt,
        "iterations": event.iterations,
    }


@render.register
def _(event: events.UsernameStatus) -> dict[str, Any]:
    return {"type": "username_register_status", "user": event.username, "taken": event.taken}


@render.register
def _(event: events.RegisterStatus) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "register_status",
        "status": event.success,
        "user": event.username,
    }
    if not event.success:
        obj["code"] = event.code
        obj["additional_info"] = event.message
    return obj


@render.register
def _(event: events.PasswordChanged) -> dict[str, Any]:
    return {"type": "passwd_status", "status": True}


@render.register
def _(event: events.LoginRejected) -> dict[str, Any]:
    if event.reason == "username_taken":
        # The original design's reply to a guest login under a taken name.
        return {"type": "username_taken", "message": event.message}
    obj: dict[str, Any] = {
        "type": "login",
        "success": False,
        "reason": event.reason,
        "message": event.message,
    }
    if event.retry_after is not None:
        obj["retry_after"] = round(event.retry_after, 3)
    return obj


@render.register
def _(event: events.DirectMessage) -> dict[str, Any]:
    return {
        "type": "message",
        "from": event.sender,
        "message": event.text,
        "timestamp": event.sent_at,
        "offline": event.offline,
    }


@render.register
def _(event: events.BroadcastMessage) -> dict[str, Any]:
    return {
        "type": "broadcast",
        "from": event.sender,
        "message": event.text,
        "timestamp": event.sent_at,
        "seq": event.seq,
    }


@render.register
def _(event: events.RoomMessage) -> dict[str, Any]:
    return {
        "type": "room_message",
        "room": event.room_id,
        "from": event.sender,
        "message": event.text,
        "timestamp": event.sent_at,
        "seq": event.seq,
    }


@render.register
def _(event: events.Presence) -> dict[str, Any]:
    return {"type": "user_notification", "user": event.username, "status": event.online}


@render.register
def _(event: events.UserList) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "userlist",
        "users": list(event.users),
        "onlinetype": event.online,
    }
    if event.since is not None:
        obj["since"] = event.since
    if event.guests:
        obj["guests"] = list(event.guests)
    return obj


def _auto_replies(replies: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"user": user, "message": text} for user, text in replies]


@render.register
def _(event: events.MessageSent) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "message_status",
        "to": event.recipient,
        "stored": event.stored,
    }
    if event.busy:
        obj["busy"] = True
    if event.auto_reply is not None:
        obj["auto_reply"] = event.auto_reply
    return obj


@render.register
def _(event: events.BroadcastSent) -> dict[str, Any]:
    return {
        "type": "broadcast_status",
        "seq": event.seq,
        "timestamp": event.sent_at,
        "delivered": event.delivered,
        "skipped": event.skipped,
        "auto_replies": _auto_replies(event.auto_replies),
        **({"unreached": event.unreached} if event.unreached else {}),
    }


@render.register
def _(event: events.SendReport) -> dict[str, Any]:
    return {
        "type": "send_status",
        "delivered": list(event.delivered),
        "stored": list(event.stored),
        "failed": [{"user": user, "reason": reason} for user, reason in event.failed],
        "auto_replies": _auto_replies(event.auto_replies),
    }


@render.register
def _(event: events.StatusChanged) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "status_changed", "status": event.status}
    if event.status == "busy":
        obj["auto_reply"] = event.auto_reply
    elif event.status == "available":
        obj["kept"] = event.kept
        obj["missed"] = event.missed
    return obj


@render.register
def _(event: events.StatusReport) -> dict[str, Any]:
    return {
        "type": "status",
        "busy": event.busy,
        "auto_reply": event.auto_reply,
        "hidden": event.hidden,
        "logged_in_at": event.logged_in_at,
        "online_for": event.now - event.logged_in_at,
    }


@render.register
def _(event: events.ActiveList) -> dict[str, Any]:
    return {
        "type": "active",
        "users": [
            {"user": user, "host": host, "p2p_port": port, "since": since}
            for user, host, port, since in event.users
        ],
    }


@render.register
def _(event: events.HistoryList) -> dict[str, Any]:
    return {
        "type": "history",
        "after": event.after,
        "messages": [
            {
                "channel": channel,
                "seq": seq,
                "from": sender,
                "message": text,
                "timestamp": sent_at,
            }
            for channel, seq, sender, text, sent_at in event.entries
        ],
        "more": event.next is not None,
        **({} if event.next is None else {"next": event.next}),
    }


@render.register
def _(event: events.RoomCreated) -> dict[str, Any]:
    return {
        "type": "room_created",
        "room": event.room_id,
        "members": list(event.members),
        "existed": event.existed,
    }


@render.register
def _(event: events.RoomJoined) -> dict[str, Any]:
    return {
        "type": "room_joined",
        "room": event.room_id,
        "by": event.creator,
        "members": list(event.members),
    }


@render.register
def _(event: events.RoomPosted) -> dict[str, Any]:
    return {
        "type": "room_posted",
        "room": event.room_id,
        "seq": event.seq,
        "timestamp": event.sent_at,
        "delivered": event.delivered,
        "skipped": event.skipped,
        **({"unreached": event.unreached} if event.unreached else {}),
    }


@render.register
def _(event: events.MissedSince) -> dict[str, Any]:
    return {
        "type": "missed", "count": event.count, "since": event.since,
        **({"more": True} if event.more else {}),
    }


@render.register
def _(event: events.RoomList) -> dict[str, Any]:
    return {
        "type": "rooms",
        "rooms": [{"room": room, "members": list(members)} for room, members in event.rooms],
    }


@render.register
def _(event: events.RoomLeft) -> dict[str, Any]:
    return {
        "type": "room_left",
        "room": event.room_id,
        "user": event.username,
        "removed": event.removed,
    }


@render.register
def _(event: events.BlockChanged) -> dict[str, Any]:
    return {"type": "block_status", "user": event.username, "blocked": event.blocked}


@render.register
def _(event: events.BlockList) -> dict[str, Any]:
    return {"type": "blocks", "users": list(event.users)}


@render.register
def _(event: events.HelpText) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "help",
        "commands": [
            {"usage": usage, "summary": summary} for usage, summary in event.commands
        ],
    }
    if event.aliases:
        obj["aliases"] = dict(event.aliases)
    if event.topic is not None:
        obj["topic"] = event.topic
    return obj


@render.register
def _(event: events.PeerAddress) -> dict[str, Any]:
    return {
        "type": "private_address" if event.purpose == "private" else "file_address",
        "user": event.username,
        "host": event.host,
        "port": event.port,
        "token": event.token,
    }


@render.register
def _(event: events.PrivateRequest) -> dict[str, Any]:
    return {"type": "private_request", "from": event.sender, "token": event.token}


@render.register
def _(event: events.FileIncoming) -> dict[str, Any]:
    return {
        "type": "file_incoming",
        "from": event.sender,
        "filename": event.filename,
        "size": event.size,
        "token": event.token,
    }


@render.register
def _(event: events.Disconnected) -> dict[str, Any]:
    if event.reason in ("shutdown", "banned"):
        # The original design's own message types for these two.
        return {"type": event.reason, "message": event.message}
    if event.reason == "outdated_client":
        return {"type": "outdated_client", "version": event.server_version, "message": event.message}
    return {"type": "disconnect", "reason": event.reason, "message": event.message}


@render.register
def _(event: events.TypingNotice) -> dict[str, Any]:
    return {"type": "typing", "user": event.username, "status": event.typing}


@render.register
def _(event: events.Done) -> dict[str, Any]:
    return {"type": "ok", "command": event.command}


@render.register
def _(event: events.ServerNotice) -> dict[str, Any]:
    return {
        "type": "server_notice", "from": event.sender, "message": event.text,
        "timestamp": event.sent_at,
    }


@render.register
def _(event: events.OperatorDone) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "operator_done", "action": event.action, "target": event.target,
        "count": event.count, "until": event.until, "reason": event.reason,
    }
    if event.action == "ban":
        obj["ban_id"] = event.ban_id
        obj["kind"] = event.kind
    return obj


@render.register
def _(event: events.BanReport) -> dict[str, Any]:
    return {
        "type": "bans",
        "bans": [
            {
                "id": ban_id, "kind": kind, "target": target, "by": set_by, "since": set_at,
                "until": expires_at, "reason": reason,
            }
            for ban_id, kind, target, set_by, set_at, expires_at, reason in event.bans
        ],
    }


@render.register
def _(event: events.WhoisReport) -> dict[str, Any]:
    return {
        "type": "whois", "target": event.username, "host": event.host,
        "logged_in_at": event.logged_in_at, "idle": event.idle, "client": event.client,
        "tls": event.tls, "busy": event.busy, "hidden": event.hidden, "guest": event.guest,
        "operator": event.operator, "node": event.node,
    }


@render.register
def _(event: events.RehashReport) -> dict[str, Any]:
    return {"type": "rehash", "changes": list(event.lines)}
