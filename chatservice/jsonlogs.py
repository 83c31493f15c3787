"""JSON logs for log collectors: ``twistd --logger=chatservice.jsonlogs.observer chat ...``.

Each event the server logs becomes one line of JSON, as Twisted's
``jsonFileLogObserver`` writes it (``eventAsJSON``: ``log_format``,
``log_level``, ``log_namespace``, ``log_time`` and the event's fields, so
``twisted.logger.eventsFromJSONLogFile`` reads the file back), plus ``text``:
the event formatted as the plain log would show it (what most collectors
index).  Lines, not RFC 7464 record separators: journald, Vector, Fluent Bit
and Loki's promtail read one JSON object a line.

Where the lines go: the file named by the ``CHATSERVICE_JSON_LOG``
environment variable (appended to), else standard output (under systemd,
the journal).  Each line is flushed as it is written.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

from twisted.logger import FileLogObserver, ILogObserver, eventAsJSON, formatEvent

LOG_FILE_VARIABLE = "CHATSERVICE_JSON_LOG"
"""The environment variable naming the file to append to (unset: standard output)."""


def json_line(event: dict[str, Any]) -> str:
    """``event`` as one line of JSON, with its formatted ``text``."""
    return eventAsJSON({**event, "text": formatEvent(event)}) + "\n"


def _stream() -> IO[str]:
    path = os.environ.get(LOG_FILE_VARIABLE)
    if path:
        return open(path, "a", buffering=1, encoding="utf-8")
    # Line-buffered, whatever standard output is (a pipe to the journal, a file).
    return open(sys.stdout.fileno(), "w", buffering=1, encoding="utf-8", closefd=False)


def observer() -> ILogObserver:
    """The log observer ``twistd --logger`` makes (it calls this with no arguments)."""
    return FileLogObserver(_stream(), json_line)
