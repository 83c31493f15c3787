"""Every file transfer of one client, over its one UDP port.

:class:`FileTransfers` keeps the transfers by id, routes each datagram to
its transfer, starts outgoing transfers when the server hands over an
address (``file_address``) and expects incoming ones when the server
announces them (``file_incoming``).  :class:`TransferSocket` is the
``DatagramProtocol`` that feeds it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from twisted.internet import abstract, defer
from twisted.internet.error import MessageLengthError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from chatservice.client import udpwire
from chatservice.client.downloads import received_name
from chatservice.client.filetransfer import (
    IncomingTransfer,
    OutgoingTransfer,
    Transfer,
    TransferObserver,
    TransferSettings,
)
log = Logger()

Address = tuple[str, int]


class TransferError(Exception):
    """A transfer cannot be started; the message is for the user."""


class FileTransfers:
    """The transfers of one client.

    :param clock: the reactor, or a test ``Clock``.
    :param download_dir: where received files are saved.
    :param observer: told about every transfer's start, progress and end.
    """

    def __init__(
        self,
        clock: IReactorTime,
        download_dir: Path,
        observer: TransferObserver,
        settings: TransferSettings = TransferSettings(),
    ) -> None:
        self.clock = clock
        self.download_dir = download_dir
        self.observer = observer
        self.settings = settings
        self._write: Callable[[bytes, Address], object] | None = None
        self._transfers: dict[bytes, Transfer] = {}
        self._idle_waiters: list[defer.Deferred[None]] = []

    # The socket ------------------------------------------------------------------------

    def attach(self, write: Callable[[bytes, Address], object]) -> None:
        """Send datagrams with ``write(datagram, (host, port))`` from now on."""
        self._write = write

    def datagram_received(self, datagram: bytes, address: Address) -> None:
        """Route one datagram to its transfer; anything else is dropped."""
        try:
            transfer = self._transfers.get(udpwire.peek_transfer(datagram))
            if transfer is None:
                return
            message = udpwire.decode(datagram)
        except udpwire.MalformedDatagram:
            return
        if isinstance(transfer, IncomingTransfer):
            transfer.datagram_received(message, address)
        elif isinstance(transfer, OutgoingTransfer):
            # The id is secret (derived from the server's token), and a
            # multi-homed receiver may answer from another of its addresses.
            transfer.datagram_received(message)

    def _send_to(self, datagram: bytes, address: Address) -> None:
        if self._write is None:
            return
        try:
            self._write(datagram, address)
        except (OSError, MessageLengthError) as e:
            # A full socket buffer is one more lost datagram: retransmission copes.
            log.debug("Datagram to {address} not sent: {error}", address=address, error=e)

    # Starting transfers ----------------------------------------------------------------

    def send_file(
        self,
        recipient: str,
        path: Path,
        filename: str,
        size: int,
        host: str,
        port: int,
        token: str,
    ) -> OutgoingTransfer:
        """Start sending ``path`` (announced as ``filename``, ``size`` bytes) to ``host:port``.

        :raises TransferError: the file cannot be read, or the address is unusable.
        """
        if not abstract.isIPAddress(host):
            raise TransferError(f"the server gave {recipient}'s address as {host!r}, not an IPv4 address")
        if not 0 < port < 65536:
            raise TransferError(f"the server gave {recipient}'s port as {port}")
        transfer_id = udpwire.transfer_id(token)
        if transfer_id in self._transfers:
            raise TransferError("the server gave the same token twice")
        try:
            source = open(path, "rb")
        except OSError as e:
            raise TransferError(f"cannot read {path}: {e.strerror or e}") from None
        address = (host, port)
        transfer = OutgoingTransfer(
            peer=recipient,
            filename=filename,
            size=size,
            token=token,
            source=source,
            address=address,
            send=lambda datagram: self._send_to(datagram, address),
            clock=self.clock,
            observer=self.observer,
            settings=self.settings,
        )
        self._add(transfer)
        transfer.start()
        return transfer

    def expect(
        self, sender: str, filename: str, size: int, token: str, ask: bool = False
    ) -> IncomingTransfer:
        """Get ready to receive the file the server announced.

        :param ask: wait for the user's :meth:`~IncomingTransfer.accept` first.

        :raises TransferError: the announcement is unusable.
        """
        if size < 0:
            raise TransferError(f"{sender} announced a negative size")
        transfer_id = udpwire.transfer_id(token)
        if transfer_id in self._transfers:
            raise TransferError("the server announced the same transfer twice")
        transfer = IncomingTransfer(
            peer=sender,
            filename=filename,
            size=size,
            token=token,
            directory=self.download_dir,
            final_name=received_name(sender, filename),
            send_to=self._send_to,
            clock=self.clock,
            observer=self.observer,
            settings=self.settings,
            ask=ask,
        )
        self._add(transfer)
        transfer.announce()
        return transfer

    def _add(self, transfer: Transfer) -> None:
        self._transfers[transfer.transfer_id] = transfer
        transfer.on_close = self._closed

    def _closed(self, transfer: Transfer) -> None:
        if self._transfers.get(transfer.transfer_id) is transfer:
            del self._transfers[transfer.transfer_id]
        if not self.active():
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    # The whole -------------------------------------------------------------------------

    def active(self) -> list[Transfer]:
        """The transfers under way (announced, running or finishing)."""
        return [t for t in self._transfers.values() if t.active]

    def when_idle(self) -> defer.Deferred[None]:
        """A Deferred that fires once no transfer is under way."""
        if not self.active():
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def close_all(self, reason: str) -> None:
        """Abort everything (telling the other sides) and forget finished transfers."""
        for transfer in list(self._transfers.values()):
            transfer.abort(reason)
        self._transfers.clear()


class TransferSocket(DatagramProtocol):
    """The client's UDP port: every datagram goes to :class:`FileTransfers`.

    :param write_wrapper: optionally wraps the port's write (``--udp-loss``).
    """

    def __init__(
        self,
        transfers: FileTransfers,
        write_wrapper: Callable[[Callable[[bytes, Address], object]], Callable[[bytes, Address], object]]
        | None = None,
    ) -> None:
        self.transfers = transfers
        self.write_wrapper = write_wrapper

    def startProtocol(self) -> None:
        write = self.transport.write
        if self.write_wrapper is not None:
            write = self.write_wrapper(write)
        self.transfers.attach(write)

    def datagramReceived(self, datagram: bytes, addr: Address) -> None:
        self.transfers.datagram_received(datagram, addr)


def file_size(path: Path) -> int:
    """The size of the regular file at ``path``.

    :raises TransferError: it is missing, not a regular file, or unreadable.
    """
    try:
        info = path.stat()
    except OSError as e:
        raise TransferError(f"cannot read {path}: {e.strerror or e}") from None
    if not path.is_file():
        raise TransferError(f"{path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise TransferError(f"cannot read {path}: permission denied")
    return info.st_size
