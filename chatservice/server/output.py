"""Writing to many connections at once: one ``send`` per connection per reactor turn.

A broadcast to N users is N small writes.  Through ``transport.write`` each
one costs Twisted a buffer append, an ``epoll_ctl`` to start watching the
socket for writability, a trip through the reactor to ``doWrite`` and the
``send``, and another ``epoll_ctl`` to stop watching: most of a fan-out's
time (see ``docs/benchmarks.rst``, *Profile*).

:class:`OutputBatcher` collects what every connection is sent during one
reactor turn and, once the turn's input has been handled (a
``callLater(0)``), writes each connection's share with one
:meth:`~twisted.internet.tcp.Connection.writeSomeData` call straight to its
socket.  Only what the kernel does not take goes through
``transport.write``, so a client that does not keep up is still buffered,
paused and counted by Twisted as before.  Several broadcasts handled in one
turn leave as one ``send``.

Only plain TCP connections are batched (:func:`writes_directly`); TLS,
standard I/O and test transports are written to as they always were.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet import tcp
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport
from twisted.logger import Logger

log = Logger()


class BatchedConnection(Protocol):
    """What :class:`OutputBatcher` needs from a connection."""

    def flush_output(self) -> None:
        """Write out everything batched for this connection."""


def writes_directly(transport: ITransport | None) -> bool:
    """Whether ``transport`` is a plain TCP socket this module may ``send`` on."""
    return isinstance(transport, tcp.Connection) and not transport.TLS


def write_now(transport: ITransport, data: bytes) -> None:
    """Write ``data``: straight to the socket when nothing is queued before it.

    The kernel takes what fits; the rest goes to ``transport.write``, which
    buffers it and watches the socket as usual.  Data already buffered by the
    transport must leave first, so then all of ``data`` goes behind it.
    """
    if (
        isinstance(transport, tcp.Connection)
        and transport.connected
        and not transport.disconnecting
        and not getattr(transport, "_aborting", False)
        # Twisted's two output buffers (abstract.FileDescriptor): both empty
        # means nothing is waiting to be sent before ``data``.
        and not transport.dataBuffer
        and not getattr(transport, "_tempDataLen", 1)
    ):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int) and sent > 0:
            if sent == len(data):
                return
            data = data[sent:]
        # 0 (the kernel's buffer is full) or an error: the transport takes
        # over, and reports a broken connection the usual way.
    transport.write(data)


class OutputBatcher:
    """Holds the connections written to, and flushes them: soon, or at the end of the turn.

    *Bulk* output (broadcasts, presence, room traffic) is flushed at most
    every ``interval`` seconds: at a quiet time a write leaves at the end of
    its turn, but under load everything written during ``interval`` leaves
    together, so a delivery does not cost a ``send`` of its own when the
    server is busiest.  *Urgent* output (a reply, a direct message) is
    flushed at the end of the current turn, with whatever bulk output the
    connection had waiting before it.

    :param clock: the reactor (its ``callLater(0)`` runs after the current
        turn's reads have been handled).
    :param interval: least time between two flushes of bulk output, in
        seconds; after a flush whose sends took longer, the next waits that
        long (at most :attr:`MAX_GAP`), so at most about half the time goes
        to flushing and more lines leave in each ``send``.
    :param per_turn: connections flushed per reactor turn; a bulk flush to
        more goes on in the next turns, so reading (a DM, say) is not held up
        for the whole of a flush to thousands.
    """

    MAX_GAP = 0.25
    """Longest wait between two bulk flushes, however long the last one took."""

    def __init__(self, clock: IReactorTime, interval: float = 0.0, per_turn: int = 256) -> None:
        self._clock = clock
        self.interval = interval
        self.per_turn = per_turn
        self._waiting: list[BatchedConnection] = []
        """Connections for the next bulk flush."""
        self._flushing: list[BatchedConnection] = []
        """What is left of the bulk flush under way (``per_turn`` a turn)."""
        self._urgent: list[BatchedConnection] = []
        self._flush_call: IDelayedCall | None = None
        self._urgent_call: IDelayedCall | None = None
        self._last_flush = float("-inf")
        self._spent = 0.0
        """Seconds spent writing in the bulk flush under way (its turns only)."""
        self._gap = interval
        self._in_flush = False

    def add(self, connection: BatchedConnection) -> None:
        """Flush ``connection`` with the next bulk flush."""
        self._waiting.append(connection)
        if self._flush_call is None and not self._flushing and not self._in_flush:
            self._schedule_flush()

    def hurry(self, connection: BatchedConnection) -> None:
        """Flush ``connection`` at the end of this turn."""
        self._urgent.append(connection)
        if self._urgent_call is None:
            self._urgent_call = self._clock.callLater(0, self.flush_urgent)

    def _schedule_flush(self) -> None:
        # Clamped: a clock stepped back must not hold the output up.
        wait = min(max(0.0, self._last_flush + self._gap - self._clock.seconds()), self._gap)
        self._flush_call = self._clock.callLater(wait, self.flush)

    def flush(self) -> None:
        """Flush the waiting connections: :attr:`per_turn` now, the rest in the next turns."""
        _cancel(self._flush_call)
        self._flush_call = None
        if not self._flushing:
            # A new flush: of the connections waiting now (later ones wait for the next).
            self._flushing, self._waiting = self._waiting, []
            self._spent = 0.0
        batch = self._flushing[: self.per_turn]
        del self._flushing[: self.per_turn]
        started = self._clock.seconds()
        self._in_flush = True  # what is added meanwhile is scheduled below
        try:
            _flush_each(batch)
        finally:
            self._in_flush = False
            now = self._clock.seconds()
            self._spent += max(0.0, now - started)
            if self._flushing:
                self._flush_call = self._clock.callLater(0, self.flush)
            else:
                self._last_flush = now
                self._gap = min(max(self.interval, self._spent), self.MAX_GAP)
                if self._waiting:
                    self._schedule_flush()

    def flush_urgent(self) -> None:
        """Write out the connections that have something urgent now."""
        _cancel(self._urgent_call)
        self._urgent_call = None
        urgent, self._urgent = self._urgent, []
        _flush_each(urgent)

    def flush_now(self) -> None:
        """Write out everything waiting, at once (at shutdown, or in a test)."""
        _cancel(self._flush_call)
        self._flush_call = None
        batch = self._flushing + self._waiting
        self._flushing, self._waiting = [], []
        _flush_each(batch)
        self.flush_urgent()

    @property
    def pending(self) -> int:
        """How many connections wait to be flushed (one may be counted twice)."""
        return len(self._waiting) + len(self._flushing) + len(self._urgent)


def _cancel(call: IDelayedCall | None) -> None:
    """Cancel ``call`` unless it is gone, has run, or is running now."""
    if call is not None and call.active():
        call.cancel()


def _flush_each(connections: list[BatchedConnection]) -> None:
    """Flush every connection; one that fails is logged and the others still go."""
    for connection in connections:
        try:
            connection.flush_output()
        except Exception:
            log.failure("Writing to {connection!r} failed", connection=connection)
