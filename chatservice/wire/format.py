"""The interface both wire formats offer: :class:`WireFormat`."""

from __future__ import annotations

from typing import Any

from chatservice.commands import Request
from chatservice.events import Event


class WireFormat:
    """How one connection's lines are read and its events written.

    :attr:`name` keys the render cache of an event (:attr:`Event.encoded`),
    so a fan-out renders an event once per format, not once per recipient.
    """

    name: str = ""

    def encode(self, event: Event, request_id: Any = None) -> bytes | None:
        """Render ``event`` (echoing ``request_id``), or ``None`` when this format does not say it."""
        raise NotImplementedError

    def encode_shared(self, event: Event) -> bytes | None:
        """Render an unsolicited event, once per format (the bytes are cached on the event)."""
        try:
            return event.encoded[self.name]
        except KeyError:
            data = event.encoded[self.name] = self.encode(event)
            return data

    def parse_command(self, raw: bytes, username: str) -> Request | None:
        """Parse a logged-in user's line into a request; ``None`` when there is none (a blank line).

        :raises chatservice.commands.CommandError: with the request's id, if
            the line had one, in :attr:`~chatservice.commands.CommandError.request_id`.
        """
        raise NotImplementedError

