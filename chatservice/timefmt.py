"""The one timestamp format users see and type: ``01 Jun 2022 21:30:04`` (server local time)."""

from __future__ import annotations

import time

TIMESTAMP_FORMAT = "%d %b %Y %H:%M:%S"


def format_timestamp(seconds: float) -> str:
    """Render seconds since the epoch as ``dd Mmm yyyy hh:mm:ss`` in local time."""
    return time.strftime(TIMESTAMP_FORMAT, time.localtime(seconds))


def parse_timestamp(text: str) -> float:
    """Parse ``dd Mmm yyyy hh:mm:ss`` (local time; the day may have one digit).

    :raises ValueError: when ``text`` is not in that format.
    """
    parsed = time.strptime(" ".join(text.split()), TIMESTAMP_FORMAT)
    return time.mktime(parsed)
