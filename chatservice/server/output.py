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
        seconds (longer after a flush that took longer: at most half the
        time goes to flushing).
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
        self._flush_started = 0.0
        self._gap = interval
        self._finishing = False

    def add(self, connection: BatchedConnection) -> None:
        """Flush ``connection`` with the next bulk flush."""
        self._waiting.append(connection)
        if self._flush_call is None and not self._finishing:
            wait = self._last_flush + self._gap - self._clock.seconds()
            self._flush_call = self._clock.callLater(max(0.0, wait), self.flush)

    def hurry(self, connection: BatchedConnection) -> None:
        """Flush ``connection`` at the end of this turn."""
        self._urgent.append(connection)
        if self._urgent_call is None:
            self._urgent_call = self._clock.callLater(0, self.flush_urgent)

    def flush(self) -> None:
        """Flush the waiting connections: :attr:`per_turn` now, the rest in the next turns."""
        call, self._flush_call = self._flush_call, None
        if call is not None and call.active():
            call.cancel()
        if not self._flushing:
            # A new flush: of the connections waiting now (later ones wait for the next).
            self._flushing, self._waiting = self._waiting, []
            self._flush_started = self._clock.seconds()
        batch = self._flushing[: self.per_turn]
        del self._flushing[: self.per_turn]
        if self._flushing:
            self._flush_call = self._clock.callLater(0, self.flush)
            for connection in batch:
                connection.flush_output()
            return
        self._finishing = True  # connections added meanwhile wait for the gap below
        try:
            for connection in batch:
                connection.flush_output()
        finally:
            self._finishing = False
        # The next flush waits at least as long as this one took: flushing to
        # thousands takes at most about half the time, and more lines leave in
        # each send.
        self._last_flush = self._clock.seconds()
        took = self._last_flush - self._flush_started
        self._gap = min(max(self.interval, took), self.MAX_GAP)
        if self._waiting and self._flush_call is None:
            self._flush_call = self._clock.callLater(self._gap, self.flush)

    def flush_urgent(self) -> None:
        """Write out the connections that have something urgent now."""
        call, self._urgent_call = self._urgent_call, None
        if call is not None and call.active():
            call.cancel()
        urgent, self._urgent = self._urgent, []
        for connection in urgent:
            connection.flush_output()

    @property
    def pending(self) -> int:
        """How many connections wait to be flushed (one may be counted twice)."""
        return len(self._waiting) + len(self._flushing) + len(self._urgent)
