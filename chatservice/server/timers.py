"""Cancelling a connection's timers: :func:`cancel_pending`."""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall


def cancel_pending(*calls: IDelayedCall | None) -> None:
    """Cancel each of ``calls`` unless it is ``None``, has run, is running or was cancelled."""
    for call in calls:
        if call is not None and call.active():
            call.cancel()
