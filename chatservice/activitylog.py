"""The human-readable activity logs in the data directory, written off the reactor thread.

- ``userlog.txt``: ``1; 01 Jun 2022 21:30:04; yoda; 127.0.0.1; 6666`` a line
  per online user (number; login time; name; address; UDP port or ``-``),
  rewritten when someone logs in or out, so later lines are renumbered.
- ``messagelog.txt``: ``1; 01 Jun 2022 21:30:04; yoda; message text`` a line
  per broadcast, appended.
- ``SR_<id>_messagelog.txt``: the same for the messages of room ``<id>``.

The reactor only queues what changed; one write at a time runs in a thread,
taking everything queued since the last one, so a burst of activity costs one
file operation per file, never a wait on the reactor.  Writes are at least
:data:`WRITE_INTERVAL` apart when the server runs (a write after a quiet
time goes at the next turn): handing work to a thread costs the reactor
about as much as a broadcast to a hundred users (``Condition.notify``, 7% of
a fan-out's samples when each turn wrote), and the user log is rewritten
whole, so a login storm rewrote it once a login.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from chatservice.store.interface import HistoryEntry
from chatservice.timefmt import format_timestamp

log = Logger()

WRITE_INTERVAL = 0.5
"""Least seconds between two writes of the logs by a running server."""

UserRow = tuple[float, str, str, "int | None"]
"""(login time, user name, address, UDP port) of one online user."""

Runner = Callable[..., "defer.Deferred[Any]"]
"""Runs ``f(*args)`` somewhere (a thread) and fires with its result."""

LOG_PATTERNS = ("userlog.txt", "messagelog.txt", "SR_*_messagelog.txt")
"""The names of the logs in the data directory (glob patterns).  A server
writes ``userlog.txt`` whenever it starts serving, so any of them shows that
a server used the directory (see :class:`~chatservice.store.sqlite.SQLiteStore`,
``in_use_signs``)."""


def log_file_name(channel: str) -> str:
    """``messagelog.txt`` for broadcasts, ``SR_<id>_messagelog.txt`` for room ``<id>``."""
    if channel == "broadcast":
        return "messagelog.txt"
    return f"SR_{channel.split(':', 1)[1]}_messagelog.txt"


def message_line(entry: HistoryEntry) -> str:
    """One message log line."""
    return f"{entry.seq}; {format_timestamp(entry.sent_at)}; {entry.sender}; {entry.text}\n"


def user_lines(rows: Sequence[UserRow]) -> str:
    """The whole user log for ``rows``, numbered from 1."""
    return "".join(
        f"{number}; {format_timestamp(since)}; {user}; {host}; {port if port else '-'}\n"
        for number, (since, user, host, port) in enumerate(rows, 1)
    )


def write_logs(
    directory: Path, appends: Sequence[HistoryEntry], users: Sequence[UserRow] | None
) -> None:
    """Append ``appends`` to their message logs and, if given, rewrite the user log.

    Runs in a thread.  The user log is replaced atomically (write, then rename).
    """
    by_file: dict[str, list[str]] = {}
    for entry in appends:
        by_file.setdefault(log_file_name(entry.channel), []).append(message_line(entry))
    for name, lines in by_file.items():
        with open(directory / name, "a", encoding="utf-8") as f:
            f.writelines(lines)
    if users is not None:
        temporary = directory / "userlog.txt.tmp"
        temporary.write_text(user_lines(users), encoding="utf-8")
        os.replace(temporary, directory / "userlog.txt")


class ActivityLog:
    """An :class:`~chatservice.interfaces.ActivityRecorder` that writes the log files.

    :param directory: the data directory.
    :param clock: schedules a write for the next reactor turn.
    :param run_in_thread: runs the file work off the reactor thread.
    :param active_users: returns the online users as :data:`UserRow`, in login
        order (set after the chat state exists).
    :param interval: least seconds between two writes (the server's is
        :data:`WRITE_INTERVAL`).
    """

    def __init__(
        self,
        directory: Path,
        clock: IReactorTime,
        run_in_thread: Runner,
        active_users: Callable[[], Sequence[UserRow]] = list,
        interval: float = 0.0,
    ) -> None:
        self.directory = directory
        self.clock = clock
        self.run_in_thread = run_in_thread
        self.active_users = active_users
        self._appends: list[HistoryEntry] = []
        self._users_changed = False
        self._scheduled: Any = None
        self._writing: defer.Deferred[None] | None = None
        self._waiters: list[defer.Deferred[None]] = []
        self.interval = interval
        self._last_write = float("-inf")

    def users_changed(self) -> None:
        self._users_changed = True
        self._schedule()

    def message_posted(self, entry: HistoryEntry) -> None:
        self._appends.append(entry)
        self._schedule()

    def flush(self) -> defer.Deferred[None]:
        """Fire once everything recorded so far is written (used at service stop)."""
        if self._writing is None and not self._pending():
            return defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(done)
        if self._writing is None:
            self._write()
        return done

    def _pending(self) -> bool:
        return bool(self._appends) or self._users_changed

    def _schedule(self) -> None:
        if self._scheduled is None and self._writing is None:
            # Clamped: a clock stepped back must not hold the logs up.
            wait = min(max(0.0, self._last_write + self.interval - self.clock.seconds()), self.interval)
            self._scheduled = self.clock.callLater(wait, self._write)

    def _write(self) -> None:
        if self._scheduled is not None:
            if self._scheduled.active():
                self._scheduled.cancel()
            self._scheduled = None
        self._last_write = self.clock.seconds()
        appends, self._appends = self._appends, []
        users = list(self.active_users()) if self._users_changed else None
        self._users_changed = False
        d = self._writing = self.run_in_thread(write_logs, self.directory, appends, users)
        d.addErrback(lambda f: log.failure("Writing the activity logs failed", f))
        d.addBoth(self._written)

    def _written(self, _: object) -> None:
        self._writing = None
        if self._pending():
            if self._waiters:
                self._write()
            else:
                self._schedule()
        else:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)
