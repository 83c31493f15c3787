"""A broadcast to everyone for the cost of one append: :class:`SharedFanout`.

Handing a broadcast to N connections one by one costs N Python calls (the
state's loop over its members, then each writer's append), about a fifth of
a fan-out's time (``docs/benchmarks.rst``, *Where chatservice's time goes*).
Most of those connections are alike: they read, nothing of their own waits
to be sent, and they get every broadcast.  :class:`SharedFanout` keeps them
*in step*: a broadcast is appended once to a shared :class:`SharedSegment`,
and at the next bulk flush each connection in step is written what the
segment holds from its position on, which for most of them is the whole
segment, joined once per wire format and sent as the same ``bytes`` object.

A connection is in step (its :class:`~chatservice.server.output.ConnectionWriter`
holds a position in a segment) while it writes through the batcher, reads,
and has nothing of its own waiting.  The moment something of its own is
written to it (a reply, a direct message, a room message), it steps out:
what the segments hold for it from its position on becomes its own pending
output, ahead of the new bytes, so the order it is sent in never changes.
It steps back in once its own output is written and it still reads.  Until
then it is *apart*, and each broadcast is delivered to it as before
(:meth:`~chatservice.server.output.ConnectionWriter.deliver`, with its
slow-reader rules); so are the clients that never step in (TLS, whose bytes
go through OpenSSL, and test transports).

Only logged-in users' connections are members (:meth:`SharedFanout.join`,
:meth:`SharedFanout.leave`, called by the chat state), and a broadcast names
the members it must not reach (the sender, whoever blocked them, busy users):
a segment keeps, with each entry, the clients it leaves out.

The segments form a chain: the batcher *seals* the open segment when a bulk
flush starts (:meth:`SharedFanout.seal`) and opens the next one, so what is
shared while a flush to thousands goes on over several reactor turns waits
for the following flush.  Every byte queued for a client still counts
towards its backlog (:meth:`SharedFanout.pending_size`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Collection, Protocol

from chatservice import events

if TYPE_CHECKING:
    from chatservice.server.output import ConnectionWriter

_NOBODY: frozenset[object] = frozenset()


class FanoutClient(Protocol):
    """A member as the fan-out sees it: a client with a ``deliver`` (and maybe a ``writer``)."""

    def deliver(self, event: events.Event) -> None: ...


class SharedSegment:
    """Broadcasts shared by the connections in step, between two bulk flushes.

    :ivar entries: the events, in order.
    :ivar left_out: for each entry, the clients it must not reach.
    :ivar touched: every client left out of any entry (they cannot take
        the segment's joined bytes).
    :ivar next: the segment opened when this one was sealed.
    """

    __slots__ = ("entries", "left_out", "touched", "joined", "next")

    def __init__(self) -> None:
        self.entries: list[events.Event] = []
        self.left_out: list[Collection[object]] = []
        self.touched: set[object] = set()
        self.joined: dict[str, bytes] = {}
        """Every entry's bytes in one format, once per format (sealed segments only)."""
        self.next: SharedSegment | None = None

    def append(self, event: events.Event, left_out: Collection[object]) -> None:
        self.entries.append(event)
        self.left_out.append(left_out)
        if left_out:
            self.touched.update(left_out)

    def all_bytes(self, writer: ConnectionWriter) -> bytes:
        """Every entry, in ``writer``'s format, joined (once per format)."""
        name = writer.format_name
        data = self.joined.get(name)
        if data is None:
            encode = writer.wire.encode_shared
            data = self.joined[name] = b"".join([encode(event) or b"" for event in self.entries])
        return data

    def chunks_for(self, writer: ConnectionWriter, start: int) -> list[bytes]:
        """The bytes of the entries from ``start`` on that reach ``writer``."""
        encode = writer.wire.encode_shared
        client = writer.owner
        chunks = []
        for event, left_out in zip(self.entries[start:], self.left_out[start:]):
            if client not in left_out:
                data = encode(event)
                if data:
                    chunks.append(data)
        return chunks


class SharedFanout:
    """The members of the fan-out, in step or apart, and the chain of shared segments.

    :param schedule_flush: asks the batcher for a bulk flush (something was
        shared).
    """

    def __init__(self, schedule_flush: Callable[[], None]) -> None:
        self._schedule_flush = schedule_flush
        self.segment = SharedSegment()
        """The open segment: what is shared now goes here."""
        self.in_step: dict[ConnectionWriter, None] = {}
        """Writers holding a position in a segment (insertion-ordered set)."""
        self.apart: dict[FanoutClient, None] = {}
        """Members delivered to one by one."""

    # Members -------------------------------------------------------------------------

    def join(self, client: FanoutClient) -> None:
        """``client`` logged in: from now on it gets what is shared."""
        writer = getattr(client, "writer", None)
        if writer is not None and writer.joins_fanout(self):
            if writer.can_step_in():
                self.step_in(writer)
                return
        self.apart[client] = None

    def leave(self, client: FanoutClient) -> None:
        """``client`` logged out: what was shared before still reaches it, nothing later."""
        writer = getattr(client, "writer", None)
        if writer is not None:
            writer.step_out()
            writer.leaves_fanout()
        self.apart.pop(client, None)

    def step_in(self, writer: ConnectionWriter) -> None:
        """``writer`` reads and has nothing of its own waiting: it shares from now on."""
        segment = self.segment
        writer.position = (segment, len(segment.entries))
        self.in_step[writer] = None
        self.apart.pop(writer.owner, None)

    def step_out(self, writer: ConnectionWriter) -> list[bytes]:
        """``writer`` is apart from now on: the shared bytes it has not been sent yet."""
        position = writer.position
        writer.position = None
        self.in_step.pop(writer, None)
        self.apart[writer.owner] = None
        return _chunks_from(writer, position, None)

    def forget(self, writer: ConnectionWriter) -> None:
        """``writer``'s connection is gone: nothing more for it."""
        writer.position = None
        self.in_step.pop(writer, None)
        self.apart.pop(writer.owner, None)

    # Sharing -------------------------------------------------------------------------

    def share(self, event: events.Event, left_out: Collection[object] = _NOBODY) -> None:
        """Send ``event`` (bulk output) to every member but the clients in ``left_out``.

        Members in step get it at the next bulk flush, for one append here;
        the members apart get it now, one by one.
        """
        if self.in_step:
            segment = self.segment
            if not segment.entries:
                self._schedule_flush()
            segment.append(event, left_out)
        if self.apart:
            for client in tuple(self.apart):
                if client not in left_out:
                    client.deliver(event)

    def seal(self) -> list[ConnectionWriter]:
        """A bulk flush starts: close the open segment; the writers to flush it to.

        The writers are those in step now; each is written what the sealed
        segment holds from its position on (:meth:`take`), and moves on to
        the new open segment.
        """
        segment = self.segment
        if not segment.entries:
            return []
        segment.next = self.segment = SharedSegment()
        return list(self.in_step)

    def take(self, writer: ConnectionWriter) -> bytes:
        """What ``writer`` (in step) is to be sent of the sealed segments; it moves on past them."""
        position = writer.position
        current = self.segment
        if position is None or position[0] is current:
            return b""
        writer.position = (current, 0)
        segment, start = position
        if start == 0 and segment.next is current and writer.owner not in segment.touched:
            return segment.all_bytes(writer)  # the common case: one bytes object for all of them
        return b"".join(_chunks_from(writer, position, current))

    def pending_size(self, writer: ConnectionWriter) -> int:
        """Bytes the segments hold for ``writer`` from its position on."""
        return sum(map(len, _chunks_from(writer, writer.position, None)))


def _chunks_from(
    writer: ConnectionWriter, position: tuple[SharedSegment, int] | None, stop: SharedSegment | None
) -> list[bytes]:
    """What the segments hold for ``writer`` from ``position`` on, up to the segment ``stop``."""
    chunks: list[bytes] = []
    if position is None:
        return chunks
    segment: SharedSegment | None
    segment, start = position
    while segment is not None and segment is not stop:
        chunks += segment.chunks_for(writer, start)
        segment, start = segment.next, 0
    return chunks
