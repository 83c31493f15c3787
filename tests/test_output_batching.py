"""One ``send`` per connection per reactor turn (:mod:`chatservice.server.output`).

The batcher is checked on a :class:`Clock`, and a whole :class:`ChatProtocol`
on real loopback TCP connections, since direct writes exist only for real
sockets (:func:`write_now` itself: ``tests/test_twisted_internals.py``).
"""

from __future__ import annotations

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from chatservice import events
from chatservice.server.output import ConnectionWriter, OutputBatcher
from chatservice.server.policy import ConnectionPolicy
from chatservice.wire import TEXT
from tests.support import SAMPLE_ACCOUNTS, ChatHarness
from tests.test_limits import RecordingOwner

T = 1_700_000_000.0


class RecordingConnection:
    """A stand-in connection that records its flushes."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def flush_output(self) -> None:
        self.log.append(self.name)


class OutputBatcherTests(unittest.TestCase):
    def make(self, **options: float) -> tuple[Clock, OutputBatcher, list[str]]:
        """A batcher on a Clock, and the log its RecordingConnections write to."""
        clock = Clock()
        return clock, OutputBatcher(clock, **options), []

    def test_flushes_each_connection_once_after_the_turn(self) -> None:
        clock, batcher, log = self.make(interval=0.02)
        batcher.add(RecordingConnection("a", log))
        batcher.add(RecordingConnection("b", log))
        self.assertEqual(log, [])
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.assertEqual(batcher.pending, 2)
        clock.advance(0)  # the first flush after a quiet time is not delayed
        self.assertEqual(log, ["a", "b"])
        self.assertEqual(batcher.pending, 0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_bulk_flushes_are_at_least_an_interval_apart(self) -> None:
        clock, batcher, log = self.make(interval=0.02)
        batcher.add(RecordingConnection("first", log))
        clock.advance(0)
        clock.advance(0.005)
        batcher.add(RecordingConnection("second", log))
        clock.advance(0.014)
        self.assertEqual(log, ["first"])
        clock.advance(0.001)
        self.assertEqual(log, ["first", "second"])
        clock.advance(1)
        batcher.add(RecordingConnection("third", log))
        clock.advance(0)  # long after the last flush: at once
        self.assertEqual(log, ["first", "second", "third"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_urgent_connections_do_not_wait_for_the_interval(self) -> None:
        clock, batcher, log = self.make(interval=0.02)
        batcher.add(RecordingConnection("bulk", log))
        clock.advance(0)
        batcher.add(RecordingConnection("bulk again", log))
        batcher.hurry(RecordingConnection("urgent", log))
        clock.advance(0)
        self.assertEqual(log, ["bulk", "urgent"])
        clock.advance(0.02)
        self.assertEqual(log, ["bulk", "urgent", "bulk again"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_large_flush_is_spread_over_turns(self) -> None:
        clock, batcher, log = self.make(interval=0.02, per_turn=2)
        for name in "abcde":
            batcher.add(RecordingConnection(name, log))
        turns: list[list[str]] = []
        real_flush = batcher.flush

        def recording_flush() -> None:
            before = len(log)
            real_flush()
            turns.append(log[before:])

        batcher.flush = recording_flush  # type: ignore[method-assign]
        batcher._flush_call.func = recording_flush  # the call already scheduled
        clock.advance(0)
        self.assertEqual(turns, [["a", "b"], ["c", "d"], ["e"]])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_after_a_long_flush_the_next_waits_as_long(self) -> None:
        clock, batcher, log = self.make(interval=0.02, per_turn=1)

        class Slow(RecordingConnection):
            def flush_output(self) -> None:
                super().flush_output()
                clock.rightNow += 0.03  # each send "takes" 30 ms

        batcher.add(Slow("a", log))
        batcher.add(Slow("b", log))
        clock.advance(0)  # a, then b in the next turn: the flush took 60 ms
        self.assertEqual(log, ["a", "b"])
        batcher.add(RecordingConnection("c", log))
        clock.advance(0.059)
        self.assertEqual(log, ["a", "b"])
        clock.advance(0.001)
        self.assertEqual(log, ["a", "b", "c"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_the_gap_is_bounded(self) -> None:
        clock, batcher, log = self.make(interval=0.02)

        class VerySlow(RecordingConnection):
            def flush_output(self) -> None:
                super().flush_output()
                clock.rightNow += 10

        batcher.add(VerySlow("a", log))
        clock.advance(0)
        batcher.add(RecordingConnection("b", log))
        clock.advance(OutputBatcher.MAX_GAP)
        self.assertEqual(log, ["a", "b"])

    def test_connections_added_during_a_flush_go_in_the_next(self) -> None:
        for position in ("first chunk", "last chunk"):
            clock = Clock()
            batcher = OutputBatcher(clock, interval=0.02, per_turn=1)
            log: list[str] = []
            late = RecordingConnection("late", log)

            class Adds(RecordingConnection):
                def flush_output(self) -> None:
                    super().flush_output()
                    batcher.add(late)

            first, last = (Adds("a", log), RecordingConnection("b", log))
            if position == "last chunk":
                first, last = RecordingConnection("a", log), Adds("b", log)
            batcher.add(first)
            batcher.add(last)
            clock.advance(0)
            self.assertEqual(log, ["a", "b"], position)
            self.assertEqual(len(clock.getDelayedCalls()), 1, position)
            clock.advance(0.02)
            self.assertEqual(log, ["a", "b", "late"], position)
            self.assertEqual(clock.getDelayedCalls(), [], position)

    def test_a_failing_connection_does_not_stop_the_others(self) -> None:
        clock, batcher, log = self.make(interval=0.02)

        class Broken(RecordingConnection):
            def flush_output(self) -> None:
                super().flush_output()
                raise RuntimeError("broken")

        batcher.add(Broken("broken", log))
        batcher.add(RecordingConnection("fine", log))
        batcher.hurry(Broken("broken urgent", log))
        batcher.hurry(RecordingConnection("fine urgent", log))
        clock.advance(0)
        self.assertEqual(sorted(log), ["broken", "broken urgent", "fine", "fine urgent"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        batcher.add(RecordingConnection("later", log))
        clock.advance(0.02)
        self.assertIn("later", log)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_clock_stepped_back_does_not_hold_output_up(self) -> None:
        clock = Clock()
        clock.advance(1000)
        batcher = OutputBatcher(clock, interval=0.02)
        log: list[str] = []
        batcher.add(RecordingConnection("a", log))
        clock.advance(0)
        clock.rightNow -= 500  # the wall clock steps back
        batcher.add(RecordingConnection("b", log))
        clock.advance(0.02)
        self.assertEqual(log, ["a", "b"])

    def test_flush_now_writes_everything_and_leaves_no_timer(self) -> None:
        clock, batcher, log = self.make(interval=0.02, per_turn=1)
        for name in "abc":
            batcher.add(RecordingConnection(name, log))
        batcher.hurry(RecordingConnection("u", log))
        batcher.flush_now()
        self.assertEqual(sorted(log), ["a", "b", "c", "u"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_commits_run_before_every_kind_of_flush(self) -> None:
        """What the output reports is committed first (the store's history rows)."""
        clock, batcher, log = self.make(interval=0.02)
        commit = lambda: log.append("commit")  # noqa: E731
        batcher.unsettled(commit)
        batcher.unsettled(commit)
        batcher.add(RecordingConnection("bulk", log))
        batcher.hurry(RecordingConnection("urgent", log))
        clock.advance(0)
        self.assertEqual(log, ["commit", "bulk", "urgent"], "once, before the first flush")
        del log[:]
        batcher.unsettled(commit)
        batcher.add(RecordingConnection("now", log))
        batcher.flush_now()
        self.assertEqual(log, ["commit", "now"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_unsettled_output_waits_at_most_a_flush_interval(self) -> None:
        """A group opened with nothing else written is settled by the bulk flush it asks for."""
        clock, batcher, log = self.make(interval=0.02)
        batcher.flush()  # a flush just now: the next bulk one waits the interval
        batcher.unsettled(lambda: log.append("commit"))
        clock.advance(0)
        self.assertEqual(log, [])
        clock.advance(0.02)
        self.assertEqual(log, ["commit"])
        clock.advance(1)
        self.assertEqual(log, ["commit"], "settled once")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_direct_write_settles_first(self) -> None:
        """Output past the batcher (TLS, say) may leave at the next poll: what it reports is committed at once."""
        clock, batcher, log = self.make(interval=0.02)
        batcher.written_directly()
        self.assertEqual(log, [], "nothing unsettled: no commit")
        batcher.unsettled(lambda: log.append("commit"))
        batcher.written_directly()
        batcher.written_directly()
        self.assertEqual(log, ["commit"])
        clock.advance(0.02)
        self.assertEqual(log, ["commit"], "the bulk flush it asked for has nothing left to commit")
        self.assertEqual(clock.getDelayedCalls(), [])


class LoggingTransport(StringTransport):
    """A transport that is not a TCP socket (so nothing is batched), logging its writes and close."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def write(self, data: bytes) -> None:
        self.log.append("write")
        super().write(data)

    def loseConnection(self) -> None:
        self.log.append("close")
        super().loseConnection()


class UnbatchedWriterTests(unittest.TestCase):
    """A :class:`ConnectionWriter` whose transport is not batched still has what it reports committed first."""

    def make(self) -> tuple[ConnectionWriter, OutputBatcher, list[str]]:
        log: list[str] = []
        clock = Clock()
        batcher = OutputBatcher(clock, interval=0.05)
        writer = ConnectionWriter(LoggingTransport(log), TEXT, ConnectionPolicy(), clock, batcher, RecordingOwner())
        self.addCleanup(lambda: clock.advance(60))
        return writer, batcher, log

    def test_a_write_commits_first(self) -> None:
        writer, batcher, log = self.make()
        batcher.unsettled(lambda: log.append("commit"))
        writer.send(events.BroadcastMessage("yoda", "kept", T, 1))
        writer.send(events.BroadcastMessage("yoda", "kept too", T, 2))
        self.assertEqual(log, ["commit", "write", "write"])

    def test_a_close_commits_first(self) -> None:
        writer, batcher, log = self.make()
        batcher.unsettled(lambda: log.append("commit"))
        writer.close()
        self.assertEqual(log, ["commit", "close"])


class Collector(protocol.Protocol):
    """A client that keeps everything it receives."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.lost = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object = None) -> None:
        self.lost.callback(None)


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


async def wait_until(check, timeout: float = 5.0) -> None:
    """Let the reactor run until ``check()`` is true (or fail after ``timeout``)."""
    waited = 0.0
    while not check():
        if waited > timeout:
            raise AssertionError("timed out waiting")
        await sleep(0.01)
        waited += 0.01


class LineCollector(Collector):
    def lines(self) -> list[str]:
        return bytes(self.received).decode("utf-8").split("\r\n")


class ChatProtocolBatchingTests(unittest.TestCase):
    """A :class:`ChatProtocol` on real TCP: what waits, and what leaves together.

    The server's timers and its batcher run on the harness's :class:`Clock`,
    so the test decides when a turn ends and when the bulk interval has
    passed; the bytes travel over the real reactor.
    """

    def setUp(self) -> None:
        self.harness = ChatHarness()
        self.interval = self.harness.policy.flush_interval
        self.port = reactor.listenTCP(0, self.harness.factory, interface="127.0.0.1")
        self.clients: list[LineCollector] = []

    async def tearDown(self) -> None:
        for client in self.clients:
            client.transport.abortConnection()
        for client in self.clients:
            await client.lost
        await self.port.stopListening()
        self.harness.close_all()
        for call in self.harness.clock.getDelayedCalls():
            call.cancel()

    async def flushed(self, client: LineCollector, marker: bytes) -> None:
        """End the turn (and the bulk interval) until ``marker`` reaches ``client``."""
        await wait_until(lambda: self.harness.factory.output_batcher.pending)
        self.harness.clock.advance(self.interval)
        await wait_until(lambda: marker in client.received)

    async def log_in(self, username: str) -> LineCollector:
        client = LineCollector()
        await protocol.ClientCreator(reactor, lambda: client).connectTCP(
            "127.0.0.1", self.port.getHost().port
        )
        self.clients.append(client)
        await self.flushed(client, b"Username: ")
        client.transport.write(username.encode() + b"\r\n")
        await self.flushed(client, b"Password: ")
        client.transport.write(SAMPLE_ACCOUNTS[username].encode() + b"\r\n")
        await self.flushed(client, b"Welcome")
        return client

    async def quiet(self, *clients: LineCollector) -> None:
        """Let everything pending out, then forget what the clients received."""
        for _ in range(3):
            self.harness.clock.advance(self.interval)
            await sleep(0.02)
        for client in clients:
            client.received.clear()

    def count_sends(self, username: str) -> list[bytes]:
        """Record every direct write to ``username``'s socket (``write_now`` sends on its handle)."""
        sends: list[bytes] = []
        transport = self.harness.state.sessions[username].client.writer.transport
        real = transport.getHandle()

        class CountingSocket:
            def send(self, data: bytes) -> int:
                sends.append(bytes(data))
                return real.send(data)

        counting = CountingSocket()
        transport.getHandle = lambda: counting
        return sends

    async def just_flushed(self) -> tuple[LineCollector, object, list[bytes]]:
        """luke and yoda online, a bulk flush just done (the next is an interval away).

        Returns luke's client, yoda's session and the record of luke's sends.
        """
        luke = await self.log_in("luke")
        await self.log_in("yoda")
        await self.quiet(luke)
        yoda = self.harness.state.sessions["yoda"]
        yoda.broadcast("zero")
        self.harness.clock.advance(0)  # after a quiet time: at the end of the turn
        await wait_until(lambda: b"zero" in luke.received)
        luke.received.clear()
        return luke, yoda, self.count_sends("luke")

    async def test_broadcasts_wait_for_the_interval_and_leave_together(self) -> None:
        luke, yoda, sends = await self.just_flushed()
        for word in ("one", "two", "three"):
            yoda.broadcast(word)
        self.harness.clock.advance(self.interval / 2)
        await sleep(0.05)
        self.assertEqual(bytes(luke.received), b"", "a bulk write left before the interval")
        self.harness.clock.advance(self.interval / 2)
        await wait_until(lambda: luke.received.count(b"\r\n") >= 3)
        self.assertEqual(len(sends), 1, "one send for the interval's three broadcasts")
        texts = [line for line in luke.lines() if line]
        self.assertEqual(len(texts), 3)
        for text, word in zip(texts, ("one", "two", "three")):
            self.assertIn(word, text)

    async def test_a_direct_message_leaves_at_the_end_of_the_turn_after_the_broadcasts(self) -> None:
        luke, yoda, sends = await self.just_flushed()
        yoda.broadcast("before")
        yoda.message("luke", "direct")
        self.harness.clock.advance(0)  # the end of the turn, well within the interval
        await wait_until(lambda: b"direct" in luke.received)
        received = bytes(luke.received)
        self.assertLess(received.index(b"before"), received.index(b"direct"))
        self.assertEqual(len(sends), 1)

    async def test_disconnect_writes_the_batched_lines_before_closing(self) -> None:
        luke = await self.log_in("luke")
        await self.quiet(luke)
        session = self.harness.state.sessions["luke"]
        session.client.deliver(events.Presence("yoda", True))  # bulk: waits
        session.client._timed_out()
        await luke.lost
        received = bytes(luke.received)
        self.assertIn(b"yoda", received)
        self.assertLess(received.index(b"yoda"), received.index(b"logged out"))

    async def test_a_broadcasts_report_leaves_with_the_broadcast_other_replies_at_the_end_of_the_turn(self) -> None:
        luke = await self.log_in("luke")
        yoda = await self.log_in("yoda")
        await self.quiet(luke, yoda)
        self.harness.factory.output_batcher.flush()  # a flush just now: the next bulk one waits the interval
        luke.transport.write(b"broadcast hello there\r\n")
        await wait_until(lambda: self.harness.factory.output_batcher.pending)
        self.harness.clock.advance(0)  # the end of the turn
        await sleep(0.05)
        self.assertEqual(bytes(luke.received), b"", "the report waits for the fan-out it reports on")
        self.assertEqual(bytes(yoda.received), b"")
        self.harness.clock.advance(self.interval)
        await wait_until(lambda: b"Broadcast message, #" in luke.received and b"hello there" in yoda.received)
        luke.received.clear()
        luke.transport.write(b"whoelse\r\n")
        await wait_until(lambda: self.harness.factory.output_batcher.pending)
        self.harness.clock.advance(0)  # the end of the turn, well within the interval
        await wait_until(lambda: b"yoda" in luke.received)
