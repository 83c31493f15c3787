"""Guest logins: a name without an account, checked through ``twisted.cred`` too.

A guest presents :class:`GuestCredentials`; :class:`GuestChecker` accepts a
valid name (:func:`~chatservice.auth.credentials.username_problem`, after
normalising to NFC) that no account has, nor looks like, and returns it as a :class:`GuestName`, which
the realm recognises to mark the session as a guest's.  A name already
online is refused by the realm, like any second login.
"""

from __future__ import annotations

from typing import Callable

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials
from twisted.internet import defer
from zope.interface import Attribute, implementer

from chatservice.auth.credentials import normalise_username, username_problem
from chatservice.auth.errors import InvalidUsername, UsernameTaken


class IGuestCredentials(ICredentials):
    """A guest's chosen name."""

    username = Attribute("The name the guest asked for (str).")


@implementer(IGuestCredentials)
class GuestCredentials:
    """A guest's chosen name, and the address it came from."""

    def __init__(self, username: str, host: str = "") -> None:
        self.username = username
        self.host = host


class GuestName(str):
    """The avatar id of a guest: a user name that is not an account."""


@implementer(ICredentialsChecker)
class GuestChecker:
    """Accepts guest names that no account has.

    :param taken: whether a name is an account's (or being registered): a
        bool, or a Deferred firing with one (when the store is asked).
    """

    credentialInterfaces = (IGuestCredentials,)

    def __init__(self, taken: Callable[[str], bool | defer.Deferred[bool]]) -> None:
        self.taken = taken

    def requestAvatarId(self, credentials: IGuestCredentials) -> defer.Deferred[GuestName]:
        name = normalise_username(credentials.username)
        problem = username_problem(name)
        if problem:
            return defer.fail(InvalidUsername(problem))

        def decided(taken: bool) -> GuestName:
            if taken:
                raise UsernameTaken(name)
            return GuestName(name)

        return defer.maybeDeferred(self.taken, name).addCallback(decided)
