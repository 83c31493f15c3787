"""Everything a connection is sent: :class:`ConnectionWriter`, and :class:`OutputBatcher`.

:class:`ConnectionWriter` owns one connection's output: the bytes waiting to
be sent, whether they are urgent, how far the client is behind (its backlog)
and the verdict on a slow reader (drop optional traffic past the soft limit,
close past the hard limit or after the grace period).  It is the only place
in the project that touches Twisted's private transport fields
(``dataBuffer``, ``offset``, ``_tempDataLen``, ``_tempDataBuffer``,
``disconnected``, ``_aborting``, and TLS's ``_appSendBuffer`` and
``_aggregator``), and that sends on a TCP transport's socket
(``getHandle``) past it;
``tests/test_twisted_internals.py`` fails loudly on a Twisted without them.

Every byte queued for a client counts towards its backlog, whatever the
path: what waits in its batch, and what its transport holds (Twisted's
buffers under TCP, and over TLS also the TLS layer's, read by
:func:`transport_backlog`).  A reply as large as a whole history is counted
the moment it is written, not only what is written after Twisted reports a
full buffer.

When a connection is lost, what its transport still held for the client is
dropped at once (:func:`release_buffers`), so the memory of a client that
never read goes back to the allocator when it goes, not at the garbage
collector's next full pass.

A broadcast to N users is N small writes.  Through ``transport.write`` each
one costs Twisted a buffer append, an ``epoll_ctl`` to start watching the
socket for writability, a trip through the reactor to ``doWrite`` and the
``send``, and another ``epoll_ctl`` to stop watching: most of a fan-out's
time (see ``docs/benchmarks.rst``, *Profile*).

:class:`OutputBatcher` collects what every connection is sent during one
reactor turn and, once the turn's input has been handled (a
``callLater(0)``), writes each connection's share with one ``send``
straight to its socket (:func:`write_now`).  Only what the kernel does not take goes through
``transport.write``, so a client that does not keep up is still buffered,
paused and counted by Twisted as before.  Several broadcasts handled in one
turn leave as one ``send``.  Before it writes, the batcher runs the commits
it was given (:meth:`OutputBatcher.unsettled`: the store's commit of the
history rows added since its last write), so nothing leaves that reports
what is not yet committed; so does a write that does not go through the
batcher, and a connection's close (:meth:`OutputBatcher.written_directly`).

Only plain TCP connections are batched (:func:`writes_directly`); TLS,
standard I/O and test transports are written to as they always were.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Protocol

from twisted.internet import tcp
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime, ITransport
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from chatservice import events
from chatservice.server.fanout import SharedFanout, SharedSegment
from chatservice.server.policy import ConnectionPolicy
from chatservice.server.timers import cancel_pending
from chatservice.wire import WireFormat

log = Logger()

OPTIONAL_EVENTS = (
    events.BroadcastMessage,
    events.Presence,
    events.RoomMessage,
    events.RoomLeft,
    events.TypingNotice,
)
"""What a congested client does without: it can read broadcasts and rooms later."""


class WriterTransport(Protocol):
    """What a :class:`ConnectionWriter` needs of its transport (TCP, TLS, or a WebSocket's)."""

    def write(self, data: bytes) -> None: ...

    def registerProducer(self, producer: object, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...


class OutputOwner(Protocol):
    """What a :class:`ConnectionWriter` tells its connection."""

    def output_drained(self) -> None:
        """A backed-up client has caught up."""

    def output_dropped(self) -> None:
        """An optional event was not sent: the client is past the soft limit."""

    def output_abandoned(self, backlog: int) -> None:
        """A slow reader was closed with ``backlog`` bytes unread."""


class BatchedConnection(Protocol):
    """What :class:`OutputBatcher` needs from a connection."""

    def flush_output(self) -> None:
        """Write out everything batched for this connection."""


def writes_directly(transport: ITransport | None) -> bool:
    """Whether ``transport`` is a plain TCP socket this module may ``send`` on."""
    return isinstance(transport, tcp.Connection) and not transport.TLS


def transport_backlog(transport: object) -> int | None:
    """Bytes ``transport`` holds for its peer that the kernel has not taken yet.

    Known are a TCP connection (Twisted's two output buffers), the TLS layer
    over one (what waits for the handshake or for OpenSSL, and the small
    writes it gathers for a turn, then the TCP connection's), protocol
    wrappers (:class:`~twisted.protocols.policies.ProtocolWrapper`), and a
    transport that writes to a ``stream`` (a WebSocket's).

    :return: ``None`` for any other transport (a test's, standard I/O).
    """
    held = 0
    while True:
        if isinstance(transport, tcp.Connection):
            # dataBuffer is sent from offset on; _tempDataLen is written since.
            return held + len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        if isinstance(transport, TLSMemoryBIOProtocol):
            held += sum(map(len, transport._appSendBuffer))
            aggregator = getattr(transport, "_aggregator", None)
            held += sum(map(len, getattr(aggregator, "_buffer", ())))
            transport = transport.transport
        elif isinstance(transport, ProtocolWrapper):
            transport = transport.transport
        else:
            transport = getattr(transport, "stream", None)
            if transport is None:
                return None


def release_buffers(transport: object) -> int:
    """Drop what a closed transport still holds for its peer; how many bytes.

    A closed connection's protocol and transport refer to each other, so
    without this its unsent output (up to the hard limit: a client that
    asked and never read) stays in memory until the cyclic garbage
    collector's next full pass, which may be long in coming: twenty such
    connections held 20 MiB after they were gone, more each time they came
    back (``bench/read_amplifier.py``).  Dropped here, the bytes go back to
    the allocator the moment the connection is lost.

    Only once the TCP connection at the bottom of ``transport`` (under TLS
    or a protocol wrapper) is disconnected: nothing is dropped that could
    still be sent.
    """
    layers = []
    while True:
        if isinstance(transport, tcp.Connection):
            if not transport.disconnected:
                return 0
            released = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
            transport.dataBuffer = b""
            transport.offset = 0
            transport._tempDataBuffer = []
            transport._tempDataLen = 0
            for layer in layers:
                released += sum(map(len, layer._appSendBuffer))
                layer._appSendBuffer = []
            return released
        if isinstance(transport, TLSMemoryBIOProtocol):
            layers.append(transport)
            transport = transport.transport
        elif isinstance(transport, ProtocolWrapper):
            transport = transport.transport
        else:
            transport = getattr(transport, "stream", None)
            if transport is None:
                return 0


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
        # The socket itself (``getHandle``), not ``writeSomeData``: a flush to
        # thousands makes one call per connection, and Twisted's wrapper
        # (a memoryview of at most SEND_LIMIT bytes, a retry loop for EINTR,
        # which Python retries itself) cost about as much as the send.
        try:
            sent = transport.getHandle().send(data)
        except OSError:
            # EAGAIN (the kernel's buffer is full) or an error: the transport
            # takes over, and reports a broken connection the usual way.
            sent = 0
        if sent == len(data):
            return
        if sent:
            data = data[sent:]
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
        self.fanout = SharedFanout(self._flush_soon)
        """What is shared with every logged-in user's connection in step (broadcasts)."""
        self._commits: dict[Callable[[], None], None] = {}
        """What must be committed before the next output is written (:meth:`unsettled`), in order."""

    def settle(self) -> None:
        """Run the commits waiting (:meth:`unsettled`): what the output to be written reports is committed first."""
        commits, self._commits = self._commits, {}
        for commit in commits:
            commit()

    def unsettled(self, commit: Callable[[], None]) -> None:
        """Output to come reports on what ``commit`` commits (a group of history rows): commit it first.

        It runs (:meth:`settle`) before the next flush of any kind, and
        before anything is written past the batcher
        (:meth:`written_directly`); a bulk flush is asked for now, so it
        waits at most a flush interval even if nothing else is written.  So
        under load a group of history rows lasts from one flush to the
        next, not one reactor turn (``SQLiteStore.group_history``).
        """
        self._commits[commit] = None
        self._flush_soon()

    def written_directly(self) -> None:
        """A connection that is not batched is about to be written to: settle first.

        Such a transport (TLS) may send at the next poll, and a write made
        in a timed call (a connection's held lines, read on its next turn)
        is followed by a poll before any call scheduled then: nothing waits.
        """
        if self._commits:
            self.settle()

    def add(self, connection: BatchedConnection) -> None:
        """Flush ``connection`` with the next bulk flush."""
        self._waiting.append(connection)
        self._flush_soon()

    def _flush_soon(self) -> None:
        """Something waits for a bulk flush (a connection, or what the fan-out shared): schedule one."""
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
        cancel_pending(self._flush_call)
        self._flush_call = None
        if not self._flushing:
            # A new flush: of the connections waiting now (later ones wait for
            # the next), and of what was shared with those in step.
            self._flushing, self._waiting = self._waiting, []
            self._flushing += self.fanout.seal()
            self._spent = 0.0
        self.settle()
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
                if self._waiting or self.fanout.segment.entries:
                    self._schedule_flush()

    def flush_urgent(self) -> None:
        """Write out the connections that have something urgent now."""
        cancel_pending(self._urgent_call)
        self._urgent_call = None
        urgent, self._urgent = self._urgent, []
        self.settle()
        _flush_each(urgent)

    def flush_now(self) -> None:
        """Write out everything waiting, at once (at shutdown, or in a test)."""
        cancel_pending(self._flush_call)
        self._flush_call = None
        batch = self._flushing + self._waiting + self.fanout.seal()
        self._flushing, self._waiting = [], []
        self.settle()
        _flush_each(batch)
        self.flush_urgent()

    @property
    def pending(self) -> int:
        """How many connections wait to be flushed (one may be counted twice)."""
        return len(self._waiting) + len(self._flushing) + len(self._urgent) + bool(self.fanout.segment.entries)


def _flush_each(connections: list[BatchedConnection]) -> None:
    """Flush every connection; one that fails is logged and the others still go."""
    for connection in connections:
        try:
            connection.flush_output()
        except Exception:
            log.failure("Writing to {connection!r} failed", connection=connection)


@implementer(IPushProducer)
class ConnectionWriter:
    """One connection's output: pending bytes, urgency, backlog, and the slow-reader verdict.

    Its :attr:`backlog` is every byte queued for the client: its batch and
    what its transport holds (:func:`transport_backlog`), checked each time
    something is sent.  On a transport whose buffers cannot be read (a test
    transport), it is what was written since the transport said it was full.
    It is registered on the transport as a streaming producer, so Twisted
    tells it (:meth:`pauseProducing`) when the client stops reading and the
    transport's buffer is full.  Past ``policy.output_soft_limit`` the
    connection is :attr:`congested` and, while the transport is full,
    optional events (:data:`OPTIONAL_EVENTS`) are dropped, and counted; past
    ``policy.output_hard_limit``, or still past the soft limit
    ``policy.slow_reader_grace`` seconds after it got there, it is closed.

    :param transport: where the bytes go.
    :param wire: the format events are rendered in (:meth:`use_format`
        changes it when the connection settles on its format).
    :param policy: the output limits.
    :param clock: for the grace period.
    :param batcher: the server's batcher, used when the transport is a plain
        TCP socket (:func:`writes_directly`).
    :param owner: the connection, told when its client caught up and when
        it was given up on (one reference, not two bound methods: there is
        one writer per connection).
    """

    __slots__ = (
        "transport", "_socket", "_wire", "_format_name", "_policy", "_clock", "_batcher", "_settler", "_pending",
        "_hurried",
        "backed_up", "closed", "_alive", "_dropped", "_grace", "_closing", "_owner",
        "_measured", "_counted", "position", "_fanout",
    )

    def __init__(
        self,
        transport: WriterTransport,
        wire: WireFormat,
        policy: ConnectionPolicy,
        clock: IReactorTime,
        batcher: OutputBatcher | None,
        owner: OutputOwner,
    ) -> None:
        self.transport = transport
        self._wire = wire
        self._format_name = wire.name
        self._policy = policy
        self._clock = clock
        # Batched output goes straight to a plain TCP socket: the transport's
        # own, or the one under it when it frames another protocol's messages
        # on a plain socket (a WebSocket's ``underlying``).
        socket = transport if writes_directly(transport) else getattr(transport, "underlying", None)
        self._socket = socket if writes_directly(socket) else None
        self._batcher = batcher if self._socket is not None else None
        self._settler = batcher
        """Told of writes that do not go through the batcher (:meth:`OutputBatcher.written_directly`)."""
        self._pending: list[bytes] | None = None
        self._hurried = False
        self.backed_up = False
        self._measured = transport_backlog(transport) is not None
        """Whether the transport's buffers can be read (else writes are counted)."""
        self._counted = 0
        """Bytes written since the transport's buffer filled up (when not measured)."""
        self.closed = False
        """Nothing more is sent (closing, closed, or given up on)."""
        self._alive = True
        self._dropped = 0
        self._grace: IDelayedCall | None = None
        self._closing: IDelayedCall | None = None
        """Aborts the connection if a close does not complete in time."""
        self._owner = owner
        self.position: tuple[SharedSegment, int] | None = None
        """Where this connection is in the shared segments while in step (else ``None``)."""
        self._fanout: SharedFanout | None = None
        """The fan-out this logged-in user's connection is a member of, if it can step in."""
        transport.registerProducer(self, True)
        self._tune_socket()

    @property
    def wire(self) -> WireFormat:
        """The format events are rendered in."""
        return self._wire

    @property
    def format_name(self) -> str:
        """The name of the format events are rendered in."""
        return self._format_name

    @property
    def owner(self) -> OutputOwner:
        """The connection this writer writes for (the fan-out's member)."""
        return self._owner

    def use_format(self, wire: WireFormat) -> None:
        """Render from now on in ``wire``."""
        self._wire = wire
        self._format_name = wire.name

    def use_batcher(self, batcher: OutputBatcher) -> None:
        """Batch this connection's output whatever its transport (tests on a StringTransport)."""
        self._batcher = batcher
        self._socket = self.transport

    @property
    def backlog(self) -> int:
        """Bytes queued for this client that the kernel has not taken yet.

        What waits in its batch and in its transport, or, on a transport
        whose buffers cannot be read, what was written since it was full.
        """
        if not self._measured:
            return self._counted
        pending = self._pending
        queued = sum(map(len, pending)) if pending else 0
        if self.position is not None and self._fanout is not None:
            queued += self._fanout.pending_size(self)
        return queued + (transport_backlog(self.transport) or 0)

    @property
    def congested(self) -> bool:
        """Whether this client has stopped reading past the soft limit."""
        return self.backlog > self._policy.output_soft_limit

    # Writing -----------------------------------------------------------------------

    def deliver(self, event: events.Event) -> None:
        """Send an unsolicited event; optional ones are dropped while congested.

        This runs once per recipient of every broadcast: the common case (the
        client reads, a batch is waiting for the next flush) appends the
        event's cached bytes to this connection's batch.
        """
        if self.backed_up or self.closed:
            self._deliver_carefully(event)
            return
        data = event.encoded.get(self._format_name)
        if data is None:
            data = self._wire.encode_shared(event)
        if not data:
            return
        pending = self._pending
        if pending is not None and event.bulk:
            pending.append(data)  # the common case under load
        else:
            self.write(data, not event.bulk)

    def _deliver_carefully(self, event: events.Event) -> None:
        """:meth:`deliver` for a closed connection or one whose client lags."""
        if self.closed:
            return
        if self.congested and isinstance(event, OPTIONAL_EVENTS):
            self._dropped += 1
            self._owner.output_dropped()
            return
        self.send(event, urgent=not event.bulk)

    def send(self, event: events.Event, request_id: Any = None, urgent: bool = True) -> None:
        """Render ``event`` (a reply to ``request_id``, if given) and write it.

        :param urgent: leave at the end of this turn (else with the next bulk flush).
        """
        if self.closed:
            return
        if request_id is None:
            data = self._wire.encode_shared(event)
        else:
            data = self._wire.encode(event, request_id)
        if not data:
            return
        self.write(data, urgent)
        if self._measured:
            backlog = self.backlog
        elif self.backed_up:
            backlog = self._counted = self._counted + len(data)
        else:
            return
        policy = self._policy
        if backlog > policy.output_hard_limit:
            self.abort()
        elif backlog > policy.output_soft_limit and self._grace is None:
            self._grace = self._clock.callLater(policy.slow_reader_grace, self._grace_over)

    def _grace_over(self) -> None:
        """The grace period is over: close the client if it is still past the soft limit."""
        self._grace = None
        if self.congested:
            self.abort()

    def write(self, data: bytes, urgent: bool = True) -> None:
        """Write ``data`` after everything written before it.

        On a plain TCP connection the bytes wait for the batcher: ``urgent``
        ones till the end of this reactor turn, others till the next bulk
        flush, so under load many broadcasts leave in one ``send``.  Other
        transports are written to at once.  A connection in step with the
        fan-out steps out first: what was shared with it goes first.
        """
        if self.position is not None:
            self.step_out()
        pending = self._pending
        if pending is not None:
            pending.append(data)
        elif self._batcher is not None:
            self._pending = [data]
            if not urgent:
                self._batcher.add(self)
        else:
            settler = self._settler
            if settler is not None:
                settler.written_directly()
            self.transport.write(data)
            return
        if urgent and not self._hurried:
            self._hurried = True
            self._batcher.hurry(self)

    def flush_output(self) -> None:
        """Write what was batched or shared for this connection (the batcher calls it).

        Once its own output is written, a member of the fan-out that still
        reads steps back in step.
        """
        fanout = self._fanout
        if self.position is not None:
            assert fanout is not None
            data = fanout.take(self)
            if data and self._alive:
                write_now(self._socket, data)
            return
        pending, self._pending = self._pending, None
        self._hurried = False
        if pending and self._alive:
            write_now(self._socket, pending[0] if len(pending) == 1 else b"".join(pending))
        if fanout is not None and self.can_step_in():
            fanout.step_in(self)

    # The shared fan-out (chatservice.server.fanout) ------------------------------------

    def joins_fanout(self, fanout: SharedFanout) -> bool:
        """The user logged in: whether this connection can share ``fanout``'s broadcasts.

        Only one whose output goes through the batcher can (not TLS, not a test transport).
        """
        if self._batcher is None or fanout is not self._batcher.fanout:
            return False
        self._fanout = fanout
        return True

    def leaves_fanout(self) -> None:
        """The user logged out: this connection shares no more."""
        self._fanout = None

    def can_step_in(self) -> bool:
        """Whether this member reads, writes through the batcher and has nothing of its own waiting."""
        return (
            self._fanout is not None
            and self._pending is None
            and not self.backed_up
            and not self.closed
            and self._alive
        )

    def step_out(self) -> None:
        """Be delivered to one by one from now on; what was shared and not sent yet comes first."""
        if self.position is None or self._fanout is None:
            return
        chunks = self._fanout.step_out(self)
        if chunks:
            self._pending = chunks
            assert self._batcher is not None
            self._batcher.add(self)

    # Closing -------------------------------------------------------------------------

    def close(self, last: events.Event | None = None, request_id: Any = None) -> None:
        """Send ``last``, then nothing more, and close the connection once it is written."""
        if self.closed:
            return
        self.step_out()
        if last is not None:
            self.send(last, request_id)
        self.closed = True
        if self._settler is not None:
            self._settler.settle()  # a closing transport sends what it holds at once
        self.flush_output()
        self._stop()
        # A registered producer would hold up a TLS transport's close.
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        # A close completes once the client has taken the last bytes (and, over
        # TLS, answered the close): one that never does is aborted.
        self._closing = self._clock.callLater(
            self._policy.close_deadline, self.transport.abortConnection
        )

    def abort(self) -> None:
        """Give up on a client that does not read what it is sent (it cannot be told)."""
        if self.closed:
            return
        backlog = self.backlog
        self.closed = True
        self._pending = None
        self._forget_shared()
        self._stop()
        self.transport.unregisterProducer()
        self.transport.abortConnection()
        self._owner.output_abandoned(backlog)

    def connection_lost(self) -> None:
        """The transport is gone: drop what waits (here and in the transport), stop the timers."""
        self._alive = False
        self.closed = True
        self._pending = None
        self._forget_shared()
        release_buffers(self.transport)
        self._stop()
        closing, self._closing = self._closing, None
        cancel_pending(closing)

    def _forget_shared(self) -> None:
        fanout, self._fanout = self._fanout, None
        if fanout is not None:
            fanout.forget(self)

    def _stop(self) -> None:
        grace, self._grace = self._grace, None
        cancel_pending(grace)

    # IPushProducer: the transport says when the client stops and starts reading --------

    def pauseProducing(self) -> None:
        self.backed_up = True
        self.step_out()  # each broadcast is weighed on its own while it lags

    def resumeProducing(self) -> None:
        """The client caught up: say what was dropped, then let the connection go on."""
        self.backed_up = False
        self._counted = 0
        self._stop()
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            self.send(
                events.ErrorReply(
                    "dropped",
                    f"{dropped} notice(s) or broadcast(s) were not shown because your"
                    " connection was too slow (see read for broadcasts and room messages).",
                )
            )
        if not self.closed:
            self._owner.output_drained()
        fanout = self._fanout
        if fanout is not None and self.position is None and self.can_step_in():
            fanout.step_in(self)

    def stopProducing(self) -> None:
        self.backed_up = False

    def _tune_socket(self) -> None:
        """Send small lines without delay; keep the kernel's send buffer small.

        ``TCP_NODELAY``: a chat line is small and should leave at once rather
        than wait for the client's delayed acknowledgement (Nagle's
        algorithm).  ``SO_SNDBUF`` pinned: a backlog shows up here, where it
        is counted, rather than hiding in the kernel.
        """
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass  # not TCP (a test transport, standard I/O)
        try:
            handle = self.transport.getHandle()
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._policy.send_buffer)
        except (AttributeError, OSError):
            pass  # not a socket (a test transport, standard I/O)
