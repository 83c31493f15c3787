"""The settings a server reads from files, at start and again at each reload: limits and bans.

The connections' limits (:data:`LIMITS`, and ``--timeout``) are options of
``twistd chat``; those of :data:`RELOADABLE` may also come from the limits
file (``--limits FILE``), one ``option = value`` a line::

    # /etc/chatservice/limits.conf
    max-connections = 2000
    max-per-address = 10
    flood-rate = 2.5

A value given on the command line wins over the file's (and so never changes
at a reload: twistd's command line is read once); a limit that neither gives
has its default.  The ban file (``--ban-file``) has one address or network a
line (:class:`~chatservice.server.policy.BanList`), added to the ``--ban``
options.  :func:`read_limits` and :func:`read_bans` read them for
:class:`chatservice.tap.Options` at start and for
:class:`chatservice.reload.Reloader` at each reload, with the same checks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping

from chatservice.server.policy import BanList, ConnectionPolicy

Limit = tuple[str, str, type, float, str]
"""``(option, ConnectionPolicy field, type, minimum, help)`` of one limit."""

TIMEOUT: Limit = (
    "timeout", "timeout", float, 1, "Seconds without a valid command before a user is logged out."
)

LIMITS: tuple[Limit, ...] = (
    ("login-deadline", "login_deadline", float, 1, "Seconds a connection has to log in."),
    ("tls-handshake-deadline", "tls_handshake_deadline", float, 0.1, "Seconds a TLS connection has to finish its handshake (at most --login-deadline)."),
    ("close-deadline", "close_deadline", float, 0.1, "Seconds a closing connection has to take its last bytes; then it is aborted."),
    ("greeting-delay", "greeting_delay", float, 0, "Seconds of silence before a new connection is greeted as a person (0: at once)."),
    ("max-line-length", "max_line_length", int, 64, "Longest line accepted, in bytes."),
    ("max-message-length", "max_message_length", int, 1, "Longest message, in characters."),
    ("flood-burst", "flood_burst", int, 1, "Lines a connection may send at once..."),
    ("flood-rate", "flood_rate", float, 0.1, "...then per second (faster lines wait)."),
    ("flood-limit", "flood_limit", float, 1, "Seconds of non-stop flooding before a connection is closed."),
    ("lines-per-turn", "lines_per_turn", int, 1, "Lines of one connection handled before the others get a turn."),
    ("turn-budget", "turn_budget", float, 0, "Seconds one connection's lines may take before the others get a turn."),
    ("flush-interval", "flush_interval", float, 0, "Least seconds between two flushes of the output (batches writes under load)."),
    ("output-soft-limit", "output_soft_limit", int, 1024, "Unread bytes past which broadcasts to a client are dropped."),
    ("output-hard-limit", "output_hard_limit", int, 1024, "Unread bytes past which a client is disconnected."),
    ("slow-reader-grace", "slow_reader_grace", float, 1, "Seconds a client may stay past the soft limit before it is disconnected."),
    ("max-connections", "max_connections", int, 1, "Connections the server takes at once."),
    ("max-per-address", "max_connections_per_address", int, 1, "Connections one address may have."),
)
"""The connections' limits, each a ``twistd chat`` option (see :data:`Limit`)."""

RESTART_ONLY = frozenset({"flush-interval"})
"""Limits that only change with a restart: the output batcher's timer is the server's one."""

RELOADABLE: dict[str, Limit] = {
    limit[0]: limit for limit in (TIMEOUT, *LIMITS) if limit[0] not in RESTART_ONLY
}
"""The limits a reload may change (the limits file's names), by option."""

_DEFAULTS = ConnectionPolicy()
_BY_OPTION = {limit[0]: limit for limit in (TIMEOUT, *LIMITS)}


class SettingsError(ValueError):
    """A setting, or a file of them, cannot be used; the message names the option or the file and line."""


def default(option: str) -> int | float:
    """The default value of the limit ``option`` (of :data:`TIMEOUT` or :data:`LIMITS`)."""
    _option, field, kind, _minimum, _text = _BY_OPTION[option]
    return kind(getattr(_DEFAULTS, field))


def number(option: str, raw: object, kind: type, minimum: float) -> int | float:
    """``raw`` converted to ``kind``, at least ``minimum``.

    :raises SettingsError: naming ``option`` and the value refused.
    """
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"--{option} must be a number, not {raw!r}") from None
    if not (math.isfinite(value) and value >= minimum):
        raise SettingsError(f"--{option} must be at least {minimum:g}, not {raw}")
    return value


def read_limits(path: Path) -> dict[str, int | float]:
    """The limits the file at ``path`` sets, by option, converted and checked.

    One ``option = value`` a line; blank lines and ``#`` comments are ignored.

    :raises SettingsError: an unreadable file, a line that is not
        ``option = value``, a name that is no limit (or one that needs a
        restart: :data:`RESTART_ONLY`), a name given twice, a bad value;
        the message names the file and line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"{path}: cannot read: {e}") from None
    limits: dict[str, int | float] = {}
    for number_, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, equals, raw = (part.strip() for part in line.partition("="))
        where = f"{path}:{number_}"
        if not equals or not name or not raw:
            raise SettingsError(f"{where}: expected 'option = value', not {line!r}")
        if name in RESTART_ONLY:
            raise SettingsError(
                f"{where}: {name} changes only with a restart: give it on the command line"
            )
        if name not in RELOADABLE:
            raise SettingsError(f"{where}: {name!r} is not a limit ({', '.join(sorted(RELOADABLE))})")
        if name in limits:
            raise SettingsError(f"{where}: {name} is set twice")
        _option, _field, kind, minimum, _text = RELOADABLE[name]
        try:
            limits[name] = number(name, raw, kind, minimum)
        except SettingsError as e:
            raise SettingsError(f"{where}: {str(e).removeprefix('--')}") from None
    return limits


def effective_limits(
    command_line: Mapping[str, int | float], limits_file: Path | None
) -> tuple[dict[str, int | float], list[str]]:
    """Every reloadable limit's value: the command line's, else the file's, else the default.

    :param command_line: the reloadable limits given on the command line, converted.
    :param limits_file: the limits file (``--limits``), or ``None``.
    :return: the values by option, and the options the file sets in vain
        (the command line gives them too, and wins).
    :raises SettingsError: as :func:`read_limits`.
    """
    from_file = read_limits(limits_file) if limits_file is not None else {}
    values = {option: default(option) for option in RELOADABLE}
    values.update(from_file)
    values.update(command_line)
    return values, sorted(set(from_file) & set(command_line))


def read_bans(entries: Iterable[str], ban_file: Path | None) -> BanList:
    """The ``--ban`` ``entries`` and the ban file's entries, together.

    :raises SettingsError: an unreadable ban file, or an entry that is no
        address or network (naming it, and the file it is in).
    """
    entries = list(entries)
    try:
        BanList(entries)
    except ValueError as e:
        raise SettingsError(f"--ban: {e}") from None
    if ban_file is None:
        return BanList(entries)
    try:
        in_file = BanList.read(ban_file)
        BanList(in_file)
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"--ban-file {ban_file}: cannot read: {e}") from None
    except ValueError as e:
        raise SettingsError(f"--ban-file {ban_file}: {e}") from None
    return BanList(entries + in_file)
