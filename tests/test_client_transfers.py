"""The transfers manager's edges: saved file names (``downloads``), the UDP protocol, sizes of files to send."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import unquote

from twisted.internet.task import Clock
from twisted.trial import unittest

from chatservice.client import udpwire
from chatservice.client.downloads import received_name, safe_name
from chatservice.client.testing import TransferRecorder
from chatservice.client.transfers import FileTransfers, TransferError, TransferSocket, file_size


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

    def test_the_sender_is_encoded_reversibly(self) -> None:
        # Issue 15, item 5: "../hans" used to save as "hans_report.txt".
        senders = [
            "../hans", "hans/", "..", ".", ".hidden", "a_b", "a%5Fb", "%2E", "C:\\x",
            "yo da", "yоda", "ｙｏｄａ", "e\u0301", "é", "\x1b[2J", "hans\x00", "-", "~x",
        ]
        for sender in senders:
            name = received_name(sender, "report.txt")
            label, _, rest = name.partition("_")
            self.assertEqual(rest, "report.txt", sender)
            self.assertEqual(unquote(label), sender)
            for forbidden in ("/", "\\", ".", "\x00", "\x1b"):
                self.assertNotIn(forbidden, label, sender)
        self.assertNotEqual(received_name("../hans", "report.txt"), received_name("hans", "report.txt"))

    def test_distinct_senders_and_names_never_share_a_file_name(self) -> None:
        pairs = [
            ("a_b", "c.txt"), ("a", "b_c.txt"), ("yoda", "x"), ("yоda", "x"), ("YODA", "x"),
            ("../hans", "report.txt"), ("hans", "report.txt"), ("%2E%2E%2Fhans", "report.txt"),
            ("x" * 300, "f"), ("x" * 301, "f"), ("é" * 100, "f"), ("é" * 101, "f"),
        ]
        names = [received_name(sender, filename) for sender, filename in pairs]
        self.assertEqual(len(set(names)), len(pairs), names)

    def test_long_names_fit_one_file_name(self) -> None:
        for sender in ("yoda", "é" * 32, "\U0001F600" * 40, "x" * 1000):
            for filename in ("ü" * 300 + ".txt", "x" * 500, "a." + "b" * 300):
                name = received_name(sender, filename)
                self.assertLessEqual(len(name.encode("utf-8")), 240, (sender, filename))
                self.assertNotIn("/", name)
        self.assertTrue(received_name("é" * 32, "ü" * 300 + ".txt").endswith(".txt"))
        self.assertLessEqual(len(safe_name("ü" * 300).encode("utf-8")), 200)


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
