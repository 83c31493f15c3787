"""What a client may ask, as plain data: the command table and parsed requests.

Both wire formats parse a line into a :class:`Request`; the table below is the
single place that names each command, its arguments (which are also the JSON
field names), its aliases, its one-line help and the
:class:`~chatservice.session.Session` method that carries it out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from chatservice import events
from chatservice.history import parse_cursor
from chatservice.timefmt import parse_duration, parse_relative, parse_timestamp

WORD = "word"
"""An argument that is one whitespace-free word (a user name)."""
TEXT = "text"
"""An argument that takes the rest of the line (a message)."""
SECONDS = "seconds"
"""An argument that is a non-negative number of seconds."""
COUNT = "count"
"""An argument that is a non-negative whole number (a size, a room number)."""
RECIPIENTS = "recipients"
"""User names: one word, or ``(a b c)`` in text; a string or a list in JSON."""
WORDS = "words"
"""User names: the rest of the line in text; a string or a list in JSON."""
MAX_SECONDS = 1_000_000_000
"""The largest :data:`SECONDS` value (about 31 years; also for minutes)."""
MAX_COUNT = 2**63 - 1
"""The largest :data:`COUNT` value (a 64-bit signed integer, as the stores keep)."""
MAX_NUMBER_LENGTH = 32
"""The most characters a number may be written with (text, or a JSON string)."""
MAX_EPOCH_SECONDS = 253_402_300_799
"""The last second of the year 9999: the range a :data:`TIMESTAMP` may take."""
TIMESTAMP = "timestamp"
"""A time as ``dd Mmm yyyy hh:mm:ss`` (JSON: that string, or seconds since the epoch),
or relative (``10m``, ``2h``, ``today``: a :class:`~chatservice.timefmt.RelativeTime`)."""
BAD_TIME = (
    "Error. Give the time as 10m, 2h, today, yesterday or dd Mmm yyyy hh:mm:ss,"
    " e.g. 1 Jun 2022 16:00:00."
)
DURATION = "duration"
"""A length of time: ``30s``, ``10m``, ``2h``, ``7d`` (JSON: that string, or seconds).

Optional in text: taken only when the next word is one (else it is left for
the next argument, a reason)."""
CURSOR = "cursor"
"""Where the next page of ``read`` starts, as the last page said (:mod:`chatservice.history`)."""

_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_WHOLE_NUMBER = re.compile("[0-9]+")
"""A :data:`COUNT` written out: ASCII digits only (``str.isdigit`` and ``int`` take more)."""
_DECIMAL_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""A :data:`SECONDS` value written out: ASCII digits, a point, an exponent (no sign,
``_``, ``inf`` or ``nan``, which ``float`` takes)."""


def remove_control_characters(text: str) -> str:
    """Drop control characters (all but tab) so no client can drive another's terminal."""
    return _CONTROL_CHARACTERS.sub("", text)


class CommandError(Exception):
    """A request that cannot be carried out; becomes an ``error`` reply.

    :param code: stable machine-readable code, e.g. ``invalid_user``.
    :param message: the sentence shown to a human.
    """

    request_id: Any = None
    """The ``id`` of the JSON request that failed, echoed in the reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


INVALID_COMMAND = "Error. Invalid command (type help for the list)"
"""The reply to a command that does not exist, or that the user may not know of."""


def invalid_command() -> CommandError:
    """The error of a command that does not exist (or, to a non-operator, an operator command)."""
    return CommandError("invalid_command", INVALID_COMMAND)


def unavailable() -> CommandError:
    """The error of a request that failed for the server's reason (its store), not the user's."""
    return CommandError("unavailable", "Error. That is not possible right now; please try again.")


@dataclass(frozen=True)
class Argument:
    """One argument of a command.

    :param name: the keyword passed to the handler, and the JSON field name.
    :param label: how the text usage line names it, e.g. ``user``.
    :param kind: :data:`WORD`, :data:`TEXT`, :data:`SECONDS` or :data:`COUNT`.
    :param required: whether the request must give it (else it is ``None``).
    :param choices: the words it may be (a ``WORD``); JSON ``true``/``false``
        stand for the first and second.
    """

    name: str
    label: str
    kind: str = WORD
    required: bool = True
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Command:
    """A command: its name, arguments, help line, and other names it answers to.

    ``handler`` names the :class:`~chatservice.session.Session` method that
    carries it out (it takes the arguments as keywords); every command in
    :data:`COMMANDS` has one, a command the server does not run (a client's
    own) may not.
    """

    name: str
    arguments: tuple[Argument, ...]
    summary: str
    aliases: tuple[str, ...] = ()
    handler: str = field(default="", kw_only=True)
    operator: bool = field(default=False, kw_only=True)
    """Whether only operators may run it (and know of it)."""

    @property
    def usage(self) -> str:
        """The usage line shown by ``help``, e.g. ``message <user> <text>``."""
        words = [self.name]
        for argument in self.arguments:
            label = f"<{argument.label}>"
            if argument.kind == WORDS:
                label = f"{label} [{label} ...]"
            words.append(label if argument.required else f"[{label}]")
        return " ".join(words)


@dataclass(frozen=True)
class Request:
    """A parsed request: a command name from :data:`COMMANDS` and its arguments.

    ``request_id`` is the JSON ``id`` field, echoed in the reply; ``None`` for
    text requests.  ``problem`` is what was wrong with the arguments of an
    operator command (they are then empty): the session raises it once it
    knows the user is an operator, and the usual invalid-command error
    otherwise.
    """

    command: str
    arguments: dict[str, Any] = field(default_factory=dict)
    request_id: Any = None
    problem: CommandError | None = None


_USER = Argument("to", "user")
_TARGET = Argument("target", "user")
_TEXT = Argument("message", "text", TEXT)
_ROOM = Argument("room", "id", COUNT)
_REASON = Argument("reason", "reason", TEXT, False)

COMMANDS: tuple[Command, ...] = (
    Command("whoelse", (), "list the other users online now", ("who",), handler="whoelse"),
    Command(
        "whoelsesince",
        (Argument("seconds", "seconds", SECONDS),),
        "list who was online in the last <seconds>",
        handler="whoelsesince",
    ),
    Command(
        "last",
        (Argument("minutes", "minutes", SECONDS),),
        "list who was online in the last <minutes>",
        handler="last",
    ),
    Command(
        "users",
        (Argument("onlinetype", "online|offline", WORD, False, ("online", "offline")),),
        "list the other users online, or the accounts offline",
        ("userlist",),
        handler="users",
    ),
    Command(
        "active",
        (),
        "list the others online, with address, port, login time",
        ("atu",),
        handler="active",
    ),
    Command(
        "message",
        (_USER, _TEXT),
        "send <text> to <user> (kept if they are offline)",
        handler="message",
    ),
    Command(
        "send",
        (Argument("to", "user|(user1 user2 ...)", RECIPIENTS), _TEXT),
        "send <text> to several users: send (hans luke) hi",
        handler="send",
    ),
    Command(
        "broadcast",
        (_TEXT,),
        "send <text> to every other online user",
        ("bcm",),
        handler="broadcast",
    ),
    Command(
        "read",
        (Argument("since", "when", TIMESTAMP, False),),
        "broadcasts and room messages since <when>: 10m, 2h, today, yesterday,"
        " dd Mmm yyyy hh:mm:ss; alone: since your last logout (a page at a time)",
        ("rdm",),
        handler="read",
    ),
    Command(
        "read next",
        (Argument("after", "cursor", CURSOR),),
        "show the next page of read (its last line gives the cursor)",
        ("read_next",),
        handler="read_next",
    ),
    Command(
        "room create",
        (Argument("members", "user", WORDS),),
        "make a room with you and the users, or reuse theirs",
        ("srb", "room_create"),
        handler="room_create",
    ),
    Command(
        "room send",
        (_ROOM, _TEXT),
        "send <text> to the members of room <id>",
        ("srm", "room_send"),
        handler="room_send",
    ),
    Command("room leave", (_ROOM,), "leave room <id>", ("room_leave",), handler="room_leave"),
    Command("rooms", (), "list your rooms and their members", handler="list_rooms"),
    Command("block", (_TARGET,), "stop <user> from messaging you or seeing you", handler="block"),
    Command("unblock", (_TARGET,), "undo block <user>", handler="unblock"),
    Command("blocks", (), "list the users you have blocked", handler="list_blocks"),
    Command(
        "busy",
        (Argument("message", "auto-reply", TEXT, False),),
        "hold messages; senders get the auto-reply",
        handler="busy",
    ),
    Command(
        "idle", (), "end busy and get what arrived meanwhile", ("available",), handler="idle"
    ),
    Command(
        "typing",
        (
            Argument("status", "on|off", WORD, True, ("on", "off")),
            Argument("to", "user", WORD, False),
        ),
        "tell <user> (or everyone) that you are typing",
        handler="typing",
    ),
    Command("hide", (), "leave other users' lists and presence notices", handler="hide"),
    Command("appear", (), "undo hide", handler="appear"),
    Command("status", (), "show your busy/visible state and time logged in", handler="status"),
    Command(
        "startprivate",
        (_TARGET,),
        "a token to chat with <user> directly (chat-client)",
        handler="startprivate",
    ),
    Command(
        "sendfile",
        (_USER, Argument("filename", "file"), Argument("size", "bytes", COUNT, False)),
        "a token to send <user> <file> (chat-client)",
        ("upd",),
        handler="sendfile",
    ),
    Command(
        "passwd",
        (Argument("old", "old password", WORD, False), Argument("new", "new password", WORD, False)),
        "change your password (alone: asks for both)",
        handler="passwd",
    ),
    Command(
        "logout",
        (),
        "log out and close the connection",
        ("disconnect", "out"),
        handler="logout",
    ),
    Command(
        "help",
        (Argument("command", "command", TEXT, False),),
        "this list, or one command and its other names",
        handler="help",
    ),
    # Operators only (see the module docstring).
    Command("kick", (_TARGET, _REASON), "end <user>'s session", handler="kick", operator=True),
    Command(
        "ban",
        (
            Argument("target", "user|address|cidr"),
            Argument("duration", "duration", DURATION, False),
            _REASON,
        ),
        "ban a user, an address or a network for <duration> (10m, 2h, 7d; none: for good)",
        handler="ban",
        operator=True,
    ),
    Command(
        "unban",
        (Argument("target", "user|address|cidr|id"),),
        "remove a ban (by what it bans, or its number)",
        handler="unban",
        operator=True,
    ),
    Command("bans", (), "list the bans in force", handler="list_bans", operator=True),
    Command(
        "mute",
        (_TARGET, Argument("duration", "duration", DURATION), _REASON),
        "refuse <user>'s messages for <duration> (10m, 2h, 7d)",
        handler="mute",
        operator=True,
    ),
    Command("unmute", (_TARGET,), "undo mute <user>", handler="unmute", operator=True),
    Command(
        "announce",
        (_TEXT,),
        "a server notice to everyone online",
        handler="announce",
        operator=True,
    ),
    Command(
        "whois",
        (_TARGET,),
        "<user>'s address, login and idle time, client, state and node",
        handler="whois",
        operator=True,
    ),
    Command("rehash", (), "reload the server's configuration", handler="rehash", operator=True),
)


def _aliases(commands: tuple[Command, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((alias, command.name) for command in commands for alias in command.aliases)


USER_COMMANDS = tuple(command for command in COMMANDS if not command.operator)
"""The commands everyone may run."""

OPERATOR_COMMANDS = frozenset(command.name for command in COMMANDS if command.operator)
"""The names of the commands only operators may run."""

HELP = events.HelpText(
    tuple((command.usage, command.summary) for command in USER_COMMANDS),
    _aliases(USER_COMMANDS),
)
"""The reply to ``help``: every command's usage and summary, and the other names."""

OPERATOR_HELP = events.HelpText(
    tuple((command.usage, command.summary) for command in COMMANDS), _aliases(COMMANDS)
)
"""The reply to an operator's ``help``: the operator commands too (last)."""

_BY_NAME: dict[str, Command] = {}
for _command in COMMANDS:
    for _name in (_command.name,) + _command.aliases:
        _BY_NAME[_name] = _command


_GROUPS: dict[str, list[str]] = {}
"""The first word of two-word commands (``room``) to their names, for the word alone."""
for _command in COMMANDS:
    if " " in _command.name:
        _GROUPS.setdefault(_command.name.split()[0], []).append(_command.name)


def _group_usage(first: str) -> str:
    """What ``room`` alone is answered: the commands it starts, and where to read more."""
    *others, last = _GROUPS[first]
    return f"Error. Use {', '.join(others)} or {last} (help {first} shows how)."


def lookup(name: str, subcommand: str | None = None) -> tuple[Command, bool]:
    """Return the command called ``name`` (any case, aliases too).

    Two-word commands (``room create``) are tried first with ``subcommand``;
    the flag says whether ``subcommand`` was used.

    :raises CommandError: ``invalid_command`` when there is none.
    """
    name = name.lower()
    if subcommand is not None:
        command = _BY_NAME.get(f"{name} {subcommand.lower()}")
        if command is not None:
            return command, True
    try:
        return _BY_NAME[name], False
    except KeyError:
        if name in _GROUPS:
            raise CommandError("invalid_command", _group_usage(name)) from None
        raise invalid_command() from None


def help_for(topic: str | None, operator: bool = False) -> events.HelpText:
    """The reply to ``help`` (``topic`` ``None``) or ``help TOPIC``: one command (by any
    of its names), or the commands it starts (``room``).

    :param operator: whether the user is an operator (else the operator
        commands are unknown to help, as to everything else).
    :raises CommandError: ``invalid_command`` when no command has that name.
    """
    if topic is None or not topic.strip():
        return OPERATOR_HELP if operator else HELP
    commands = COMMANDS if operator else USER_COMMANDS
    words = topic.lower().split()
    wanted = " ".join(words[:2])
    found = tuple(
        command
        for command in commands
        if wanted == command.name or wanted in command.aliases
    )
    if not found and len(words) > 1:
        found = tuple(c for c in commands if words[0] == c.name or words[0] in c.aliases)
    if not found:
        found = tuple(c for c in commands if c.name.split()[0] == words[0] and " " in c.name)
    if not found:
        raise CommandError(
            "invalid_command",
            f"Error. There is no command {words[0]} (type help for the list).",
        )
    return events.HelpText(
        tuple((command.usage, command.summary) for command in found), _aliases(found), topic=wanted
    )


def _choice(command: Command, argument: Argument, value: Any) -> str:
    first, second = argument.choices[:2]
    if isinstance(value, bool):
        value = first if value else second
    elif isinstance(value, str):
        value = {"true": first, "false": second}.get(value.lower(), value.lower())
    if value not in argument.choices:
        raise CommandError(
            "bad_argument",
            f"Error. <{argument.label}> is one of {', '.join(argument.choices)}."
            f" Usage: {command.usage}",
        )
    return value


def _is_written(value: Any, number: re.Pattern[str]) -> bool:
    """Whether ``value`` is a string that is a ``number``, in at most :data:`MAX_NUMBER_LENGTH` characters."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_NUMBER_LENGTH
        and number.fullmatch(value) is not None
    )


def convert(command: Command, argument: Argument, value: Any) -> Any:
    """Check one argument's value and return it in its handler's type.

    :raises CommandError: ``bad_argument`` with the command's usage.
    """
    if not argument.required and value in (None, ""):
        return None
    if argument.choices:
        return _choice(command, argument, value)
    if argument.kind in (RECIPIENTS, WORDS):
        names = value.split() if isinstance(value, str) else value
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(name, str) and name.strip() for name in names)
        ):
            raise CommandError("bad_argument", f"Error. Usage: {command.usage}")
        return tuple(dict.fromkeys(remove_control_characters(n).strip() for n in names))
    if argument.kind == TIMESTAMP:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if is_number and abs(value) <= MAX_EPOCH_SECONDS:  # false for NaN too
            return float(value)
        try:
            if not isinstance(value, str) or not value.isascii():
                raise TypeError(value)
            relative = parse_relative(value)
            return parse_timestamp(value) if relative is None else relative
        except (TypeError, ValueError, OverflowError):
            raise CommandError("bad_argument", BAD_TIME) from None
    if argument.kind == DURATION:
        seconds = math.nan
        if isinstance(value, str) and value.isascii():
            try:
                seconds = parse_duration(value, unit_required=True)
            except (ValueError, OverflowError):
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if 0 < value <= MAX_SECONDS:  # compared before float(): a huge int overflows it
                seconds = float(value)
        if not 0 < seconds <= MAX_SECONDS:  # false for NaN too
            raise CommandError(
                "bad_argument",
                f"Error. <{argument.label}> is like 30s, 10m, 2h or 7d."
                f" Usage: {command.usage}",
            )
        return seconds
    if argument.kind == CURSOR:
        try:
            parse_cursor(value)
        except ValueError:
            raise CommandError(
                "bad_argument",
                f"Error. <{argument.label}> is what the last page of read gave."
                f" Usage: {command.usage}",
            ) from None
        return value.strip()
    if argument.kind == COUNT:
        if _is_written(value, _WHOLE_NUMBER):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
            raise CommandError(
                "bad_argument",
                f"Error. <{argument.label}> must be a whole number."
                f" Usage: {command.usage}",
            )
        return value
    if argument.kind == SECONDS:
        number = math.nan
        if _is_written(value, _DECIMAL_NUMBER) or (
            isinstance(value, (int, float)) and not isinstance(value, bool)
        ):
            try:
                number = float(value)
            except OverflowError:
                pass
        if not math.isfinite(number) or not 0 <= number <= MAX_SECONDS:
            raise CommandError(
                "bad_argument",
                f"Error. <{argument.label}> must be a non-negative number."
                f" Usage: {command.usage}",
            )
        return number
    if isinstance(value, str):
        value = remove_control_characters(value)
    if not isinstance(value, str) or not value.strip():
        raise CommandError("bad_argument", f"Error. Usage: {command.usage}")
    if argument.kind == WORD and len(value.split()) != 1:
        raise CommandError(
            "bad_argument",
            f"Error. <{argument.label}> is one word. Usage: {command.usage}",
        )
    return value.strip() if argument.kind == WORD else value
