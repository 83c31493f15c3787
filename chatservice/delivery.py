"""Who hears what, as plain data: the delivery rules, the audience and the report.

:meth:`ChatState.deliver <chatservice.state.ChatState.deliver>` takes an event,
its sender, an :data:`Audience` and a :class:`Delivery` rule, and returns a
:class:`DeliveryReport`.  All four are plain data (an enum, user names,
counts), so a server spread over several processes can publish them and let
each process deliver to its own sessions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Collection


class Delivery(enum.Enum):
    """The rule that decides which members of an audience get an event.

    The sender never gets its own event, whatever the rule.
    """

    PRESENCE = "presence"
    """A login or logout notice about the sender: to everyone but the users the
    sender has blocked; nothing at all while the sender is hidden."""
    MESSAGE = "message"
    """A broadcast or room message: users who blocked the sender are skipped
    (and counted); busy users miss it (counted) and may answer with their
    auto-reply, once per busy period per sender."""
    TYPING = "typing"
    """A typing notice: not to anyone the sender blocked or who blocked the
    sender; busy users get it."""
    PLAIN = "plain"
    """A notice for named users (room joined or left, a peer introduction): to
    each of them that is online."""
    DIRECT = "direct"
    """A direct message to one user: refused (``blocked``) if they blocked the
    sender; kept for later if they are offline, busy (with their auto-reply)
    or not reading; refused (``mailbox_full``) when too many wait already, or
    (``mailbox_share_full``) when the sender's share of them does; refused
    (``invalid_user``) when a guest left before its message could be kept."""


class Everyone(enum.Enum):
    """The audience of every online user (see :data:`EVERYONE`)."""

    ONLINE = "everyone online"


EVERYONE = Everyone.ONLINE
"""Every online user (the sender aside)."""

Audience = Everyone | Collection[str]
"""Who an event is for: :data:`EVERYONE`, or user names (offline ones are ignored)."""


@dataclass(frozen=True)
class DeliveryReport:
    """What one delivery did.

    :param delivered: recipients whose connection was handed the event.
    :param skipped: recipients left out by a block (:attr:`Delivery.MESSAGE`:
        they blocked the sender; :attr:`Delivery.PRESENCE`: the sender blocked
        them; :attr:`Delivery.TYPING`: either).
    :param busy: busy recipients: they missed a message, or a direct message
        is kept for them.
    :param stored: direct messages kept for later (0 or 1).
    :param auto_replies: ``(user, text)`` of the busy recipients that answer.
    :param refused: why a direct message was neither delivered nor kept
        (``blocked``, ``mailbox_full``, ``mailbox_share_full`` or
        ``invalid_user``), else ``None``.
    :param unreached: recipients on other nodes of a cluster that could not
        be reached (the link to Redis is down, or their node did not get the
        fan-out: ``PUBLISH`` found it unsubscribed, failed or timed out).
    """

    delivered: int = 0
    skipped: int = 0
    busy: int = 0
    stored: int = 0
    auto_replies: tuple[tuple[str, str], ...] = ()
    refused: str | None = None
    unreached: int = 0


NOTHING = DeliveryReport()
"""The report of a delivery that reached nobody."""
