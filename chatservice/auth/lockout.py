"""Counting consecutive login failures and locking a key (a user name) for a while.

Each key with failures has one timer (a ``callLater`` handle): it forgets the
failures ``duration`` seconds after the last one, or ends the lock.  So memory
is bounded by the keys that failed recently, and :meth:`LoginLockout.stop`
cancels every timer.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.interfaces import IDelayedCall, IReactorTime


@dataclass
class _Record:
    failures: int
    expiry: IDelayedCall
    locked_until: float | None = None


class LoginLockout:
    """Lock a key for ``duration`` seconds after ``max_failures`` failures in a row.

    :param clock: the reactor, or a test ``Clock``.
    :param max_failures: failures in a row that lock the key.
    :param duration: how long a lock lasts, and how long failures are remembered.
    """

    def __init__(self, clock: IReactorTime, max_failures: int, duration: float) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.duration = duration
        self._records: dict[str, _Record] = {}

    def locked_for(self, key: str) -> float | None:
        """Seconds left on ``key``'s lock, or ``None`` when it is not locked."""
        record = self._records.get(key)
        if record is None or record.locked_until is None:
            return None
        return max(0.0, record.locked_until - self.clock.seconds())

    def failed(self, key: str) -> bool:
        """Count a failure for ``key``; return whether this failure locked it."""
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _Record(
                0, self.clock.callLater(self.duration, self._forget, key)
            )
        elif record.locked_until is not None:
            return False
        else:
            record.expiry.reset(self.duration)
        record.failures += 1
        if record.failures < self.max_failures:
            return False
        record.locked_until = self.clock.seconds() + self.duration
        return True

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures after a successful login."""
        record = self._records.pop(key, None)
        if record is not None:
            record.expiry.cancel()

    def stop(self) -> None:
        """Cancel every timer and forget every failure and lock."""
        for record in self._records.values():
            record.expiry.cancel()
        self._records.clear()

    def _forget(self, key: str) -> None:
        del self._records[key]
