"""Counting consecutive login failures and locking a key for a while.

The keys are a user name at an address (:func:`name_at`: a name locked for
the address that failed, not for its owner elsewhere) or an address (locked
for every name); see docs/protocol.rst, "Security".

Each key with failures has one timer (a ``callLater`` handle): it forgets the
failures ``duration`` seconds after the last one, or ends the lock.  So memory
is bounded by the keys that failed recently, and :meth:`LoginLockout.stop`
cancels every timer.

In a cluster the failures are counted where every node sees them (a
:class:`SharedFailures`, Redis): a failure on any node counts on all, and a
lock taken on one node is announced to the others, which hold it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()


class SharedFailures(Protocol):
    """Failure counts shared by the nodes of a cluster."""

    def count_failure(self, kind: str, key: str, window: float) -> defer.Deferred[int]:
        """Count one failure for ``key`` (forgotten ``window`` seconds after the last); the count."""

    def failure_count(self, kind: str, key: str) -> defer.Deferred[int]:
        """The failures counted for ``key`` (0 when none are remembered)."""

    def clear_failures(self, kind: str, key: str) -> None:
        """Forget ``key``'s failures (a successful login)."""

    def announce_lock(self, kind: str, key: str, seconds: float) -> None:
        """``key`` is locked for ``seconds``: every node holds the lock."""


def name_at(username: str, host: str) -> str:
    """The lock-out key of ``username`` logging in from ``host``: ``name@host``.

    Unambiguous, since an address has no ``@``; a name alone when the
    address is unknown.
    """
    return f"{username}@{host}" if host else username


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
    :param kind: what the keys are (``user``: :func:`name_at`; ``address``), for
        the shared counts.
    """

    def __init__(
        self, clock: IReactorTime, max_failures: int, duration: float, kind: str = "user"
    ) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.duration = duration
        self.kind = kind
        self.shared: SharedFailures | None = None
        """Where the cluster's nodes count failures together (``None``: on its own)."""
        self._records: dict[str, _Record] = {}
        self.locks_started = 0
        """Locks this lock-out started (not those taken from other nodes), for the metrics."""

    def locked_for(self, key: str) -> float | None:
        """Seconds left on ``key``'s lock, or ``None`` when it is not locked."""
        record = self._records.get(key)
        if record is None or record.locked_until is None:
            return None
        return max(0.0, record.locked_until - self.clock.seconds())

    def locked_count(self) -> int:
        """How many keys are locked now."""
        return sum(1 for record in self._records.values() if record.locked_until is not None)

    def failed(self, key: str) -> bool | defer.Deferred[bool]:
        """Count a failure for ``key``; whether this failure locked it.

        In a cluster, a Deferred: the count is the cluster's.
        """
        if self.shared is not None:
            if self.locked_for(key) is not None:
                return defer.succeed(False)
            d = self.shared.count_failure(self.kind, key, self.duration)
            return d.addCallbacks(self._counted, self._count_alone, callbackArgs=(key,), errbackArgs=(key,))
        return self._count_here(key)

    def _count_alone(self, failure: Failure, key: str) -> bool:
        """The cluster could not count (Redis unreachable): this node counts on its own meanwhile."""
        log.warn("Counting a login failure for {key} in Redis failed ({e}); counted on this node",
                 key=key, e=failure.value)
        return self._count_here(key)

    def _counted(self, failures: int, key: str) -> bool:
        if failures < self.max_failures or self.locked_for(key) is not None:
            return False
        self.lock(key, self.duration)
        self.locks_started += 1
        assert self.shared is not None
        self.shared.announce_lock(self.kind, key, self.duration)
        return True

    def lock(self, key: str, seconds: float) -> None:
        """Lock ``key`` for ``seconds`` (a lock another node took)."""
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _Record(
                self.max_failures, self.clock.callLater(seconds, self._forget, key)
            )
        else:
            record.expiry.reset(seconds)
        record.locked_until = self.clock.seconds() + seconds

    def _count_here(self, key: str) -> bool:
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
        self.locks_started += 1
        return True

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures after a successful login."""
        record = self._records.pop(key, None)
        if record is not None:
            record.expiry.cancel()
        if self.shared is not None:
            self.shared.clear_failures(self.kind, key)

    def unlock(self, key: str) -> int:
        """Forget the failures and locks of ``key`` (of a user name: at every address): how many were locked.

        For an administrator (``chatservice-admin unlock``): with keys of
        :func:`name_at`, ``key`` is a user name and its keys at every
        address go; otherwise (addresses) that one key.  The cluster's counts
        in Redis are the node's to clear.
        """
        if self.kind == "user":
            keys = [k for k in self._records if k == key or k.startswith(f"{key}@")]
        else:
            keys = [key] if key in self._records else []
        unlocked = 0
        for found in keys:
            record = self._records.pop(found)
            record.expiry.cancel()
            unlocked += record.locked_until is not None
        return unlocked

    def stop(self) -> None:
        """Cancel every timer and forget every failure and lock."""
        for record in self._records.values():
            record.expiry.cancel()
        self._records.clear()

    def _forget(self, key: str) -> None:
        del self._records[key]
