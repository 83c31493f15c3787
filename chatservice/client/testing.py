"""Test doubles for the client: a datagram network on a clock, and a transfer recorder.

:class:`DatagramNetwork` joins any number of
:class:`~chatservice.client.transfers.FileTransfers` by address; each
datagram arrives ``latency`` seconds after it was written, on a test
``Clock``.  Put a :class:`~chatservice.client.lossy.LossyWriter` in front of
a host to make its network bad, or set :attr:`DatagramNetwork.tamper` to see
(and change or drop) every datagram.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock

from chatservice.client.filetransfer import Transfer
from chatservice.client.lossy import LossyWriter

Address = tuple[str, int]
Write = Callable[[bytes, Address], object]


class DatagramNetwork:
    """Delivers datagrams between hosts after ``latency`` seconds of ``clock`` time."""

    def __init__(self, clock: Clock, latency: float = 0.001) -> None:
        self.clock = clock
        self.latency = latency
        self.hosts: dict[Address, object] = {}
        self.tamper: Callable[[Address, Address, bytes], bytes | None] | None = None
        """Sees ``(source, destination, datagram)``; returns what to deliver, or ``None`` to drop."""
        self.delivered = 0
        self._pending: dict[int, IDelayedCall] = {}
        self._next = 0

    def attach(
        self,
        address: Address,
        host: object,
        wrap: Callable[[Write], Write] | None = None,
    ) -> Write:
        """Put ``host`` (anything with ``datagram_received`` and ``attach``) at ``address``."""
        self.hosts[address] = host

        def write(datagram: bytes, destination: Address) -> None:
            self.send(address, destination, datagram)

        writer: Write = wrap(write) if wrap is not None else write
        host.attach(writer)  # type: ignore[attr-defined]
        return writer

    def send(self, source: Address, destination: Address, datagram: bytes) -> None:
        if self.tamper is not None:
            changed = self.tamper(source, destination, datagram)
            if changed is None:
                return
            datagram = changed
        self._next += 1
        key = self._next
        self._pending[key] = self.clock.callLater(
            self.latency, self._deliver, key, source, destination, datagram
        )

    def _deliver(self, key: int, source: Address, destination: Address, datagram: bytes) -> None:
        del self._pending[key]
        host = self.hosts.get(destination)
        if host is not None:
            self.delivered += 1
            host.datagram_received(datagram, source)  # type: ignore[attr-defined]

    def idle(self) -> bool:
        """Whether no datagram is on its way."""
        return not self._pending

    def stop(self) -> None:
        """Drop every datagram on its way."""
        pending, self._pending = self._pending, {}
        for call in pending.values():
            if call.active():
                call.cancel()


def lossy(clock: Clock, rng: object, loss: float, duplicate: float, reorder: float,
          keep: list[LossyWriter] | None = None) -> Callable[[Write], Write]:
    """A ``wrap`` for :meth:`DatagramNetwork.attach` that makes a host's sending lossy."""

    def wrap(write: Write) -> Write:
        writer = LossyWriter(write, clock, rng, loss, duplicate, reorder)  # type: ignore[arg-type]
        if keep is not None:
            keep.append(writer)
        return writer

    return wrap


class TransferRecorder:
    """A :class:`~chatservice.client.filetransfer.TransferObserver` that keeps what it is told."""

    def __init__(self) -> None:
        self.started: list[Transfer] = []
        self.progress: list[tuple[Transfer, int]] = []
        self.succeeded: list[Transfer] = []
        self.failed: list[tuple[Transfer, str]] = []

    def transfer_started(self, transfer: Transfer) -> None:
        self.started.append(transfer)

    def transfer_progress(self, transfer: Transfer) -> None:
        self.progress.append((transfer, transfer.bytes_done))

    def transfer_succeeded(self, transfer: Transfer) -> None:
        self.succeeded.append(transfer)

    def transfer_failed(self, transfer: Transfer, reason: str) -> None:
        self.failed.append((transfer, reason))

    @property
    def ended(self) -> int:
        return len(self.succeeded) + len(self.failed)
