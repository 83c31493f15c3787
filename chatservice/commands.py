"""What a client may ask, as plain data: the command table and parsed requests.

Both wire formats parse a line into a :class:`Request`; the table below is the
single place that names each command, its arguments (which are also the JSON
field names), its aliases and its one-line help.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

WORD = "word"
"""An argument that is one whitespace-free word (a user name)."""
TEXT = "text"
"""An argument that takes the rest of the line (a message)."""
SECONDS = "seconds"
"""An argument that is a non-negative number of seconds."""
COUNT = "count"
"""An argument that is a non-negative whole number (a size in bytes)."""

_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def remove_control_characters(text: str) -> str:
    """Drop control characters (all but tab) so no client can drive another's terminal."""
    return _CONTROL_CHARACTERS.sub("", text)


class CommandError(Exception):
    """A request that cannot be carried out; becomes an ``error`` reply.

    :param code: stable machine-readable code, e.g. ``invalid_user``.
    :param message: the sentence shown to a human.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Argument:
    """One argument of a command.

    :param name: the keyword passed to the handler, and the JSON field name.
    :param label: how the text usage line names it, e.g. ``user``.
    :param kind: :data:`WORD`, :data:`TEXT`, :data:`SECONDS` or :data:`COUNT`.
    :param required: whether the request must give it (else it is ``None``).
    """

    name: str
    label: str
    kind: str = WORD
    required: bool = True


@dataclass(frozen=True)
class Command:
    """A command: its name, arguments, help line, and other names it answers to."""

    name: str
    arguments: tuple[Argument, ...]
    summary: str
    aliases: tuple[str, ...] = ()

    @property
    def usage(self) -> str:
        """The usage line shown by ``help``, e.g. ``message <user> <text>``."""
        words = [self.name]
        for argument in self.arguments:
            label = f"<{argument.label}>"
            words.append(label if argument.required else f"[{label}]")
        return " ".join(words)


@dataclass(frozen=True)
class Request:
    """A parsed request: a command name from :data:`COMMANDS` and its arguments.

    ``request_id`` is the JSON ``id`` field, echoed in the reply; ``None`` for
    text requests.
    """

    command: str
    arguments: dict[str, Any] = field(default_factory=dict)
    request_id: Any = None


_USER = Argument("to", "user")
_TARGET = Argument("target", "user")
_TEXT = Argument("message", "text", TEXT)

COMMANDS: tuple[Command, ...] = (
    Command("whoelse", (), "list the other users online now", ("userlist",)),
    Command(
        "whoelsesince",
        (Argument("seconds", "seconds", SECONDS),),
        "list the other users online at any time in the last <seconds>",
    ),
    Command(
        "message",
        (_USER, _TEXT),
        "send <text> to <user>; kept for their next login if they are offline",
    ),
    Command("broadcast", (_TEXT,), "send <text> to every other online user"),
    Command("block", (_TARGET,), "stop <user> from messaging you or seeing you"),
    Command("unblock", (_TARGET,), "undo block <user>"),
    Command(
        "startprivate",
        (_TARGET,),
        "get <user>'s peer address and a token to chat privately (chat-client)",
    ),
    Command(
        "sendfile",
        (_USER, Argument("filename", "file"), Argument("size", "bytes", COUNT, False)),
        "get <user>'s UDP address and a token to send them <file> (chat-client)",
        ("upd",),
    ),
    Command("logout", (), "log out and close the connection", ("disconnect",)),
    Command("help", (), "show this list"),
)

_BY_NAME: dict[str, Command] = {}
for _command in COMMANDS:
    for _name in (_command.name,) + _command.aliases:
        _BY_NAME[_name] = _command


def lookup(name: str) -> Command:
    """Return the command called ``name`` (any case, aliases too).

    :raises CommandError: ``invalid_command`` when there is none.
    """
    try:
        return _BY_NAME[name.lower()]
    except KeyError:
        raise CommandError(
            "invalid_command", "Error. Invalid command (type help for the list)"
        ) from None


def convert(command: Command, argument: Argument, value: Any) -> Any:
    """Check one argument's value and return it in its handler's type.

    :raises CommandError: ``bad_argument`` with the command's usage.
    """
    if not argument.required and value in (None, ""):
        return None
    if argument.kind == COUNT:
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CommandError(
                "bad_argument",
                f"Error. <{argument.label}> must be a whole number."
                f" Usage: {command.usage}",
            )
        return value
    if argument.kind == SECONDS:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number) or number < 0:
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
