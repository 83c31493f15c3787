"""What the user sees of file transfers: bars on a terminal, periodic lines in a pipe."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial import unittest

from chatservice.client.console import CLEAR_LINE, Output
from chatservice.client.progress import (
    TransferDisplay,
    format_size,
    percent,
    progress_bar,
    progress_line,
)


class FakeTransfer:
    """Just what the display reads of a transfer."""

    def __init__(self, clock: Clock, sending: bool, size: int = 20_000_000) -> None:
        self.clock = clock
        self.sending = sending
        self.peer = "hans" if sending else "yoda"
        self.filename = "lecture1.mp4"
        self.size = size
        self.bytes_done = 0
        self.started_at = clock.seconds()
        self.finished_at: float | None = None
        self.path = Path("downloads/yoda_lecture1.mp4")

    @property
    def elapsed(self) -> float:
        end = self.finished_at if self.finished_at is not None else self.clock.seconds()
        return end - self.started_at


class FormatTests(unittest.TestCase):
    def test_line_and_bar(self) -> None:
        clock = Clock()
        transfer = FakeTransfer(clock, sending=True)
        transfer.bytes_done = 9_000_000
        clock.advance(2)
        self.assertEqual(percent(transfer), 45)
        self.assertEqual(
            progress_line(transfer),
            "Sending lecture1.mp4 to hans: 45% (9.0 MB of 20.0 MB, 4.5 MB/s)",
        )
        self.assertEqual(progress_bar(transfer), "[#########-----------]  45% lecture1.mp4 to hans")

    def test_empty_file_is_complete(self) -> None:
        transfer = FakeTransfer(Clock(), sending=False, size=0)
        self.assertEqual(percent(transfer), 100)
        self.assertEqual(progress_line(transfer), "Receiving lecture1.mp4 from yoda: 100% (0 bytes of 0 bytes)")

    def test_format_size(self) -> None:
        self.assertEqual(format_size(0), "0 bytes")
        self.assertEqual(format_size(1), "1 byte")
        self.assertEqual(format_size(999), "999 bytes")
        self.assertEqual(format_size(1500), "1.5 kB")
        self.assertEqual(format_size(20_000_000), "20.0 MB")
        self.assertEqual(format_size(3e9), "3.0 GB")
        self.assertEqual(format_size(5e12), "5.0 TB")


class DisplayTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.written: list[bytes] = []

    def text(self) -> str:
        text = b"".join(self.written).decode()
        self.written.clear()
        return text

    def test_pipe_prints_a_line_every_interval(self) -> None:
        display = TransferDisplay(Output(self.written.append, terminal=False, interactive=False), self.clock, interval=2)
        transfer = FakeTransfer(self.clock, sending=True)
        display.transfer_started(transfer)
        for second in range(1, 6):
            self.clock.advance(1)
            transfer.bytes_done = second * 1_000_000
            display.transfer_progress(transfer)
        self.assertEqual(
            self.text().splitlines(),
            [
                "Sending lecture1.mp4 to hans: 10% (2.0 MB of 20.0 MB, 1.0 MB/s)",
                "Sending lecture1.mp4 to hans: 20% (4.0 MB of 20.0 MB, 1.0 MB/s)",
            ],
        )
        transfer.bytes_done = transfer.size
        transfer.finished_at = self.clock.seconds()
        display.transfer_succeeded(transfer)
        self.assertEqual(self.text(), "Sent lecture1.mp4 to hans (20.0 MB in 5.0 s, 4.0 MB/s).\n")

    def test_terminal_shows_a_bar(self) -> None:
        output = Output(self.written.append, terminal=True, interactive=True)
        output.prompt("> ")
        display = TransferDisplay(output, self.clock, bar_interval=0.1)
        transfer = FakeTransfer(self.clock, sending=False)
        display.transfer_started(transfer)
        self.assertTrue(self.text().endswith("[--------------------]   0% lecture1.mp4 from yoda"))
        transfer.bytes_done = 10_000_000
        display.transfer_progress(transfer)
        self.assertEqual(self.text(), "")
        self.clock.advance(0.1)
        display.transfer_progress(transfer)
        self.assertEqual(self.text(), CLEAR_LINE + "[##########----------]  50% lecture1.mp4 from yoda")
        transfer.finished_at = self.clock.seconds()
        display.transfer_succeeded(transfer)
        shown = self.text()
        self.assertIn("Received lecture1.mp4 from yoda, saved as downloads/yoda_lecture1.mp4", shown)
        self.assertTrue(shown.endswith(").\n> "))

    def test_failures(self) -> None:
        display = TransferDisplay(Output(self.written.append, terminal=False, interactive=False), self.clock)
        display.transfer_failed(FakeTransfer(self.clock, sending=True), "hans stopped answering")
        display.transfer_failed(FakeTransfer(self.clock, sending=False), "yoda cancelled it: quit")
        self.assertEqual(
            self.text().splitlines(),
            [
                "Error. Sending lecture1.mp4 to hans failed: hans stopped answering.",
                "Error. Receiving lecture1.mp4 from yoda failed: yoda cancelled it: quit. Nothing was saved.",
            ],
        )
