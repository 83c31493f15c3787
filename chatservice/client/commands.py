"""What a user may type, and how a typed line becomes a request.

Every command of the server's text protocol works with the same words: a
line whose first word is not one of the client's own commands is parsed by
the server's own text parser (:func:`chatservice.wire.text.parse_request`,
driven by the server's command table :data:`chatservice.commands.COMMANDS`,
which names each command's arguments by their JSON field names) and sent as
that command's JSON request.  A command the server gains is therefore known
here without a change.

The commands the client carries out itself (private chats, file transfers)
are the entries of :data:`CLIENT_COMMANDS`, each naming the method of
:class:`~chatservice.client.app.ChatClient` that handles it; adding one is
one entry (and its method).  They take precedence over server commands of
the same name (``startprivate`` and ``sendfile`` are server requests too,
but the client does the work around them).

A line whose first word is no command is refused here, with the server's
wording, and nothing is sent.

IRC habits work too (:func:`habits`): a first word may start with ``/``
(``/help``, ``/msg hans hi``), ``msg`` is ``message``, and ``quit`` and
``exit`` (``/quit``) are ``logout``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from chatservice.commands import COMMANDS, TEXT, WORD, Argument, Command, CommandError, convert
from chatservice.wire import text

@dataclass(frozen=True)
class ClientCommand:
    """One command the client carries out itself.

    :param name: the command word.
    :param arguments: its arguments (one-word ones, then at most one rest-of-line).
    :param summary: the help line.
    :param handler: the name of the client method that carries it out; it is
        called with the arguments as keywords.
    :param aliases: other words for it.
    """

    name: str
    arguments: tuple[Argument, ...]
    summary: str
    handler: str
    aliases: tuple[str, ...] = ()

    @property
    def as_command(self) -> Command:
        """This command as the server's table describes one (its usage, argument checks)."""
        return Command(self.name, self.arguments, self.summary, self.aliases)

    @property
    def usage(self) -> str:
        """``name <arg> ...`` as ``help`` shows it."""
        return self.as_command.usage


@dataclass(frozen=True)
class TypedCommand:
    """A parsed line: a client command and its arguments, or a server request."""

    command: ClientCommand | None
    arguments: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] | None = None
    """The JSON request, for a server command."""


_USER_TARGET = Argument("target", "user")

CLIENT_COMMANDS: tuple[ClientCommand, ...] = (
    ClientCommand(
        "startprivate",
        (_USER_TARGET,),
        "start a private chat with <user>, straight between your two programs",
        "start_private",
    ),
    ClientCommand(
        "private",
        (Argument("to", "user"), Argument("message", "text", TEXT)),
        "send <text> to <user> over your private chat (the server never sees it)",
        "send_private",
    ),
    ClientCommand(
        "stopprivate",
        (_USER_TARGET,),
        "end your private chat with <user>",
        "stop_private",
    ),
    ClientCommand(
        "sendfile",
        (Argument("to", "user"), Argument("path", "path", TEXT)),
        "send the file at <path> straight to <user> (also: UPD <user> <path>)",
        "send_file",
        aliases=("upd",),
    ),
    ClientCommand(
        "accept",
        (Argument("user", "user", WORD, False),),
        "accept the private chat or file <user> offers (the oldest offer without <user>)",
        "accept_offer",
    ),
    ClientCommand(
        "decline",
        (Argument("user", "user", WORD, False),),
        "decline the private chat or file <user> offers (the oldest offer without <user>)",
        "decline_offer",
    ),
)

HABITS = {"msg": "message", "quit": "logout", "exit": "logout"}
"""Words from IRC and shells, and the command they mean here."""


def habits(line: str) -> str:
    """``line`` with its first word as this client knows it: ``/msg hans hi`` is ``message hans hi``."""
    words = line.split(None, 1)
    if not words:
        return line
    first = words[0]
    if first.startswith("/") and len(first) > 1:
        first = first[1:]
    first = HABITS.get(first.lower(), first)
    return first if len(words) == 1 else f"{first} {words[1]}"


def json_request(command: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The JSON request for a parsed server command.

    Two-word commands use an underscore (``room create`` is ``room_create``);
    arguments left out (``None``) are left out; tuples become lists.
    """
    request: dict[str, Any] = {"type": command.replace(" ", "_")}
    for name, value in arguments.items():
        if value is None:
            continue
        request[name] = list(value) if isinstance(value, tuple) else value
    return request


class CommandTable:
    """Parses typed lines: the client's own commands first, then the server's."""

    def __init__(self, commands: Iterable[ClientCommand] = CLIENT_COMMANDS) -> None:
        self.commands: dict[str, ClientCommand] = {}
        self._by_word: dict[str, ClientCommand] = {}
        for command in commands:
            self.commands[command.name] = command
            for word in (command.name,) + command.aliases:
                self._by_word[word.lower()] = command

    def parse(self, line: str) -> TypedCommand | None:
        """Parse a typed line such as ``message hans Hey Dude``; ``None`` when blank.

        :raises CommandError: an unknown command, or missing or bad arguments.
        """
        line = habits(line)
        words = line.split(None, 1)
        if not words:
            return None
        command = self._by_word.get(words[0].lower())
        if command is None:
            request = text.parse_request(line)
            if request is None:
                return None
            return TypedCommand(None, request=json_request(request.command, request.arguments))
        return TypedCommand(command, self._arguments(command, words[1] if len(words) > 1 else ""))

    @staticmethod
    def _arguments(command: ClientCommand, rest: str) -> dict[str, Any]:
        checked = command.as_command
        arguments: dict[str, Any] = {}
        for argument in command.arguments:
            if argument.kind == TEXT:
                value, rest = rest.strip(), ""
            else:
                parts = rest.split(None, 1)
                value = parts[0] if parts else ""
                rest = parts[1] if len(parts) > 1 else ""
            arguments[argument.name] = convert(checked, argument, value)
        if rest.strip():
            raise CommandError("bad_argument", f"Error. Usage: {command.usage}")
        return arguments

    def words(self) -> list[str]:
        """Every command word, the server's and the client's, aliases too (for Tab)."""
        found = {word for c in COMMANDS for word in (c.name.split()[0],) + c.aliases}
        found.update(self._by_word)
        found.update(HABITS)
        return sorted(found)

    def client_help(self) -> list[tuple[str, str]]:
        """``(usage, summary)`` of the commands the client carries out itself."""
        return [(c.usage, c.summary) for c in self.commands.values()]
