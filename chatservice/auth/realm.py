"""The ``twisted.cred`` realm: an authenticated user name becomes a chat session."""

from __future__ import annotations

from typing import Any, Callable

from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from zope.interface import implementer

from chatservice.auth.guests import GuestName
from chatservice.interfaces import ClientConnection, IChatSession
from chatservice.state import ChatState


@implementer(IRealm)
class ChatRealm:
    """Hands out :class:`~chatservice.state.Session` avatars from one :class:`ChatState`.

    The mind is the connection (a :class:`~chatservice.interfaces.ClientConnection`); the
    logout callable ends the session.  Raises
    :class:`~chatservice.state.AlreadyLoggedIn` for a second login.
    """

    def __init__(self, state: ChatState) -> None:
        self.state = state

    def requestAvatar(
        self, avatarId: str, mind: ClientConnection, *interfaces: Any
    ) -> tuple[Any, IChatSession, Callable[[], None]]:
        if IChatSession not in interfaces:
            raise NotImplementedError("ChatRealm only provides IChatSession")
        session = self.state.attach(avatarId, mind, guest=isinstance(avatarId, GuestName))
        if isinstance(session, Deferred):
            # A cluster's node claims the name first (one login per user).
            return session.addCallback(lambda s: (IChatSession, s, s.end))
        return IChatSession, session, session.end
