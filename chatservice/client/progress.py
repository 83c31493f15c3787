"""What the user sees of file transfers: start, progress, and how each ended.

On a terminal each running transfer has a progress bar on the live last
line (redrawn at most every :attr:`TransferDisplay.bar_interval` seconds);
in a pipe a progress line is printed every :attr:`TransferDisplay.interval`
seconds of a long transfer.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from chatservice.client.console import Screen
from chatservice.client.filetransfer import DECLINED, NOT_ANSWERED, Transfer

BAR_WIDTH = 20


def format_size(size: float) -> str:
    """A byte count for people: ``512 bytes``, ``1.5 kB``, ``20.0 MB``."""
    if size < 1000:
        return f"{int(size)} byte{'s' if int(size) != 1 else ''}"
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} TB"


def describe(transfer: Transfer) -> str:
    """``Sending NAME to USER`` or ``Receiving NAME from USER``."""
    if transfer.sending:
        return f"Sending {transfer.filename} to {transfer.peer}"
    return f"Receiving {transfer.filename} from {transfer.peer}"


def percent(transfer: Transfer) -> int:
    """How much is done, in whole percent (100 for an empty file)."""
    if transfer.size <= 0:
        return 100
    return min(100, transfer.bytes_done * 100 // transfer.size)


def rate(transfer: Transfer) -> str:
    """Average speed so far, e.g. ``5.2 MB/s`` (empty before there is one)."""
    elapsed = transfer.elapsed
    if elapsed <= 0:
        return ""
    return f"{format_size(transfer.bytes_done / elapsed)}/s"


def progress_line(transfer: Transfer) -> str:
    """``Sending x to hans: 45% (9.0 MB of 20.0 MB, 5.2 MB/s)``."""
    speed = rate(transfer)
    return (
        f"{describe(transfer)}: {percent(transfer)}%"
        f" ({format_size(transfer.bytes_done)} of {format_size(transfer.size)}"
        f"{', ' + speed if speed else ''})"
    )


def progress_bar(transfer: Transfer) -> str:
    """``[#########-----------]  45% x to hans``: one transfer on the live line."""
    done = percent(transfer)
    filled = done * BAR_WIDTH // 100
    arrow = "to" if transfer.sending else "from"
    return (
        f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done:3d}%"
        f" {transfer.filename} {arrow} {transfer.peer}"
    )


class TransferDisplay:
    """Shows transfers on an :class:`~chatservice.client.console.Screen`.

    :param clock: for throttling progress (the reactor, or a test ``Clock``).
    :param interval: seconds between progress lines in a pipe.
    :param bar_interval: seconds between progress bar redraws on a terminal.
    """

    def __init__(
        self,
        output: Screen,
        clock: IReactorTime,
        interval: float = 2.0,
        bar_interval: float = 0.1,
    ) -> None:
        self.output = output
        self.clock = clock
        self.interval = interval
        self.bar_interval = bar_interval
        self._last: dict[Transfer, float] = {}

    def transfer_started(self, transfer: Transfer) -> None:
        self._last[transfer] = self.clock.seconds()
        if self.output.terminal:
            self.output.status(transfer, progress_bar(transfer))

    def transfer_progress(self, transfer: Transfer) -> None:
        now = self.clock.seconds()
        last = self._last.get(transfer)
        if last is None:
            self._last[transfer] = last = now
        if self.output.terminal:
            if now - last >= self.bar_interval:
                self._last[transfer] = now
                self.output.status(transfer, progress_bar(transfer))
        elif now - last >= self.interval:
            self._last[transfer] = now
            self.output.line(progress_line(transfer))

    def transfer_succeeded(self, transfer: Transfer) -> None:
        self._forget(transfer)
        took = f"{format_size(transfer.size)} in {transfer.elapsed:.1f} s"
        speed = rate(transfer)
        if speed:
            took += f", {speed}"
        if transfer.sending:
            self.output.line(f"Sent {transfer.filename} to {transfer.peer} ({took}).")
        else:
            path = getattr(transfer, "path", "")
            self.output.line(
                f"Received {transfer.filename} from {transfer.peer}, saved as {path} ({took})."
            )

    def transfer_failed(self, transfer: Transfer, reason: str) -> None:
        self._forget(transfer)
        if not transfer.sending and reason in (DECLINED, NOT_ANSWERED):
            return  # the user declined it (or let it time out), and was told so
        if transfer.sending:
            self.output.line(f"Error. Sending {transfer.filename} to {transfer.peer} failed: {reason}.")
        else:
            self.output.line(
                f"Error. Receiving {transfer.filename} from {transfer.peer} failed: {reason}."
                " Nothing was saved."
            )

    def _forget(self, transfer: Transfer) -> None:
        self._last.pop(transfer, None)
        self.output.status(transfer, None)
