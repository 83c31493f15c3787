"""A node's messages to the other nodes, published together: one ``PUBLISH`` per channel and turn.

A broadcast in a cluster costs its node a ``PUBLISH`` to each other node
(the command, its reply, a timeout) and each other node a message to read.
Under load a turn hands over several at once (a group of history rows is
committed together, and each row's broadcast goes out in that turn; a
login or logout storm is many presence messages), so the :class:`Outbox`
keeps a turn's messages and publishes them at the end of the turn, those
for one channel as one ``PUBLISH`` of a JSON array (:func:`messages_in`
reads it back).

Order: every node subscribes to the shared channel (``chat:all``) and to
its own (``chat:node:<name>``) only, so what a node must get in order is
the shared channel's messages and its own channel's, together.  The
outbox therefore keeps the shared channel's messages as barriers: the
messages for node channels between two of them are grouped by channel
(the order of one channel's messages kept; which node's ``PUBLISH`` goes
first does not matter to any node), and nothing crosses a shared one.
All go out on the one command connection, in that order (see
:meth:`ClusterNode.deliver_remote
<chatservice.cluster.node.ClusterNode.deliver_remote>`).

Timeouts: a ``PUBLISH`` not answered within ``reply_seconds`` counts as not
published.  The outbox keeps the ones under way in the order sent and looks
at them when the oldest is due (one timer for all of them, not one each:
under load a node publishes a thousand times a second).
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice.server.timers import cancel_pending

log = Logger()

MAX_BATCH_CHARACTERS = 256 * 1024
"""A ``PUBLISH`` carries at most this many characters (one message alone may
be longer): a receiving node reads a batch in one turn.  The messages are
ASCII (``json.dumps`` escapes the rest), so this is also its size in bytes."""


class _Batch:
    """Messages for one channel, in order, and who waits for their count."""

    __slots__ = ("channel", "texts", "size", "waiting")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.texts: list[str] = []
        self.size = 1
        """The length of :meth:`payload` as an array: the brackets, the messages, the commas."""
        self.waiting: list[defer.Deferred[int]] = []

    def payload(self) -> str:
        """The text published: the one message, or a JSON array of them all."""
        if len(self.texts) == 1:
            return self.texts[0]
        return "[" + ",".join(self.texts) + "]"


class Outbox:
    """Publishes the messages given in one turn at its end, a channel's together.

    :param publish: ``publish(channel, text)``, firing with how many
        subscribers got ``text`` (``PUBLISH``'s reply).
    :param clock: runs the end of the turn (``callLater(0)``) and the timeouts.
    :param reply_seconds: how long a ``PUBLISH`` may take before its
        messages count as not published.
    :param shared: the channel every node subscribes to, whose messages no
        other message crosses.
    """

    def __init__(
        self,
        publish: Callable[[str, str], defer.Deferred[Any]],
        clock: IReactorTime,
        reply_seconds: float,
        shared: str,
    ) -> None:
        self._publish = publish
        self._clock = clock
        self.reply_seconds = reply_seconds
        """How long a ``PUBLISH`` may take before its messages count as not published."""
        self._shared = shared
        self._batches: list[_Batch] = []
        self._open: dict[str, _Batch] = {}
        """The batch each channel's next message may join (none across a shared message)."""
        self._call: IDelayedCall | None = None
        self._under_way: dict[defer.Deferred[Any], float] = {}
        """The ``PUBLISH`` commands not answered yet, and when each is due."""
        self._sweep_call: IDelayedCall | None = None

    def put(self, channel: str, text: str) -> defer.Deferred[int]:
        """Publish the JSON object ``text`` on ``channel`` at the end of this turn.

        Fires with how many subscribers got it: 0 when its ``PUBLISH``
        failed or was not answered in time (logged, never an error).
        """
        if channel == self._shared:
            # A barrier: node channels' later messages start new batches.
            self._open = {c: batch for c, batch in self._open.items() if c == channel}
        else:
            self._open.pop(self._shared, None)
        batch = self._open.get(channel)
        if batch is None or batch.size + len(text) + 1 > MAX_BATCH_CHARACTERS:
            batch = self._open[channel] = _Batch(channel)
            self._batches.append(batch)
        batch.texts.append(text)
        batch.size += len(text) + 1
        waiting: defer.Deferred[int] = defer.Deferred()
        batch.waiting.append(waiting)
        if self._call is None:
            self._call = self._clock.callLater(0, self.send)
        return waiting

    def send(self) -> None:
        """Publish what is waiting now (the end of the turn, or before stopping)."""
        cancel_pending(self._call)
        self._call = None
        batches, self._batches, self._open = self._batches, [], {}
        due = self._clock.seconds() + self.reply_seconds
        for batch in batches:
            try:
                d = self._publish(batch.channel, batch.payload())
            except Exception:
                log.failure("Publishing to {channel} failed", channel=batch.channel)
                d = defer.succeed(0)
            if not d.called:
                self._under_way[d] = due
                d.addBoth(self._answered, d)
                if self._sweep_call is None:
                    self._sweep_call = self._clock.callLater(self.reply_seconds, self._sweep)
                elif self._sweep_call.getTime() > due:
                    self._sweep_call.reset(self.reply_seconds)
            d.addErrback(_not_published, batch, self.reply_seconds)
            d.addCallback(_counted, batch.waiting)

    def _answered(self, result: object, d: defer.Deferred[Any]) -> object:
        self._under_way.pop(d, None)
        return result

    def _sweep(self) -> None:
        """Give up on the ``PUBLISH`` commands now due; look again when the next is."""
        self._sweep_call = None
        now = self._clock.seconds()
        next_due = None
        for d, due in list(self._under_way.items()):
            if due > now:
                next_due = due if next_due is None else min(next_due, due)
            else:
                del self._under_way[d]
                d.cancel()
        if next_due is not None and self._sweep_call is None:
            self._sweep_call = self._clock.callLater(next_due - now, self._sweep)

    def stop(self) -> None:
        """Publish what is waiting now, and time nothing out any more (the node stops;
        what is under way is answered, or fails with the lost connection)."""
        self.send()
        cancel_pending(self._sweep_call)
        self._sweep_call = None
        self._under_way.clear()


def messages_in(text: str) -> list[dict[str, Any]]:
    """The messages of one ``PUBLISH``: the one message, or each of the array's."""
    messages = json.loads(text)
    return messages if isinstance(messages, list) else [messages]


def _not_published(failure: Failure, batch: _Batch, reply_seconds: float) -> int:
    """A ``PUBLISH`` that failed or timed out: logged, and nobody got its messages."""
    if failure.check(CancelledError):
        log.warn(
            "Publishing {count} message(s) to {channel} failed: not answered within {seconds} s",
            count=len(batch.texts), channel=batch.channel, seconds=reply_seconds,
        )
    else:
        log.warn(
            "Publishing {count} message(s) to {channel} failed: {e}",
            count=len(batch.texts), channel=batch.channel, e=failure.value,
        )
    return 0


def _counted(receivers: int, waiting: list[defer.Deferred[int]]) -> None:
    """Each message of a ``PUBLISH`` was got by its ``receivers`` subscribers
    (one whose caller cancelled it has its answer already)."""
    for d in waiting:
        if not d.called:
            d.callback(receivers)
