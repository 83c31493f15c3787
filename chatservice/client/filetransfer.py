"""The two ends of one peer-to-peer file transfer over UDP, as state machines.

:class:`OutgoingTransfer` reads a file in numbered chunks and sends them;
:class:`IncomingTransfer` writes them to a temporary file, checks the SHA-256
of the whole file and only then moves it to its final name, or a numbered
copy of it when that is taken (:func:`chatservice.client.downloads.save_new`:
nothing in the download directory is ever replaced).  The datagram
format is in :mod:`chatservice.client.udpwire`.  Neither class touches a
socket: each is given a function that sends one datagram to the other end,
and a clock (the reactor, or a test ``Clock``) for its timers.

Reliability, in short:

* every chunk is acknowledged (a cumulative ack plus a selective-ack bitmap);
* the sender keeps at most a window of chunks in flight: a congestion window
  that grows by one chunk per window acknowledged and halves on a loss,
  never more than the receiver's window;
* a chunk is retransmitted when a chunk sent after it is acknowledged first
  and either three sendings separate them or it has been out for more than
  1.25 round-trip times (fast retransmit, in the manner of TCP's RACK: some
  reordering is tolerated), or when it has not been acknowledged within the
  retransmission timeout (RTO, estimated from round-trip times as TCP does,
  doubled on every timeout);
* the receiver ignores duplicates and buffers chunks that arrive early, up to
  its window, writing the file strictly in order while hashing it;
* a side that hears nothing from the other for ``idle_timeout`` seconds gives
  up; a failed transfer leaves no file behind.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import heapq
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from chatservice.client import udpwire
from chatservice.client.downloads import save_new

log = Logger()

DECLINED = "declined"
"""The ``ABORT`` reason of a receiver whose user declined the file."""
NOT_ANSWERED = "not answered"
"""The ``ABORT`` reason of a receiver whose user did not answer in time."""

Address = tuple[str, int]
MIN_CHUNK = 64
MAX_CHUNK = 65000


@dataclass(frozen=True)
class TransferSettings:
    """Tunables of a transfer; the defaults suit a real network."""

    chunk_size: int = 1200
    """Bytes of file per ``DATA`` datagram: small enough for any path MTU."""
    initial_window: float = 32
    min_window: int = 4
    receive_window: int = 1024
    """Chunks a receiver buffers past the first missing one."""
    initial_rto: float = 0.5
    min_rto: float = 0.02
    max_rto: float = 4.0
    reorder_threshold: int = 3
    idle_timeout: float = 30.0
    """Seconds without a datagram from the other side before giving up."""
    start_timeout: float = 60.0
    """Seconds a receiver waits for ``START`` after the server announced a file."""
    linger: float = 10.0
    """Seconds a receiver keeps a finished transfer, to answer a repeated ``FIN``."""


class TransferObserver(Protocol):
    """Who hears about a transfer's progress (the client's display)."""

    def transfer_started(self, transfer: Transfer) -> None: ...

    def transfer_progress(self, transfer: Transfer) -> None: ...

    def transfer_succeeded(self, transfer: Transfer) -> None: ...

    def transfer_failed(self, transfer: Transfer, reason: str) -> None: ...


class State(enum.Enum):
    WAITING = "waiting for the other side"
    RUNNING = "transferring"
    FINISHING = "waiting for the receiver to confirm"
    LINGERING = "done; answering repeats"
    SUCCEEDED = "done"
    FAILED = "failed"


class Transfer:
    """What both ends have in common: identity, progress, timers, the end."""

    sending: bool

    def __init__(
        self,
        *,
        peer: str,
        filename: str,
        size: int,
        token: str,
        clock: IReactorTime,
        observer: TransferObserver,
        settings: TransferSettings,
    ) -> None:
        self.peer = peer
        self.filename = filename
        self.size = size
        self.token = token
        self.transfer_id = udpwire.transfer_id(token)
        self.clock = clock
        self.observer = observer
        self.settings = settings
        self.state = State.WAITING
        self.bytes_done = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.failure: str | None = None
        self.on_close: Callable[[Transfer], None] | None = None
        self._timer: IDelayedCall | None = None
        self._heard = clock.seconds()

    @property
    def active(self) -> bool:
        """Whether the transfer is still under way (not yet succeeded or failed)."""
        return self.state in (State.WAITING, State.RUNNING, State.FINISHING)

    @property
    def elapsed(self) -> float:
        """Seconds from the first data to the end (or to now)."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else self.clock.seconds()
        return max(0.0, end - self.started_at)

    def abort(self, reason: str) -> None:
        """Give up locally (the user quit): tell the other side, clean up."""
        if self.active:
            self._fail(reason, tell_peer=True)
        else:
            self._close()

    # Subclasses ------------------------------------------------------------------

    def _send_abort(self, reason: str) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Free what the subclass holds (files)."""

    # Shared ----------------------------------------------------------------------

    def _schedule(self, when: float) -> None:
        """Make the one timer fire at ``when`` (or keep it if it fires earlier)."""
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= when:
                return
            self._timer.cancel()
        self._timer = self.clock.callLater(max(0.0, when - self.clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._on_timer(self.clock.seconds())

    def _on_timer(self, now: float) -> None:
        raise NotImplementedError

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _succeed(self) -> None:
        self.finished_at = self.clock.seconds()
        self.bytes_done = self.size
        self.observer.transfer_succeeded(self)

    def _fail(self, reason: str, tell_peer: bool = False) -> None:
        if not self.active:
            return
        self.state = State.FAILED
        self.failure = reason
        self.finished_at = self.clock.seconds()
        if tell_peer:
            self._send_abort(reason)
        self._close()
        self.observer.transfer_failed(self, reason)

    def _close(self) -> None:
        self._cancel_timer()
        self._release()
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close(self)


class OutgoingTransfer(Transfer):
    """Sends one file.

    :param source: the file, open for binary reading; closed at the end.
    :param address: the receiver's UDP address (where datagrams go).
    :param send: sends one datagram to the receiver.
    """

    sending = True

    def __init__(
        self,
        *,
        peer: str,
        filename: str,
        size: int,
        token: str,
        source: BinaryIO,
        address: Address,
        send: Callable[[bytes], None],
        clock: IReactorTime,
        observer: TransferObserver,
        settings: TransferSettings = TransferSettings(),
    ) -> None:
        super().__init__(
            peer=peer,
            filename=filename,
            size=size,
            token=token,
            clock=clock,
            observer=observer,
            settings=settings,
        )
        self.source: BinaryIO | None = source
        self.address = address
        self.send = send
        self.chunk_size = settings.chunk_size
        self.chunks = -(-size // self.chunk_size)
        self._hash = hashlib.sha256()
        self._acked = bytearray(self.chunks)
        self.acked_count = 0
        self.next_new = 0
        self.lowest_unacked = 0
        self.receive_window = 1
        self.window = float(settings.initial_window)
        self.rto = settings.initial_rto
        self._srtt: float | None = None
        self._rttvar = 0.0
        # seq -> (serial, time sent, was a retransmission), oldest sending first
        self._in_flight: OrderedDict[int, tuple[int, float, bool]] = OrderedDict()
        self._lost: list[int] = []
        self._serial = 0
        self._highest_acked_serial = 0
        self._recovery_serial = 0
        self._control_sent_at = 0.0
        self._control_sends = 0
        self.retransmissions = 0

    def start(self) -> None:
        """Send ``START`` and wait for ``ACCEPT``."""
        now = self.clock.seconds()
        self._heard = now
        self._send_control(now)

    def datagram_received(self, message: udpwire.Datagram) -> None:
        """Handle one datagram from the receiver."""
        if not self.active:
            return
        now = self.clock.seconds()
        self._heard = now
        if isinstance(message, udpwire.Ack):
            if self.state is State.RUNNING:
                self._on_ack(message, now)
        elif isinstance(message, udpwire.Accept):
            if self.state is State.WAITING:
                self._accepted(message, now)
        elif isinstance(message, udpwire.Done):
            if self.state is State.FINISHING:
                self.state = State.SUCCEEDED
                self._close()
                self._succeed()
        elif isinstance(message, udpwire.Abort):
            if message.reason == DECLINED:
                self._fail(f"{self.peer} declined it")
            elif message.reason == NOT_ANSWERED:
                self._fail(f"{self.peer} did not answer in time")
            else:
                self._fail(f"{self.peer} cancelled it: {message.reason}")

    # Control datagrams: START, then FIN ------------------------------------------

    def _send_control(self, now: float) -> None:
        if self.state is State.WAITING:
            self.send(
                udpwire.encode_start(
                    self.transfer_id, self.size, self.chunk_size, self.token, self.filename
                )
            )
        else:
            self.send(udpwire.encode_fin(self.transfer_id, self._hash.digest()))
        self._control_sent_at = now
        self._control_sends += 1
        self._schedule(now + self.rto)

    def _accepted(self, message: udpwire.Accept, now: float) -> None:
        self.receive_window = max(1, min(message.window, 1 << 16))
        self.state = State.RUNNING
        self.started_at = now
        if self._control_sends == 1:
            # Karn: a START sent again gives no reliable round-trip time.
            self._sample_rtt(now - self._control_sent_at)
        self._control_sends = 0
        self.observer.transfer_started(self)
        self._fill(now)

    # Acknowledgements ------------------------------------------------------------

    def _on_ack(self, message: udpwire.Ack, now: float) -> None:
        newest: tuple[int, float, bool] | None = None
        acked = self._acked
        in_flight = self._in_flight
        limit = min(message.next, self.next_new)
        fresh = 0
        seq = self.lowest_unacked
        while seq < limit:
            if not acked[seq]:
                acked[seq] = 1
                fresh += 1
                entry = in_flight.pop(seq, None)
                if entry is not None and (newest is None or entry[0] > newest[0]):
                    newest = entry
            seq += 1
        if limit > self.lowest_unacked:
            self.lowest_unacked = limit
        bits = message.sack
        base = message.next + 1
        while bits:
            low = bits & -bits
            seq = base + low.bit_length() - 1
            bits ^= low
            if seq >= self.next_new:
                break
            if not acked[seq]:
                acked[seq] = 1
                fresh += 1
                entry = in_flight.pop(seq, None)
                if entry is not None and (newest is None or entry[0] > newest[0]):
                    newest = entry
        if fresh:
            self.acked_count += fresh
            self.bytes_done = min(self.size, self.acked_count * self.chunk_size)
            if self.window < self.receive_window:
                self.window = min(self.receive_window, self.window + fresh / self.window)
        if newest is not None:
            serial, sent_at, retransmitted = newest
            if serial > self._highest_acked_serial:
                self._highest_acked_serial = serial
            if not retransmitted:
                self._sample_rtt(now - sent_at)
        self._detect_losses(now)
        self._fill(now)
        if fresh and self.active:
            self.observer.transfer_progress(self)

    def _detect_losses(self, now: float) -> None:
        """Find the chunks that must have been lost, and queue them to be sent again.

        A chunk is lost when ``reorder_threshold`` chunks sent after it were
        acknowledged first (fewer when the window is too small for that many).
        """
        threshold = min(self.settings.reorder_threshold, max(1, int(self.window) - 1))
        horizon = self._highest_acked_serial - threshold
        lost = []
        for seq, (serial, _sent_at, _retransmitted) in self._in_flight.items():
            if serial > horizon:
                break
            lost.append((seq, serial))
        if not lost:
            return
        for seq, _serial in lost:
            del self._in_flight[seq]
            heapq.heappush(self._lost, seq)
        if max(serial for _seq, serial in lost) > self._recovery_serial:
            self._recovery_serial = self._serial
            self.window = max(float(self.settings.min_window), self.window / 2)

    def _sample_rtt(self, rtt: float) -> None:
        settings = self.settings
        if self._srtt is None:
            self._srtt = rtt
            self._rttvar = rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt
        self.rto = min(settings.max_rto, max(settings.min_rto, self._srtt + 4 * self._rttvar))

    # Sending chunks --------------------------------------------------------------

    def _fill(self, now: float) -> None:
        """Send lost chunks again, then new ones, while the window allows."""
        in_flight = self._in_flight
        lost = self._lost
        window = int(self.window)
        while len(in_flight) < window and self.active:
            if lost:
                seq = heapq.heappop(lost)
                if self._acked[seq] or seq in in_flight:
                    continue
                self.retransmissions += 1
                self._transmit(seq, now, True)
            elif self.next_new < self.chunks and (
                self.next_new < self.lowest_unacked + self.receive_window
            ):
                self._transmit(self.next_new, now, False)
            else:
                break
        if not self.active:
            return
        if self.acked_count == self.chunks:
            self.state = State.FINISHING
            self._send_control(now)
        elif in_flight:
            self._schedule(next(iter(in_flight.values()))[1] + self.rto)

    def _transmit(self, seq: int, now: float, again: bool) -> None:
        offset = seq * self.chunk_size
        length = min(self.chunk_size, self.size - offset)
        assert self.source is not None
        try:
            self.source.seek(offset)
            payload = self.source.read(length)
        except OSError as e:
            self._fail(f"could not read the file: {e.strerror or e}", tell_peer=True)
            return
        if len(payload) != length:
            self._fail("the file changed while it was being sent", tell_peer=True)
            return
        if seq == self.next_new:
            self._hash.update(payload)
            self.next_new += 1
        self._serial += 1
        self._in_flight[seq] = (self._serial, now, again)
        self.send(udpwire.encode_data(self.transfer_id, seq, payload))

    # Timeouts ----------------------------------------------------------------------

    def _on_timer(self, now: float) -> None:
        if not self.active:
            return
        idle_deadline = self._heard + self.settings.idle_timeout
        if now >= idle_deadline:
            if self.state is State.WAITING:
                self._fail(f"{self.peer} did not answer", tell_peer=True)
            elif self.state is State.FINISHING:
                self._fail(
                    f"{self.peer} did not confirm receiving it; it may be incomplete",
                    tell_peer=True,
                )
            else:
                self._fail(f"{self.peer} stopped answering", tell_peer=True)
            return
        if self.state is not State.RUNNING:
            if now >= self._control_sent_at + self.rto:
                self.rto = min(self.settings.max_rto, self.rto * 2)
                self._send_control(now)
            self._schedule(min(idle_deadline, self._control_sent_at + self.rto))
            return
        expired = []
        for seq, (_serial, sent_at, _again) in self._in_flight.items():
            if sent_at + self.rto > now:
                break
            expired.append(seq)
        if expired:
            for seq in expired:
                del self._in_flight[seq]
                heapq.heappush(self._lost, seq)
            self.window = float(self.settings.min_window)
            self._recovery_serial = self._serial
            self.rto = min(self.settings.max_rto, self.rto * 2)
            self._fill(now)
        if self.state is State.RUNNING:
            when = idle_deadline
            if self._in_flight:
                when = min(when, next(iter(self._in_flight.values()))[1] + self.rto)
            self._schedule(when)

    def _send_abort(self, reason: str) -> None:
        self.send(udpwire.encode_abort(self.transfer_id, reason))

    def _release(self) -> None:
        source, self.source = self.source, None
        if source is not None:
            source.close()


class IncomingTransfer(Transfer):
    """Receives one file announced by the server.

    :param directory: the download directory.
    :param final_name: the name the file gets there once whole and checked
        (a numbered copy of it when the name is taken; :attr:`path` tells).
    :param send_to: sends one datagram to an address.
    :param ask: the user is asked first: nothing is answered until :meth:`accept`
        (or :meth:`decline`); without it the file is accepted as announced.
    """

    sending = False

    def __init__(
        self,
        *,
        peer: str,
        filename: str,
        size: int,
        token: str,
        directory: Path,
        final_name: str,
        send_to: Callable[[bytes, Address], None],
        clock: IReactorTime,
        observer: TransferObserver,
        settings: TransferSettings = TransferSettings(),
        ask: bool = False,
    ) -> None:
        super().__init__(
            peer=peer,
            filename=filename,
            size=size,
            token=token,
            clock=clock,
            observer=observer,
            settings=settings,
        )
        self.directory = directory
        self.path = directory / final_name
        self.temporary_path = directory / f".incoming-{self.transfer_id.hex()}.part"
        self.send_to = send_to
        self.address: Address | None = None
        self.chunk_size = 0
        self.chunks = 0
        self.next_chunk = 0
        self.window = settings.receive_window
        self._sack = 0
        self._early: dict[int, bytes] = {}
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self.duplicates = 0
        self.decision: bool | None = None if ask else True
        """The user's answer: ``None`` until they accept (``True``) or decline."""
        self._decline_reason = DECLINED
        self._held: udpwire.Start | None = None

    def announce(self) -> None:
        """Start waiting for the sender's ``START``."""
        self._schedule(self.clock.seconds() + self.settings.start_timeout)

    def accept(self) -> None:
        """The user wants the file: answer the sender's ``START`` (now, if it came)."""
        if self.state is not State.WAITING or self.decision is not None:
            return
        self.decision = True
        held, self._held = self._held, None
        if held is not None and self.address is not None:
            self._start(held, self.address)

    def decline(self, reason: str = DECLINED) -> None:
        """The user does not want the file: the sender is told (now, or at its ``START``).

        :param reason: :data:`DECLINED`, or :data:`NOT_ANSWERED`.
        """
        if self.state is not State.WAITING or self.decision is not None:
            return
        self.decision = False
        self._decline_reason = reason
        if self.address is not None:
            self._fail(reason, tell_peer=True)

    def datagram_received(self, message: udpwire.Datagram, address: Address) -> None:
        """Handle one datagram of this transfer."""
        if self.state is State.WAITING:
            if isinstance(message, udpwire.Start):
                self._start(message, address)
            elif isinstance(message, udpwire.Abort) and address == self.address:
                self._fail(f"{self.peer} cancelled it: {message.reason}")
            return
        if address != self.address:
            return
        self._heard = self.clock.seconds()
        if isinstance(message, udpwire.Data):
            self._data(message)
        elif isinstance(message, udpwire.Fin):
            self._fin(message)
        elif isinstance(message, udpwire.Start):
            if self.state is State.RUNNING:
                self._send(udpwire.encode_accept(self.transfer_id, self.window))
        elif isinstance(message, udpwire.Abort):
            self._fail(f"{self.peer} cancelled it: {message.reason}")

    # Starting ----------------------------------------------------------------------

    def _start(self, message: udpwire.Start, address: Address) -> None:
        if not hmac.compare_digest(message.token.encode(), self.token.encode()):
            log.warn("Ignored a START with a wrong token from {address}", address=address)
            return
        self.address = address
        self._heard = self.clock.seconds()
        if self.decision is None:
            self._held = message  # until the user answers; the sender sends it again meanwhile
            return
        if not self.decision:
            self._fail(self._decline_reason, tell_peer=True)
            return
        problem = self._check_start(message)
        if problem is not None:
            self._fail(problem, tell_peer=True)
            return
        try:
            self._file = open(self.temporary_path, "xb")
        except OSError as e:
            self._fail(f"could not create {self.temporary_path}: {e.strerror or e}", True)
            return
        self.chunk_size = message.chunk_size
        self.chunks = -(-self.size // self.chunk_size)
        self.state = State.RUNNING
        self.started_at = self._heard
        self._send(udpwire.encode_accept(self.transfer_id, self.window))
        self._schedule(self._heard + self.settings.idle_timeout)
        self.observer.transfer_started(self)

    def _check_start(self, message: udpwire.Start) -> str | None:
        if message.size != self.size or message.filename != self.filename:
            return "the file does not match what the server announced"
        if not MIN_CHUNK <= message.chunk_size <= MAX_CHUNK:
            return f"unsupported chunk size {message.chunk_size}"
        if -(-message.size // message.chunk_size) >= 1 << 32:
            return "the file is too large"
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError as e:
            return f"cannot use the download directory: {e.strerror or e}"
        if free < self.size:
            return "not enough disk space"
        return None

    # Data --------------------------------------------------------------------------

    def _data(self, message: udpwire.Data) -> None:
        if self.state is not State.RUNNING:
            if self.state is State.LINGERING:
                self._send(udpwire.encode_ack(self.transfer_id, self.chunks))
            return
        seq = message.seq
        if seq >= self.chunks:
            return
        expected = min(self.chunk_size, self.size - seq * self.chunk_size)
        if len(message.payload) != expected:
            return
        next_chunk = self.next_chunk
        if seq == next_chunk:
            try:
                self._write(message.payload)
                while True:
                    more = self._sack & 1
                    self._sack >>= 1
                    if not more:
                        break
                    self._write(self._early.pop(self.next_chunk))
            except OSError as e:
                self._fail(f"could not write the file: {e.strerror or e}", tell_peer=True)
                return
            self.bytes_done = min(self.size, self.next_chunk * self.chunk_size)
            self.observer.transfer_progress(self)
        elif seq < next_chunk or seq in self._early:
            self.duplicates += 1
        elif seq < next_chunk + self.window:
            self._early[seq] = message.payload
            self._sack |= 1 << (seq - next_chunk - 1)
        self._send(udpwire.encode_ack(self.transfer_id, self.next_chunk, self._sack))

    def _write(self, payload: bytes) -> None:
        assert self._file is not None
        self._file.write(payload)
        self._hash.update(payload)
        self.next_chunk += 1

    def _fin(self, message: udpwire.Fin) -> None:
        if self.state is State.LINGERING:
            self._send(udpwire.encode_done(self.transfer_id))
            return
        if self.state is not State.RUNNING or self.next_chunk < self.chunks:
            return
        if not hmac.compare_digest(message.digest, self._hash.digest()):
            self._fail("the SHA-256 checksum did not match", tell_peer=True)
            return
        assert self._file is not None
        try:
            self._file.close()
            self.path = save_new(self.temporary_path, self.directory, self.path.name)
        except OSError as e:
            self._fail(f"could not save {self.path}: {e.strerror or e}", tell_peer=True)
            return
        self._file = None
        self.state = State.LINGERING
        self._send(udpwire.encode_done(self.transfer_id))
        self._schedule(self.clock.seconds() + self.settings.linger)
        self._succeed()

    # Timeouts and the end ----------------------------------------------------------

    def _on_timer(self, now: float) -> None:
        if self.state is State.WAITING:
            if self.decision is False:
                self._fail(self._decline_reason)
            elif self.decision is None and self._held is not None:
                self._schedule(now + self.settings.start_timeout)
            else:
                self._fail(f"{self.peer} never started sending it")
        elif self.state is State.RUNNING:
            deadline = self._heard + self.settings.idle_timeout
            if now >= deadline:
                self._fail(f"{self.peer} stopped sending", tell_peer=True)
            else:
                self._schedule(deadline)
        elif self.state is State.LINGERING:
            self.state = State.SUCCEEDED
            self._close()

    def abort(self, reason: str) -> None:
        if self.state is State.LINGERING:
            # Quitting while the sender may still wait for our DONE (if the
            # first one was lost): one more, for luck, as we go.
            self._send(udpwire.encode_done(self.transfer_id))
        super().abort(reason)

    def _send(self, datagram: bytes) -> None:
        if self.address is not None:
            self.send_to(datagram, self.address)

    def _send_abort(self, reason: str) -> None:
        self._send(udpwire.encode_abort(self.transfer_id, reason))

    def _release(self) -> None:
        self._early.clear()
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()
        if self.state is State.FAILED:
            try:
                self.temporary_path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warn(
                    "Could not remove {path}: {error}",
                    path=str(self.temporary_path),
                    error=e,
                )
