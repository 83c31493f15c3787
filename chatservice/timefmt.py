"""The one timestamp format users see and type: ``01 Jun 2022 21:30:04`` (server local time).

Where a past time is asked for (``read``), a relative one also does:
``10m``, ``2h``, ``30s``, ``1d`` ago, ``today`` or ``yesterday`` (from
midnight): :func:`parse_relative`.  A length of time (an operator's ``ban``
or ``mute``) is written the same way: :func:`parse_duration`.
"""

from __future__ import annotations

import re
import time

TIMESTAMP_FORMAT = "%d %b %Y %H:%M:%S"


def format_timestamp(seconds: float) -> str:
    """Render seconds since the epoch as ``dd Mmm yyyy hh:mm:ss`` in local time.

    The last second rendered is remembered (a broadcast's report and the
    broadcast itself, and every message of a busy second, show the same
    one), with the time zone it was rendered in: ``time.tzset()`` replaces
    ``time.tzname``.  One tuple, read and replaced whole, so a thread
    rendering at the same time (the activity log's) never mixes two.
    """
    global _last_rendered
    second = seconds // 1
    last = _last_rendered
    if last[0] == second and last[2] is time.tzname:
        return last[1]
    text = time.strftime(TIMESTAMP_FORMAT, time.localtime(seconds))
    _last_rendered = (second, text, time.tzname)
    return text


_last_rendered: tuple[float | None, str, object] = (None, "", None)
"""The second :func:`format_timestamp` rendered last, its text, and the time zone's names then."""


def parse_timestamp(text: str) -> float:
    """Parse ``dd Mmm yyyy hh:mm:ss`` (local time; the day may have one digit).

    :raises ValueError: when ``text`` is not in that format.
    """
    parsed = time.strptime(" ".join(text.split()), TIMESTAMP_FORMAT)
    return time.mktime(parsed)


_RELATIVE = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,6})?) ?([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DAYS_BACK = {"today": 0, "yesterday": 1}


class RelativeTime(str):
    """A past time as typed, relative to now: ``10m`` (ago), ``today`` (from midnight).

    A string, so that a request carrying it is still plain data (a client
    that parsed a typed line sends it on as JSON, and the server reads it
    again); :meth:`resolve` gives the time meant.
    """

    __slots__ = ()

    def resolve(self, now: float) -> float:
        """The time meant, as seconds since the epoch, for the clock reading ``now``.

        ``today`` and ``yesterday`` start at midnight, server local time.
        """
        days = _DAYS_BACK.get(self)
        if days is None:
            found = _RELATIVE.fullmatch(self)
            assert found is not None, self
            return now - float(found.group(1)) * _UNITS[found.group(2)]
        day = time.localtime(now)
        return time.mktime((day.tm_year, day.tm_mon, day.tm_mday - days, 0, 0, 0, 0, 0, -1))


def parse_relative(text: str) -> RelativeTime | None:
    """``10m``, ``2h``, ``30s``, ``1d`` (ago), ``today`` or ``yesterday``; ``None`` for anything else."""
    word = " ".join(text.lower().split())
    if word in _DAYS_BACK or _RELATIVE.fullmatch(word):
        return RelativeTime(word)
    return None



_DURATION = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,6})?)([smhd]?)")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, unit_required: bool = False) -> float:
    """Seconds from ``text``: a number, followed by ``s``, ``m``, ``h`` or ``d``
    (or by nothing, for seconds, unless ``unit_required``).

    :raises ValueError: when ``text`` is not such a duration.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or (unit_required and not match.group(2)):
        raise ValueError(f"not a duration: {text!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
