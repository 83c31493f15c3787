"""Slowing down the guessing of one user name's password from many addresses.

The lock-outs (:mod:`chatservice.auth.lockout`) stop one address: a name is
locked for the address that failed, and an address that fails too often is
locked.  An attacker with many addresses could still guess one name's
password at the rate of all of them together.  :class:`LoginSlowdown`
counts the failures of each user name from every address together; from a
threshold (higher than the lock-outs') on, every login of that name is
answered only after a wait: 1 s, then 2, 4, 8 ... seconds (at most
``max_delay``), one step per further failure, right password or wrong (an
early answer would give the right one away).  The name is never locked:
its owner, from another address, still logs in, only later.  The password
itself is checked and counted at once
(:class:`~chatservice.auth.login.LockoutChecker`), so logins waiting side
by side cannot get past the lock-outs' limits.

The wait is a ``callLater`` on the clock passed in, never a sleep: the
connection that logs in waits (it reads nothing more meanwhile), every other
connection goes on.  Failures are forgotten ``window`` seconds after the
last one.  In a cluster the counts are the cluster's (a
:class:`~chatservice.auth.lockout.SharedFailures`, Redis), so a failure on
any node slows the name on all.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice.auth.lockout import SharedFailures

log = Logger()

DEFAULT_NAME_FAILURES = 10
"""``--name-failures``: failures of one name, all addresses together, before its logins wait."""
MAX_DELAY = 30.0
"""The longest a login waits, in seconds (shorter if the login deadline is short)."""


@dataclass
class _Count:
    failures: int
    expiry: IDelayedCall


class LoginSlowdown:
    """Delay the logins of a user name with many failures from all addresses together.

    :param clock: the reactor, or a test ``Clock``.
    :param threshold: failures of one name (all addresses together) from
        which its logins wait.
    :param window: seconds a failure is remembered after the last one.
    :param max_delay: the longest wait, in seconds.
    :param kind: what the keys are, for the shared counts.
    """

    def __init__(
        self,
        clock: IReactorTime,
        threshold: int,
        window: float,
        max_delay: float = MAX_DELAY,
        kind: str = "name",
    ) -> None:
        self.clock = clock
        self.threshold = threshold
        self.window = window
        self.max_delay = max_delay
        self.kind = kind
        self.shared: SharedFailures | None = None
        """Where the cluster's nodes count failures together (``None``: on its own)."""
        self._counts: dict[str, _Count] = {}
        self._waits: set[defer.Deferred[None]] = set()

    def delay(self, failures: int) -> float:
        """Seconds a login waits after ``failures`` failures of its name."""
        if failures < self.threshold:
            return 0.0
        return float(min(self.max_delay, 2.0 ** min(failures - self.threshold, 32)))

    def failures(self, key: str) -> int | defer.Deferred[int]:
        """The failures counted for ``key`` (in a cluster, a Deferred: the cluster's count)."""
        if self.shared is not None:
            return self.shared.failure_count(self.kind, key)
        count = self._counts.get(key)
        return 0 if count is None else count.failures

    def failed(self, key: str) -> bool | defer.Deferred[bool]:
        """Count a failure for ``key``; always false (this never locks anything)."""
        if self.shared is not None:
            d = self.shared.count_failure(self.kind, key, self.window)
            return d.addCallback(lambda _: False)
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = _Count(
                0, self.clock.callLater(self.window, self._forget, key)
            )
        else:
            count.expiry.reset(self.window)
        count.failures += 1
        return False

    def wait(self, key: str) -> defer.Deferred[float]:
        """A Deferred that fires (with the seconds waited) when a login of ``key`` may be checked.

        At once while the name is under the threshold; cancelling it cancels
        the timer.  When the cluster's count cannot be read, the login does
        not wait (logged).
        """
        d = defer.maybeDeferred(self.failures, key)
        d.addErrback(self._unreadable, key)
        return d.addCallback(lambda failures: self._after(self.delay(failures)))

    def _after(self, seconds: float) -> float | defer.Deferred[float]:
        if seconds <= 0:
            return 0.0
        call: IDelayedCall | None = None

        def cancel(d: defer.Deferred[float]) -> None:
            self._waits.discard(d)
            if call is not None and call.active():
                call.cancel()

        waited: defer.Deferred[float] = defer.Deferred(cancel)

        def fire() -> None:
            self._waits.discard(waited)
            waited.callback(seconds)

        call = self.clock.callLater(seconds, fire)
        self._waits.add(waited)
        return waited

    def _unreadable(self, failure: Failure, key: str) -> int:
        """The count could not be read: no wait (a Redis away is expected; anything else is a bug)."""
        if failure.check(ConnectionError, defer.TimeoutError):
            log.warn("Reading the login failures of {key} failed: {e}", key=key, e=failure.value)
        else:
            log.failure("Reading the login failures of {key} failed", failure, key=key)
        return 0

    def forgive(self, key: str) -> bool:
        """Forget the failures counted for ``key`` on this node: whether its logins were waiting.

        For an administrator (``chatservice-admin unlock``); the cluster's
        count in Redis is the node's to clear.  Logins already waiting go on waiting.
        """
        count = self._counts.pop(key, None)
        if count is None:
            return False
        count.expiry.cancel()
        return self.delay(count.failures) > 0

    def stop(self) -> None:
        """Cancel every timer (waiting logins fail with ``CancelledError``) and forget every count."""
        for count in self._counts.values():
            count.expiry.cancel()
        self._counts.clear()
        for waiting in list(self._waits):
            waiting.cancel()

    def _forget(self, key: str) -> None:
        del self._counts[key]
