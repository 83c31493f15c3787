"""The JSON wire format read back: server messages as :mod:`chatservice.events`.

:func:`decode_event` is the inverse of :func:`chatservice.wire.jsonlines.render`,
so a program holding the server's JSON messages (the terminal client) can show
them with the server's own renderers (:func:`chatservice.wire.text.render`
words them exactly as a ``telnet`` user reads them).

It is tolerant, because a client may talk to a server of another version: an
unknown ``type``, or a missing or ill-typed field that says who or what (a
user, a room, a text, a token, the answer itself), gives ``None`` instead of an
exception.  A field that only qualifies (a flag, a count, a sequence number, a
time the text never shows, a list of details) falls back to the value meaning
"nothing special" (false, 0, none, empty); entries of a list that are not
well-formed are skipped.  Times must be seconds since the epoch up to the year
9999 and ``help`` must list a command, so that the text format can render any
decoded event.

Some shapes are ambiguous, so decoding keeps what a human reads but not always
the event that was sent:

* ``login`` is :class:`~events.LoginSucceeded` when ``success`` is true, else
  :class:`~events.LoginRejected`; ``username_taken`` is a ``LoginRejected``
  with reason ``username_taken`` (its ``retry_after`` is not sent).
* ``disconnect``, ``shutdown``, ``banned`` and ``outdated_client`` all become
  :class:`~events.Disconnected` (the last three name the reason by their type).
* ``private_address`` and ``file_address`` both become
  :class:`~events.PeerAddress` (purpose ``private`` or ``file``).
* ``status`` sends ``online_for``, not the server's clock: ``now`` is
  ``logged_in_at + online_for``.
* ``register_status`` leaves out ``code`` and the message on success.
* :class:`~events.Prompt` has no JSON shape (JSON clients are never prompted).

Pure functions: no I/O.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from chatservice import events
from chatservice.commands import MAX_EPOCH_SECONDS

Message = dict[str, Any]
Field = Callable[[Message], Any]
"""Reads one value of an event from a message (or raises :class:`_Unreadable`)."""
Decoder = Callable[[Message], events.Event]

STATUSES = ("busy", "available", "hidden", "visible")
"""The ``status`` values of ``status_changed``; another is not guessed at."""


class _Unreadable(Exception):
    """A field that must be there is missing or of the wrong type."""


_REQUIRED: Any = object()
"""The default of a field without one: its absence makes the message unreadable."""


def decode_event(obj: object) -> events.Event | None:
    """The event a server's JSON message stands for, or ``None``.

    :param obj: one decoded JSON object, as the server sent it (an ``id`` is
        ignored).
    :return: ``None`` for an unknown ``type``, or a missing or ill-typed field
        that cannot be left out (see the module docstring).
    """
    if not isinstance(obj, dict):
        return None
    kind = obj.get("type")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        return None
    try:
        return decoder(obj)
    except _Unreadable:
        return None


# Fields: each function returns a reader of one field -------------------------------------


def _field(name: str, default: Any, accept: Callable[[Any], bool]) -> Field:
    """``message[name]`` if ``accept`` takes it, else ``default``.

    :param default: :data:`_REQUIRED` when the message cannot do without it.
    """

    def read(message: Message) -> Any:
        value = message.get(name)
        if accept(value):
            return value
        if default is _REQUIRED:
            raise _Unreadable(name)
        return default

    return read


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _str(name: str, default: Any = _REQUIRED) -> Field:
    return _field(name, default, lambda value: isinstance(value, str))


def _bool(name: str, default: Any = _REQUIRED) -> Field:
    return _field(name, default, lambda value: isinstance(value, bool))


def _int(name: str, default: Any = _REQUIRED) -> Field:
    return _field(name, default, _is_int)


def _number(name: str, default: Any = _REQUIRED) -> Field:
    return _field(name, default, _is_number)


def _time(name: str = "timestamp", default: Any = _REQUIRED) -> Field:
    """Seconds since the epoch that a timestamp can show."""
    return _field(
        name, default, lambda value: _is_number(value) and 0 <= value <= MAX_EPOCH_SECONDS
    )


def _duration(name: str) -> Field:
    """Seconds (negative too: a clock may be set back), in the range of :func:`_time`."""
    return _field(
        name, _REQUIRED, lambda value: _is_number(value) and abs(value) <= MAX_EPOCH_SECONDS
    )


def _port(name: str) -> Field:
    return _field(name, _REQUIRED, lambda value: _is_int(value) and 0 < value < 65536)


def _one_of(name: str, choices: tuple[str, ...]) -> Field:
    """A string that is one of ``choices`` (another is not guessed at)."""
    return _field(name, _REQUIRED, lambda value: isinstance(value, str) and value in choices)


def _names(name: str, default: Any = _REQUIRED) -> Field:
    """A list of strings (anything else in it is skipped), as a tuple."""
    read = _field(name, default, lambda value: isinstance(value, list))
    return lambda message: tuple(value for value in read(message) if isinstance(value, str))


def _records(name: str, *fields: Field, default: Any = _REQUIRED) -> Field:
    """A list of objects, each read by ``fields`` into a tuple; entries that
    cannot be read are skipped."""
    read = _field(name, default, lambda value: isinstance(value, list))

    def records(message: Message) -> tuple[tuple[Any, ...], ...]:
        found = []
        for entry in read(message):
            if isinstance(entry, dict):
                try:
                    found.append(tuple(field(entry) for field in fields))
                except _Unreadable:
                    pass
        return tuple(found)

    return records


def _pairs(name: str) -> Field:
    """An object of strings to strings (other entries skipped), as ``(key, value)`` pairs."""
    read = _field(name, {}, lambda value: isinstance(value, dict))
    return lambda message: tuple(
        (key, value) for key, value in read(message).items() if isinstance(value, str)
    )


def _not_empty(read: Field) -> Field:
    """What ``read`` reads, if that is not empty."""

    def value(message: Message) -> Any:
        found = read(message)
        if not found:
            raise _Unreadable("empty")
        return found

    return value


def _sum(*fields: Field) -> Field:
    """The sum of what ``fields`` read."""
    return lambda message: sum(field(message) for field in fields)


def _const(value: Any) -> Field:
    """``value``, whatever the message says (what its type alone tells)."""
    return lambda message: value


_AUTO_REPLIES = _records("auto_replies", _str("user"), _str("message"), default=())


# Decoders ---------------------------------------------------------------------------------


def _build(event_class: type[events.Event], *fields: Field) -> Decoder:
    """Decodes into ``event_class``, its fields read in order by ``fields``."""
    return lambda message: event_class(*(field(message) for field in fields))


def _choose(flag: Field, if_true: Decoder, if_false: Decoder) -> Decoder:
    """Decodes with ``if_true`` or ``if_false``, as the ``flag`` reads."""
    return lambda message: (if_true if flag(message) else if_false)(message)


_ADDRESS = (_str("user"), _str("host"), _port("port"), _str("token"))

_DECODERS: dict[str, Decoder] = {
    "error": _build(events.ErrorReply, _str("code", ""), _str("message", "")),
    "hello": _build(events.Greeting, _str("version", "")),
    "login": _choose(
        _bool("success", False),
        _build(
            events.LoginSucceeded, _str("user"), _bool("guest", False), _str("server_final", None)
        ),
        _build(
            events.LoginRejected, _str("reason", ""), _str("message"), _number("retry_after", None)
        ),
    ),
    "salt": _build(events.ScramChallenge, _str("message"), _str("salt", ""), _int("iterations", 0)),
    "username_taken": _build(events.LoginRejected, _const("username_taken"), _str("message")),
    "username_register_status": _build(events.UsernameStatus, _str("user"), _bool("taken")),
    "register_status": _choose(
        _bool("status"),
        _build(events.RegisterStatus, _const(True), _str("user")),
        _build(
            events.RegisterStatus,
            _const(False),
            _str("user"),
            _str("code", None),
            _str("additional_info"),
        ),
    ),
    "passwd_status": _build(events.PasswordChanged),
    "message": _choose(
        _bool("offline", False),
        _build(events.DirectMessage, _str("from"), _str("message"), _time(), _const(True)),
        _build(events.DirectMessage, _str("from"), _str("message"), _time(default=0.0)),
    ),
    "broadcast": _build(
        events.BroadcastMessage, _str("from"), _str("message"), _time(default=0.0), _int("seq", 0)
    ),
    "room_message": _build(
        events.RoomMessage,
        _int("room"),
        _str("from"),
        _str("message"),
        _time(default=0.0),
        _int("seq", 0),
    ),
    "user_notification": _build(events.Presence, _str("user"), _bool("status")),
    "userlist": _build(
        events.UserList,
        _names("users"),
        _number("since", None),
        _bool("onlinetype", True),
        _names("guests", ()),
    ),
    "typing": _build(events.TypingNotice, _str("user"), _bool("status")),
    "ok": _build(events.Done, _str("command", "")),
    "message_status": _build(
        events.MessageSent,
        _str("to"),
        _bool("stored", False),
        _bool("busy", False),
        _str("auto_reply", None),
    ),
    "broadcast_status": _build(
        events.BroadcastSent,
        _int("delivered", 0),
        _int("skipped", 0),
        _int("seq"),
        _time(),
        _AUTO_REPLIES,
        _int("unreached", 0),
    ),
    "send_status": _build(
        events.SendReport,
        _names("delivered", ()),
        _names("stored", ()),
        _records("failed", _str("user"), _str("reason"), default=()),
        _AUTO_REPLIES,
    ),
    "status_changed": _build(
        events.StatusChanged,
        _one_of("status", STATUSES),
        _str("auto_reply", None),
        _int("kept", 0),
        _int("missed", 0),
    ),
    "status": _build(
        events.StatusReport,
        _bool("busy", False),
        _str("auto_reply", None),
        _bool("hidden", False),
        _time("logged_in_at"),
        _sum(_time("logged_in_at"), _duration("online_for")),
    ),
    "active": _build(
        events.ActiveList,
        _records("users", _str("user"), _str("host"), _int("p2p_port", None), _time("since")),
    ),
    "history": _build(
        events.HistoryList,
        _time("after", 0.0),
        _records("messages", _str("channel"), _int("seq"), _str("from"), _str("message"), _time()),
        _str("next", None),
    ),
    "room_created": _build(
        events.RoomCreated, _int("room"), _names("members"), _bool("existed", False)
    ),
    "room_joined": _build(events.RoomJoined, _int("room"), _str("by"), _names("members")),
    "room_posted": _build(
        events.RoomPosted,
        _int("room"),
        _int("seq"),
        _time(),
        _int("delivered", 0),
        _int("skipped", 0),
        _int("unreached", 0),
    ),
    "missed": _build(events.MissedSince, _int("count", 0), _time("since"), _bool("more", False)),
    "rooms": _build(events.RoomList, _records("rooms", _int("room"), _names("members"))),
    "room_left": _build(events.RoomLeft, _int("room"), _str("user"), _bool("removed", False)),
    "block_status": _build(events.BlockChanged, _str("user"), _bool("blocked")),
    "blocks": _build(events.BlockList, _names("users")),
    # The text format cannot show an empty command list.
    "help": _build(
        events.HelpText,
        _not_empty(_records("commands", _str("usage"), _str("summary"))),
        _pairs("aliases"),
        _str("topic", None),
    ),
    "private_address": _build(events.PeerAddress, _const("private"), *_ADDRESS),
    "file_address": _build(events.PeerAddress, _const("file"), *_ADDRESS),
    "private_request": _build(events.PrivateRequest, _str("from"), _str("token")),
    "file_incoming": _build(
        events.FileIncoming, _str("from"), _str("filename"), _int("size", None), _str("token")
    ),
    "server_notice": _build(
        events.ServerNotice, _str("from"), _str("message"), _time(default=0.0)
    ),
    "operator_done": _build(
        events.OperatorDone,
        _str("action"),
        _str("target", ""),
        _int("count", 0),
        _time("until", None),
        _int("ban_id", None),
        _str("kind", ""),
        _str("reason", ""),
    ),
    "bans": _build(
        events.BanReport,
        _records(
            "bans", _int("id"), _str("kind"), _str("target"), _str("by", ""), _time("since"),
            _time("until", None), _str("reason", ""),
        ),
    ),
    "whois": _build(
        events.WhoisReport,
        _str("target"),
        _str("host", ""),
        _time("logged_in_at"),
        _field("idle", None, lambda value: _is_number(value) and 0 <= value <= MAX_EPOCH_SECONDS),
        _str("client", ""),
        _bool("tls", None),
        _bool("busy", False),
        _bool("hidden", False),
        _bool("guest", False),
        _bool("operator", False),
        _str("node", None),
    ),
    "rehash": _build(events.RehashReport, _names("changes", ())),
    "disconnect": _build(events.Disconnected, _str("reason", ""), _str("message", "")),
    **{
        # The original design's own types for these reasons.
        reason: _build(
            events.Disconnected, _const(reason), _str("message", ""), _str("version", None)
        )
        for reason in ("shutdown", "banned", "outdated_client")
    },
}
