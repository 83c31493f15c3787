"""One server per data directory: the lock file ``chat.lock`` in ``--data-dir``.

Two servers on one data directory would both serve its users from one
store without knowing of each other: the same user logged in on each, a
block made on one ignored by the other, activity logs written over each
other.  So a server holds an exclusive :func:`fcntl.flock` on
``<data-dir>/chat.lock`` for as long as it runs (:class:`DataDirLock`,
taken by :class:`~chatservice.service.ChatService` when it starts, before
the store is opened), with its process id written in the file; a second
server on the same directory refuses to start with
:class:`DataDirInUse`, whose message names the first one's pid.

The kernel releases the lock when the process ends, however it ends
(``kill -9`` included), so there is never a stale lock to remove; the file
stays, with the pid of the last server that held it.  Nodes sharing one
PostgreSQL database (``--store postgresql://...``) each have their own data
directory, and so their own lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

__all__ = ["LOCK_NAME", "DataDirInUse", "DataDirLock", "check_unlocked"]

LOCK_NAME = "chat.lock"
"""The lock file's name in the data directory."""

_HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
"""What ``flock`` fails with when another open file holds the lock."""


class DataDirInUse(Exception):
    """Another server holds the data directory; the message names it and what to do."""


class DataDirLock:
    """The exclusive lock on a data directory, held from :meth:`acquire` to :meth:`release`.

    :param directory: the data directory (it must exist when :meth:`acquire` is called).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this lock holds the directory now."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and write this process's id in the file (nothing if held already).

        :raises DataDirInUse: when another server (any other open of the
            file, in this process too) holds it, or the file cannot be locked.
        """
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise DataDirInUse(
                f"Cannot lock the data directory {self.directory}: {self.path}: {e.strerror}."
            ) from None
        try:
            _lock(fd, self)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let the directory go (idempotent); the file stays."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def check_unlocked(directory: Path) -> None:
    """Check, without keeping it, that no server holds ``directory`` (for the option checks).

    Creates nothing: a directory or lock file that does not exist is held by nobody.

    :raises DataDirInUse: naming the holder's pid.
    """
    lock = DataDirLock(directory)
    try:
        fd = os.open(lock.path, os.O_RDONLY)
    except OSError:
        return
    try:
        _lock(fd, lock)
    finally:
        os.close(fd)  # which also lets the lock go


def _lock(fd: int, lock: DataDirLock) -> None:
    """``flock`` ``fd`` exclusively without waiting, or raise :class:`DataDirInUse`."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in _HELD:
            raise DataDirInUse(
                f"Cannot lock the data directory {lock.directory}: {lock.path}: {e.strerror}."
            ) from None
        raise DataDirInUse(
            f"The data directory {lock.directory} is in use by another chat server"
            f" ({_holder(fd)}, which holds {lock.path}). Stop that server first, or"
            " give this one another --data-dir."
        ) from None


def _holder(fd: int) -> str:
    """``pid N`` of the server holding the lock, as its file says."""
    try:
        written = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        written = ""
    return f"pid {written}" if written.isdigit() and written.isascii() else "pid unknown"
