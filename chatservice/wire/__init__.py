"""The two wire formats: :mod:`~chatservice.wire.text` and :mod:`~chatservice.wire.jsonlines`.

Each module has the same small surface: ``NAME``, ``decode_line`` and
``encode(event, request_id=None)``.  :func:`encode_event` adds the cache that
lets a fan-out render an event once per format.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from chatservice.events import Event


def encode_event(wire: ModuleType, event: Event, request_id: Any = None) -> bytes | None:
    """Render ``event`` in ``wire``'s format; unsolicited events are rendered once and cached."""
    if request_id is not None:
        return wire.encode(event, request_id)
    try:
        return event.encoded[wire.NAME]
    except KeyError:
        data = event.encoded[wire.NAME] = wire.encode(event)
        return data
