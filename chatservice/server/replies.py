"""What a user is told when logging in fails: the one mapping from typed auth errors to replies.

The auth layer (:mod:`chatservice.auth`) raises typed errors and words
nothing; the login dialogues call :func:`login_rejection` for every failure,
so the wording of each refusal lives here and only here.
"""

from __future__ import annotations

from chatservice import events
from chatservice.auth.errors import (
    AccountLocked,
    AddressLocked,
    Banned,
    GuestsNotAllowed,
    InvalidUsername,
    ScramUnavailable,
    UnknownUser,
    UsernameTaken,
    WrongPassword,
)
from chatservice.state import AlreadyLoggedIn

WRONG_PASSWORD = "Invalid Password. Please try again"
JUST_LOCKED = (
    "Invalid Password. Your account has been blocked after too many failures."
    " Please try again later"
)
LOCKED = "Your account is blocked due to multiple login failures. Please try again later"
ADDRESS_JUST_LOCKED = (
    "Invalid Password. Your address has been blocked after too many failures."
    " Please try again later"
)
ADDRESS_LOCKED = "Your address is blocked due to multiple login failures. Please try again later"
UNAVAILABLE = "Error. Logging in is not possible right now; please try again."


def login_rejection(error: BaseException, username: str) -> events.LoginRejected:
    """The reply to a login of ``username`` that failed with ``error``.

    ``reason`` is stable for programs (see docs/protocol.rst); a lock-out
    carries the seconds left in ``retry_after``.
    """
    if isinstance(error, AddressLocked):
        if error.just_locked:
            return events.LoginRejected("address_locked", ADDRESS_JUST_LOCKED, error.retry_after)
        return events.LoginRejected("address_blocked", ADDRESS_LOCKED, error.retry_after)
    if isinstance(error, AccountLocked):
        if error.just_locked:
            return events.LoginRejected("locked", JUST_LOCKED, error.retry_after)
        return events.LoginRejected("blocked", LOCKED, error.retry_after)
    if isinstance(error, WrongPassword):
        return events.LoginRejected("wrong_password", WRONG_PASSWORD)
    if isinstance(error, UnknownUser):
        return events.LoginRejected(
            "unknown_user", f"Error. Unknown user {username}. Please try again."
        )
    if isinstance(error, InvalidUsername):
        return events.LoginRejected(
            "invalid_username", f"Error. Invalid user name: {error.problem}."
        )
    if isinstance(error, UsernameTaken):
        return events.LoginRejected(
            "username_taken", f"Error. The name {username} is taken; choose another."
        )
    if isinstance(error, GuestsNotAllowed):
        return events.LoginRejected("unavailable", "Error. Guests are not allowed here.")
    if isinstance(error, ScramUnavailable):
        return events.LoginRejected(
            "scram_unavailable",
            f"Error. {username} has no SCRAM keys yet: log in with the password once"
            " (over TLS), or have the password set again.",
        )
    if isinstance(error, Banned):
        return events.LoginRejected("banned", error.message, error.retry_after)
    if isinstance(error, AlreadyLoggedIn):
        return events.LoginRejected(
            "already_logged_in", f"Error. {username} is already logged in elsewhere."
        )
    return events.LoginRejected("unavailable", UNAVAILABLE)


def closes_connection(error: BaseException) -> bool:
    """Whether a login failing with ``error`` ends the connection (the failure that
    locked it, or a ban)."""
    return isinstance(error, Banned) or (isinstance(error, AccountLocked) and error.just_locked)
