"""Why a login failed: typed ``twisted.cred`` errors.

The auth layer only raises these; it never words a reply.  The connection
turns each into what its user is told in one place,
:func:`chatservice.server.replies.login_rejection`.
"""

from __future__ import annotations

from twisted.cred.error import UnauthorizedLogin


class UnknownUser(UnauthorizedLogin):
    """No account has that user name."""


class WrongPassword(UnauthorizedLogin):
    """The account exists and the password does not match it."""


class InvalidUsername(UnauthorizedLogin):
    """The name breaks the user name rules; ``problem`` says which."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class UsernameTaken(UnauthorizedLogin):
    """A guest asked for a name that an account (or an online user) has."""


class GuestsNotAllowed(UnauthorizedLogin):
    """A guest login on a server that takes none."""


class LoginUnavailable(UnauthorizedLogin):
    """The accounts could not be checked (an unexpected failure, logged)."""


class AccountLocked(UnauthorizedLogin):
    """The account is locked after too many failures.

    :param retry_after: seconds until the lock ends.
    :param just_locked: true when the failure being reported caused the lock.
    """

    def __init__(self, retry_after: float, just_locked: bool = False) -> None:
        super().__init__(retry_after, just_locked)
        self.retry_after = retry_after
        self.just_locked = just_locked


class AddressLocked(AccountLocked):
    """The client's address is locked after too many failures from it."""


class ScramUnavailable(UnauthorizedLogin):
    """The account has no SCRAM keys (a hash stored before them): log in with a password."""


class Banned(UnauthorizedLogin):
    """An operator banned the user, or the client's address.

    :param message: what the user is told (until when, why).
    :param retry_after: seconds until the ban ends (``None``: it does not).
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after)
        self.message = message
        self.retry_after = retry_after
