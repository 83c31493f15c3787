"""The transfers manager's edges: file names, the UDP protocol, sizes of files to send."""

from __future__ import annotations

import tempfile
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial import unittest

from chatservice.client import udpwire
from chatservice.client.testing import TransferRecorder
from chatservice.client.transfers import (
    FileTransfers,
    TransferError,
    TransferSocket,
    file_size,
    received_name,
    safe_name,
)


class NameTests(unittest.TestCase):
    def test_received_name(self) -> None:
        self.assertEqual(received_name("yoda", "lecture1.mp4"), "yoda_lecture1.mp4")

    def test_no_directories_or_control_characters(self) -> None:
        self.assertEqual(safe_name("../../etc/passwd"), "passwd")
        self.assertEqual(safe_name("C:\\Users\\x\\notes.txt"), "notes.txt")
        self.assertEqual(safe_name("bad\x1b[2Jname\n.txt"), "bad[2Jname.txt")
        self.assertEqual(safe_name(".."), "file")
        self.assertEqual(safe_name(""), "file")
        self.assertEqual(safe_name("a\tb"), "a b")
        self.assertEqual(len(safe_name("x" * 500)), 200)
        self.assertEqual(received_name("yoda", "../.."), "yoda_file")


class FileSizeTests(unittest.TestCase):
    def test_sizes_and_errors(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "f.bin"
            path.write_bytes(b"12345")
            self.assertEqual(file_size(path), 5)
            with self.assertRaises(TransferError) as caught:
                file_size(Path(directory) / "missing")
            self.assertIn("No such file", str(caught.exception))
            with self.assertRaises(TransferError) as caught:
                file_size(Path(directory))
            self.assertIn("not a regular file", str(caught.exception))


class FakeUdpTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, datagram: bytes, address: tuple[str, int]) -> None:
        self.sent.append((datagram, address))


class TransferSocketTests(unittest.TestCase):
    def test_routes_datagrams_and_writes_through_the_wrapper(self) -> None:
        clock = Clock()
        with tempfile.TemporaryDirectory() as directory:
            transfers = FileTransfers(clock, Path(directory), TransferRecorder())
            wrapped = []

            def wrapper(write):
                def send(datagram, address):
                    wrapped.append(datagram)
                    write(datagram, address)
                return send

            socket = TransferSocket(transfers, wrapper)
            socket.transport = FakeUdpTransport()
            socket.startProtocol()
            incoming = transfers.expect("yoda", "f.bin", 3, "tok")
            start = udpwire.encode_start(incoming.transfer_id, 3, 1200, "tok", "f.bin")
            socket.datagramReceived(start, ("127.0.0.1", 9))
            [(datagram, address)] = socket.transport.sent
            self.assertEqual(address, ("127.0.0.1", 9))
            self.assertEqual(udpwire.decode(datagram), udpwire.Accept(incoming.transfer_id, 1024))
            self.assertEqual(wrapped, [datagram])
            transfers.close_all("done")
            self.assertFalse((Path(directory) / "yoda_f.bin").exists())
            self.assertEqual(list(Path(directory).iterdir()), [])
        self.assertEqual(clock.getDelayedCalls(), [])
