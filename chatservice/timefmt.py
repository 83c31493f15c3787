"""The one timestamp format users see and type: ``01 Jun 2022 21:30:04`` (server local time).

Where a past time is asked for (``read``), a relative one also does:
``10m``, ``2h``, ``30s``, ``1d`` ago, ``today`` or ``yesterday`` (from
midnight): :func:`parse_relative`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

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


_RELATIVE = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,6})?) ?([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DAYS_BACK = {"today": 0, "yesterday": 1}


@dataclass(frozen=True)
class RelativeTime:
    """A past time given relative to now: ``seconds`` ago, or the midnight ``days`` days back.

    :param seconds: how long ago (when ``days`` is ``None``).
    :param days: 0 for the start of today, 1 for yesterday's (server local time).
    """

    seconds: float = 0.0
    days: int | None = None

    def resolve(self, now: float) -> float:
        """The time meant, as seconds since the epoch, for the clock reading ``now``."""
        if self.days is None:
            return now - self.seconds
        day = time.localtime(now)
        return time.mktime(
            (day.tm_year, day.tm_mon, day.tm_mday - self.days, 0, 0, 0, 0, 0, -1)
        )


def parse_relative(text: str) -> RelativeTime | None:
    """``10m``, ``2h``, ``30s``, ``1d`` (ago), ``today`` or ``yesterday``; ``None`` for anything else."""
    word = text.strip().lower()
    if word in _DAYS_BACK:
        return RelativeTime(days=_DAYS_BACK[word])
    found = _RELATIVE.fullmatch(word)
    if found is None:
        return None
    return RelativeTime(float(found.group(1)) * _UNITS[found.group(2)])
