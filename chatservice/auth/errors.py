"""Why a login failed, as ``twisted.cred`` errors the login gate turns into replies."""

from __future__ import annotations

from twisted.cred.error import UnauthorizedLogin


class UnknownUser(UnauthorizedLogin):
    """No account has that user name."""


class WrongPassword(UnauthorizedLogin):
    """The account exists and the password does not match it."""


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
